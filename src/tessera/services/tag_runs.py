"""Computing tags (标签计算): runs on demand, on a schedule and as events arrive.

A run takes tags of one kind (one model, for model tags), has their computer fill ``_tag_new``
with ``(tag_key, profile_idx, value)`` on a cursor of its own — reading a consistent snapshot while
ingestion goes on — then swaps the values in with :func:`tag_values.swap` in one transaction.
A computer that raises records a failed run and changes nothing.

Computers: ``rule`` (:mod:`tessera.services.tag_rules`), ``sql`` (:mod:`tessera.services.sql_tags`)
and ``model:<name>`` (:mod:`tessera.tagmodels`). Static tags are not computed: their bulk changes
are recorded as runs by :func:`assign`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
from croniter import croniter
from sqlalchemy import select

from tessera.domain.conditions import EvalContext
from tessera.domain.tags import Tag
from tessera.runtime import Instance
from tessera.services import tag_values
from tessera.services.tag_catalogue import CatalogueError, get_tag, tag_from_row
from tessera.services.tag_values import NEW, SCOPE, Bitmaps, RunResult, TagRunError
from tessera.stores.models import TagDefinitionRow


@dataclass(frozen=True)
class ComputeContext:
    """What a computer gets besides the tags: the instance, the time, and where to write."""

    inst: Instance
    now: datetime  # aware UTC, from the injected clock
    eval: EvalContext  # now + the workspace time zone (what conditions are evaluated against)
    trigger: str  # manual | schedule | events | preview
    #: profiles to compute (a temp table on the cursor with a profile_idx column), None = everyone
    scope: str | None = None
    #: update from stored state instead of recomputing everything (models that support it)
    incremental: bool = False
    target: str = NEW
    #: a computer may put a tag's values here as bitmaps (value -> profiles) instead of rows
    produced: Bitmaps = field(default_factory=dict)


#: compute(cur, tags, ctx) -> {tag_key: details recorded on its run}
Computer = Callable[[duckdb.DuckDBPyConnection, Sequence[Tag], ComputeContext], dict[str, dict[str, Any]]]
_COMPUTERS: dict[str, str] = {"rule": "tessera.services.tag_rules", "sql": "tessera.services.sql_tags"}


def computer_for(tag: Tag) -> tuple[str, Computer]:
    """(group, computer): tags of one group are computed together."""
    if tag.kind == "model":
        from tessera.tagmodels import model_params, models

        assert tag.model is not None
        spec = models()[tag.model.name]

        def compute(cur: duckdb.DuckDBPyConnection, tags: Sequence[Tag], ctx: ComputeContext) -> dict[str, Any]:
            pairs = [(t, model_params(t.model)) for t in tags if t.model is not None]
            return spec.compute(cur, pairs, ctx)

        return f"model:{spec.name}", compute
    if tag.kind in _COMPUTERS:
        module = importlib.import_module(_COMPUTERS[tag.kind])
        return tag.kind, module.compute
    raise CatalogueError(422, "kind", f"tag {tag.key!r} is static: its values are set, not computed")


def context(inst: Instance, *, trigger: str, scope: str | None = None, incremental: bool = False) -> ComputeContext:
    now = inst.clock.now()
    return ComputeContext(
        inst=inst, now=now, eval=EvalContext(now=now, timezone=inst.settings.timezone), trigger=trigger,
        scope=scope, incremental=incremental,
    )  # fmt: skip


def load_tags(inst: Instance, keys: Sequence[str]) -> list[Tag]:
    with inst.operational.session() as s:
        return [get_tag(session=s, key=k) for k in keys]


def run_tags(
    inst: Instance,
    tags: Sequence[Tag],
    *,
    trigger: str = "manual",
    incremental: bool = False,
    scope: Sequence[int] | None = None,
) -> list[RunResult]:
    """Compute ``tags`` and swap their values in, group by group (a group = one computer pass).

    Rule tags that read other rule tags of the same call run after them. ``scope``: only these
    profiles (the event-driven re-evaluation)."""
    results: list[RunResult] = []
    for group in _groups(tags):
        results.extend(_run_group(inst, group, trigger=trigger, incremental=incremental, scope=scope))
    return results


def _groups(tags: Sequence[Tag]) -> list[list[Tag]]:
    from tessera.services.tag_rules import layers

    by: dict[str, list[Tag]] = {}
    for t in tags:
        by.setdefault(computer_for(t)[0], []).append(t)
    out: list[list[Tag]] = []
    for name, group in by.items():
        if name == "rule":
            out.extend(layers(group))
        elif name == "sql":  # each its own statement: one failing does not fail the others
            out.extend([t] for t in group)
        else:
            out.append(group)
    return out


def _run_group(
    inst: Instance, tags: list[Tag], *, trigger: str, incremental: bool, scope: Sequence[int] | None
) -> list[RunResult]:
    _, compute = computer_for(tags[0])
    store = inst.analytic
    cur = store.cursor()
    started = inst.clock.now()
    try:
        tag_values.create_new_table(cur)
        if scope is not None:
            tag_values.create_scope_table(cur, scope)
        ctx = context(inst, trigger=trigger, scope=SCOPE if scope is not None else None, incremental=incremental)
        try:
            details = compute(cur, tags, ctx)
            with store.transaction(cur) as tx:
                return tag_values.swap(tx, tags, trigger=trigger, started_at=started, now=inst.clock.now(),
                                       scoped=scope is not None, details=details, produced=ctx.produced)  # fmt: skip
        except (TagRunError, duckdb.Error) as e:
            with store.transaction(cur) as tx:
                return tag_values.record_failure(tx, tags, trigger=trigger, started_at=started,
                                                 now=inst.clock.now(), error=str(e))  # fmt: skip
    finally:
        cur.close()


def run_keys(inst: Instance, keys: Sequence[str], **kw: Any) -> list[RunResult]:
    return run_tags(inst, load_tags(inst, keys), **kw)


# -- schedules --------------------------------------------------------------------------------------
def next_run_at(tag: Tag, *, inst: Instance, last: datetime | None) -> datetime | None:
    """When a scheduled tag runs next: the first cron time after its last scheduled or manual run
    (after its definition's last change when it never ran), in the workspace time zone."""
    if not tag.schedule or tag.status != "active" or tag.kind == "static":
        return None
    after = (last or tag.updated_at).astimezone(context(inst, trigger="schedule").eval.zone)
    nxt: datetime = croniter(tag.schedule, after).get_next(datetime)
    return nxt


def last_runs(inst: Instance) -> dict[str, datetime]:
    """Each tag's last scheduled or manual run (start), for the schedule."""
    rows = (
        inst.analytic.cursor()
        .execute(
            "SELECT tag_key, max(started_at) FROM tag_runs WHERE trigger IN ('schedule', 'manual') GROUP BY tag_key"
        )
        .fetchall()
    )
    from tessera.clock import as_utc

    return {k: as_utc(t) for k, t in rows}


def due(inst: Instance) -> list[Tag]:
    """Active computed tags whose schedule has come round."""
    now = inst.clock.now()
    last = last_runs(inst)
    with inst.operational.session() as s:
        rows = s.scalars(select(TagDefinitionRow).where(TagDefinitionRow.status == "active")).all()
        tags = [tag_from_row(r) for r in rows]
    out = []
    for t in tags:
        nxt = next_run_at(t, inst=inst, last=last.get(t.key))
        if nxt is not None and nxt <= now:
            out.append(t)
    return out


def run_due(inst: Instance) -> list[RunResult]:
    """Run every due tag (the scheduler's tick); all due rule tags share one pass."""
    tags = due(inst)
    return run_tags(inst, tags, trigger="schedule", incremental=True) if tags else []


# -- preview and quality ----------------------------------------------------------------------------
def preview(inst: Instance, body: dict[str, Any], *, limit: int = 100) -> dict[str, Any]:
    """Compute a tag definition that is not saved (or changed) and show what it would give:
    profiles with a value, the distribution, and the first ``limit`` (profile id, value) rows."""
    from tessera.services.tag_catalogue import check_draft

    filler = {"key": "preview", "name": "预览", "name_en": "Preview", "category": "basic"}
    with inst.operational.session() as s:
        draft = check_draft(session=s, body={**filler, **body})
    now = inst.clock.now()
    tag = Tag.model_validate({**draft.model_dump(), "version": 0, "created_at": now, "updated_at": now})
    _, compute = computer_for(tag)
    cur = inst.analytic.cursor()
    try:
        tag_values.create_new_table(cur)
        try:
            ctx = context(inst, trigger="preview")
            compute(cur, [tag], ctx)
            tag_values.write_new(cur, ctx.produced)
        except (TagRunError, duckdb.Error) as e:
            raise CatalogueError(422, "sql" if tag.kind == "sql" else "definition", str(e)) from None
        rows = cur.execute(
            f"""SELECT p.profile_id, n.value FROM {NEW} n JOIN profiles p USING (profile_idx)
            ORDER BY p.profile_id, n.value LIMIT $lim""",  # noqa: S608 - fixed names
            {"lim": limit},
        ).fetchall()
        (holders, total_rows) = cur.execute(f"SELECT count(DISTINCT profile_idx), count(*) FROM {NEW}").fetchall()[0]  # noqa: S608
        dist = cur.execute(
            f"SELECT value, count(*) AS n FROM {NEW} GROUP BY value ORDER BY n DESC, value LIMIT 50"  # noqa: S608
        ).fetchall()
        profiles = int(cur.execute("SELECT count(*) FROM profiles").fetchall()[0][0])
    finally:
        cur.close()
    return {
        "profiles": profiles,
        "holders": int(holders),
        "rows": int(total_rows),
        "coverage": holders / profiles if profiles else 0.0,
        "values": [{"value": v, "profiles": int(n)} for v, n in dist],
        "sample": [{"profile_id": p, "value": v} for p, v in rows],
    }


def quality(inst: Instance, tag: Tag) -> dict[str, Any]:
    """Coverage, value distribution, the last run, where the tag is used, and the low-coverage flag."""
    return qualities(inst, [tag])[0]


def qualities(inst: Instance, tags: Sequence[Tag]) -> list[dict[str, Any]]:
    """:func:`quality` of several tags; the runs and the definitions that use them are read once."""
    from tessera.clock import as_utc
    from tessera.services.tag_catalogue import tags_usage

    with inst.operational.session() as s:
        used = tags_usage(session=s, keys=[t.key for t in tags])
    last = last_runs(inst)
    cur = inst.analytic.cursor()
    try:
        computed = dict(cur.execute("SELECT tag_key, max(finished_at) FROM tag_runs WHERE status = 'succeeded' "
                                    "GROUP BY tag_key").fetchall())  # fmt: skip
        out = []
        for tag in tags:
            cov = tag_values.coverage(cur, tag.key)
            latest = tag_values.runs(cur, tag.key, limit=1)
            threshold = tag.min_coverage if tag.min_coverage is not None else inst.settings.tags.min_coverage
            out.append({
                "key": tag.key, "name": tag.name, "name_en": tag.name_en, "kind": tag.kind, "status": tag.status,
                **cov,
                "min_coverage": threshold,
                "low_coverage": cov["coverage"] < threshold,
                "last_run": latest[0] if latest else None,
                "computed_at": as_utc(computed[tag.key]) if computed.get(tag.key) else None,
                "next_run_at": next_run_at(tag, inst=inst, last=last.get(tag.key)),
                "used_by": used[tag.key],
            })  # fmt: skip
    finally:
        cur.close()
    return out
