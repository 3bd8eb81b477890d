"""Value tests (取值比较): an operator of the condition language over one value of a profile or event.

A :class:`Source` says where the value lives (a typed column, a key of a JSON document, a list
column, or the element of a list); :func:`value_test` lowers an attribute leaf's or a property
filter's operator over it, following the readings of :mod:`tessera.domain.conditions`: numbers are
JSON numbers or numeric text, text is a JSON string or another scalar's JSON text, dates are
timestamps or ISO text. The result is never NULL: a missing or unconvertible value fails the test,
and the negative operators (``neq not_in is_not_set``) are the plain negation of the positive ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from sqlglot import exp

from tessera.compiler import nodes
from tessera.compiler.query import Params
from tessera.domain.conditions import EvalContext, _ValueTest

SourceKind = Literal["json", "text", "integer", "decimal", "timestamp", "list"]
#: The negative operators and the positive ones they negate.
NEGATIONS = {"neq": "eq", "not_in": "in", "is_not_set": "is_set"}
_COMPARE: dict[str, type[exp.Binary]] = {
    "eq": exp.EQ,
    "gt": exp.GT,
    "gte": exp.GTE,
    "lt": exp.LT,
    "lte": exp.LTE,
}


@dataclass(frozen=True)
class Source:
    """Where a value is read from: ``expr`` is a column, or the JSON document holding ``key``."""

    kind: SourceKind
    expr: exp.Expr
    key: str | None = None

    def _key(self) -> exp.Literal:
        assert self.key is not None
        return exp.Literal.string(self.key)

    def number(self, *, exact: bool = False) -> exp.Expr | None:
        """The value as a finite DOUBLE (None: this source never reads as a number).

        ``exact``: text reads as DECIMAL and money columns stay DECIMAL (for sums)."""
        flag = exp.true() if exact else None
        if self.kind == "json":
            return nodes.TextNumber(this=nodes.JsonText(this=self.expr.copy(), key=self._key()), exact=flag)
        if self.kind == "text":
            return nodes.TextNumber(this=self.expr.copy(), exact=flag)
        if self.kind == "decimal" and exact:
            return self.expr.copy()
        if self.kind in ("integer", "decimal"):
            return exp.cast(self.expr.copy(), "DOUBLE")
        return None

    def text(self) -> exp.Expr | None:
        """The value as text: a string as is, a number as its JSON text (None: never text)."""
        if self.kind == "json":
            return nodes.JsonText(this=self.expr.copy(), key=self._key(), scalar=exp.true())
        if self.kind == "text":
            return self.expr.copy()
        if self.kind == "integer":
            return exp.cast(self.expr.copy(), "VARCHAR")
        if self.kind == "decimal":
            return exp.cast(exp.cast(self.expr.copy(), "DOUBLE"), "VARCHAR")
        return None

    def boolean(self) -> exp.Expr | None:
        return nodes.JsonBool(this=self.expr.copy(), key=self._key()) if self.kind == "json" else None

    def time(self) -> exp.Expr | None:
        """The value as a UTC timestamp: a timestamp column, or ISO text."""
        if self.kind == "timestamp":
            return self.expr.copy()
        if self.kind == "json":
            return nodes.TextTime(this=nodes.JsonText(this=self.expr.copy(), key=self._key()))
        if self.kind == "text":
            return nodes.TextTime(this=self.expr.copy())
        return None

    def present(self) -> exp.Expr:
        if self.kind == "json":
            return nodes.JsonPresent(this=self.expr.copy(), key=self._key())
        return nodes.not_null(self.expr.copy())

    def raw(self) -> exp.Expr:
        """The value as JSON text (what explain shows)."""
        if self.kind == "json":
            return exp.cast(nodes.JsonRaw(this=self.expr.copy(), key=self._key()), "VARCHAR")
        return nodes.ToJson(this=self.expr.copy())


def value_test(src: Source, test: _ValueTest, ctx: EvalContext, params: Params) -> exp.Expr:
    """The two-valued predicate ``test`` over the value at ``src``."""
    positive = NEGATIONS.get(test.op)
    if positive is not None:
        return exp.not_(value_test(src, test.model_copy(update={"op": positive}), ctx, params), copy=False)
    pred = _positive(src, test, ctx, params, in_list=False)
    if pred is None:
        return exp.false()
    return exp.func("coalesce", pred, exp.false())


def _positive(src: Source, test: _ValueTest, ctx: EvalContext, params: Params, *, in_list: bool) -> exp.Expr | None:
    """The positive operator, possibly NULL when the value is missing; None when it can never hold."""
    op, kind = test.op, test.kind
    if op == "is_set":
        return src.present()
    if src.kind == "list":
        return _list_test(src, test, ctx, params)
    if kind == "number":
        value = src.number()
        return None if value is None else _number(value, test, params, in_list=in_list)
    if kind == "text":
        value = src.text()
        return None if value is None else _text(value, test, params, in_list=in_list)
    if kind == "bool":
        value = src.boolean()
        return None if value is None else exp.EQ(this=value, expression=params.add(bool(test.value)))
    value = src.time()
    if value is None:
        return None
    if kind == "date":
        return _date(value, test, ctx, params)
    return _anniversary(value, test, ctx, params)


def _number(value: exp.Expr, test: _ValueTest, params: Params, *, in_list: bool) -> exp.Expr:
    v = test.value
    if test.op == "in":
        assert isinstance(v, list)
        return _in(value, [float(x) for x in v], params, in_list=in_list)
    if test.op == "between":
        assert isinstance(v, list)
        low, high = (float(x) for x in v)
        return exp.Between(this=value, low=params.add(low), high=params.add(high))
    return _COMPARE[test.op](this=value, expression=params.add(float(v)))  # type: ignore[arg-type]


def _text(value: exp.Expr, test: _ValueTest, params: Params, *, in_list: bool) -> exp.Expr:
    v = test.value
    if test.op in ("eq", "in") and isinstance(value, nodes.JsonText) and value.args.get("scalar"):
        # An object's or array's JSON text starts with { or [: it can equal only such a value, so
        # for any other value the (costly) scalar check can go — the answer is the same.
        wanted = v if isinstance(v, list) else [v]
        if not any(str(x).startswith(("{", "[")) for x in wanted):
            value.set("scalar", None)
    if test.op == "in":
        assert isinstance(v, list)
        return _in(value, [str(x) for x in v], params, in_list=in_list)
    if test.op == "eq":
        return exp.EQ(this=value, expression=params.add(str(v)))
    if test.op == "contains":
        return exp.GT(this=exp.StrPosition(this=value, substr=params.add(str(v))), expression=exp.Literal.number(0))
    if test.op == "starts_with":
        return exp.StartsWith(this=value, expression=params.add(str(v)))
    if test.op == "regex":
        return exp.RegexpLike(this=value, expression=params.add(str(v)))
    raise AssertionError(f"text test {test.op}")  # pragma: no cover - the domain refuses the rest


def _in(value: exp.Expr, values: list[str] | list[float], params: Params, *, in_list: bool) -> exp.Expr:
    """Membership in a list given as one placeholder (a list element is tested without a subquery)."""
    unique = list(dict.fromkeys(values))
    if in_list:
        return exp.ArrayContains(this=params.add(unique), expression=value)
    return nodes.InValues(this=value, expression=params.add(unique))


def _date(value: exp.Expr, test: _ValueTest, ctx: EvalContext, params: Params) -> exp.Expr:
    op, v, now = test.op, test.value, ctx.now_utc
    if op == "before":
        assert isinstance(v, date)
        return exp.LT(this=value, expression=params.add(ctx.to_utc(v)))
    if op == "after":
        if isinstance(v, datetime):
            return exp.GT(this=value, expression=params.add(ctx.to_utc(v)))
        assert isinstance(v, date)
        return exp.GTE(this=value, expression=params.add(ctx.to_utc(v, end_of_day=True)))
    assert test.days is not None
    span = timedelta(days=test.days)
    low, high = (now - span, now) if op == "within_last" else (now, now + span)
    return exp.Between(this=value, low=params.add(low), high=params.add(high))


def _anniversary(value: exp.Expr, test: _ValueTest, ctx: EvalContext, params: Params) -> exp.Expr:
    """The month and day of ``value`` in the span from :meth:`EvalContext.anniversary_span`."""
    span = ctx.anniversary_span(test.days if test.op == "anniversary_in_next" else None)
    if span is None:
        return nodes.not_null(value)
    key = nodes.MonthDay(this=value)
    first, last = span
    if first <= last:
        return exp.Between(this=key, low=params.add(first), high=params.add(last))
    return exp.or_(
        exp.GTE(this=key, expression=params.add(first)),
        exp.LTE(this=key.copy(), expression=params.add(last)),
        copy=False,
    )


def _list_test(src: Source, test: _ValueTest, ctx: EvalContext, params: Params) -> exp.Expr | None:
    """A list column: ``eq``/``contains`` = has the element, ``in`` = has any of; other tests hold
    when some element passes them."""
    if test.kind == "text" and test.op in ("eq", "contains"):
        return exp.ArrayContains(this=src.expr.copy(), expression=params.add(str(test.value)))
    if test.kind == "text" and test.op == "in":
        assert isinstance(test.value, list)
        return nodes.ListHasAny(this=src.expr.copy(), expression=params.add(list(dict.fromkeys(map(str, test.value)))))
    item = Source("text", nodes.element())
    pred = _positive(item, test, ctx, params, in_list=True)
    if pred is None:
        return None
    return nodes.ListSome(this=src.expr.copy(), expression=exp.func("coalesce", pred, exp.false()))
