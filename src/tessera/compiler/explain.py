"""Explain (命中解释): why one profile does or does not match a condition, leaf by leaf.

One statement, one row for the profile (none when it does not exist): for leaf ``i`` of
:func:`tessera.domain.conditions.leaves`, ``m{i}`` (the leaf matched) and ``v{i}`` (what was
observed, as JSON text), and ``matched`` for the whole condition, combined from the ``m`` columns.
Every subquery reads that profile only (its ``profile_idx`` is a validated int written as a literal).
A dynamic ``in_audience`` leaf matches through its inlined definition.
"""

from __future__ import annotations

from sqlglot import exp

from tessera.compiler import nodes
from tessera.compiler.behaviour import Env, Measure, event_measure, order_measure, profile_col
from tessera.compiler.context import CompileContext
from tessera.compiler.lower import (
    PROFILE,
    attribute_source,
    bucket,
    identifier_rows,
    lower,
    lower_leaf,
    tag_source,
)
from tessera.compiler.query import Params, Query
from tessera.compiler.resolve import inline_audience, resolve
from tessera.compiler.rewrite import rewrite
from tessera.compiler.statements import profiles_from
from tessera.domain.conditions import (
    And,
    AttributeLeaf,
    Condition,
    EventLeaf,
    HasIdentifierLeaf,
    InAudienceLeaf,
    Leaf,
    Not,
    Or,
    OrderLeaf,
    TagLeaf,
    leaves,
)


def compile_explain(cond: Condition, ctx: CompileContext, *, profile_idx: int, params: Params | None = None) -> Query:
    """The explain row of one profile: ``m0, v0, m1, v1, …, matched``."""
    if isinstance(profile_idx, bool) or not isinstance(profile_idx, int):
        raise TypeError("profile_idx must be an int")
    resolve(cond, ctx)  # refuse unknown audiences and cycles up front
    params = params if params is not None else Params()
    env = Env(ctx.eval, params, scope=int(profile_idx))
    columns: list[exp.Expr] = []
    for i, (_, leaf) in enumerate(leaves(cond)):
        matched = rewrite(_leaf_predicate(leaf, ctx, env))
        columns.append(exp.alias_(matched, f"m{i}"))
        observed = exp.func("coalesce", _observed(leaf, env, matched), exp.Literal.string("null"))
        columns.append(exp.alias_(observed, f"v{i}"))
    inner = profiles_from(exp.and_(*(c.this for c in columns)), exp.select(*columns, copy=False))
    inner = inner.where(exp.column("profile_idx", table=PROFILE).eq(exp.Literal.number(int(profile_idx))), copy=False)
    counter = iter(range(len(columns) // 2))
    whole = rewrite(_combine(cond, counter))
    outer_cols = [exp.column(f"{p}{i}") for i in range(len(columns) // 2) for p in ("m", "v")]
    tree = exp.select(*outer_cols, exp.alias_(whole, "matched"), copy=False).from_(inner.subquery("x"), copy=False)
    return Query(tree, params.values)


def _leaf_predicate(leaf: Leaf, ctx: CompileContext, env: Env) -> exp.Expr:
    if isinstance(leaf, InAudienceLeaf):
        return lower(inline_audience(leaf, ctx), env)
    return lower_leaf(leaf, env)


def _combine(cond: Condition, counter: object) -> exp.Expr:
    """The condition's boolean structure over the ``m{i}`` columns (leaves in document order)."""
    if isinstance(cond, And):
        return exp.and_(*(_combine(c, counter) for c in cond.children), copy=False)
    if isinstance(cond, Or):
        return exp.or_(*(_combine(c, counter) for c in cond.children), copy=False)
    if isinstance(cond, Not):
        return exp.not_(_combine(cond.child, counter), copy=False)
    return exp.column(f"m{next(counter)}")  # type: ignore[call-overload]


def _scalar(select: exp.Select) -> exp.Expr:
    return exp.Subquery(this=select)


def _measured(m: Measure) -> exp.Expr:
    """The aggregate of the profile's rows (a count of none is 0, a sum of none 0)."""
    rows = m.rows.copy()
    rows.set("expressions", [m.value.copy()])
    return nodes.ToJson(this=_scalar(rows))


def _observed(leaf: Leaf, env: Env, matched: exp.Expr) -> exp.Expr:
    """What the leaf looked at, as JSON text."""
    if isinstance(leaf, AttributeLeaf):
        return attribute_source(leaf).raw()
    if isinstance(leaf, TagLeaf):
        source, where = tag_source(leaf, env)
        values = (
            exp.select(nodes.JsonList(this=exp.column("value", table="t")), copy=False)
            .from_(source, copy=False)
            .where(profile_col("t").eq(exp.Literal.number(env.scope or 0)), *where, copy=False)
        )
        return exp.func("coalesce", _scalar(values), exp.Literal.string("[]"))
    if isinstance(leaf, EventLeaf):
        return _measured(event_measure(leaf, env))
    if isinstance(leaf, OrderLeaf):
        return _measured(order_measure(leaf, env))
    if isinstance(leaf, HasIdentifierLeaf):
        rows = identifier_rows(leaf, env)
        rows.set("expressions", [nodes.JsonList(this=exp.column("id_type", table="i"))])
        return exp.func("coalesce", _scalar(rows), exp.Literal.string("[]"))
    if isinstance(leaf, InAudienceLeaf):
        return nodes.ToJson(this=matched.copy())
    return nodes.ToJson(this=bucket(leaf, env))
