"""Phase 2: the shapes leaves lower to — hand-written semi-joins, two-valued predicates, values as
placeholders, no correlated subqueries."""

from __future__ import annotations

from typing import Any

import pytest
from sqlglot import exp

from tessera.compiler import Params, Query, compile_count, compile_members, compile_predicate
from tessera.compiler.behaviour import count_groups
from tessera.compiler.statements import profiles_from
from tessera.domain.conditions import parse_condition
from tessera.stores.analytic import AnalyticStore
from tests.compiler.support import CTX, STATIC, store

__all__ = ["store"]


def sql(definition: dict[str, Any]) -> str:
    return compile_count(parse_condition(definition), CTX).render("duckdb")


def predicate(definition: dict[str, Any]) -> exp.Expr:
    return compile_predicate(parse_condition(definition), CTX, Params())


BOUGHT = {"type": "event", "event": "下单", "window": {"last": 30}}


def test_did_is_a_semi_join_without_grouping() -> None:
    text = sql(BOUGHT)
    assert "p.profile_idx IN (SELECT l.profile_idx FROM events AS e JOIN identity_links AS l" in text
    assert "e.event_id = (SELECT event_id FROM event_names WHERE name = $p1)" in text
    assert "GROUP BY" not in text and "NOT p.profile_idx" not in text
    assert "WHERE l.profile_idx IS NOT NULL AND" in text


def test_did_not_is_not_in_the_profiles_that_did() -> None:
    text = sql({**BOUGHT, "count": {"op": "eq", "value": 0}})
    assert "NOT p.profile_idx IN (SELECT l.profile_idx FROM events" in text
    assert "l.profile_idx IS NOT NULL" in text and "GROUP BY" not in text


def test_counts_group_and_compare() -> None:
    assert "GROUP BY l.profile_idx HAVING COUNT(*) >= $p4" in sql({**BOUGHT, "count": {"op": "gte", "value": 3}})
    text = sql({**BOUGHT, "count": {"op": "lt", "value": 3}})  # zero passes: NOT IN those that fail
    assert "NOT p.profile_idx IN" in text and "HAVING NOT COUNT(*) < $p4" in text


def test_sum_that_zero_passes_is_not_in() -> None:
    text = sql({**BOUGHT, "aggregate": {"fn": "sum", "property": "revenue", "op": "lte", "value": 100}})
    assert "NOT p.profile_idx IN" in text and "HAVING NOT SUM(e.revenue) <= $p4" in text
    text = sql({**BOUGHT, "aggregate": {"fn": "avg", "property": "revenue", "op": "lte", "value": 100}})
    assert "NOT" not in text.split("WHERE", 1)[1].split("(SELECT")[0]


@pytest.mark.parametrize(
    ("op", "value", "groups"),
    [("gte", 1, "all"), ("gt", 0, "all"), ("neq", 0, "all"), ("gte", 0, "all"), ("eq", 0, "none"), ("lt", 1, "none"),
     ("lte", 0, "none"), ("lte", 0.5, "none"), ("gte", 2, "some"), ("gt", 1, "some"), ("lte", 1, "some"),
     ("lt", 1.5, "some"), ("eq", 1, "some"), ("neq", 2, "some")],
)  # fmt: skip
def test_count_groups(op: str, value: float, groups: str) -> None:
    assert count_groups(op, value) == groups


def test_counts_everyone_or_no_one_passes_fold_to_constants() -> None:
    assert predicate({**BOUGHT, "count": {"op": "gte", "value": 0}}).sql() == "TRUE"
    assert predicate({**BOUGHT, "count": {"op": "lt", "value": 0}}).sql() == "FALSE"
    both = {"type": "and", "children": [{**BOUGHT, "count": {"op": "gte", "value": 0}}, {"type": "tag", "tag": "x"}]}
    assert predicate(both).sql().startswith("p.profile_idx IN (SELECT t.profile_idx FROM profile_tags")


def test_attributes_are_two_valued() -> None:
    text = sql({"type": "attribute", "field": "city", "op": "neq", "value": "上海"})
    assert text.endswith("WHERE NOT COALESCE(JSON_EXTRACT_STRING(a.traits, '/city') = $p1, FALSE)")
    # Only a value that could be an object's or array's JSON text needs the scalar check.
    text = sql({"type": "attribute", "field": "city", "op": "eq", "value": "[1]"})
    assert text.endswith("WHERE COALESCE(CASE WHEN NOT JSON_TYPE(a.traits, '/city') IN ('OBJECT', 'ARRAY') "
                         "THEN JSON_EXTRACT_STRING(a.traits, '/city') END = $p1, FALSE)")  # fmt: skip


def test_attributes_are_joined_only_when_read() -> None:
    assert "profile_attributes" not in sql(BOUGHT)
    assert "LEFT JOIN profile_attributes AS a ON a.profile_idx = p.profile_idx" in sql(
        {"type": "attribute", "field": "event_count", "op": "gt", "value": 1}
    )
    assert "profile_attributes" not in sql({"type": "attribute", "field": "profile_id", "op": "eq", "value": "x"})


DEFINITION = {
    "type": "and",
    "children": [
        {"type": "attribute", "field": "city", "op": "in", "value": ["VAL_A", "VAL_B"]},
        {"type": "event", "event": "VAL_C", "where": [{"property": "sku", "op": "eq", "value": "VAL_D"}],
         "aggregate": {"fn": "sum", "property": "amount", "op": "gt", "value": 1234.5}},
        {"type": "order", "products": ["VAL_E"], "categories": ["VAL_F"], "channels": ["VAL_G"], "coupons": ["VAL_H"],
         "purchase": "first", "measure": "total", "op": "gte", "value": 999},
        {"type": "tag", "tag": "VAL_I", "op": "all", "values": ["VAL_J", 777]},
        {"type": "in_audience", "audience": STATIC},
        {"type": "has_identifier", "id_types": ["VAL_K"]},
        {"type": "random_bucket", "salt": "VAL_L", "buckets": 97, "low": 3, "high": 11},
    ],
}  # fmt: skip


def test_user_values_are_placeholders() -> None:
    q = compile_members(parse_condition(DEFINITION), CTX)
    for dialect in ("duckdb", "spark", "clickhouse"):
        text = q.render(dialect)
        for marker in ("VAL_", "1234.5", "999", "777", "97", "静态"):
            assert marker not in text, (dialect, marker)
    values = set(map(str, q.params.values()))
    assert {"VAL_C", "VAL_D", "VAL_I", "VAL_L", STATIC, "1234.5", "97"} <= values


def test_no_correlated_subqueries() -> None:
    pred = compile_predicate(parse_condition(DEFINITION), CTX, Params())
    for sub in pred.find_all(exp.Subquery):
        assert not [c for c in sub.find_all(exp.Column) if c.table in ("p", "a")], sub.sql()


def test_predicate_composes_inside_another_select(store: AnalyticStore) -> None:
    params = Params()
    gold = compile_predicate(
        parse_condition({"type": "tag", "tag": "会员等级", "op": "eq", "value": "金卡"}), CTX, params
    )
    city = compile_predicate(
        parse_condition({"type": "attribute", "field": "city", "op": "eq", "value": "北京"}), CTX, params
    )
    label = exp.Case(
        ifs=[exp.If(this=gold, true=exp.Literal.string("金")), exp.If(this=city, true=exp.Literal.string("京"))]
    )
    select = exp.select(exp.column("profile_idx", "p"), exp.alias_(label, "label"))
    tree = profiles_from(exp.and_(gold, city), select).order_by("p.profile_idx")
    rows = Query(tree, params.values).execute(store.cursor())
    assert rows == [(1, "金"), (2, "京"), (3, None), (4, None), (5, None)]


def test_shared_params_do_not_clash() -> None:
    params = Params()
    compile_members(parse_condition(BOUGHT), CTX, params=params)
    q = compile_count(parse_condition(BOUGHT), CTX, params=params)
    assert "$p4" in q.render() and "$p1" not in q.render()
