"""Behaviour and purchases measured per profile (行为与订单度量): the rows of an event or order leaf and
what is measured over them.

A :class:`Measure` is a ``SELECT l.profile_idx FROM … WHERE …`` over the rows that count (events of
the name, in the window, passing every filter; or qualifying orders) plus the aggregate measured per
profile and the comparison it must pass. :func:`tessera.compiler.lower.semi_join` turns it into the
hand-written shape (``IN``/``NOT IN`` a grouped subquery); explain reads the aggregate for one profile.
Rows reach profiles through ``identity_links`` (``l.obs_idx = e.identity_idx``), never directly.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlglot import exp

from tessera.compiler import nodes
from tessera.compiler.query import Params
from tessera.compiler.values import Source, value_test
from tessera.domain.conditions import (
    EVENT_COLUMNS,
    EXCLUDED_ORDER_STATUSES,
    AggregateTest,
    CountTest,
    EvalContext,
    EventLeaf,
    OrderLeaf,
    Window,
)

_OPS: dict[str, Callable[[float, float], bool]] = {
    "eq": operator.eq,
    "neq": operator.ne,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}
_SQL_OPS: dict[str, type[exp.Binary]] = {
    "eq": exp.EQ,
    "neq": exp.NEQ,
    "gt": exp.GT,
    "gte": exp.GTE,
    "lt": exp.LT,
    "lte": exp.LTE,
}
#: Which groups of one or more rows pass: every one, none, or it depends on the aggregate.
Groups = Literal["all", "none", "some"]


@dataclass(frozen=True)
class Env:
    """What lowering needs: the evaluation context, the placeholders, and an optional single profile."""

    ctx: EvalContext
    params: Params
    scope: int | None = None


@dataclass(frozen=True)
class Measure:
    """Rows that count for a leaf, the aggregate measured over a profile's rows, and its test."""

    rows: exp.Select
    profile: exp.Column
    value: exp.Expr
    test: exp.Expr
    zero: bool
    groups: Groups


def compare(op: str, left: exp.Expr, right: exp.Expr) -> exp.Expr:
    return _SQL_OPS[op](this=left, expression=right)


def count_groups(op: str, value: float) -> Groups:
    """For a count test: whether every count >= 1 passes, none does, or some do (counts are whole)."""
    passes = _OPS[op]
    if value < 1:
        return "all" if passes(1, value) else "none"
    if op in ("gte", "gt"):
        return "all" if passes(1, value) else "some"
    if op in ("lte", "lt"):
        return "none" if not passes(1, value) else "some"
    return "some"


def profile_col(table: str = "l") -> exp.Column:
    return exp.column("profile_idx", table=table)


def _rows(table: str, alias: str, obs: str, env: Env, where: list[exp.Expr]) -> exp.Select:
    """``SELECT l.profile_idx FROM <table> AS <alias> JOIN identity_links AS l ON l.obs_idx = <alias>.<obs>``."""
    link = exp.column("obs_idx", table="l").eq(exp.column(obs, table=alias))
    select = (
        exp.select(profile_col(), copy=False)
        .from_(exp.to_table(table).as_(alias), copy=False)
        .join(exp.to_table("identity_links").as_("l"), on=link, copy=False)
    )
    # An observation not linked yet has no profile: keep its NULL out, or IN / NOT IN turn unknown.
    linked = nodes.not_null(profile_col())
    scope = [profile_col().eq(exp.Literal.number(env.scope))] if env.scope is not None else [linked]
    return select.where(*scope, *where, copy=False)


def window_conditions(window: Window | None, column: exp.Expr, env: Env) -> list[exp.Expr]:
    """``column`` in [start, end) of the window (none = all time)."""
    if window is None:
        return []
    start, end = window.bounds(env.ctx)
    out: list[exp.Expr] = []
    if start is not None:
        out.append(exp.GTE(this=column.copy(), expression=env.params.add(_naive(start))))
    if end is not None:
        out.append(exp.LT(this=column.copy(), expression=env.params.add(_naive(end))))
    return out


def _naive(t: datetime) -> datetime:
    return t.replace(tzinfo=None)


def property_source(name: str) -> Source:
    """An event property: a typed column of ``events`` or a key of ``properties``."""
    kind = EVENT_COLUMNS.get(name)
    if kind == "number":
        return Source("decimal", exp.column(name, table="e"))
    if kind == "text":
        return Source("text", exp.column(name, table="e"))
    return Source("json", exp.column("properties", table="e"), key=name)


def event_name_condition(name: str, env: Env) -> exp.Expr:
    """``e.event_id = (SELECT event_id FROM event_names WHERE name = $p)``: events keep the integer.

    (A scalar subquery, not ``IN``: names are unique, and DuckDB then estimates the events side as
    small and builds its join on it instead of on all of ``identity_links``.)"""
    names = (
        exp.select("event_id", copy=False)
        .from_("event_names", copy=False)
        .where(exp.column("name").eq(env.params.add(name)), copy=False)
    )
    return exp.column("event_id", table="e").eq(names.subquery())


def event_measure(leaf: EventLeaf, env: Env) -> Measure:
    """What an event leaf measures over the profile's events of that name that pass its filters."""
    when = exp.Column(this=exp.to_identifier("timestamp", quoted=True), table=exp.to_identifier("e"))
    where = [event_name_condition(leaf.event, env)]
    where += [value_test(property_source(f.property), f, env.ctx, env.params) for f in leaf.where]
    measure = leaf.measure
    if isinstance(measure, str):  # occurrence: the first or last such event ever, in the window
        fn = exp.Min if measure == "first" else exp.Max
        value: exp.Expr = fn(this=when)
        bounds = window_conditions(leaf.window, value, env)
        return Measure(
            _rows("events", "e", "identity_idx", env, where),
            profile_col(),
            value,
            exp.and_(*bounds, copy=False),
            False,
            "some",
        )
    where += window_conditions(leaf.window, when, env)
    rows = _rows("events", "e", "identity_idx", env, where)
    if isinstance(measure, CountTest):
        return _count(rows, measure.op, measure.value, env)
    return _aggregate(rows, measure, env)


def _count(rows: exp.Select, op: str, value: float, env: Env) -> Measure:
    count = exp.Count(this=exp.Star())
    groups = count_groups(op, value)
    # the comparison is only written (and its value bound) when it decides something
    test = compare(op, count, env.params.add(value)) if groups == "some" else exp.true()
    return Measure(rows, profile_col(), count, test, _OPS[op](0, value), groups)


def _aggregate(rows: exp.Select, agg: AggregateTest, env: Env) -> Measure:
    """``sum`` of no events is 0; ``avg min max`` of no values are unknown (the test fails)."""
    src = property_source(agg.property)
    # Amounts are summed exactly (DECIMAL): 0.1 + 0.2 is 0.3, as the person who wrote them means.
    read = src.number(exact=True)
    assert read is not None
    fns: dict[str, type[exp.AggFunc]] = {"sum": exp.Sum, "avg": exp.Avg, "min": exp.Min, "max": exp.Max}
    raw: exp.Expr = fns[agg.fn](this=read)
    # A sum of only NULLs needs no coalesce in the test: NULL fails HAVING both ways, which is what
    # 0 does when zero does not pass, and NOT IN keeps the profile when it does.
    value = exp.func("coalesce", raw.copy(), exp.Literal.number(0)) if agg.fn == "sum" else raw.copy()
    zero = agg.fn == "sum" and _OPS[agg.op](0, agg.value)
    test = compare(agg.op, raw, env.params.add(float(agg.value)))
    return Measure(rows, profile_col(), value, test, zero, "some")


# -- orders --------------------------------------------------------------------------------------
def _qualifying(leaf: OrderLeaf, env: Env) -> list[exp.Expr]:
    """Status not cancelled/refunded (case-insensitive), and every filter of the leaf."""
    status = exp.column("status", table="o")
    excluded = exp.In(
        this=exp.Lower(this=status.copy()), expressions=[exp.Literal.string(s) for s in EXCLUDED_ORDER_STATUSES]
    )
    out: list[exp.Expr] = [exp.or_(exp.Is(this=status, expression=exp.null()), exp.not_(excluded), copy=False)]
    order_id = exp.column("order_id", table="o")
    if leaf.products is not None:
        items = (
            exp.select("order_id", copy=False)
            .from_("order_items", copy=False)
            .where(_values(exp.column("product_id"), leaf.products, env), copy=False)
        )
        out.append(exp.In(this=order_id.copy(), query=items.subquery()))
    if leaf.categories is not None:
        items = (
            exp.select(exp.column("order_id", table="i"), copy=False)
            .from_(exp.to_table("order_items").as_("i"), copy=False)
            .join(
                exp.to_table("products").as_("pr"),
                on=exp.column("product_id", table="pr").eq(exp.column("product_id", table="i")),
                copy=False,
            )
            .where(_values(exp.column("category", table="pr"), leaf.categories, env), copy=False)
        )
        out.append(exp.In(this=order_id.copy(), query=items.subquery()))
    if leaf.channels is not None:
        out.append(_values(exp.column("channel", table="o"), leaf.channels, env))
    coupon = exp.column("coupon_code", table="o")
    if leaf.coupons is not None:
        out.append(_values(coupon.copy(), leaf.coupons, env))
    no_coupon = exp.Is(this=coupon.copy(), expression=exp.null())
    if leaf.with_coupon is True:
        out.append(nodes.not_null(coupon.copy()))
    elif leaf.with_coupon is False:
        out.append(no_coupon)
    return out


def _values(column: exp.Expr, values: list[str], env: Env) -> exp.Expr:
    return nodes.InValues(this=column, expression=env.params.add(list(dict.fromkeys(values))))


def order_measure(leaf: OrderLeaf, env: Env) -> Measure:
    """What an order leaf measures: the count or total of the profile's qualifying orders in the window.

    ``first`` keeps the profile's first qualifying order (earliest ``ordered_at``, then smallest
    ``order_id``), ``repeat`` the others: numbered per profile before the window applies.
    """
    where = _qualifying(leaf, env)
    if leaf.purchase == "any":
        where += window_conditions(leaf.window, exp.column("ordered_at", table="o"), env)
        rows = _rows("orders", "o", "identity_idx", env, where)
        total: exp.Expr = exp.column("total", table="o")
        profile = profile_col()
    else:
        rank = exp.Window(
            this=exp.RowNumber(),
            partition_by=[profile_col()],
            order=exp.Order(
                expressions=[exp.Ordered(this=exp.column(c, table="o")) for c in ("ordered_at", "order_id")]
            ),
        )
        numbered = _rows("orders", "o", "identity_idx", env, where).select(
            exp.column("ordered_at", table="o"), exp.column("total", table="o"), exp.alias_(rank, "n"), copy=False
        )
        n = exp.column("n", table="q")
        keep = (
            n.eq(exp.Literal.number(1))
            if leaf.purchase == "first"
            else exp.GT(this=n, expression=exp.Literal.number(1))
        )
        profile = profile_col("q")
        rows = (
            exp.select(profile.copy(), copy=False)
            .from_(numbered.subquery("q"), copy=False)
            .where(keep, *window_conditions(leaf.window, exp.column("ordered_at", table="q"), env), copy=False)
        )
        total = exp.column("total", table="q")
    if leaf.measure == "count":
        m = _count(rows, leaf.op, leaf.value, env)
        return Measure(rows, profile, m.value, m.test, m.zero, m.groups)
    value = exp.func("coalesce", exp.Sum(this=total.copy()), exp.Literal.number(0))
    test = compare(leaf.op, exp.Sum(this=total), env.params.add(float(leaf.value)))
    return Measure(rows, profile, value, test, _OPS[leaf.op](0, leaf.value), "some")
