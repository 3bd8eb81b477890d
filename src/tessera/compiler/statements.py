"""The statements of an audience (群组查询): its predicate, its members, its size.

``compile_*`` run the phases — :func:`resolve`, :func:`lower`, :func:`rewrite` — and return SQLGlot
trees with named placeholders; :meth:`Query.render` prints them for a dialect. The profile
attributes are joined only when the predicate reads them.
"""

from __future__ import annotations

from sqlglot import exp

from tessera.compiler.behaviour import Env
from tessera.compiler.context import CompileContext
from tessera.compiler.lower import ATTRIBUTES, PROFILE, lower
from tessera.compiler.query import Params, Query
from tessera.compiler.resolve import resolve
from tessera.compiler.rewrite import rewrite
from tessera.domain.conditions import Condition


def compile_predicate(cond: Condition, ctx: CompileContext, params: Params) -> exp.Expr:
    """The boolean predicate of ``cond`` over ``profiles AS p LEFT JOIN profile_attributes AS a``.

    TRUE or FALSE for every profile; usable in any SELECT over those two aliases (a rule tag's
    CASE WHEN, another audience). Raises :class:`CompileError` for unknown audiences and cycles.
    """
    return rewrite(lower(resolve(cond, ctx), Env(ctx.eval, params)))


def profiles_from(pred: exp.Expr, select: exp.Select) -> exp.Select:
    """``… FROM profiles AS p`` joined to ``profile_attributes AS a`` when ``pred`` reads it."""
    select = select.from_(exp.to_table("profiles").as_(PROFILE), copy=False)
    if reads_attributes(pred):
        on = exp.column("profile_idx", table=ATTRIBUTES).eq(exp.column("profile_idx", table=PROFILE))
        select = select.join(exp.to_table("profile_attributes").as_(ATTRIBUTES), on=on, join_type="LEFT", copy=False)
    return select


def reads_attributes(pred: exp.Expr) -> bool:
    """Whether the predicate reads a column of ``profile_attributes`` outside its own subqueries."""
    for col in pred.find_all(exp.Column):
        if col.table == ATTRIBUTES and not any(isinstance(a, exp.Subquery) for a in _ancestors(col, pred)):
            return True
    return False


def _ancestors(node: exp.Expr, root: exp.Expr) -> list[exp.Expr]:
    out = []
    parent = node.parent
    while parent is not None and parent is not root:
        out.append(parent)
        parent = parent.parent
    return out


def compile_members(cond: Condition, ctx: CompileContext, *, params: Params | None = None) -> Query:
    """``SELECT p.profile_idx, p.profile_id FROM profiles AS p … WHERE <predicate>``: the members."""
    params = params if params is not None else Params()
    pred = compile_predicate(cond, ctx, params)
    select = exp.select(exp.column("profile_idx", table=PROFILE), exp.column("profile_id", table=PROFILE), copy=False)
    return Query(profiles_from(pred, select).where(pred, copy=False), params.values)


def compile_count(cond: Condition, ctx: CompileContext, *, params: Params | None = None) -> Query:
    """``SELECT count(*) AS members FROM profiles AS p … WHERE <predicate>``: the audience's size."""
    params = params if params is not None else Params()
    pred = compile_predicate(cond, ctx, params)
    select = exp.select(exp.alias_(exp.Count(this=exp.Star()), "members"), copy=False)
    return Query(profiles_from(pred, select).where(pred, copy=False), params.values)
