"""User values never become SQL: hostile headers, mapping keys, defaults, JSON keys, paths and cells."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from tessera.services.imports import ImportFailed, ImportUsageError, import_file
from tessera.stores.analytic import AnalyticStore
from tests.imports.support import NOW, counts, rows, write_csv

EVIL = [
    "x'); DROP TABLE orders; --",
    'y"); DROP TABLE orders; --',
    "z` OR 1=1 --",
    "$1 ?",
    "\\'\\\"",
    "名字'--",
]


def tables_intact(store: AnalyticStore) -> None:
    names = {r[0] for r in rows(store, "SELECT table_name FROM information_schema.tables")}
    assert {"orders", "customers", "events", "import_runs", "event_names"} <= names


def test_hostile_headers_values_and_defaults(store: AnalyticStore, tmp_path: Path) -> None:
    record = {"order_id": EVIL[0], "ordered_at": "2024-01-05", "total": "1"}
    record.update({name: f"value of {name}" for name in EVIL})
    folder = tmp_path / 'it\'s a "folder"; --'
    folder.mkdir()
    path = write_csv(folder / "o'; DROP TABLE orders; --.csv", [record])
    mapping = {EVIL[1]: "attributes.renamed " + EVIL[2], EVIL[3]: "coupon_code", EVIL[4]: None}
    defaults = {"currency": EVIL[5], "status": "'); DELETE FROM orders; --"}
    report = import_file(store=store, kind="orders", path=path, mapping=mapping, defaults=defaults, now=NOW)
    assert report.rows_stored == 1
    tables_intact(store)
    got = rows(store, "SELECT order_id, coupon_code, currency, status, attributes FROM orders")
    assert got[0][:4] == (EVIL[0], f"value of {EVIL[3]}", EVIL[5], "'); DELETE FROM orders; --")
    attributes = json.loads(got[0][4])
    assert attributes["renamed " + EVIL[2]] == f"value of {EVIL[1]}"
    assert attributes[EVIL[2]] == f"value of {EVIL[2]}"
    assert attributes[EVIL[0]] == f"value of {EVIL[0]}" and attributes[EVIL[5]] == f"value of {EVIL[5]}"
    assert EVIL[4] not in attributes
    assert rows(store, "SELECT file_name FROM import_runs") == [(path.name,)]


def test_hostile_json_keys_and_event_names(store: AnalyticStore, tmp_path: Path) -> None:
    record = {
        "event": EVIL[0],
        "user_id": EVIL[1],
        "timestamp": "2024-01-05",
        EVIL[2]: EVIL[3],
        "properties": {EVIL[4]: 1},
    }
    path = tmp_path / "e.jsonl"
    path.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    import_file(store=store, kind="events", path=path, now=NOW)
    tables_intact(store)
    got = rows(store, "SELECT event, user_id, properties FROM events_named")
    assert got[0][:2] == (EVIL[0], EVIL[1])
    assert json.loads(got[0][2]) == {EVIL[4]: 1, EVIL[2]: EVIL[3]}


def test_hostile_values_in_reject_reasons(store: AnalyticStore, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "o.csv", [{"order_id": "o1", "ordered_at": EVIL[0], "total": EVIL[1]}])
    with pytest.raises(ImportFailed) as err:
        import_file(store=store, kind="orders", path=path, now=NOW)
    assert f"cannot parse '{EVIL[0]}' as a timestamp" in err.value.message
    tables_intact(store)
    text = err.value.report.rejects_path.read_text(encoding="utf-8-sig")  # type: ignore[union-attr]
    assert list(csv.reader(io.StringIO(text)))[1][3:] == ["o1", EVIL[0], EVIL[1]]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"timezone": "UTC'; DROP TABLE orders; --"}, "timezone"),
        ({"mapping": {"order_id": "order_id; DROP TABLE orders"}}, "mapping"),
        ({"defaults": {"total; DROP TABLE orders": "1"}}, "defaults"),
        ({"encoding": "gbk'; DROP TABLE orders; --x"}, "encoding"),
        ({"kind": "orders'; DROP TABLE orders; --"}, "kind"),
        ({"file_format": "csv'; --"}, "format"),
    ],
)
def test_hostile_options_are_refused(
    store: AnalyticStore, tmp_path: Path, kwargs: dict[str, object], field: str
) -> None:
    path = write_csv(tmp_path / "o.csv", [{"order_id": "o1", "ordered_at": "2024-01-05", "total": "1"}])
    with pytest.raises(ImportUsageError) as err:
        import_file(**{"store": store, "kind": "orders", "path": path, "now": NOW, **kwargs})  # type: ignore[arg-type]
    assert err.value.field == field
    tables_intact(store)
    assert counts(store)["orders"] == 0
