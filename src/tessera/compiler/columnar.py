"""The fast count (快速计数): a condition over in-memory profile columns instead of SQL.

For a *resolved* condition (dynamic audiences inlined by :func:`tessera.compiler.resolve`) made
only of ``attribute``, ``tag``, ``has_identifier``, ``random_bucket`` and ``in_audience`` (stored
members) leaves under ``and`` / ``or`` / ``not``, :func:`evaluate` gives the selected profiles as
a roaring bitmap of ``profile_idx``. A leaf that needs events or orders makes it give None, and
the caller runs the compiled SQL instead.

The answer is the compiled SQL's, by construction: each column is read with the compiler's own
readings of a value (:class:`tessera.compiler.values.Source`: a trait's number, text, boolean or
time; a list's elements …) and :mod:`tessera.compiler.render`'s DuckDB spelling of them, then the
operators of :mod:`tessera.compiler.values` and :func:`tessera.compiler.lower.tag_predicate` are
applied to the sorted values. A reading the compiler never makes (a number test on a timestamp
column) selects no one, as its ``FALSE`` does.

Pure apart from :func:`count_members`, which asks :class:`~tessera.stores.profile_columns.ProfileColumns`
for the columns :func:`requirements` names.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Literal

from pyroaring import BitMap
from sqlglot import exp

from tessera.compiler import nodes
from tessera.compiler.behaviour import Env
from tessera.compiler.lower import ATTRIBUTES, PROFILE, attribute_source, bucket
from tessera.compiler.query import Params
from tessera.compiler.render import render
from tessera.compiler.values import NEGATIONS, Source
from tessera.domain.conditions import (
    And,
    AttributeLeaf,
    Condition,
    EvalContext,
    HasIdentifierLeaf,
    InAudienceLeaf,
    Not,
    Or,
    RandomBucketLeaf,
    Scalar,
    TagLeaf,
)
from tessera.domain.messages import to_micros
from tessera.stores.analytic import AnalyticStore
from tessera.stores.profile_columns import Column, ColumnSpec, ProfileColumns, ValueIndex, union

Columns = Mapping[ColumnSpec, Column]
#: How a value is read: the compiler's readings, and month*100 + day of the time.
Reading = Literal["number", "text", "bool", "time", "anniversary", "present"]
_READINGS: dict[str, Reading] = {
    "number": "number",
    "text": "text",
    "bool": "bool",
    "date": "time",
    "anniversary": "anniversary",
}

#: Every profile: what ``not`` negates against, and what a count is taken over.
UNIVERSE = ColumnSpec(
    "SELECT profile_idx FROM profiles ORDER BY 1", shape="set", tables=("profiles",), label="profiles"
)


class Unsupported(Exception):
    """A leaf the columns do not answer (the caller runs SQL instead)."""


# --- columns of leaves -------------------------------------------------------------------------------


def _sql(tree: exp.Expr, params: Mapping[str, object] | None = None) -> str:
    return render(tree, dialect="duckdb", params=params or {})


def _rows(inner: exp.Select, *, present: bool = False) -> str:
    """Rows ``(idx, v)`` of ``inner`` (which names ``idx`` and ``v``), NULLs left out (the columns sort
    them); with ``present``, the ``idx`` whose ``v`` is true."""
    r = inner.subquery("r")
    if present:
        return _sql(exp.select("idx").from_(r).where(exp.column("v")).order_by("idx"))
    return _sql(exp.select("idx", "v").from_(r).where("v IS NOT NULL"))


def _read(src: Source, reading: Reading) -> exp.Expr | None:
    if reading == "number":
        return src.number()
    if reading == "text":
        return src.text()
    if reading == "bool":
        return src.boolean()
    if reading == "present":
        return src.present()
    t = src.time()
    return t if t is None or reading == "time" else _month_day(t)


def _month_day(t: exp.Expr) -> exp.Expr:
    """month*100 + day, the key of :meth:`EvalContext.anniversary_span`."""
    return exp.Add(
        this=exp.Mul(this=exp.Month(this=t), expression=exp.Literal.number(100)), expression=exp.Day(this=t.copy())
    )


@lru_cache(maxsize=4096)
def attribute_column(field: str, reading: Reading, elements: bool) -> ColumnSpec | None:
    """An attribute field read one way (``elements``: each element of a list field); None when the
    compiler never reads the field that way (its test is then FALSE)."""
    src = attribute_source(AttributeLeaf(type="attribute", field=field, op="is_set"))
    column = src.expr
    assert isinstance(column, exp.Column)
    alias = column.table
    table = {ATTRIBUTES: "profile_attributes", PROFILE: "profiles"}[alias]
    idx = exp.alias_(exp.column("profile_idx", table=alias), "idx")
    base = exp.select(idx).from_(exp.to_table(table).as_(alias))
    label = f"{field} ({reading}{' of elements' if elements else ''})"
    if elements:
        listed = base.select(exp.alias_(exp.Unnest(expressions=[column.copy()]), "x"))
        value = _read(Source("text", exp.column("x")), reading)
        if value is None:
            return None
        inner = exp.select("idx", exp.alias_(value, "v")).from_(listed.subquery("e"))
        return ColumnSpec(_rows(inner), tables=(table,), label=label)
    value = _read(src, "time" if reading == "anniversary" else reading)
    if value is None:
        return None
    inner, value = _hoist_json(base, value)
    if reading == "anniversary":  # month*100 + day of the time, read once
        timed = exp.select("idx", exp.alias_(value, "t")).from_(inner.subquery("w"))
        inner, value = timed, _month_day(exp.column("t"))
    return ColumnSpec(
        _rows(exp.select("idx", exp.alias_(value, "v")).from_(inner.subquery("h")), present=reading == "present"),
        shape="set" if reading == "present" else "values",
        tables=(table,),
        label=label,
    )


def _hoist_json(base: exp.Select, value: exp.Expr) -> tuple[exp.Select, exp.Expr]:
    """Read each JSON node (and column) of ``value`` once: as a column of ``base``, which ``value`` then names.

    The compiler's DuckDB spelling repeats a JSON read inside a reading (a number is tested for
    being finite, then used; a time is matched against two ISO shapes, then cast), and every
    repetition parses the document again; over millions of profiles that is most of a cold load.
    Same expressions, computed once."""
    value = value.copy()
    names: dict[str, str] = {}

    def hoist(node: exp.Expr) -> None:
        nonlocal base, value
        key = node.sql()
        if key not in names:
            names[key] = f"j{len(names)}"
            base = base.select(exp.alias_(node.copy(), names[key]))
        if node is value:
            value = exp.column(names[key])
        else:
            node.replace(exp.column(names[key]))

    for node in list(value.find_all(nodes.JsonText, nodes.JsonRaw, nodes.JsonBool, nodes.JsonPresent)):
        hoist(node)
    for col in list(value.find_all(exp.Column)):  # the table's own columns the reading still names
        if col.table:
            hoist(col)
    return base, value


def _attribute_plan(leaf: AttributeLeaf) -> tuple[str, Reading, bool]:
    """(operator, reading, over the elements of a list) of a positive attribute test."""
    op, kind = leaf.op, leaf.kind
    if op == "is_set":
        return op, "present", False
    if attribute_source(leaf).kind == "list":
        if kind == "text" and op in ("eq", "contains"):
            return "eq", "text", True  # has the element
        return op, _READINGS[kind], True  # in: has any of; the rest: some element passes
    return op, _READINGS[kind], False


_TAG_SQL = {
    "text": "SELECT profile_idx AS idx, value AS v FROM profile_tags WHERE tag_key = $tag",
    "number": """SELECT profile_idx AS idx, value_num AS v FROM profile_tags
        WHERE tag_key = $tag AND value_num IS NOT NULL""",
}


@lru_cache(maxsize=4096)
def tag_column(tag: str, reading: Literal["text", "number"]) -> ColumnSpec:
    """A tag's values (text) or numeric values (``value_num``), a row per value."""
    tables = ("profile_tags", f"profile_tags:{tag}")  # one tag's writes move only its own columns
    return ColumnSpec(_TAG_SQL[reading], (("tag", tag),), tables=tables, label=f"tag {tag} ({reading})")


@lru_cache(maxsize=4096)
def identifier_column(id_type: str) -> ColumnSpec:
    sql = "SELECT DISTINCT profile_idx FROM profile_identifiers WHERE id_type = $t ORDER BY 1"
    return ColumnSpec(sql, (("t", id_type),), "set", ("profile_identifiers",), label=f"identifier {id_type}")


@lru_cache(maxsize=4096)
def members_column(audience_id: str) -> ColumnSpec:
    """The stored members of a static or imported audience (as the compiler reads them)."""
    sql = "SELECT DISTINCT profile_idx FROM audience_members_current WHERE audience_id = $a ORDER BY 1"
    tables = ("audience_members", "profiles", "profile_identifiers")
    return ColumnSpec(sql, (("a", audience_id),), "set", tables, label=f"members of {audience_id}")


@lru_cache(maxsize=1024)
def bucket_column(salt: str, buckets: int) -> ColumnSpec:
    """Every profile's random bucket for (salt, buckets), spelled by the compiler."""
    params = Params()
    leaf = RandomBucketLeaf(type="random_bucket", salt=salt, buckets=buckets, low=0, high=1)
    value = bucket(leaf, Env(EvalContext(now=datetime(2000, 1, 1, tzinfo=UTC)), params))
    inner = exp.select(exp.alias_(exp.column("profile_idx", table=PROFILE), "idx"), exp.alias_(value, "v"))
    tree = inner.from_(exp.to_table("profiles").as_(PROFILE))
    return ColumnSpec(
        _sql(tree, params.values),
        tuple(sorted(params.values.items())),
        tables=("profiles",),
        label=f"bucket {salt}/{buckets}",
    )


def _leaf_columns(node: Condition) -> list[ColumnSpec]:
    if isinstance(node, AttributeLeaf):
        _, reading, elements = _attribute_plan(node.model_copy(update={"op": NEGATIONS.get(node.op, node.op)}))
        spec = attribute_column(node.field, reading, elements)
        return [] if spec is None else [spec]
    if isinstance(node, TagLeaf):
        if node.on is not None:
            raise Unsupported("tag history")  # read from tag_changes by SQL
        if node.op == "has":
            return [tag_column(node.tag, "text")]
        if node.op in ("gt", "gte", "lt", "lte", "between"):
            return [tag_column(node.tag, "number")]
        values = list(node.values or []) if node.op in ("in", "all") else [node.value]
        out = [tag_column(node.tag, "text")] if any(not _is_number(v) for v in values) else []
        return [*out, tag_column(node.tag, "number")] if any(_is_number(v) for v in values) else out
    if isinstance(node, HasIdentifierLeaf):
        return [identifier_column(t) for t in node.id_types]
    if isinstance(node, RandomBucketLeaf):
        return [bucket_column(node.salt, node.buckets)]
    if isinstance(node, InAudienceLeaf):
        return [members_column(node.audience)]
    raise Unsupported(node.type)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def requirements(cond: Condition) -> list[ColumnSpec] | None:
    """The columns :func:`evaluate` needs (:data:`UNIVERSE` first), or None when a leaf needs SQL."""
    specs: dict[ColumnSpec, None] = {UNIVERSE: None}

    def collect(node: Condition) -> None:
        if isinstance(node, And | Or):
            for child in node.children:
                collect(child)
        elif isinstance(node, Not):
            collect(node.child)
        else:
            specs.update(dict.fromkeys(_leaf_columns(node)))

    try:
        collect(cond)
    except Unsupported:
        return None
    return list(specs)


# --- evaluation ----------------------------------------------------------------------------------------


def evaluate(cond: Condition, columns: Columns, ctx: EvalContext) -> BitMap | None:
    """The profiles (``profile_idx``) a resolved condition selects, or None when a leaf needs SQL.

    ``columns`` must hold what :func:`requirements` names. The result may hold indexes of profiles
    that are gone (rows other tables still have): intersect it with the universe to count.
    Never modifies a column.
    """
    if requirements(cond) is None:
        return None
    universe = columns[UNIVERSE]
    assert isinstance(universe, BitMap)
    return _Evaluator(columns, ctx, universe).node(cond).copy()  # the caller's to keep (or change)


def count_members(cond: Condition, ctx: EvalContext, store: AnalyticStore, columns: ProfileColumns) -> int | None:
    """How many profiles a resolved condition selects, from the in-memory columns; None = run the SQL."""
    if columns.store is not store:
        raise ValueError("the columns belong to another store")
    specs = requirements(cond)
    if specs is None:
        return None
    got = columns.get(specs)
    universe = got[UNIVERSE]
    assert isinstance(universe, BitMap)
    ev = _Evaluator(got, ctx, universe)
    if isinstance(cond, And):  # count the intersection without building the last difference
        positive, negative = ev.split(cond.children)
        base = ev.intersect([universe, *positive])
        return len(base) - base.intersection_cardinality(union(negative)) if negative else len(base)
    return ev.node(cond).intersection_cardinality(universe)


def _micros(value: datetime) -> int:
    return to_micros(value)


class _Evaluator:
    """Profile sets of nodes. A set it returns may be a column's own bitmap: nothing here changes
    one in place (only bitmaps just made by ``&``)."""

    def __init__(self, columns: Columns, ctx: EvalContext, universe: BitMap) -> None:
        self.columns, self.ctx, self.universe = columns, ctx, universe

    def index(self, spec: ColumnSpec) -> ValueIndex:
        col = self.columns[spec]
        assert isinstance(col, ValueIndex), spec.label
        return col

    def bitmap(self, spec: ColumnSpec) -> BitMap:
        col = self.columns[spec]
        assert isinstance(col, BitMap), spec.label
        return col

    # -- the tree ---------------------------------------------------------------------------------------
    def split(self, children: Sequence[Condition]) -> tuple[list[BitMap], list[BitMap]]:
        """Children of an ``and``: the sets of the plain ones, and the sets the negated ones negate."""
        positive, negative = [], []
        for child in children:
            inner = self.negated(child)
            if inner is not None:
                negative.append(self.node(inner))
            else:
                positive.append(self.node(child))
        return positive, negative

    @staticmethod
    def negated(node: Condition) -> Condition | None:
        """What a ``not`` or a negating operator (``neq not_in is_not_set``) negates, else None."""
        if isinstance(node, Not):
            return node.child
        if isinstance(node, AttributeLeaf) and node.op in NEGATIONS:
            return node.model_copy(update={"op": NEGATIONS[node.op]})
        if isinstance(node, TagLeaf) and node.op == "neq":
            return node.model_copy(update={"op": "eq"})
        return None

    @staticmethod
    def intersect(parts: list[BitMap]) -> BitMap:
        parts = sorted(parts, key=len)
        if len(parts) == 1:
            return parts[0]
        out = parts[0] & parts[1]
        for bm in parts[2:]:
            if not out:
                break
            out &= bm
        return out

    def node(self, node: Condition) -> BitMap:
        if isinstance(node, And):
            positive, negative = self.split(node.children)
            base = self.intersect(positive) if positive else self.universe
            return base - union(negative) if negative else base
        if isinstance(node, Or):
            return union([self.node(c) for c in node.children])
        inner = self.negated(node)
        if inner is not None:
            return self.universe - self.node(inner)
        return self.leaf(node)

    def leaf(self, node: Condition) -> BitMap:
        """The profiles a leaf without a negating operator selects."""
        if isinstance(node, AttributeLeaf):
            return self.attribute(node)
        if isinstance(node, TagLeaf):
            return self.tag(node)
        if isinstance(node, HasIdentifierLeaf):
            return union([self.bitmap(identifier_column(t)) for t in node.id_types])
        if isinstance(node, RandomBucketLeaf):
            ix = self.index(bucket_column(node.salt, node.buckets))
            return ix.profiles([ix.span(node.low, node.high, high_open=True)])
        if isinstance(node, InAudienceLeaf):
            return self.bitmap(members_column(node.audience))
        raise Unsupported(node.type)

    # -- attributes (tessera.compiler.values) -------------------------------------------------------------
    def attribute(self, leaf: AttributeLeaf) -> BitMap:
        op, reading, elements = _attribute_plan(leaf)
        spec = attribute_column(leaf.field, reading, elements)
        if spec is None:  # a reading the compiler never makes: FALSE
            return BitMap()
        if reading == "present":
            return self.bitmap(spec)
        ix = self.index(spec)
        v = leaf.value
        if reading == "number":
            return number_set(ix, op, v)
        if reading == "text":
            return text_set(ix, op, v)
        if reading == "bool":
            return ix.profiles([ix.span(int(bool(v)), int(bool(v)))])
        if reading == "time":
            return ix.profiles([self.time_span(ix, leaf)])
        return self.anniversary(ix, leaf)

    def time_span(self, ix: ValueIndex, leaf: AttributeLeaf) -> tuple[int, int]:
        ctx, v = self.ctx, leaf.value
        if leaf.op == "before":
            assert isinstance(v, date)
            return ix.span(None, _micros(ctx.to_utc(v)), high_open=True)
        if leaf.op == "after":
            assert isinstance(v, date)
            if isinstance(v, datetime):
                return ix.span(_micros(ctx.to_utc(v)), None, low_open=True)
            return ix.span(_micros(ctx.to_utc(v, end_of_day=True)), None)
        assert leaf.days is not None
        now, span = ctx.now_utc, timedelta(days=leaf.days)
        low, high = (now - span, now) if leaf.op == "within_last" else (now, now + span)
        return ix.span(_micros(low), _micros(high))

    def anniversary(self, ix: ValueIndex, leaf: AttributeLeaf) -> BitMap:
        span = self.ctx.anniversary_span(leaf.days if leaf.op == "anniversary_in_next" else None)
        if span is None:
            return ix.present
        first, last = span
        if first <= last:
            return ix.profiles([ix.span(first, last)])
        return ix.profiles([ix.span(None, last), ix.span(first, None)])

    # -- tags (tessera.compiler.lower.tag_predicate) ------------------------------------------------------
    def tag_equals(self, tag: str, values: Sequence[Scalar]) -> BitMap:
        """Profiles with a value of the tag equal to one of ``values``: text as text (a boolean as
        ``true``/``false``), numbers against the numeric value."""
        texts = [_tag_text(v) for v in values if not _is_number(v)]
        numbers = [v for v in values if _is_number(v)]
        parts = []
        if texts:
            parts.append(text_set(self.index(tag_column(tag, "text")), "in", texts))
        if numbers:
            parts.append(number_set(self.index(tag_column(tag, "number")), "in", numbers))
        return union(parts)

    def tag(self, leaf: TagLeaf) -> BitMap:
        op = leaf.op
        if op == "has":
            return self.index(tag_column(leaf.tag, "text")).present
        if op == "eq":
            assert leaf.value is not None
            return self.tag_equals(leaf.tag, [leaf.value])
        if op == "in":
            return self.tag_equals(leaf.tag, leaf.values or [])
        if op == "all":
            return self.intersect([self.tag_equals(leaf.tag, [v]) for v in leaf.values or []])
        ix = self.index(tag_column(leaf.tag, "number"))
        return number_set(ix, op, leaf.values if op == "between" else leaf.value)


def _tag_text(v: Scalar) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def text_set(ix: ValueIndex, op: str, v: object) -> BitMap:
    """Profiles with a text value that ``eq`` / is ``in`` / ``contains`` / ``starts_with`` / matches ``v``."""
    if op == "eq":
        codes = ix.codes_of([str(v)])
    elif op == "in":
        assert isinstance(v, list)
        codes = ix.codes_of([str(x) for x in v])
    elif op in ("contains", "starts_with", "regex"):
        codes = ix.codes_matching(op, str(v))  # type: ignore[arg-type]
    else:
        raise AssertionError(f"text test {op}")  # pragma: no cover - the domain refuses the rest
    return ix.profiles(ix.code_spans(codes))


def number_set(ix: ValueIndex, op: str, v: object) -> BitMap:
    """Profiles with a numeric value satisfying ``op v`` (as DuckDB compares DOUBLEs: NaN is above all)."""
    if op in ("in", "between"):
        assert isinstance(v, list)
        nums = [float(x) for x in v]
        if op == "between":
            return BitMap() if any(math.isnan(x) for x in nums) else ix.profiles([ix.span(nums[0], nums[1])])
        return ix.profiles(_merge(sorted(ix.span(x, x) for x in nums if not math.isnan(x))))
    assert isinstance(v, int | float)
    x = float(v)
    if math.isnan(x):
        return BitMap()
    match op:
        case "eq":
            span = ix.span(x, x)
        case "gt":
            span = ix.span(x, None, low_open=True)
        case "gte":
            span = ix.span(x, None)
        case "lt":
            span = ix.span(None, x, high_open=True)
        case "lte":
            span = ix.span(None, x)
        case _:  # pragma: no cover - the domain refuses the rest
            raise AssertionError(f"number test {op}")
    return ix.profiles([span])


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in spans:
        if a >= b:
            continue
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out
