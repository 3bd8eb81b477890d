"""Validation: what parses, what is rejected (line, column, reason), all-or-nothing, the rejects file."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tessera.services.imports import ImportFailed
from tessera.stores.analytic import AnalyticStore
from tests.imports.support import counts, rows, run, write_csv, write_jsonl


def read_rejects(path: Path | None) -> list[list[str]]:
    assert path is not None and path.is_file()
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf"), "the rejects file starts with a UTF-8 byte-order mark (for Excel)"
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))


GOOD = {"order_id": "o1", "ordered_at": "2024-01-05 10:00:00", "total": "10"}


TIMESTAMPS = [
    ("2024-01-05 10:00:00", datetime(2024, 1, 5, 10)),
    ("2024-01-05T10:00:00", datetime(2024, 1, 5, 10)),
    ("2024-01-05T10:00:00.250Z", datetime(2024, 1, 5, 10, 0, 0, 250000)),
    ("2024-01-05T18:00:00+08:00", datetime(2024, 1, 5, 10)),
    ("2024-01-05 05:00:00-05:00", datetime(2024, 1, 5, 10)),
    ("2024-01-05 18:00:00 +0800", datetime(2024, 1, 5, 10)),
    ("2024/01/05", datetime(2024, 1, 5)),
    ("2024/1/5 10:00", datetime(2024, 1, 5, 10)),
    ("2024-01-05", datetime(2024, 1, 5)),
    ("2024年1月5日", datetime(2024, 1, 5)),
    ("2024年01月05日 10:00:00", datetime(2024, 1, 5, 10)),
    ("20240105", datetime(2024, 1, 5)),
    ("1704448800", datetime(2024, 1, 5, 10)),
    ("1704448800000", datetime(2024, 1, 5, 10)),
    ("  2024-01-05 10:00:00  ", datetime(2024, 1, 5, 10)),
]
MONEY = [
    ("1234.5", Decimal("1234.50")),
    ("1,234.50", Decimal("1234.50")),
    ("¥1,234.50", Decimal("1234.50")),
    ("￥99元", Decimal("99.00")),
    ("RMB 12", Decimal("12.00")),
    (" 12 ", Decimal("12.00")),
    ("-3.5", Decimal("-3.50")),
    ("0", Decimal("0.00")),
]
DATES = ["1990-05-20", "1990/5/20", "1990年5月20日", "19900520", "1990.05.20"]


def test_accepted_timestamp_money_and_date_formats(store: AnalyticStore, tmp_path: Path) -> None:
    """One file, one row per format (each row's id is its position in the lists above)."""
    records = [
        {"order_id": f"o{i:02}", "ordered_at": ts, "total": MONEY[i % len(MONEY)][0]}
        for i, (ts, _) in enumerate(TIMESTAMPS)
    ]
    run(store, "orders", write_csv(tmp_path / "o.csv", records))
    got = rows(store, "SELECT ordered_at, total FROM orders ORDER BY order_id")
    assert [g[0] for g in got] == [expected for _, expected in TIMESTAMPS]
    assert [g[1] for g in got] == [MONEY[i % len(MONEY)][1] for i in range(len(TIMESTAMPS))]
    path = write_csv(tmp_path / "c.csv", [{"customer_id": f"c{i}", "birthday": d} for i, d in enumerate(DATES)])
    run(store, "customers", path)
    assert rows(store, "SELECT DISTINCT birthday FROM customers") == [(date(1990, 5, 20),)]


def test_bad_date_fails_naming_line_and_column_and_stores_nothing(store: AnalyticStore, tmp_path: Path) -> None:
    run(store, "orders", write_csv(tmp_path / "first.csv", [GOOD]))
    before = counts(store)
    path = write_csv(
        tmp_path / "o.csv",
        [
            {**GOOD, "order_id": "o2"},
            {**GOOD, "order_id": "o3", "ordered_at": "next tuesday"},
            {**GOOD, "order_id": "o4"},
        ],
    )
    with pytest.raises(ImportFailed) as err:
        run(store, "orders", path)
    message = err.value.message
    assert "line 3, column ordered_at: cannot parse 'next tuesday' as a timestamp" in message
    assert "nothing was stored" in message
    report = err.value.report
    assert (report.status, report.rows_read, report.rows_rejected, report.rows_stored) == ("failed", 3, 1, 0)
    after = counts(store)
    assert after["import_runs"] == before["import_runs"] + 1
    assert {k: v for k, v in after.items() if k != "import_runs"} == {
        k: v for k, v in before.items() if k != "import_runs"
    }
    assert read_rejects(report.rejects_path) == [
        ["line", "column", "reason", "order_id", "ordered_at", "total"],
        ["3", "ordered_at", "cannot parse 'next tuesday' as a timestamp", "o3", "next tuesday", "10"],
    ]


def test_bad_number_fails_with_the_mapped_column_named(store: AnalyticStore, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "o.csv", [{"订单号": "o1", "下单时间": "2024-01-05", "实付金额": "十二块"}])
    with pytest.raises(
        ImportFailed, match=r"line 2, column 实付金额 \(total\): cannot parse '十二块' as an amount of money"
    ):
        run(store, "orders", path)
    assert counts(store)["orders"] == 0


def test_max_rejects_lets_good_rows_in_and_writes_every_reason(store: AnalyticStore, tmp_path: Path) -> None:
    records = [
        {"order_id": "o1", "ordered_at": "2024-01-05", "total": "10", "note": "好"},
        {"order_id": "o2", "ordered_at": "2024-13-45", "total": "abc", "note": "两处错误"},
        {"order_id": "", "ordered_at": "2024-01-05", "total": "5", "note": "没有单号"},
        {"order_id": "o4", "ordered_at": "2024-01-06", "total": "7", "note": ""},
    ]
    path = write_csv(tmp_path / "o.csv", records)
    with pytest.raises(ImportFailed, match="2 row"):
        run(store, "orders", path, max_rejects=1)
    assert counts(store)["orders"] == 0
    target = tmp_path / "my-rejects.csv"
    report = run(store, "orders", path, max_rejects=2, rejects_path=target)
    assert (report.rows_read, report.rows_stored, report.rows_rejected, report.status) == (4, 2, 2, "ok")
    assert report.rejects_path == target
    assert report.first_error == "line 3, column ordered_at: cannot parse '2024-13-45' as a timestamp"
    assert rows(store, "SELECT order_id FROM orders ORDER BY 1") == [("o1",), ("o4",)]
    assert read_rejects(target) == [
        ["line", "column", "reason", "order_id", "ordered_at", "total", "note"],
        ["3", "ordered_at", "cannot parse '2024-13-45' as a timestamp", "o2", "2024-13-45", "abc", "两处错误"],
        ["3", "total", "cannot parse 'abc' as an amount of money", "o2", "2024-13-45", "abc", "两处错误"],
        ["4", "order_id", "a value is required here", "", "2024-01-05", "5", "没有单号"],
    ]
    assert rows(store, "SELECT rows_read, rows_stored, rows_rejected, status FROM import_runs WHERE status = 'ok'") == [
        (4, 2, 2, "ok")
    ]


def test_line_numbers_stay_exact_with_multiline_values_and_blank_lines(store: AnalyticStore, tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text(
        'order_id,ordered_at,total,note\no1,2024-01-05,1,"two\nlines"\n\no2,2024-01-05,bad,x\no3,2024-01-05,2,"a\n\nb"\n'
        "o4,never,3,y\n",
        encoding="utf-8",
    )
    with pytest.raises(ImportFailed) as err:
        run(store, "orders", path)
    assert [r[0] for r in read_rejects(err.value.report.rejects_path)[1:]] == ["5", "9"]
    assert "line 5, column total" in err.value.message


def test_lines_the_csv_reader_cannot_split_are_rejects_with_their_line(store: AnalyticStore, tmp_path: Path) -> None:
    path = tmp_path / "o.csv"
    path.write_text("order_id,ordered_at,total\no1,2024-01-05,1\no2,2024-01-05,1,extra\no3,2024-01-05,bad\n", "utf-8")
    report = run(store, "orders", path, max_rejects=5)
    assert (report.rows_read, report.rows_stored, report.rows_rejected) == (3, 1, 2)
    got = read_rejects(report.rejects_path)
    assert [r[0] for r in got[1:]] == ["3", "4"]
    assert "Expected Number of Columns: 3 Found: 4" in got[1][2] and "o2,2024-01-05,1,extra" in got[1][2]
    assert got[2][1:3] == ["total", "cannot parse 'bad' as an amount of money"]


def test_jsonl_line_numbers_count_blank_lines(store: AnalyticStore, tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"review_id":"r1","rating":5}\n\n{"review_id":"r2","rating":9}\n', encoding="utf-8")
    with pytest.raises(ImportFailed, match="line 3, column rating: cannot parse '9' as a rating from 1 to 5"):
        run(store, "reviews", path)


def test_parquet_rejects_name_the_row(store: AnalyticStore, tmp_path: Path) -> None:
    path = tmp_path / "r.parquet"
    pq.write_table(pa.table({"review_id": ["r1", "r2", "r3"], "rating": [5, 0, 4]}), path)
    with pytest.raises(ImportFailed, match="row 2, column rating: cannot parse '0' as a rating"):
        run(store, "reviews", path)


def test_malformed_json_fails_clearly(store: AnalyticStore, tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text('{"review_id":"r1","rating":5}\n{"review_id": "r2", "rating": \n', encoding="utf-8")
    with pytest.raises(ImportFailed, match="cannot read r.jsonl as jsonl: Malformed JSON"):
        run(store, "reviews", path)


@pytest.mark.parametrize(
    ("record", "column", "reason"),
    [
        ({"event": "", "user_id": "u1"}, "type", "a row needs a type (track, identify, page …) or an event name"),
        ({"type": "track", "event": "", "user_id": "u1"}, "event", "a track event needs an event name"),
        ({"event": "Signed Up", "user_id": ""}, "user_id", "a row needs a user_id or an anonymous_id"),
        ({"type": "click", "event": "X", "user_id": "u1"}, "type", "cannot parse 'click' as a message type"),
    ],
)
def test_event_rules(store: AnalyticStore, tmp_path: Path, record: dict[str, str], column: str, reason: str) -> None:
    record = {"type": "", "anonymous_id": "", "timestamp": "2024-01-05", **record}
    with pytest.raises(ImportFailed) as err:
        run(store, "events", write_csv(tmp_path / "e.csv", [record]))
    assert f"line 2, column {column}: {reason}" in err.value.message
    assert counts(store)["events"] == 0


def test_whole_numbers_refuse_fractions(store: AnalyticStore, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "i.csv", [{"order_id": "o1", "product_id": "p1", "quantity": "2.5"}])
    with pytest.raises(ImportFailed, match="cannot parse '2.5' as a whole number"):
        run(store, "order-items", path)
    path = write_csv(tmp_path / "j.csv", [{"order_id": "o1", "product_id": "p1", "quantity": "2.0", "line_no": "7"}])
    run(store, "order-items", path)
    assert rows(store, "SELECT line_no, quantity FROM order_items") == [(7, 2)]


def test_failed_import_keeps_event_names_and_profiles_unchanged(store: AnalyticStore, tmp_path: Path) -> None:
    records = [
        {"event": "Brand New Event", "user_id": "u-new", "timestamp": "2024-01-05"},
        {"event": "Brand New Event", "user_id": "u-new2", "timestamp": "yesterday-ish"},
    ]
    with pytest.raises(ImportFailed):
        run(store, "events", write_jsonl(tmp_path / "e.jsonl", records))
    c = counts(store)
    assert (c["events"], c["event_names"], c["profiles"], c["profile_identifiers"]) == (0, 0, 0, 0)
