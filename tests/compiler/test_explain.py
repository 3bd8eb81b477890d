"""Explain: one row per profile with, for every leaf, whether it matched and what was observed."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tessera.compiler import compile_explain
from tessera.domain.conditions import leaves, parse_condition
from tessera.stores.analytic import AnalyticStore
from tests.compiler.support import CTX, DYNAMIC, STATIC, members, store
from tests.compiler.test_semantics import CASES

__all__ = ["store"]

DEFINITION = {
    "type": "and",
    "children": [
        {"type": "attribute", "field": "city", "op": "eq", "value": "上海"},
        {"type": "tag", "tag": "偏好品类", "op": "in", "values": ["女装"]},
        {"type": "event", "event": "下单", "window": {"last": 30}, "count": {"op": "gte", "value": 2}},
        {"type": "event", "event": "下单", "aggregate": {"fn": "sum", "property": "revenue", "op": "gte", "value": 300}},
        {"type": "event", "event": "浏览商品", "window": {"last": 7}, "occurrence": "last"},
        {"type": "order", "measure": "total", "op": "gte", "value": 300},
        {"type": "or", "children": [{"type": "in_audience", "audience": STATIC},
                                    {"type": "in_audience", "audience": DYNAMIC}]},
        {"type": "has_identifier", "id_types": ["phone", "wechat_openid"]},
        {"type": "random_bucket", "salt": "A/B", "buckets": 10, "low": 0, "high": 5},
        {"type": "not", "child": {"type": "attribute", "field": "channels", "op": "eq", "value": "天猫"}},
    ],
}  # fmt: skip


def explain(store: AnalyticStore, definition: dict[str, Any], idx: int) -> dict[str, Any] | None:
    q = compile_explain(parse_condition(definition), CTX, profile_idx=idx)
    rows = q.execute(store.cursor())
    if not rows:
        return None
    assert len(rows) == 1
    return dict(zip(q.columns(), rows[0], strict=True))


def observed(row: dict[str, Any], n: int) -> list[Any]:
    return [json.loads(row[f"v{i}"]) for i in range(n)]


def test_explain_one_profile(store: AnalyticStore) -> None:
    row = explain(store, DEFINITION, 1)
    assert row is not None
    n = len(leaves(parse_condition(DEFINITION)))
    assert list(row) == [c for i in range(n) for c in (f"m{i}", f"v{i}")] + ["matched"]
    bucket = int(hashlib.md5(b"p_1:A/B").hexdigest()[:8], 16) % 10
    assert [row[f"m{i}"] for i in range(n)] == [True, True, True, True, False, True, True, True, True, bucket < 5, True]
    assert observed(row, n) == ["上海", ["女装", "鞋履"], 2, 300.5, "2026-01-20 04:00:00", 300.5, True, True,
                                ["phone"], bucket, ["官方App", "天猫"]]  # fmt: skip
    assert row["matched"] is False  # the last browse was 40 days ago; and has channel 天猫


def test_explain_a_profile_without_attributes_or_rows(store: AnalyticStore) -> None:
    row = explain(store, DEFINITION, 3)
    assert row is not None
    assert observed(row, 4) == [None, [], 0, 0]
    assert [row[f"m{i}"] for i in range(4)] == [False, False, False, False]
    assert row["matched"] is False


def test_explain_a_missing_profile_has_no_row(store: AnalyticStore) -> None:
    assert explain(store, DEFINITION, 999) is None


def test_explain_agrees_with_the_members(store: AnalyticStore) -> None:
    # a third of the cases and every audience and identifier one: each leaf kind, and still quick
    sample = [c for i, c in enumerate(CASES) if i % 3 == 0 or c[1]["type"] in ("in_audience", "has_identifier", "or")]
    for name, definition, _ in sample:
        cond = parse_condition(definition)
        whole = members(store, cond)
        parts = [members(store, leaf) for _, leaf in leaves(cond)]
        for idx in (1, 2, 3, 4, 5):
            row = explain(store, definition, idx)
            assert row is not None
            assert row["matched"] is (idx in whole), (name, idx)
            for i, selected in enumerate(parts):
                assert row[f"m{i}"] is (idx in selected), (name, idx, i)
                json.loads(row[f"v{i}"])


def test_explain_reads_one_profile_only() -> None:
    text = compile_explain(parse_condition(DEFINITION), CTX, profile_idx=42).render("duckdb")
    assert "l.profile_idx = 42" in text and "t.profile_idx = 42" in text and "p.profile_idx = 42" in text
    assert "l.profile_idx IS NOT NULL" not in text  # every event and order subquery is scoped instead
