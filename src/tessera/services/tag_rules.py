"""Rule tags (规则标签): ordered (value, condition) pairs computed in one pass over the profiles.

Every condition compiles through :mod:`tessera.compiler` like an audience's. A single-valued tag
becomes ``CASE WHEN c1 THEN v1 WHEN c2 THEN v2 … END`` (first match wins); a multi-valued one a
boolean column per rule (each match adds its value). All rule tags of a run share one ``SELECT``
over ``profiles`` (joined to ``profile_attributes`` when a condition reads it) into a wide temp
table, which is then unpivoted into the run's ``(tag_key, profile_idx, value)`` rows.

Rule tags that read other rule tags run after them (:func:`layers`); the catalogue refuses cycles.
Tags whose conditions read a profile's own events are re-evaluated for the profiles whose events
were just loaded (:func:`reacts_to_events`, :class:`tessera.services.tag_reactor.TagReactor`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import duckdb
import numpy as np
from pyroaring import BitMap
from sqlglot import exp

from tessera.compiler import CompileContext, resolve
from tessera.compiler.columnar import UNIVERSE, evaluate, requirements
from tessera.compiler.lower import ATTRIBUTES, PROFILE
from tessera.compiler.query import Params, run
from tessera.compiler.statements import compile_predicate, reads_attributes
from tessera.domain.conditions import EventLeaf, InAudienceLeaf, TagLeaf, leaves
from tessera.domain.tags import Tag
from tessera.services.audiences import StoreResolver
from tessera.services.tag_runs import ComputeContext
from tessera.services.tag_values import grouped
from tessera.stores.profile_columns import bitmap_of

WIDE = "_tag_wide"


def _reads(tag: Tag) -> set[str]:
    return {leaf.tag for _, c in tag.rule_conditions() for _, leaf in leaves(c) if isinstance(leaf, TagLeaf)}


def layers(tags: Sequence[Tag]) -> list[list[Tag]]:
    """The tags in runs such that a tag reading another of them comes after it (stable order)."""
    left = {t.key: t for t in tags}
    out: list[list[Tag]] = []
    while left:
        ready = [t for t in left.values() if not (_reads(t) & (left.keys() - {t.key}))]
        if not ready:  # a cycle the catalogue should have refused: run the rest together
            ready = list(left.values())
        out.append(ready)
        for t in ready:
            del left[t.key]
    return out


def reacts_to_events(tag: Tag) -> bool:
    """Whether new events of a profile can change this rule tag's value for that profile alone:
    a condition reads events, and none reads other audiences (their members move on refresh)."""
    kinds = [leaf for _, c in tag.rule_conditions() for _, leaf in leaves(c)]
    return any(isinstance(leaf, EventLeaf) for leaf in kinds) and not any(
        isinstance(leaf, InAudienceLeaf) for leaf in kinds
    )


def wide_select(tags: Sequence[Tag], ctx: CompileContext, params: Params, *, scope: str | None = None) -> tuple[exp.Select, list[tuple[str, str, list[str]]]]:  # fmt: skip
    """``SELECT p.profile_idx, <one column per single-valued tag or per multi-valued rule> FROM profiles p …``
    and the plan: (tag key, column, values). A single-valued tag's column holds the index of the
    first rule that matches (its value: ``values[index]``); a multi-valued rule's column is a boolean."""
    columns: list[exp.Expr] = [exp.column("profile_idx", table=PROFILE)]
    plan: list[tuple[str, str, list[str]]] = []
    attributes = False
    for i, tag in enumerate(tags):
        rules = tag.rule_conditions()
        if tag.multi:
            for j, (value, cond) in enumerate(rules):
                pred = compile_predicate(cond, ctx, params)
                attributes = attributes or reads_attributes(pred)
                columns.append(exp.alias_(pred, f"c{i}_{j}"))
                plan.append((tag.key, f"c{i}_{j}", [value]))
        else:
            case = exp.Case()
            for j, (_, cond) in enumerate(rules):
                pred = compile_predicate(cond, ctx, params)
                attributes = attributes or reads_attributes(pred)
                case = case.when(pred, exp.Literal.number(j), copy=False)
            columns.append(exp.alias_(case, f"c{i}"))
            plan.append((tag.key, f"c{i}", [v for v, _ in rules]))
    select = exp.select(*columns, copy=False).from_(exp.to_table("profiles").as_(PROFILE), copy=False)
    if attributes:
        on = exp.column("profile_idx", table=ATTRIBUTES).eq(exp.column("profile_idx", table=PROFILE))
        select = select.join(exp.to_table("profile_attributes").as_(ATTRIBUTES), on=on, join_type="LEFT", copy=False)
    if scope is not None:
        inside = exp.select("profile_idx").from_(scope)
        select = select.where(exp.column("profile_idx", table=PROFILE).isin(query=inside), copy=False)
    return select, plan


def compute(cur: duckdb.DuckDBPyConnection, tags: Sequence[Tag], ctx: ComputeContext) -> dict[str, dict[str, Any]]:
    """Every rule tag's values as bitmaps (into ``ctx.produced``).

    Tags whose conditions the in-memory columns can answer (attributes, tags, identifiers,
    buckets, stored members) are evaluated there — set operations over columns kept warm between
    runs; the others share one compiled SQL pass over the profiles."""
    with ctx.inst.operational.session() as s:
        cctx = CompileContext(eval=ctx.eval, audiences=StoreResolver(s))
        resolved = {t.key: [(v, resolve(c, cctx)) for v, c in t.rule_conditions()] for t in tags}
        in_memory = [t for t in tags if all(requirements(c) is not None for _, c in resolved[t.key])]
        by_sql = [t for t in tags if t not in in_memory]
        params = Params()
        select, plan = wide_select(by_sql, cctx, params, scope=ctx.scope) if by_sql else (None, [])
    scope = _scope(cur, ctx.scope)
    engine: dict[str, str] = {}
    if in_memory:
        specs: dict[Any, None] = {}
        for t in in_memory:
            for _, c in resolved[t.key]:
                specs.update(dict.fromkeys(requirements(c) or ()))
        cols = ctx.inst.profile_columns.get(list(specs))
        universe = cols[UNIVERSE]
        assert isinstance(universe, BitMap)
        base = universe & scope if scope is not None else universe
        for t in in_memory:
            values: dict[str, BitMap] = {}
            left = base.copy()
            for value, cond in resolved[t.key]:
                hit = evaluate(cond, cols, ctx.eval) or BitMap()
                hit &= base if t.multi else left
                if not t.multi:
                    left -= hit
                values[value] = values[value] | hit if value in values else hit
            ctx.produced[t.key] = values
            engine[t.key] = "columns"
    if select is not None:
        create = exp.Create(
            this=exp.to_table(WIDE), kind="TABLE", expression=select, replace=True,
            properties=exp.Properties(expressions=[exp.TemporaryProperty()]),
        )  # fmt: skip
        run(cur, create, params.values)
        try:
            for key, column, labels in plan:
                out = ctx.produced.setdefault(key, {})
                if len(labels) == 1 and any(t.key == key and t.multi for t in by_sql):
                    got = cur.execute(f"SELECT profile_idx FROM {WIDE} WHERE {column}").fetchnumpy()  # noqa: S608 - generated names
                    bm = bitmap_of(np.sort(got["profile_idx"]))
                    out[labels[0]] = out[labels[0]] | bm if labels[0] in out else bm
                    continue
                got = cur.execute(
                    f"SELECT CAST({column} AS SMALLINT) AS r, profile_idx FROM {WIDE} WHERE {column} IS NOT NULL"  # noqa: S608 - generated names
                ).fetchnumpy()
                for rule, bm in grouped(got["r"], got["profile_idx"]):
                    v = labels[rule]
                    out[v] = out[v] | bm if v in out else bm
                engine[key] = "sql"
        finally:
            cur.execute(f"DROP TABLE IF EXISTS {WIDE}")
        for t in by_sql:
            engine[t.key] = "sql"
    return {t.key: {"rules": len(t.rules or ()), "pass_tags": len(tags), "engine": engine[t.key]} for t in tags}


def _scope(cur: duckdb.DuckDBPyConnection, table: str | None) -> BitMap | None:
    if table is None:
        return None
    got = cur.execute(f"SELECT profile_idx FROM {table}").fetchnumpy()  # noqa: S608 - fixed names
    return bitmap_of(np.sort(got["profile_idx"]))
