"""Golden SQL: what representative definitions become in each dialect, so a reviewer sees it.

``tests/compiler/golden/<name>.<dialect>.sql`` holds the members query and, after it, the bound
values; regenerate with ``TESSERA_UPDATE_GOLDEN=1``. The DuckDB ones also run on an empty store.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tessera.compiler import DIALECTS, Query, compile_members
from tessera.domain.conditions import parse_condition
from tests.compiler.support import CTX, DYNAMIC, STATIC, open_store

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("TESSERA_UPDATE_GOLDEN") == "1"

DEFINITIONS: dict[str, dict[str, Any]] = {
    "city_trait": {"type": "attribute", "field": "city", "op": "in", "value": ["上海", "北京"]},
    "points_number": {"type": "attribute", "field": "traits.points", "op": "between", "value": [100, 500]},
    "birthday_anniversary": {"type": "attribute", "field": "birthday", "op": "anniversary_in_next", "days": 7},
    "registered_after": {"type": "attribute", "field": "registered_at", "op": "after", "value": "2025-06-01"},
    "channels_list": {"type": "attribute", "field": "channels", "op": "in", "value": ["天猫", "京东"]},
    "tag_all": {"type": "tag", "tag": "偏好品类", "op": "all", "values": ["女装", "鞋履"]},
    "active_buyer": {"type": "event", "event": "下单", "window": {"last": 30},
                     "where": [{"property": "category", "op": "eq", "value": "女装"}],
                     "count": {"op": "gte", "value": 3}},
    "did_not_visit": {"type": "event", "event": "浏览商品", "window": {"last": 14}, "count": {"op": "eq", "value": 0}},
    "high_spender_events": {"type": "event", "event": "下单", "window": {"since": "2026-01-01", "until": "2026-01-31"},
                            "aggregate": {"fn": "sum", "property": "revenue", "op": "gte", "value": 1000}},
    "first_visit_recent": {"type": "event", "event": "浏览商品", "window": {"last": 7}, "occurrence": "first"},
    "first_purchase": {"type": "order", "purchase": "first", "window": {"last": 30}, "categories": ["女装"]},
    "lapsed_customer": {"type": "order", "measure": "total", "op": "lt", "value": 1, "window": {"last": 90},
                        "with_coupon": True},
    "holdout_bucket": {"type": "random_bucket", "salt": "春季大促", "buckets": 100, "low": 0, "high": 10},
    "audiences": {"type": "or", "children": [{"type": "in_audience", "audience": STATIC},
                                             {"type": "in_audience", "audience": DYNAMIC}]},
    "winback_nested": {
        "type": "and",
        "children": [
            {"type": "has_identifier", "id_types": ["phone", "wechat_openid"]},
            {"type": "or", "children": [
                {"type": "tag", "tag": "会员等级", "op": "eq", "value": "金卡"},
                {"type": "attribute", "field": "total_spend", "op": "gt", "value": 5000},
            ]},
            {"type": "not", "child": {"type": "order", "window": {"last": 60}}},
            {"type": "not", "child": {"type": "not", "child": {"type": "event", "event": "打开推送"}}},
        ],
    },
}  # fmt: skip


def golden_text(name: str, dialect: str) -> str:
    q = compile_members(parse_condition(DEFINITIONS[name]), CTX)
    values = json.dumps(q.used_params(), ensure_ascii=False, default=str, sort_keys=True)
    return f"{q.render(dialect)}\n-- params: {values}\n"


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("name", sorted(DEFINITIONS))
def test_golden_sql(name: str, dialect: str) -> None:
    path = GOLDEN / f"{name}.{dialect}.sql"
    text = golden_text(name, dialect)
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"no {path.name}; TESSERA_UPDATE_GOLDEN=1 to write it"
    assert text == path.read_text(encoding="utf-8"), f"{path.name} changed; TESSERA_UPDATE_GOLDEN=1 to accept"


def test_goldens_cover_every_leaf_kind() -> None:
    text = json.dumps(DEFINITIONS)
    for kind in (
        "attribute",
        "tag",
        "event",
        "order",
        "in_audience",
        "has_identifier",
        "random_bucket",
        "and",
        "or",
        "not",
    ):
        assert f'"type": "{kind}"' in text


def test_golden_duckdb_runs_on_an_empty_store(tmp_path: Path) -> None:
    store = open_store(tmp_path, filled=False)
    try:
        cur = store.cursor()
        for name in sorted(DEFINITIONS):
            q = compile_members(parse_condition(DEFINITIONS[name]), CTX)
            assert (GOLDEN / f"{name}.duckdb.sql").read_text(encoding="utf-8").startswith(q.render("duckdb"))
            assert Query(q.tree, q.params).execute(cur) == [], name
    finally:
        store.close()
