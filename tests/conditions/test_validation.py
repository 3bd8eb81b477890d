"""A definition that does not validate says what is wrong and where, as a JSON path into what the
user wrote (``children[2].window.last: must be > 0``), for every kind of node.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera.domain.conditions import MAX_DEPTH, NODE_TYPES, ConditionError, parse_condition
from tests.conditions.strategies import datasets, definitions

FILLER = {"type": "tag", "tag": "会员等级"}


def third(node: dict[str, Any]) -> dict[str, Any]:
    """The node as the third child of an ``and``: its errors start with ``children[2]``."""
    return {"type": "and", "children": [FILLER, FILLER, node]}


def errors_of(definition: Any) -> list[tuple[str, str]]:
    with pytest.raises(ConditionError) as caught:
        parse_condition(definition)
    return caught.value.errors


TYPES = "type must be one of " + ", ".join(NODE_TYPES)
EVENT = {"type": "event", "event": "加入购物车"}

CASES: list[tuple[str, Any, list[tuple[str, str]]]] = [
    # and / or / not
    ("empty and", {"type": "and", "children": []}, [("children", "must have at least 1 item(s)")]),
    ("or without children", {"type": "or"}, [("children", "is required")]),
    ("not without child", third({"type": "not"}), [("children[2].child", "is required")]),
    ("unknown type", third({"type": "segment"}), [("children[2]", TYPES)]),
    ("no type", {"type": "not", "child": {"field": "city"}}, [("child", f"needs a type (one of {', '.join(NODE_TYPES)})")]),
    ("a number for type", {"type": 5}, [("", TYPES)]),
    # attribute
    ("attribute without field", third({"type": "attribute", "op": "eq", "value": "上海"}), [("children[2].field", "is required")]),
    ("attribute extra field", third({"type": "attribute", "field": "city", "op": "is_set", "colour": "红"}), [("children[2].colour", "is not a known field")]),
    ("bad regex", third({"type": "attribute", "field": "city", "op": "regex", "value": "(上海"}), [("children[2]", "regex: missing ), unterminated subpattern at position 0")]),
    ("look-around", third({"type": "attribute", "field": "city", "op": "regex", "value": "a(?=b)"}), [("children[2]", "regex: look-around and back-references are not supported")]),
    ("back-reference", third({"type": "attribute", "field": "city", "op": "regex", "value": "(a)\\1"}), [("children[2]", "regex: look-around and back-references are not supported")]),
    ("between low > high", third({"type": "attribute", "field": "points", "op": "between", "value": [5, 1]}), [("children[2]", "between needs low <= high")]),
    ("in with mixed types", third({"type": "attribute", "field": "points", "op": "in", "value": [1, "二"]}), [("children[2]", "in needs values that are all text or all numbers")]),
    ("in with nothing", third({"type": "attribute", "field": "city", "op": "not_in", "value": []}), [("children[2]", "not_in needs a non-empty list of values")]),
    ("gt with text", third({"type": "attribute", "field": "points", "op": "gt", "value": "5"}), [("children[2]", "gt needs a number")]),
    ("neq true", third({"type": "attribute", "field": "vip", "op": "neq", "value": True}), [("children[2]", "compare booleans with eq")]),
    ("before a non-date", third({"type": "attribute", "field": "birthday", "op": "before", "value": "2026-02-30"}), [("children[2]", "before needs an ISO date or datetime, not '2026-02-30'")]),
    ("in_next without days", third({"type": "attribute", "field": "birthday", "op": "anniversary_in_next"}), [("children[2]", "anniversary_in_next needs days")]),
    ("days 0", third({"type": "attribute", "field": "birthday", "op": "in_next", "days": 0}), [("children[2].days", "must be > 0")]),
    ("is_set with a value", third({"type": "attribute", "field": "city", "op": "is_set", "value": "上海"}), [("children[2]", "is_set takes no value")]),
    # tag
    ("tag in without values", third({"type": "tag", "tag": "会员等级", "op": "in"}), [("children[2]", "in needs values (a list)")]),
    ("tag between low > high", third({"type": "tag", "tag": "rfm", "op": "between", "values": [3, 1]}), [("children[2]", "between needs values [low, high] numbers, low <= high")]),
    ("tag eq true", third({"type": "tag", "tag": "rfm", "op": "eq", "value": True}), [("children[2]", "tag values are text or numbers")]),
    ("tag without a name", third({"type": "tag", "op": "has"}), [("children[2].tag", "is required")]),
    # event
    ("window last 0", third({**EVENT, "window": {"last": 0}}), [("children[2].window.last", "must be > 0")]),
    ("window both forms", third({**EVENT, "window": {"last": 3, "since": "2026-01-01"}}), [("children[2].window", "give either last or since/until, not both")]),
    ("empty window", third({**EVENT, "window": {}}), [("children[2].window", "give last, or since and/or until")]),
    ("where days missing", third({**EVENT, "where": [{"property": "amount", "op": "within_last"}]}), [("children[2].where[0]", "within_last needs days")]),
    ("count below 0", third({**EVENT, "count": {"op": "eq", "value": -1}}), [("children[2].count.value", "must be >= 0")]),
    ("aggregate without op", third({**EVENT, "aggregate": {"fn": "sum", "property": "revenue", "value": 1}}), [("children[2].aggregate.op", "is required")]),
    ("two measures", third({**EVENT, "count": {"value": 1}, "occurrence": "first"}), [("children[2]", "give one of count, aggregate, occurrence (got count, occurrence)")]),
    ("occurrence without window", third({**EVENT, "occurrence": "last"}), [("children[2]", "occurrence needs a window")]),
    # order
    ("coupons without coupon", third({"type": "order", "coupons": ["NEW10"], "with_coupon": False}), [("children[2]", "coupons and with_coupon=false contradict each other")]),
    ("no products", third({"type": "order", "products": []}), [("children[2].products", "must have at least 1 item(s)")]),
    ("window in an order", third({"type": "order", "window": {"last": -2}}), [("children[2].window.last", "must be > 0")]),
    # in_audience, has_identifier, random_bucket
    ("in_audience without audience", third({"type": "in_audience"}), [("children[2].audience", "is required")]),
    ("no identifier types", third({"type": "has_identifier", "id_types": []}), [("children[2].id_types", "must have at least 1 item(s)")]),
    ("bucket range", third({"type": "random_bucket", "salt": "s", "buckets": 10, "low": 5, "high": 11}), [("children[2]", "needs 0 <= low < high <= buckets")]),
    ("empty bucket range", third({"type": "random_bucket", "salt": "s", "low": 5, "high": 5}), [("children[2]", "needs 0 <= low < high <= buckets")]),
    ("one bucket", third({"type": "random_bucket", "salt": "s", "buckets": 1, "low": 0, "high": 1}), [("children[2].buckets", "must be >= 2")]),
    ("low below 0", third({"type": "random_bucket", "salt": "s", "low": -1, "high": 3}), [("children[2].low", "must be >= 0")]),
    # several problems at once: every one is reported
    (
        "two bad children",
        {"type": "or", "children": [{**EVENT, "window": {"last": 0}}, {"type": "not", "child": {"type": "tag"}}]},
        [("children[0].window.last", "must be > 0"), ("children[1].child.tag", "is required")],
    ),
]  # fmt: skip


@pytest.mark.parametrize(("definition", "expected"), [pytest.param(d, e, id=n) for n, d, e in CASES])
def test_errors_name_the_json_path(definition: Any, expected: list[tuple[str, str]]) -> None:
    assert errors_of(definition) == expected


def test_the_message_reads_path_colon_problem() -> None:
    with pytest.raises(ConditionError, match=re.escape("children[2].window.last: must be > 0")):
        parse_condition(third({**EVENT, "window": {"last": 0}}))


def test_limits() -> None:
    deep: dict[str, Any] = FILLER
    for _ in range(MAX_DEPTH + 1):
        deep = {"type": "not", "child": deep}
    [(path, message)] = errors_of(deep)
    assert path == ".".join(["child"] * (MAX_DEPTH + 1)) and message == f"nested deeper than {MAX_DEPTH}"
    many = {"type": "or", "children": [FILLER] * 150 + [{"type": "and", "children": [FILLER] * 51}]}
    assert errors_of(many) == [("", "more than 200 conditions")]


# --- every path is a path into what the user wrote ------------------------------------------------

_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def resolves(document: Any, path: str) -> bool:
    """Whether ``path`` leads somewhere in the document (its last step may be a missing key)."""
    parts = [(name, int(index) if index else None) for name, index in _PART.findall(path)]
    node = document
    for n, (name, index) in enumerate(parts):
        last = n == len(parts) - 1
        if index is not None:
            if not isinstance(node, list) or index >= len(node):
                return False
            node = node[index]
        elif isinstance(node, dict) and name in node:
            node = node[name]
        else:
            return last and isinstance(node, dict)
    return True


# Wrong operands of fields that accept several types: the path must still be the field.
UNION_FIELDS: list[tuple[str, Any, str]] = [
    ("unknown operator", third({"type": "attribute", "field": "city", "op": "like", "value": "上%"}), "children[2].op"),
    ("unknown where operator", third({**EVENT, "where": [{"property": "sku", "op": "like", "value": "a"}]}), "children[2].where[0].op"),
    ("an object as value", third({"type": "attribute", "field": "city", "op": "eq", "value": {"城市": "上海"}}), "children[2].value"),
    ("an impossible since", third({**EVENT, "window": {"since": "2026-02-30"}}), "children[2].window.since"),
    ("an object among tag values", third({"type": "tag", "tag": "t", "op": "in", "values": [{"a": 1}]}), "children[2].values[0]"),
]  # fmt: skip


@pytest.mark.parametrize(("definition", "field"), [pytest.param(d, f, id=n) for n, d, f in UNION_FIELDS])
def test_a_wrong_operand_names_the_field_not_the_pydantic_type(definition: Any, field: str) -> None:
    paths = [p for p, _ in errors_of(definition)]
    assert set(paths) == {field}, (
        f"DOMAIN BUG (tessera.domain.conditions.json_path): the error paths {paths} are not the field {field!r} "
        "— pydantic's union member names (.str, .int, .date, .literal[...]) leak into the JSON path"
    )


@pytest.mark.parametrize("op", ["in", "all"])
def test_a_boolean_tag_value_is_refused(op: str) -> None:
    """Tag values are text or numbers (``eq true`` is refused so); in a list of values too."""
    try:
        parse_condition({"type": "tag", "tag": "会员等级", "op": op, "values": ["金卡", True]})
    except ConditionError as e:
        assert [p for p, _ in e.errors] == [""]
    else:
        pytest.fail(
            f"DOMAIN GAP (tessera.domain.conditions.TagLeaf): {op} accepts true among its values, which the "
            "module text gives no meaning (eq true is refused with 'tag values are text or numbers')"
        )


_FAULTS = ("extra", "missing", "type")
_REQUIRED = {
    "and": "children",
    "or": "children",
    "not": "child",
    "attribute": "field",
    "tag": "tag",
    "event": "event",
    "in_audience": "audience",
    "has_identifier": "id_types",
    "random_bucket": "salt",
}


def _nodes(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for i, child in enumerate(node.get("children", [])):
        out += _nodes(child, f"{path}.children[{i}]" if path else f"children[{i}]")
    if "child" in node:
        out += _nodes(node["child"], f"{path}.child" if path else "child")
    return out


def _replace(node: dict[str, Any], target: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    if node is target:
        return new
    out = dict(node)
    if "children" in node:
        out["children"] = [_replace(c, target, new) for c in node["children"]]
    if "child" in node:
        out["child"] = _replace(node["child"], target, new)
    return out


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_fault_anywhere_is_reported_at_its_path(data: st.DataObject) -> None:
    """Break one node of a valid definition: the errors name that node's path, and only real paths."""
    ds = data.draw(datasets(max_profiles=5, max_events=10), label="dataset")
    definition = data.draw(definitions(ds, ("静态-VIP",)), label="definition")
    path, node = data.draw(st.sampled_from(_nodes(definition)), label="node")
    fault = data.draw(st.sampled_from(_FAULTS), label="fault")

    def at(key: str) -> str:
        return f"{path}.{key}" if path else key

    if fault == "extra":
        broken, expected = {**node, "备注": "x"}, (at("备注"), "is not a known field")
    elif fault == "missing" and node["type"] in _REQUIRED:
        key = _REQUIRED[node["type"]]
        broken, expected = {k: v for k, v in node.items() if k != key}, (at(key), "is required")
    else:
        broken, expected = {**node, "type": "segment"}, (path, TYPES)
    document = _replace(definition, node, broken)
    errors = errors_of(document)
    assert expected in errors
    for p, _ in errors:
        assert resolves(document, p), f"{p!r} is not a path in the definition"
