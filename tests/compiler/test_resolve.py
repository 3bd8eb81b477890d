"""Phase 1: dynamic audiences are inlined; unknown audiences and cycles are refused with JSON paths."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tessera.compiler import (
    AudienceMap,
    AudienceRef,
    CompileContext,
    CompileError,
    compile_count,
    compile_explain,
    compile_members,
    resolve,
)
from tessera.compiler.resolve import MAX_INLINED_LEAVES
from tessera.domain.conditions import AttributeLeaf, EvalContext, InAudienceLeaf, Or, leaves, parse_condition

EVAL = EvalContext(now=datetime(2026, 3, 1, tzinfo=UTC))
CITY = {"type": "attribute", "field": "city", "op": "eq", "value": "上海"}


def member(audience: str) -> dict[str, Any]:
    return {"type": "in_audience", "audience": audience}


def ctx(*refs: tuple[str, str, dict[str, Any] | None]) -> CompileContext:
    audiences = [AudienceRef(i, k, None if d is None else parse_condition(d)) for i, k, d in refs]  # type: ignore[arg-type]
    return CompileContext(EVAL, AudienceMap.of(*audiences))


def errors(cond: dict[str, Any], context: CompileContext, own_id: str | None = None) -> list[tuple[str, str]]:
    with pytest.raises(CompileError) as info:
        resolve(parse_condition(cond), context, own_id=own_id)
    return info.value.errors


def test_dynamic_audiences_are_inlined_recursively() -> None:
    context = ctx(("a", "dynamic", {"type": "or", "children": [CITY, member("b")]}), ("b", "dynamic", member("s")),
                  ("s", "static", None))  # fmt: skip
    out = resolve(parse_condition({"type": "not", "child": member("a")}), context)
    inner = out.child  # type: ignore[union-attr]
    assert isinstance(inner, Or)
    assert isinstance(inner.children[0], AttributeLeaf)
    assert inner.children[1] == InAudienceLeaf(type="in_audience", audience="s")  # static stays a membership read


def test_static_and_imported_stay() -> None:
    cond = parse_condition({"type": "and", "children": [member("s"), member("i")]})
    assert resolve(cond, ctx(("s", "static", None), ("i", "imported", None))) == cond


def test_unknown_audience_names_its_path() -> None:
    cond = {"type": "and", "children": [CITY, {"type": "not", "child": member("ghost")}]}
    assert errors(cond, ctx()) == [("children[1].child.audience", "unknown audience 'ghost'")]
    assert errors(member("ghost"), ctx()) == [("audience", "unknown audience 'ghost'")]


def test_every_bad_leaf_is_reported() -> None:
    cond = {"type": "or", "children": [member("x"), CITY, member("y")]}
    assert [p for p, _ in errors(cond, ctx())] == ["children[0].audience", "children[2].audience"]


def test_cycle_between_audiences() -> None:
    context = ctx(("a", "dynamic", member("b")), ("b", "dynamic", {"type": "and", "children": [CITY, member("a")]}))
    [(path, message)] = errors({"type": "or", "children": [CITY, member("a")]}, context)
    assert path == "children[1].audience"
    assert message == "audience cycle: a → b → a"


def test_cycle_back_to_the_audience_being_saved() -> None:
    context = ctx(("b", "dynamic", member("me")), ("me", "dynamic", member("b")))
    [(path, message)] = errors(member("b"), context, own_id="me")
    assert (path, message) == ("audience", "audience cycle: me → b → me")
    assert errors(member("me"), context, own_id="me") == [("audience", "audience cycle: me → me")]


def test_problems_inside_another_audience_are_reported_at_the_leaf_written() -> None:
    context = ctx(("a", "dynamic", member("b")), ("b", "dynamic", member("ghost")), ("d", "dynamic", None))
    assert errors(member("a"), context) == [("audience", "in audience 'a' → 'b': unknown audience 'ghost'")]
    assert errors(member("d"), context) == [("audience", "dynamic audience 'd' has no definition")]


def test_inlining_that_explodes_is_refused() -> None:
    refs: list[tuple[str, str, dict[str, Any] | None]] = [("a0", "dynamic", CITY)]
    for i in range(1, 13):  # each audience uses the one before twice: 4096 leaves
        refs.append((f"a{i}", "dynamic", {"type": "or", "children": [member(f"a{i - 1}"), member(f"a{i - 1}")]}))
    [(path, message)] = errors(member("a12"), ctx(*refs))
    assert path == "" and str(MAX_INLINED_LEAVES) in message


@pytest.mark.parametrize("compile_fn", [compile_members, compile_count])
def test_compiling_refuses_the_same(compile_fn: Any) -> None:
    with pytest.raises(CompileError) as info:
        compile_fn(parse_condition(member("ghost")), ctx())
    assert info.value.errors == [("audience", "unknown audience 'ghost'")]


def test_explain_refuses_the_same_and_keeps_the_leaves_written() -> None:
    with pytest.raises(CompileError):
        compile_explain(parse_condition(member("ghost")), ctx(), profile_idx=1)
    cond = parse_condition({"type": "and", "children": [member("a"), CITY]})
    q = compile_explain(cond, ctx(("a", "dynamic", {"type": "or", "children": [CITY, CITY]})), profile_idx=1)
    assert list(q.columns()) == ["m0", "v0", "m1", "v1", "matched"]
    assert len(leaves(cond)) == 2


def test_explain_checks_the_profile_index() -> None:
    with pytest.raises(TypeError):
        compile_explain(parse_condition(CITY), ctx(), profile_idx="1 OR 1=1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        compile_explain(parse_condition(CITY), ctx(), profile_idx=True)
