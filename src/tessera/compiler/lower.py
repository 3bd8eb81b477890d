"""Phase 2, lower (降为 SQL 谓词): a resolved condition → a SQLGlot predicate over the profile.

The predicate reads ``profiles AS p LEFT JOIN profile_attributes AS a ON a.profile_idx =
p.profile_idx`` and is TRUE or FALSE for every profile (never NULL), so ``NOT`` is plain negation.
Attribute leaves read columns of ``p``/``a`` or keys of ``a.traits``; every other leaf is a
semi-join ``p.profile_idx IN (SELECT … )`` the way a person writes it by hand, and a count or total
that zero satisfies is ``NOT IN`` the profiles that fail it (subqueries never yield a NULL). Every user
value is a placeholder of :class:`Params`; dialect-specific pieces are :mod:`nodes` for
:mod:`render`. With ``scope`` (explain), every subquery reads one profile only.
"""

from __future__ import annotations

from sqlglot import exp

from tessera.compiler import nodes
from tessera.compiler.behaviour import Env, Measure, event_measure, order_measure, profile_col
from tessera.compiler.values import Source, value_test
from tessera.domain.conditions import (
    COMPUTED_FIELDS,
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
    RandomBucketLeaf,
    TagLeaf,
)

#: The profile table alias and the profile attributes alias the predicate reads.
PROFILE, ATTRIBUTES = "p", "a"
#: Computed fields held by ``profiles`` (the rest are columns of ``profile_attributes``).
_PROFILE_COLUMNS = {"profile_id", "created_at"}
_FIELD_KINDS = {"text": "text", "timestamp": "timestamp", "list": "list"}
_DECIMAL_FIELDS = {"total_spend"}


def lower(cond: Condition, env: Env) -> exp.Expr:
    """The predicate of a resolved condition (in_audience leaves left are membership reads)."""
    if isinstance(cond, And):
        return exp.and_(*(lower(c, env) for c in cond.children), copy=False)
    if isinstance(cond, Or):
        return exp.or_(*(lower(c, env) for c in cond.children), copy=False)
    if isinstance(cond, Not):
        return exp.not_(lower(cond.child, env), copy=False)
    return lower_leaf(cond, env)


def lower_leaf(leaf: Leaf, env: Env) -> exp.Expr:
    if isinstance(leaf, AttributeLeaf):
        return value_test(attribute_source(leaf), leaf, env.ctx, env.params)
    if isinstance(leaf, TagLeaf):
        return tag_predicate(leaf, env)
    if isinstance(leaf, EventLeaf):
        return semi_join(event_measure(leaf, env), env)
    if isinstance(leaf, OrderLeaf):
        return semi_join(order_measure(leaf, env), env)
    if isinstance(leaf, InAudienceLeaf):
        return _member_of(audience_rows(leaf, env))
    if isinstance(leaf, HasIdentifierLeaf):
        return _member_of(identifier_rows(leaf, env))
    return bucket_predicate(leaf, env)


def attribute_source(leaf: AttributeLeaf) -> Source:
    """Where an attribute leaf reads: a computed column of ``p``/``a`` or a key of ``a.traits``."""
    key = leaf.trait_key
    if key is not None:
        return Source("json", exp.column("traits", table=ATTRIBUTES), key=key)
    table = PROFILE if leaf.field in _PROFILE_COLUMNS else ATTRIBUTES
    column = exp.column(leaf.field, table=table)
    kind = COMPUTED_FIELDS[leaf.field]
    if kind == "number":
        return Source("decimal" if leaf.field in _DECIMAL_FIELDS else "integer", column)
    return Source(_FIELD_KINDS[kind], column)  # type: ignore[arg-type]


def _member_of(rows: exp.Select) -> exp.Expr:
    return exp.In(this=exp.column("profile_idx", table=PROFILE), query=rows.subquery())


def _scoped(column: exp.Column, env: Env, where: list[exp.Expr]) -> list[exp.Expr]:
    if env.scope is None:
        return where
    return [column.eq(exp.Literal.number(env.scope)), *where]


def semi_join(m: Measure, env: Env) -> exp.Expr:
    """``IN`` the profiles whose rows pass the measure, or ``NOT IN`` those that fail it when a
    profile without rows passes (the rows' ``l.profile_idx IS NOT NULL`` keeps both two-valued)."""
    if m.groups == "all" and m.zero:
        return exp.true()
    if m.groups == "none" and not m.zero:
        return exp.false()
    rows = m.rows.copy()  # its profile column is never NULL (see behaviour._rows)
    if m.groups == "some":
        having = exp.not_(m.test.copy(), copy=False) if m.zero else m.test.copy()
        rows = rows.group_by(m.profile.copy(), copy=False).having(having, copy=False)
    inside = _member_of(rows)
    return exp.not_(inside, copy=False) if m.zero else inside


# -- tags ----------------------------------------------------------------------------------------
def tag_source(leaf: TagLeaf, env: Env) -> tuple[exp.Expr, list[exp.Expr]]:
    """Where a tag leaf's values are, as ``t`` (profile_idx, value, value_num), and its conditions.

    Now: ``profile_tags AS t WHERE t.tag_key = $key``. With ``on``: the history — per (profile,
    value), the latest change before the end of that day (by run) is an addition."""
    key = env.params.add(leaf.tag)
    cutoff = leaf.cutoff(env.ctx)
    if cutoff is None:
        return exp.to_table("profile_tags").as_("t"), [exp.column("tag_key", table="t").eq(key)]
    h = ("profile_idx", "value", "value_num")
    latest = exp.ArgMax(this=exp.column("added", table="h"), expression=exp.column("run_no", table="h"))
    held = (
        exp.select(*(exp.column(c, table="h") for c in h), copy=False)
        .from_(exp.to_table("tag_changes").as_("h"), copy=False)
        .where(
            exp.column("tag_key", table="h").eq(key),
            exp.LT(this=exp.column("changed_at", table="h"), expression=env.params.add(cutoff.replace(tzinfo=None))),
            copy=False,
        )
        .group_by(*(exp.column(c, table="h") for c in h), copy=False)
        .having(latest, copy=False)
    )
    return held.subquery("t"), []


def _tag_rows(leaf: TagLeaf, env: Env) -> exp.Select:
    """``SELECT t.profile_idx FROM profile_tags AS t WHERE t.tag_key = $key`` (add the value test)."""
    source, where = tag_source(leaf, env)
    conds = _scoped(profile_col("t"), env, where)
    select = exp.select(profile_col("t"), copy=False).from_(source, copy=False)
    return select.where(*conds, copy=False) if conds else select


def _tag_value(value: object, env: Env) -> exp.Expr:
    """A tag value equals ``value``: text against ``value``, a number against ``value_num``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return exp.column("value_num", table="t").eq(env.params.add(float(value)))
    return exp.column("value", table="t").eq(env.params.add(_text(value)))


def _text(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _split(values: list[str | int | float | bool]) -> tuple[list[str], list[float]]:
    texts = [_text(v) for v in values if not (isinstance(v, int | float) and not isinstance(v, bool))]
    numbers = [float(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    return list(dict.fromkeys(texts)), list(dict.fromkeys(numbers))


def tag_predicate(leaf: TagLeaf, env: Env) -> exp.Expr:
    """The profile's current tag values: has / in / all / eq / neq / numeric comparisons."""
    op, num = leaf.op, exp.column("value_num", table="t")
    if op == "neq":
        return exp.not_(tag_predicate(leaf.model_copy(update={"op": "eq"}), env), copy=False)
    if op == "has":
        return _member_of(_tag_rows(leaf, env))
    if op == "eq":
        return _member_of(_tag_rows(leaf, env).where(_tag_value(leaf.value, env), copy=False))
    if op == "in" or op == "all":
        assert leaf.values is not None
        rows = _tag_rows(leaf, env)
        # texts against value, numbers against value_num: (column, list placeholder, how many)
        texts, numbers = _split(leaf.values)
        lists = [(c, env.params.add(vs), len(vs)) for c, vs in (("value", texts), ("value_num", numbers)) if vs]
        any_of = [nodes.InValues(this=exp.column(c, table="t"), expression=ph) for c, ph, _ in lists]
        rows = rows.where(exp.or_(*any_of, copy=False), copy=False)
        if op == "in":
            return _member_of(rows)
        # every one of the values: as many distinct matching texts and numbers as were asked for
        having: list[exp.Expr] = []
        for column, ph, wanted in lists:
            col = exp.column(column, table="t")
            matched = exp.Count(this=exp.Distinct(expressions=[col]))
            listed = exp.ArrayContains(this=ph.copy(), expression=col.copy())
            filtered = exp.Filter(this=matched, expression=exp.Where(this=listed))
            having.append(filtered.eq(exp.Literal.number(wanted)))
        return _member_of(rows.group_by(profile_col("t"), copy=False).having(exp.and_(*having), copy=False))
    if op == "between":
        assert leaf.values is not None
        low, high = (float(v) for v in leaf.values)
        rows = _tag_rows(leaf, env)
        return _member_of(
            rows.where(exp.Between(this=num, low=env.params.add(low), high=env.params.add(high)), copy=False)
        )
    cmp = {"gt": exp.GT, "gte": exp.GTE, "lt": exp.LT, "lte": exp.LTE}[op]
    rows = _tag_rows(leaf, env)
    return _member_of(rows.where(cmp(this=num, expression=env.params.add(float(leaf.value))), copy=False))  # type: ignore[arg-type]


# -- membership, identifiers, buckets ------------------------------------------------------------
def audience_rows(leaf: InAudienceLeaf, env: Env) -> exp.Select:
    """The stored members of a static or imported audience, as the profiles they are now (a member
    merged into another profile since counts as that profile: ``audience_members_current``)."""
    conds = _scoped(profile_col("m"), env, [exp.column("audience_id", table="m").eq(env.params.add(leaf.audience))])
    return (
        exp.select(profile_col("m"), copy=False)
        .from_(exp.to_table("audience_members_current").as_("m"), copy=False)
        .where(*conds, copy=False)
    )


def identifier_rows(leaf: HasIdentifierLeaf, env: Env) -> exp.Select:
    """Profiles holding an identifier of one of the types."""
    types = nodes.InValues(
        this=exp.column("id_type", table="i"), expression=env.params.add(list(dict.fromkeys(leaf.id_types)))
    )
    conds = _scoped(profile_col("i"), env, [types])
    return (
        exp.select(profile_col("i"), copy=False)
        .from_(exp.to_table("profile_identifiers").as_("i"), copy=False)
        .where(*conds, copy=False)
    )


def bucket(leaf: RandomBucketLeaf, env: Env) -> exp.Expr:
    """``int(md5(profile_id || ':' || salt)[:8], 16) % buckets``."""
    text = exp.Concat(
        expressions=[exp.column("profile_id", table=PROFILE), exp.Literal.string(":"), env.params.add(leaf.salt)]
    )
    return nodes.Bucket(this=text, expression=env.params.add(leaf.buckets))


def bucket_predicate(leaf: RandomBucketLeaf, env: Env) -> exp.Expr:
    """``low <= bucket < high`` (whole numbers: ``BETWEEN low AND high - 1``)."""
    return exp.Between(this=bucket(leaf, env), low=env.params.add(leaf.low), high=env.params.add(leaf.high - 1))
