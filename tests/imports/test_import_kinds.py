"""Every kind imports from CSV, JSON lines and Parquet, into the right columns with the right types."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tessera.stores.analytic import AnalyticStore
from tests.imports.support import FORMATS, counts, rows, run, write

SAMPLES: dict[str, list[dict[str, Any]]] = {
    "customers": [
        {"customer_id": "c1", "name": "王小明", "phone": "+86 138 0013 8000", "birthday": "1990-05-20",
         "points": "1,200", "registered_at": "2024-01-05 10:00:00", "会员备注": "金卡"},
        {"customer_id": "c2", "name": "李丽", "phone": "+86 139 0000 1111", "birthday": "1988/12/01",
         "points": "0", "registered_at": "2024-02-01T09:30:00+08:00"},
    ],
    "orders": [
        {"order_id": "o1", "customer_id": "c1", "ordered_at": "2024-01-05T10:00:00+08:00", "total": "¥1,299.00",
         "channel": "tmall", "gift_wrap": "yes"},
        {"order_id": "o2", "customer_id": "c2", "ordered_at": "2024-01-06 11:00:00", "total": "88", "discount": "10.5"},
    ],
    "order-items": [
        {"order_id": "o1", "product_id": "p1", "quantity": "2", "unit_price": "99.50"},
        {"order_id": "o1", "product_id": "p2", "quantity": "1", "unit_price": "10"},
        {"order_id": "o2", "product_id": "p1", "quantity": "3", "unit_price": "99.50"},
    ],
    "products": [
        {"product_id": "p1", "name": "真丝衬衫", "name_en": "Silk shirt", "price": "1,299.00", "colour": "白", "材质": "真丝"},
        {"product_id": "p2", "name": "羊绒围巾", "price": "599", "category": "配饰"},
    ],
    "reviews": [
        {"review_id": "r1", "order_id": "o1", "product_id": "p1", "rating": "5", "body": "面料很好", "created_at": "2024/01/09"},
        {"review_id": "r2", "rating": "3", "body": "一般", "language": "zh"},
    ],
    "events": [
        {"event": "Product Viewed", "user_id": "u1", "timestamp": "2024-01-05 10:00:00", "product_id": "p1",
         "page_url": "/p/1"},
        {"type": "page", "event": "首页", "anonymous_id": "a1", "timestamp": "1704448800"},
        {"event": "Order Completed", "user_id": "u1", "timestamp": "2024-01-05T10:05:00Z", "revenue": "1,299",
         "order_id": "o1"},
    ],
}  # fmt: skip


def check(store: AnalyticStore, kind: str) -> None:
    if kind == "customers":
        got = rows(store, "SELECT customer_id, name, phone, birthday, points, registered_at, attributes FROM customers "
                          "ORDER BY 1")  # fmt: skip
        assert got[0] == ("c1", "王小明", "+86 138 0013 8000", date(1990, 5, 20), 1200, datetime(2024, 1, 5, 10),
                          '{"会员备注":"金卡"}')  # fmt: skip
        assert got[1][3:6] == (date(1988, 12, 1), 0, datetime(2024, 2, 1, 1, 30))
        # OneID: each customer is one profile holding its id and its phone (normalised to E.164).
        assert rows(
            store,
            "SELECT c.customer_id, list(i.id_type || ':' || i.id_value ORDER BY i.id_type) FROM customers c "
            "JOIN identity_links l ON l.obs_idx = c.identity_idx JOIN profile_identifiers i USING (profile_idx) "
            "GROUP BY 1 ORDER BY 1",
        ) == [("c1", ["phone:+8613800138000", "user_id:c1"]), ("c2", ["phone:+8613900001111", "user_id:c2"])]
    elif kind == "orders":
        got = rows(store, "SELECT order_id, ordered_at, total, discount, channel, attributes FROM orders ORDER BY 1")
        assert got == [
            ("o1", datetime(2024, 1, 5, 2), Decimal("1299.00"), None, "tmall", '{"gift_wrap":"yes"}'),
            ("o2", datetime(2024, 1, 6, 11), Decimal("88.00"), Decimal("10.50"), None, None),
        ]
    elif kind == "order-items":
        got = rows(
            store, "SELECT order_id, line_no, product_id, quantity, unit_price, amount FROM order_items ORDER BY 1, 2"
        )
        assert got == [
            ("o1", 1, "p1", 2, Decimal("99.50"), Decimal("199.00")),
            ("o1", 2, "p2", 1, Decimal("10.00"), Decimal("10.00")),
            ("o2", 1, "p1", 3, Decimal("99.50"), Decimal("298.50")),
        ]
    elif kind == "products":
        got = rows(store, "SELECT product_id, name, price, colour, category, attributes FROM products ORDER BY 1")
        assert got == [
            ("p1", "真丝衬衫", Decimal("1299.00"), "白", None, '{"材质":"真丝"}'),
            ("p2", "羊绒围巾", Decimal("599.00"), None, "配饰", None),
        ]
    elif kind == "reviews":
        got = rows(store, "SELECT review_id, rating, body, created_at, language FROM reviews ORDER BY 1")
        assert got == [("r1", 5, "面料很好", datetime(2024, 1, 9), None), ("r2", 3, "一般", None, "zh")]
    elif kind == "events":
        got = rows(
            store,
            "SELECT type::VARCHAR, event, user_id, anonymous_id, timestamp, revenue, order_id, product_id, properties, "
            "source_id FROM events_named ORDER BY timestamp, type",
        )
        assert sorted(got, key=repr) == sorted([
            ("track", "Product Viewed", "u1", None, datetime(2024, 1, 5, 10), None, None, "p1",
             '{"page_url":"/p/1","product_id":"p1"}', 0),
            ("track", "Order Completed", "u1", None, datetime(2024, 1, 5, 10, 5), Decimal("1299.00"), "o1", None,
             '{"revenue":1299.0,"order_id":"o1"}', 0),
            ("page", "首页", None, "a1", datetime(2024, 1, 5, 10), None, None, None, None, 0),
        ], key=repr)  # fmt: skip
        assert {r[0] for r in rows(store, "SELECT name FROM event_names")} == {
            "Product Viewed",
            "首页",
            "Order Completed",
        }
        assert rows(store, "SELECT id_type, id_value FROM profile_identifiers ORDER BY 1, 2") == [
            ("anonymous_id", "a1"),
            ("user_id", "u1"),
        ]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", list(SAMPLES))
def test_every_kind_from_every_format(store: AnalyticStore, tmp_path: Path, kind: str, fmt: str) -> None:
    path = write(tmp_path, kind, fmt, SAMPLES[kind])
    report = run(store, kind, path)
    n = len(SAMPLES[kind])
    assert (report.rows_read, report.rows_stored, report.rows_rejected, report.status) == (n, n, 0, "ok")
    assert report.file_format == fmt and report.kind == kind
    check(store, kind)
    run_row = rows(store, "SELECT kind, file_name, file_format, rows_read, rows_stored, status FROM import_runs")
    assert run_row == [(kind, path.name, fmt, n, n, "ok")]


def test_typed_parquet_columns_are_cast_not_reparsed(store: AnalyticStore, tmp_path: Path) -> None:
    table = pa.table(
        {
            "order_id": ["o1", "o2"],
            "ordered_at": pa.array([datetime(2024, 3, 1, 8), datetime(2024, 3, 2, 9)], pa.timestamp("us")),
            "total": pa.array([Decimal("12.50"), Decimal("7.00")], pa.decimal128(10, 2)),
            "shipping": pa.array([5.0, None], pa.float64()),
            "store_id": pa.array([1001, 1002], pa.int64()),
            "tags": pa.array([{"a": 1}, {"a": 2}], pa.struct([("a", pa.int64())])),
        }
    )
    path = tmp_path / "typed.parquet"
    pq.write_table(table, path)
    assert run(store, "orders", path).rows_stored == 2
    assert rows(store, "SELECT order_id, ordered_at, total, shipping, store_id, attributes FROM orders ORDER BY 1") == [
        ("o1", datetime(2024, 3, 1, 8), Decimal("12.50"), Decimal("5.00"), "1001", '{"tags":{"a":1}}'),
        ("o2", datetime(2024, 3, 2, 9), Decimal("7.00"), None, "1002", '{"tags":{"a":2}}'),
    ]


def test_epoch_and_zoned_times_from_parquet(store: AnalyticStore, tmp_path: Path) -> None:
    table = pa.table(
        {
            "user_id": ["u1", "u2", "u3"],
            "event": ["A", "B", "C"],
            "timestamp": pa.array([1704448800, 1704448800000, 1704448800000000], pa.int64()),
            "sent_at": pa.array(
                [datetime(2024, 1, 5, 18, tzinfo=ZoneInfo("Asia/Shanghai"))] * 3, pa.timestamp("us", tz="Asia/Shanghai")
            ),  # fmt: skip
        }
    )
    path = tmp_path / "epochs.parquet"
    pq.write_table(table, path)
    run(store, "events", path)
    assert rows(store, "SELECT DISTINCT timestamp, sent_at FROM events") == [
        (datetime(2024, 1, 5, 10), datetime(2024, 1, 5, 10))
    ]


def test_segment_export_jsonl_with_nested_objects(store: AnalyticStore, tmp_path: Path) -> None:
    records = [
        {"messageId": "m-1", "type": "track", "event": "Order Completed", "userId": "u1",
         "timestamp": "2024-01-05T10:00:00+08:00", "properties": {"total": 99.5, "order_id": "o1", "currency": "CNY"},
         "context": {"campaign": {"source": "wechat", "medium": "social"}, "ip": "1.2.3.4", "channel": "miniprogram"}},
        {"messageId": "m-2", "type": "page", "name": "Home", "anonymousId": "a1", "timestamp": 1704420000000,
         "properties": {"url": "/"}},
        {"messageId": "m-3", "type": "identify", "userId": "u1", "timestamp": "2024-01-05 10:00:00",
         "traits": {"name": "王小明", "phone": "+86 138 0000 0000"}},
    ]  # fmt: skip
    path = write(tmp_path, "segment", "jsonl", records)
    assert run(store, "events", path).rows_stored == 3
    got = rows(
        store,
        "SELECT message_id, type::VARCHAR, event, revenue, order_id, currency, utm_source, utm_medium, ip, channel, "
        "json_extract_string(traits, '$.name') FROM events_named ORDER BY message_id",
    )
    assert got == [
        ("m-1", "track", "Order Completed", Decimal("99.50"), "o1", "CNY", "wechat", "social", "1.2.3.4", "miniprogram",
         None),
        ("m-2", "page", "Home", None, None, None, None, None, None, None, None),
        ("m-3", "identify", None, None, None, None, None, None, None, None, "王小明"),
    ]  # fmt: skip


def test_json_array_file(store: AnalyticStore, tmp_path: Path) -> None:
    path = tmp_path / "products.json"
    path.write_text('[{"product_id": "p1", "price": 10}, {"product_id": "p2", "price": "¥20"}]', encoding="utf-8")
    report = run(store, "products", path)
    assert (report.file_format, report.rows_stored) == ("json", 2)
    assert rows(store, "SELECT product_id, price FROM products ORDER BY 1") == [
        ("p1", Decimal("10.00")),
        ("p2", Decimal("20.00")),
    ]


def test_tsv_and_format_override(store: AnalyticStore, tmp_path: Path) -> None:
    path = tmp_path / "export.dat"
    path.write_text("product_id\tname\np1\t真丝衬衫\n", encoding="utf-8")
    assert run(store, "products", path, file_format="tsv").rows_stored == 1
    assert rows(store, "SELECT name FROM products") == [("真丝衬衫",)]


def test_empty_file_with_only_a_header_stores_nothing(store: AnalyticStore, tmp_path: Path) -> None:
    path = tmp_path / "orders.csv"
    path.write_text("order_id,ordered_at,total\n", encoding="utf-8")
    report = run(store, "orders", path)
    assert (report.rows_read, report.rows_stored, report.status) == (0, 0, "ok")
    assert counts(store)["import_runs"] == 1
