"""Audience insight (群组洞察) and explain (为什么在/不在这个群组里).

**Insight**: for an audience A and a comparison B (another audience, or everyone), the
distribution of chosen attributes and tags — per value: members of A with it, share in A, share in
B, and TGI = share A / share B × 100 (above 100: over-represented in A; the seeds' "churned vs.
paying users" comparison). Text attributes and tags are counted per value (a multi-valued tag
counts a person once per value, so shares may add up to more than 100 %); numeric attributes are
cut into five ranges at B's quintiles; a missing value is its own row (``value`` null).

**Explain**: for one profile, which leaves of a definition matched and with what values.
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import BaseModel, Field
from sqlglot import exp

from tessera.compiler import compile_explain
from tessera.compiler.projection import trait_text
from tessera.compiler.query import Params, Query, run
from tessera.domain.conditions import COMPUTED_FIELDS, leaves
from tessera.runtime import Instance
from tessera.services.audiences import (
    AudienceError,
    audience_row,
    check_definition,
    compile_context,
    members_of,
    temp_table,
)
from tessera.services.identity_rules import get_rules
from tessera.services.profile_view import ProfileViewError, find_profile

MAX_COLUMNS = 20


class ValueShare(BaseModel):
    value: str | None
    count: int
    share: float = Field(description="of the audience's members")
    base_count: int
    base_share: float = Field(description="of the comparison's members")
    tgi: float | None = Field(description="share / base_share × 100; null when the comparison has none")


class ColumnInsight(BaseModel):
    column: str
    values: list[ValueShare]


class Insight(BaseModel):
    audience_id: str
    compare_to: str = Field(description="'everyone' or an audience id")
    members: int
    base_members: int
    columns: list[ColumnInsight]


def _value_expr(column: str, params: Params) -> tuple[exp.Expr, bool]:
    """(text value of ``column`` over p/a, is numeric) — an attribute or a computed field."""
    kind = COMPUTED_FIELDS.get(column)
    if kind == "number":
        return exp.column(column, "a"), True
    if kind == "list":
        return exp.Unnest(expressions=[exp.column(column, "a")]), False
    if kind is not None:
        table = "p" if column in ("profile_id", "created_at") else "a"
        return exp.cast(exp.column(column, table), "VARCHAR"), False
    return trait_text(column.removeprefix("traits."), params), False


def _counts(members: str, column: str, params: Params) -> exp.Query:
    """``(value, count)`` of ``column`` over the profiles in temp table ``members``."""
    src = exp.alias_(exp.to_table(members), "m", table=True)
    if column.startswith("tag:"):
        key = params.add(column[4:])
        tags = (
            exp.select(exp.column("profile_idx"), exp.column("value"))
            .from_("profile_tags")
            .where(exp.column("tag_key").eq(key))
        )
        return (
            exp.select(exp.column("value", "t").as_("v"), exp.Count(this=exp.Star()).as_("n"))
            .from_(src)
            .join(tags.subquery("t"), on="t.profile_idx = m.profile_idx", join_type="left")
            .group_by("v")
        )
    value, _ = _value_expr(column, params)
    return (
        exp.select(value.as_("v"), exp.Count(this=exp.Star()).as_("n"))
        .from_(src)
        .join(exp.alias_(exp.to_table("profiles"), "p"), on="p.profile_idx = m.profile_idx")
        .join(exp.alias_(exp.to_table("profile_attributes"), "a"), on="a.profile_idx = m.profile_idx", join_type="left")
        .group_by("v")
    )


def _numeric_counts(column: str, params: Params, cur: Any) -> tuple[exp.Query, exp.Query]:
    """Counts per range for a numeric attribute, cut at the comparison's quintiles."""
    col = exp.column(column, "a")

    def over(members: str) -> exp.Select:
        return (
            exp.select(col.as_("x"))
            .from_(exp.alias_(exp.to_table(members), "m", table=True))
            .join(
                exp.alias_(exp.to_table("profile_attributes"), "a"),
                on="a.profile_idx = m.profile_idx",
                join_type="left",
            )
        )

    q = exp.select(exp.func("quantile_disc", exp.column("x"), exp.Array(expressions=[
        exp.Literal.number(f) for f in (0.2, 0.4, 0.6, 0.8)]))).from_(over("_ins_b").subquery("s"))  # fmt: skip
    edges = [float(e) for e in (Query(q, params.values).execute(cur)[0][0] or [])]
    edges = sorted(set(edges))
    cases = exp.Case()
    lower: float | None = None
    for edge in edges:
        text = f"< {edge:g}" if lower is None else f"{lower:g} – {edge:g}"
        cases = cases.when(exp.LT(this=exp.column("x"), expression=params.add(edge)), params.add(text))
        lower = edge
    cases = cases.else_(params.add(f">= {lower:g}" if lower is not None else "all"))
    label = exp.Case().when(exp.column("x").is_(exp.null()), exp.null()).else_(cases)

    def counted(members: str) -> exp.Query:
        return (
            exp.select(label.as_("v"), exp.Count(this=exp.Star()).as_("n"))
            .from_(over(members).subquery("s"))
            .group_by("v")
        )

    return counted("_ins_a"), counted("_ins_b")


def insight(*, inst: Instance, audience_id: str, columns: list[str], compare_to: str = "everyone",
            top: int = 20) -> Insight:  # fmt: skip
    """Distributions of ``columns`` (attributes, ``traits.<key>`` or ``tag:<key>``) in the audience vs. ``compare_to``."""
    if not columns:
        raise AudienceError(422, "columns", "name at least one attribute or tag:<key>")
    if len(columns) > MAX_COLUMNS:
        raise AudienceError(422, "columns", f"at most {MAX_COLUMNS} columns")
    for c in columns:
        if not c.strip() or len(c) > 200:
            raise AudienceError(422, "columns", f"not a column name: {c!r}")
    cur = inst.analytic.cursor()  # temp tables live on this cursor; nothing shared is written
    try:
        for name, aud in (("_ins_a", audience_id), ("_ins_b", None if compare_to == "everyone" else compare_to)):
            params = Params()
            if aud is None:
                tree: exp.Query = exp.select("profile_idx").from_("profiles")
            else:
                with members_of(inst=inst, audience_id=aud, params=params) as m:
                    tree = m.tree
            distinct = exp.select("profile_idx").distinct().from_(tree.subquery("s"))
            run(cur, temp_table(name, distinct), params.values)
        size_a = int(cur.execute("SELECT count(*) FROM _ins_a").fetchall()[0][0])
        size_b = int(cur.execute("SELECT count(*) FROM _ins_b").fetchall()[0][0])
        out = []
        for column in columns:
            params = Params()
            if COMPUTED_FIELDS.get(column) == "number":
                qa, qb = _numeric_counts(column, params, cur)
            else:
                qa, qb = _counts("_ins_a", column, params), _counts("_ins_b", column, params)
            a = dict(Query(qa, params.values).execute(cur))
            b = dict(Query(qb, params.values).execute(cur))
            values = []
            for v in sorted(set(a) | set(b), key=lambda v: (-a.get(v, 0), -b.get(v, 0), v is None, str(v))):
                share = a.get(v, 0) / size_a if size_a else 0.0
                base = b.get(v, 0) / size_b if size_b else 0.0
                values.append(ValueShare(value=None if v is None else str(v), count=a.get(v, 0), share=round(share, 6),
                                         base_count=b.get(v, 0), base_share=round(base, 6),
                                         tgi=round(share / base * 100, 1) if base else None))  # fmt: skip
            out.append(ColumnInsight(column=column, values=values[:top]))
    finally:
        cur.close()
    return Insight(audience_id=audience_id, compare_to=compare_to, members=size_a, base_members=size_b, columns=out)


class LeafExplanation(BaseModel):
    path: str = Field(description="JSON path of the leaf in the definition")
    type: str
    leaf: dict[str, Any]
    matched: bool
    value: Any = Field(description="what was observed: the attribute, the count or sum, the tag values …")


class Explanation(BaseModel):
    profile_id: str
    matched: bool
    leaves: list[LeafExplanation]


def explain(*, inst: Instance, identifier: str | None = None, profile_id: str | None = None,
            audience_id: str | None = None, definition: Any = None) -> Explanation:  # fmt: skip
    """Which leaves matched for one profile (given by ``TYPE:VALUE`` or profile id), and on what values."""
    cur = inst.analytic.cursor()
    try:
        ref = find_profile(cur, rules=get_rules(inst.operational), identifier=identifier, profile_id=profile_id)
    except (ProfileViewError, ValueError) as e:
        raise AudienceError(422, getattr(e, "field", "identifier"), str(getattr(e, "message", e))) from None
    if ref is None:
        raise AudienceError(404, "profile", "no profile with that identifier or id")
    with inst.operational.session() as s:
        if audience_id is not None:
            row = audience_row(s, audience_id)
            if row.kind != "dynamic" or row.definition is None:
                raise AudienceError(
                    409, "audience", f"a {row.kind} audience has no definition to explain; see its members"
                )
            definition = row.definition
        cond = check_definition(definition, inst=inst, session=s)
        query = compile_explain(cond, compile_context(inst, s), profile_idx=ref.profile_idx)
    rows = query.execute(cur)
    if not rows:
        raise AudienceError(404, "profile", "the profile disappeared (merged) while explaining; try again")
    got = dict(zip(query.columns(), rows[0], strict=True))
    out = []
    for i, (path, leaf) in enumerate(leaves(cond)):
        raw = got.get(f"v{i}")
        value = orjson.loads(raw) if isinstance(raw, str) else raw
        out.append(LeafExplanation(path=path or "(root)", type=leaf.type, leaf=leaf.model_dump(mode="json", exclude_none=True),
                                   matched=bool(got.get(f"m{i}")), value=value))  # fmt: skip
    return Explanation(profile_id=ref.profile_id, matched=bool(got.get("matched")), leaves=out)
