"""Column mapping: names, aliases (Chinese headers), --map, a mapping file, defaults, missing columns."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest

from tessera.importing.kinds import KINDS, find_kind
from tessera.importing.mapping import (
    MissingColumns,
    load_mapping_file,
    normalise_name,
    parse_default_options,
    parse_map_options,
    resolve,
)
from tessera.services.imports import ImportFailed, ImportUsageError, import_file
from tessera.stores.analytic import AnalyticStore
from tests.imports.support import NOW, counts, rows, write_csv


def orders() -> object:
    kind = find_kind("orders")
    assert kind is not None
    return kind


@pytest.mark.parametrize(
    ("name", "normal"),
    [
        ("Order ID", "order_id"),
        ("orderId", "order_id"),
        ("order-id", "order_id"),
        ("  ORDER_ID ", "order_id"),
        ("\ufeffuserId", "user_id"),
        ("实付金额(元)", "实付金额"),
        ("实付金额（元）", "实付金额"),
        ("客户ID", "客户id"),
    ],
)
def test_normalise_name(name: str, normal: str) -> None:
    assert normalise_name(name) == normal


def test_aliases_are_unambiguous_within_each_kind() -> None:
    for kind in KINDS.values():
        seen: dict[str, str] = {}
        for f in kind.fields:
            for name in (f.name, *f.aliases):
                key = normalise_name(name)
                assert seen.setdefault(key, f.name) == f.name, (kind.name, name, seen[key], f.name)


def test_chinese_headers_map_by_alias_and_extras_keep_their_names() -> None:
    kind = find_kind("orders")
    assert kind is not None
    plan = resolve(kind, ["订单号", "下单时间", "实付金额(元)", "手机号", "买家留言"])
    assert plan.fields == {"order_id": "订单号", "ordered_at": "下单时间", "total": "实付金额(元)", "phone": "手机号"}
    assert plan.extras == [("买家留言", "买家留言")]
    assert plan.how["order_id"] == "alias"


def test_exact_name_beats_alias_and_explicit_map_beats_both() -> None:
    kind = find_kind("orders")
    assert kind is not None
    plan = resolve(kind, ["金额", "total", "order_id", "ordered_at"])
    assert plan.fields["total"] == "total" and ("金额", "金额") in plan.extras
    plan = resolve(
        kind, ["金额", "total", "order_id", "ordered_at"], {"金额": "total", "total": "attributes.list_total"}
    )
    assert plan.fields["total"] == "金额" and plan.extras == [("list_total", "total")]


def test_map_can_drop_a_column_and_match_case_insensitively() -> None:
    kind = find_kind("products")
    assert kind is not None
    plan = resolve(kind, ["SKU", "Secret", "Name"], {"sku": "product_id", "secret": None})
    assert plan.fields == {"product_id": "SKU", "name": "Name"}
    assert plan.ignored == ["Secret"] and plan.extras == []


@pytest.mark.parametrize(
    ("mapping", "needle"),
    [
        ({"nope": "order_id"}, "no column 'nope'"),
        ({"a": "not_a_field"}, "'not_a_field' is not a field of orders"),
        ({"a": "order_id", "b": "order_id"}, "field 'order_id' is mapped from"),
    ],
)
def test_bad_mappings_are_usage_errors(mapping: dict[str, str | None], needle: str) -> None:
    kind = find_kind("orders")
    assert kind is not None
    with pytest.raises(ImportUsageError) as err:
        resolve(kind, ["a", "b", "ordered_at", "total"], mapping)
    assert needle in err.value.message


def test_missing_required_column_names_it_and_lists_the_file_columns() -> None:
    kind = find_kind("orders")
    assert kind is not None
    with pytest.raises(MissingColumns) as err:
        resolve(kind, ["订单号", "金额", "备注"])
    message = str(err.value)
    assert "'ordered_at'" in message and "'订单号', '金额', '备注'" in message and "--map" in message


def test_events_need_an_identity_column() -> None:
    kind = find_kind("events")
    assert kind is not None
    with pytest.raises(MissingColumns, match="'user_id' or 'anonymous_id'"):
        resolve(kind, ["event", "timestamp"])


def test_map_and_default_options_parse() -> None:
    assert parse_map_options(["订单编号=order_id", "备注=", "a=b=c"]) == {
        "订单编号": "order_id",
        "备注": None,
        "a=b": "c",
    }
    assert parse_default_options(["currency=CNY", "channel=tmall"]) == {"currency": "CNY", "channel": "tmall"}
    with pytest.raises(ImportUsageError):
        parse_map_options(["no-equals-sign"])


def test_mapping_file_yaml_and_json(tmp_path: Path) -> None:
    y = tmp_path / "m.yaml"
    y.write_text(
        "kind: orders\ncolumns:\n  订单编号: order_id\n  备注: null\ndefaults:\n  currency: CNY\ntimezone: Asia/Shanghai\n",
        encoding="utf-8",
    )
    m = load_mapping_file(y)
    assert (m.columns, m.defaults, m.kind, m.timezone) == (
        {"订单编号": "order_id", "备注": None},
        {"currency": "CNY"},
        "orders",
        "Asia/Shanghai",
    )
    j = tmp_path / "m.json"
    j.write_text('{"columns": {"a": "order_id"}, "defaults": {"total": 0}}', encoding="utf-8")
    assert load_mapping_file(j).defaults == {"total": 0}
    bad = tmp_path / "bad.yaml"
    bad.write_text("colums: {}\n", encoding="utf-8")
    with pytest.raises(ImportUsageError, match="unknown key"):
        load_mapping_file(bad)


def test_import_with_map_flags_defaults_and_chinese_values(store: AnalyticStore, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "crm.csv",
        [
            {"会员编码": "c1", "客户姓名": "王小明", "手机": "+86 138 0013 8000", "入会日期": "2023年5月20日"},
            {"会员编码": "c2", "客户姓名": "张伟", "手机": "+86 139 1234 5678", "入会日期": "2023/06/01"},
        ],
    )
    report = import_file(
        store=store,
        kind="customers",
        path=path,
        mapping={"会员编码": "customer_id", "入会日期": "registered_at"},
        defaults={"channel": "门店", "member_level": "普通"},
        now=NOW,
    )
    assert report.rows_stored == 2
    assert rows(
        store, "SELECT customer_id, name, phone, registered_at, channel, member_level FROM customers ORDER BY 1"
    ) == [
        ("c1", "王小明", "+86 138 0013 8000", datetime(2023, 5, 20), "门店", "普通"),
        ("c2", "张伟", "+86 139 1234 5678", datetime(2023, 6, 1), "门店", "普通"),
    ]


def test_import_with_a_mapping_file(store: AnalyticStore, tmp_path: Path) -> None:
    mapping = tmp_path / "tmall.yaml"
    mapping.write_text(
        "columns:\n  订单编号: order_id\n  买家会员名: tmall_id\n  订单付款时间: ordered_at\n  买家实际支付金额: total\n"
        "  买家留言: attributes.note\n  店铺名称: null\ndefaults:\n  channel: tmall\n  currency: CNY\n",
        encoding="utf-8",
    )
    loaded = load_mapping_file(mapping)
    path = write_csv(
        tmp_path / "淘宝订单.csv",
        [{"订单编号": "T1001", "买家会员名": "tb_王小明", "订单付款时间": "2024-03-01 20:15:00",
          "买家实际支付金额": "1,299.00", "买家留言": "请尽快发货", "店铺名称": "旗舰店"}],
    )  # fmt: skip
    import_file(store=store, kind="orders", path=path, mapping=loaded.columns, defaults=loaded.defaults, now=NOW)
    assert rows(store, "SELECT order_id, tmall_id, ordered_at, total, channel, currency, attributes FROM orders") == [
        (
            "T1001",
            "tb_王小明",
            datetime(2024, 3, 1, 20, 15),
            Decimal("1299.00"),
            "tmall",
            "CNY",
            '{"note":"请尽快发货"}',
        )
    ]


def test_timezone_for_times_without_offset(store: AnalyticStore, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "o.csv",
        [
            {"order_id": "o1", "ordered_at": "2024-03-01 20:00:00", "total": "1"},
            {"order_id": "o2", "ordered_at": "2024-03-01T20:00:00Z", "total": "1"},
            {"order_id": "o3", "ordered_at": "2024/03/01", "total": "1"},
        ],
    )
    import_file(store=store, kind="orders", path=path, timezone="Asia/Shanghai", now=NOW)
    assert rows(store, "SELECT order_id, ordered_at FROM orders ORDER BY 1") == [
        ("o1", datetime(2024, 3, 1, 12)),
        ("o2", datetime(2024, 3, 1, 20)),
        ("o3", datetime(2024, 2, 29, 16)),
    ]
    with pytest.raises(ImportUsageError, match="time zone"):
        import_file(store=store, kind="orders", path=path, timezone="Mars/Olympus", now=NOW)


def test_missing_required_column_fails_the_import_and_stores_nothing(store: AnalyticStore, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "o.csv", [{"订单号": "o1", "金额": "5", "备注": "x"}])
    before = counts(store)
    with pytest.raises(ImportFailed) as err:
        import_file(store=store, kind="orders", path=path, now=NOW)
    assert "'ordered_at'" in err.value.message and "'订单号', '金额', '备注'" in err.value.message
    after = counts(store)
    assert {k: v for k, v in after.items() if k != "import_runs"} == {
        k: v for k, v in before.items() if k != "import_runs"
    }
    assert rows(store, "SELECT status FROM import_runs") == [("failed",)]


def test_defaults_are_checked_before_any_row(store: AnalyticStore, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "o.csv", [{"order_id": "o1", "total": "5"}])
    with pytest.raises(ImportUsageError, match="not a field"):
        import_file(store=store, kind="orders", path=path, defaults={"nope": 1}, now=NOW)
    with pytest.raises(ImportUsageError, match="the default of 'ordered_at': cannot parse 'soon' as a timestamp"):
        import_file(store=store, kind="orders", path=path, defaults={"ordered_at": "soon"}, now=NOW)
    assert counts(store)["orders"] == 0
    report = import_file(store=store, kind="orders", path=path, defaults={"ordered_at": "2024-05-01"}, now=NOW)
    assert report.rows_stored == 1
