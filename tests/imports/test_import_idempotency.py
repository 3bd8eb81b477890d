"""Re-importing stores nothing twice: upserts by key, events by (source, message id), in-file repeats."""

from __future__ import annotations

import shutil
import tempfile
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera.services.imports import ImportReport
from tessera.stores.analytic import AnalyticStore
from tests.imports.support import counts, new_store, rows, run, write, write_csv


def summary(r: ImportReport) -> tuple[int, int, int, int, int]:
    return r.rows_read, r.rows_stored, r.rows_updated, r.rows_duplicate, r.rows_rejected


ORDERS = [
    {"order_id": "o1", "customer_id": "c1", "ordered_at": "2024-01-05 10:00:00", "total": "10", "note": "a"},
    {"order_id": "o2", "customer_id": "c2", "ordered_at": "2024-01-06 10:00:00", "total": "20"},
]


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_same_file_twice_stores_nothing_the_second_time(store: AnalyticStore, tmp_path: Path, fmt: str) -> None:
    path = write(tmp_path, "orders", fmt, ORDERS)
    assert summary(run(store, "orders", path)) == (2, 2, 0, 0, 0)
    before = counts(store)
    assert summary(run(store, "orders", path)) == (2, 0, 0, 2, 0)
    after = counts(store)
    assert after["orders"] == before["orders"] == 2
    assert after["import_runs"] == before["import_runs"] + 1


def test_changed_rows_update_only_the_columns_the_file_has(store: AnalyticStore, tmp_path: Path) -> None:
    first = run(store, "orders", write_csv(tmp_path / "a.csv", ORDERS), source_id=3)
    same = {k: ORDERS[0][k] for k in ("ordered_at", "total")}
    changed = [
        {"order_id": "o1", **same, "status": "refunded", "gift": "yes"},
        {"order_id": "o2", "ordered_at": "2024-01-06 10:00", "total": "20.00", "status": ""},
    ]
    report = run(store, "orders", write_csv(tmp_path / "b.csv", changed), source_id=3)
    assert summary(report) == (2, 0, 1, 1, 0)
    got = rows(
        store, "SELECT order_id, customer_id, status, total, attributes, source_id, import_id FROM orders ORDER BY 1"
    )
    assert got == [
        ("o1", "c1", "refunded", Decimal("10.00"), '{"note":"a","gift":"yes"}', 3, report.import_id),
        ("o2", "c2", None, Decimal("20.00"), None, 3, first.import_id),
    ]
    again = [{"order_id": "o2", "ordered_at": "2024-01-06 10:00", "total": "20"}]
    moved = run(store, "orders", write_csv(tmp_path / "c.csv", again), source_id=4)
    assert summary(moved) == (1, 0, 1, 0, 0)
    assert rows(store, "SELECT source_id FROM orders WHERE order_id = 'o2'") == [(4,)]


def test_update_keeps_stored_values_of_columns_the_file_lacks(store: AnalyticStore, tmp_path: Path) -> None:
    run(store, "customers", write_csv(tmp_path / "a.csv", [{"customer_id": "c1", "name": "王小明", "city": "上海"}]))
    report = run(store, "customers", write_csv(tmp_path / "b.csv", [{"customer_id": "c1", "city": "北京"}]))
    assert summary(report) == (1, 0, 1, 0, 0)
    assert rows(store, "SELECT name, city, updated_at FROM customers") == [
        ("王小明", "北京", datetime(2026, 1, 15, 12))
    ]


def test_rows_repeating_a_key_in_one_file_last_wins(store: AnalyticStore, tmp_path: Path) -> None:
    records = [
        {"product_id": "p1", "name": "旧名", "price": "10"},
        {"product_id": "p2", "name": "围巾", "price": "20"},
        {"product_id": "p1", "name": "新名", "price": "12"},
    ]
    assert summary(run(store, "products", write_csv(tmp_path / "p.csv", records))) == (3, 2, 0, 1, 0)
    assert rows(store, "SELECT product_id, name, price FROM products ORDER BY 1") == [
        ("p1", "新名", Decimal("12.00")),
        ("p2", "围巾", Decimal("20.00")),
    ]


def test_events_dedup_on_source_and_message_id(store: AnalyticStore, tmp_path: Path) -> None:
    records = [
        {"message_id": "m1", "event": "A", "user_id": "u1", "timestamp": "2024-01-05"},
        {"message_id": "m2", "event": "B", "user_id": "u1", "timestamp": "2024-01-05"},
        {"message_id": "m1", "event": "A", "user_id": "u1", "timestamp": "2024-01-05"},
    ]
    path = write_csv(tmp_path / "e.csv", records)
    assert summary(run(store, "events", path, source_id=1)) == (3, 2, 0, 1, 0)
    assert summary(run(store, "events", path, source_id=1)) == (3, 0, 0, 3, 0)
    assert summary(run(store, "events", path, source_id=2)) == (3, 2, 0, 1, 0)
    assert rows(store, "SELECT source_id, count(*) FROM events GROUP BY 1 ORDER BY 1") == [(1, 2), (2, 2)]
    assert counts(store)["profiles"] == 1


def test_events_without_message_ids_dedup_by_content(store: AnalyticStore, tmp_path: Path) -> None:
    records = [
        {"event": "Product Viewed", "user_id": "u1", "timestamp": "2024-01-05 10:00:00", "product_id": "p1"},
        {"event": "Product Viewed", "user_id": "u1", "timestamp": "2024-01-05 10:00:01", "product_id": "p1"},
        {"event": "Product Viewed", "user_id": "u1", "timestamp": "2024-01-05 10:00:00", "product_id": "p1"},
    ]
    for fmt in ("csv", "jsonl"):
        path = write(tmp_path, f"e-{fmt}", fmt, records)
        first = run(store, "events", path)
        assert summary(first) == ((3, 2, 0, 1, 0) if fmt == "csv" else (3, 0, 0, 3, 0))
    ids = [r[0] for r in rows(store, "SELECT message_id FROM events ORDER BY timestamp")]
    assert len(ids) == 2 and all(i.startswith("imp-") for i in ids)


def test_reimport_keeps_profile_counts(store: AnalyticStore, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "c.csv", [{"customer_id": f"c{i}", "name": f"客户{i}"} for i in range(5)])
    run(store, "customers", path)
    run(store, "customers", path)
    assert (counts(store)["profiles"], counts(store)["profile_identifiers"]) == (5, 5)


_keys = st.sampled_from([f"p{i}" for i in range(6)])
_names = st.sampled_from(["衬衫", "围巾", "scarf", "", "裙子"])
_prices = st.sampled_from(["1", "2.50", "¥3", "1,000", ""])


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_keys, _names, _prices), min_size=1, max_size=12), st.sampled_from(["csv", "jsonl"]))
def test_any_rows_imported_twice_leave_one_row_per_key(data: list[tuple[str, str, str]], fmt: str) -> None:
    folder = Path(tempfile.mkdtemp(prefix="import-prop-"))
    store = new_store(folder)
    try:
        records = [{"product_id": k, "name": n, "price": p} for k, n, p in data]
        path = write(folder, "p", fmt, records)
        first = run(store, "products", path)
        second = run(store, "products", path)
        keys = {k for k, _, _ in data}
        assert counts(store)["products"] == len(keys)
        for r in (first, second):
            assert r.rows_read == len(data) == r.rows_stored + r.rows_updated + r.rows_duplicate + r.rows_rejected
        assert (first.rows_stored, second.rows_stored, second.rows_updated) == (len(keys), 0, 0)
        last = {k: (n or None, p) for k, n, p in data}
        got = dict((k, (n, p)) for k, n, p in rows(store, "SELECT product_id, name, price FROM products"))
        assert {k: v[0] for k, v in got.items()} == {k: v[0] for k, v in last.items()}
    finally:
        store.close()
        shutil.rmtree(folder, ignore_errors=True)


def test_import_runs_records_updates_and_the_rejects_file(store: AnalyticStore, tmp_path: Path) -> None:
    """Schema version 2 columns (rows_updated, rejects_path, error) are filled in."""
    path = write_csv(tmp_path / "a.csv", ORDERS)
    run(store, "orders", path)
    changed = [{**ORDERS[0], "total": "11"}, {**ORDERS[1], "ordered_at": "soon"}]
    report = run(store, "orders", write_csv(tmp_path / "b.csv", changed), max_rejects=1)
    got = rows(store, "SELECT rows_stored, rows_updated, rows_rejected, rejects_path FROM import_runs WHERE import_id = ?",
               [report.import_id])  # fmt: skip
    assert got == [(0, 1, 1, str(report.rejects_path))]
