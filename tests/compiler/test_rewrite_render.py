"""Phase 3 (rewrite: flatten, fold) and phase 4 (render: dialect syntax and placeholders only)."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from sqlglot import exp

from tessera.compiler import DIALECTS, Params, compile_members
from tessera.compiler import nodes as n
from tessera.compiler.render import clickhouse_type, render, spell
from tessera.compiler.rewrite import rewrite
from tessera.domain.conditions import parse_condition
from tests.compiler.support import CTX

A, B, C, D = (exp.column(x).eq(exp.Literal.number(1)) for x in "abcd")


def rw(node: exp.Expr) -> str:
    return rewrite(node).sql()


def test_nested_and_or_flatten() -> None:
    assert rw(exp.and_(exp.and_(A, B), exp.paren(exp.and_(C, D)))) == "a = 1 AND b = 1 AND c = 1 AND d = 1"
    assert rw(exp.or_(exp.paren(exp.or_(A, B)), C)) == "a = 1 OR b = 1 OR c = 1"
    assert rw(exp.and_(exp.or_(A, B), C)) == "(a = 1 OR b = 1) AND c = 1"
    assert rw(exp.or_(exp.and_(A, B), C)) == "(a = 1 AND b = 1) OR c = 1"


def test_double_negation_and_constants() -> None:
    assert rw(exp.not_(exp.not_(A))) == "a = 1"
    assert rw(exp.not_(exp.paren(exp.not_(exp.or_(A, B))))) == "a = 1 OR b = 1"
    assert rw(exp.not_(exp.or_(A, B))) == "NOT (a = 1 OR b = 1)"
    assert rw(exp.and_(A, exp.true(), B)) == "a = 1 AND b = 1"
    assert rw(exp.and_(A, exp.false())) == "FALSE"
    assert rw(exp.or_(A, exp.true())) == "TRUE"
    assert rw(exp.or_(exp.false(), exp.not_(exp.true()))) == "FALSE"
    assert rw(exp.not_(exp.and_(exp.true(), exp.true()))) == "FALSE"


def test_repeated_operands_are_dropped() -> None:
    assert rw(exp.and_(A, B, A.copy())) == "a = 1 AND b = 1"
    assert rw(exp.or_(exp.and_(A, B), exp.and_(A.copy(), B.copy()))) == "a = 1 AND b = 1"


def test_rewrite_does_not_touch_its_input() -> None:
    tree = exp.and_(exp.and_(A, B), C)
    before = tree.sql()
    rewrite(tree)
    assert tree.sql() == before


PLACEHOLDER = {"duckdb": "$p1", "spark": ":p1", "clickhouse": "{p1: String}"}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_placeholders_per_dialect(dialect: str) -> None:
    params = Params()
    tree = exp.select("x").from_("t").where(exp.column("x").eq(params.add("上海")))
    assert render(tree, dialect=dialect, params=params.values).endswith(PLACEHOLDER[dialect])


@pytest.mark.parametrize(
    ("value", "kind"),
    [("x", "String"), (3, "Int64"), (2.5, "Float64"), (True, "Bool"), (datetime(2026, 1, 1), "DateTime64(6)"),
     (date(2026, 1, 1), "Date"), (Decimal("1.5"), "Decimal(38, 6)"), (["a"], "Array(String)"), ([1.5], "Array(Float64)"),
     ([], "Array(String)")],
)  # fmt: skip
def test_clickhouse_types(value: Any, kind: str) -> None:
    assert clickhouse_type(value) == kind


def test_unknown_dialect() -> None:
    with pytest.raises(ValueError, match="unknown dialect"):
        render(exp.select("1"), dialect="oracle", params={})


def test_json_keys_are_pointers_with_escapes() -> None:
    node = n.JsonRaw(this=exp.column("traits", "a"), key=exp.Literal.string("a/b~c.d'e"))
    assert render(node, dialect="duckdb", params={}) == "JSON_EXTRACT(a.traits, '/a~1b~0c.d''e')"
    assert render(node, dialect="spark", params={}) == "GET_JSON_OBJECT(a.traits, '$[\\'a/b~c.d\\\\\\'e\\']')"
    assert render(node, dialect="clickhouse", params={}) == "JSONExtractRaw(a.traits, 'a/b~c.d''e')"


EVERYTHING = {
    "type": "or",
    "children": [
        {"type": "attribute", "field": "birthday", "op": "anniversary_in_next", "days": 7},
        {"type": "attribute", "field": "points", "op": "gt", "value": 3},
        {"type": "attribute", "field": "vip", "op": "eq", "value": True},
        {"type": "attribute", "field": "x", "op": "is_set"},
        {"type": "attribute", "field": "channels", "op": "in", "value": ["a", "b"]},
        {"type": "attribute", "field": "channels", "op": "regex", "value": "^a"},
        {"type": "tag", "tag": "t", "op": "in", "values": ["a"]},
        {"type": "event", "event": "e", "aggregate": {"fn": "sum", "property": "amount", "op": "gt", "value": 1}},
        {"type": "random_bucket", "salt": "s", "low": 0, "high": 10},
    ],
}  # fmt: skip


@pytest.mark.parametrize("dialect", DIALECTS)
def test_every_neutral_node_is_spelled(dialect: str) -> None:
    tree = compile_members(parse_condition(EVERYTHING), CTX).tree
    kinds = {type(x).__name__ for x in tree.find_all(n.Neutral)}
    assert {"JsonText", "JsonBool", "JsonPresent", "TextNumber", "TextTime", "InValues", "ListHasAny", "ListSome",
            "Bucket"} <= kinds  # fmt: skip
    assert not list(spell(tree, dialect).find_all(n.Neutral))
