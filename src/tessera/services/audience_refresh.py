"""Refreshing a dynamic audience (动态群组): store who is in now, record who entered and who left.

A refresh evaluates the definition, compares with the stored members and, in one analytic-store
transaction, writes the new members, one ``audience_changes`` row per person who entered or
exited, an ``audience_runs`` row, and the matching ``Audience Entered`` / ``Audience Exited``
events (system events: ``source_id`` 0, attached to the profile through one of its
observations, so journeys trigger on them like on any event). Readers never see half a refresh.

:func:`refresh_due` is the scheduler's tick: every active dynamic audience whose cron
``schedule`` has come round is refreshed, and its next time is set from the workspace time zone.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import select
from sqlglot import exp

from tessera.compiler import compile_members
from tessera.compiler.query import Params, run
from tessera.domain.conditions import parse_condition
from tessera.runtime import Instance
from tessera.services.audiences import AudienceError, audience_row, compile_context, next_run, temp_table
from tessera.services.background import Periodic
from tessera.stores.models import AudienceRow

ENTERED = "Audience Entered"
EXITED = "Audience Exited"
#: ``events.source_id`` of events Tessera itself emits.
SYSTEM_SOURCE_ID = 0


class RefreshResult(BaseModel):
    run_id: str
    audience_id: str
    members: int
    entered: int
    exited: int
    started_at: datetime
    finished_at: datetime


# Emits the run's changes as events; $-names are bound parameters.
_EMIT = """
INSERT INTO events (message_id, source_id, type, event_id, "timestamp", received_at, properties, identity_idx)
SELECT 'audience:' || c.run_id || ':' || c.change || ':' || c.profile_id, $source, 'track',
    CASE WHEN c.change = 'entered' THEN $entered_id ELSE $exited_id END, $now, $now,
    json_object('audience_id', c.audience_id, 'audience_name', $name, 'run_id', c.run_id), o.obs_idx
FROM audience_changes AS c
JOIN (
    SELECT profile_idx, min(obs_idx) AS obs_idx FROM identity_links
    WHERE profile_idx IN (SELECT profile_idx FROM audience_changes WHERE run_id = $run)
    GROUP BY profile_idx
) AS o ON o.profile_idx = c.profile_idx
WHERE c.run_id = $run
"""
# Audience Entered events go to the journeys' inbox when a journey reacts to them.
_INBOX = """
INSERT INTO journey_inbox (message_id, event_id, obs_idx, "timestamp", received_at, properties)
SELECT message_id, event_id, identity_idx, "timestamp", received_at, properties FROM events
WHERE received_at = $now AND source_id = $source AND event_id = $entered_id AND starts_with(message_id, $prefix)
"""
_CHANGES = """
INSERT INTO audience_changes
SELECT $aud, $run, n.profile_idx, n.profile_id, 'entered', $now FROM _refresh_new AS n
WHERE NOT EXISTS (SELECT 1 FROM audience_members AS m WHERE m.audience_id = $aud AND m.profile_idx = n.profile_idx)
UNION ALL
SELECT $aud, $run, m.profile_idx, m.profile_id, 'exited', $now FROM audience_members AS m
WHERE m.audience_id = $aud
  AND NOT EXISTS (SELECT 1 FROM _refresh_new AS n WHERE n.profile_idx = m.profile_idx)
"""
_KEEP = """
CREATE TEMP TABLE _refresh_keep AS
SELECT $aud, n.profile_idx, n.profile_id, coalesce(o.since, $now)
FROM _refresh_new AS n
LEFT JOIN (SELECT profile_idx, since FROM audience_members WHERE audience_id = $aud) AS o ON o.profile_idx = n.profile_idx
"""


def _event_id(cur: object, name: str) -> int:
    cur.execute("INSERT INTO event_names (name) VALUES (?) ON CONFLICT (name) DO NOTHING", [name])  # type: ignore[attr-defined]
    return int(cur.execute("SELECT event_id FROM event_names WHERE name = ?", [name]).fetchall()[0][0])  # type: ignore[attr-defined]


def refresh(*, inst: Instance, audience_id: str, trigger: str = "manual") -> RefreshResult:
    """Re-evaluate a dynamic audience now and store the result with its changes and events."""
    started = inst.clock.now()
    with inst.operational.session() as s:
        row = audience_row(s, audience_id)
        if row.kind != "dynamic":
            raise AudienceError(409, "audience", f"a {row.kind} audience is not re-evaluated; only dynamic ones are")
        cond = parse_condition(row.definition)
        params = Params()
        members = compile_members(cond, compile_context(inst, s), params=params)
        name = row.name
    run_id = "run_" + secrets.token_hex(8)
    now = started.replace(tzinfo=None)
    new = (
        exp.select(exp.column("profile_idx", "p"), exp.column("profile_id", "p"))
        .from_(members.tree.subquery("m"))
        .join(exp.alias_(exp.to_table("profiles"), "p"), on="p.profile_idx = m.profile_idx")
    )
    values = {"aud": audience_id, "run": run_id, "now": now}
    with inst.analytic.transaction() as cur:
        run(cur, temp_table("_refresh_new", new), params.values)
        cur.execute(_CHANGES, values)
        entered_id, exited_id = _event_id(cur, ENTERED), _event_id(cur, EXITED)
        cur.execute(_EMIT, {"run": run_id, "now": now, "name": name, "source": SYSTEM_SOURCE_ID,
                            "entered_id": entered_id, "exited_id": exited_id})  # fmt: skip
        if cur.execute("SELECT 1 FROM journey_watch WHERE name = ?", [ENTERED]).fetchall():
            cur.execute(_INBOX, {"prefix": f"audience:{run_id}:entered:", "entered_id": entered_id, "now": now,
                                 "source": SYSTEM_SOURCE_ID})  # fmt: skip
        counts = cur.execute(
            "SELECT coalesce(count_if(change = 'entered'), 0), coalesce(count_if(change = 'exited'), 0) "
            "FROM audience_changes WHERE run_id = $run",
            {"run": run_id},
        ).fetchall()[0]
        cur.execute(_KEEP, {"aud": audience_id, "now": now})
        cur.execute("DELETE FROM audience_members WHERE audience_id = $aud", {"aud": audience_id})
        cur.execute("INSERT INTO audience_members SELECT * FROM _refresh_keep")
        total = int(cur.execute("SELECT count(*) FROM _refresh_keep").fetchall()[0][0])
        finished = inst.clock.now()
        cur.execute(
            "INSERT INTO audience_runs VALUES ($run, $aud, $trigger, $started, $finished, $members, $entered, $exited)",
            {"run": run_id, "aud": audience_id, "trigger": trigger, "started": now,
             "finished": finished.replace(tzinfo=None), "members": total, "entered": counts[0], "exited": counts[1]},
        )  # fmt: skip
        cur.execute("DROP TABLE _refresh_new")
        cur.execute("DROP TABLE _refresh_keep")
    inst.analytic.changed("audience_members", "events")
    with inst.operational.session() as s:
        row = audience_row(s, audience_id)
        row.refreshed_at = started
        row.member_count = total
    return RefreshResult(run_id=run_id, audience_id=audience_id, members=total, entered=int(counts[0]),
                         exited=int(counts[1]), started_at=started, finished_at=finished)  # fmt: skip


def refresh_due(*, inst: Instance) -> list[RefreshResult]:
    """Refresh every active dynamic audience whose schedule has come round (the scheduler's tick)."""
    now = inst.clock.now()
    with inst.operational.session() as s:
        due = s.scalars(
            select(AudienceRow.id)
            .where(AudienceRow.kind == "dynamic", AudienceRow.status == "active")
            .where(AudienceRow.next_refresh_at.is_not(None), AudienceRow.next_refresh_at <= now)
            .order_by(AudienceRow.next_refresh_at)
        ).all()
    done, failed = [], []
    for audience_id in due:
        try:
            done.append(refresh(inst=inst, audience_id=audience_id, trigger="schedule"))
        except Exception as e:
            failed.append(f"{audience_id}: {type(e).__name__}: {e}")
        with inst.operational.session() as s:
            row = audience_row(s, audience_id)
            row.next_refresh_at = next_run(row.schedule, inst=inst, after=now)
    if failed:
        raise RefreshFailed(done, failed)
    return done


class RefreshFailed(RuntimeError):
    """Some scheduled refreshes failed (the others were done; every schedule moved on)."""

    def __init__(self, done: list[RefreshResult], failed: list[str]) -> None:
        super().__init__("; ".join(failed))
        self.done = done
        self.failed = failed


class Scheduler(Periodic):
    """Runs :func:`refresh_due` and the tags' ``run_due`` every ``interval`` seconds in a thread of
    the server process (one failing does not stop the other)."""

    name = "scheduler"

    def __init__(self, inst: Instance, *, interval: float = 30.0) -> None:
        super().__init__(interval=interval)
        self.inst = inst

    def tick(self) -> None:
        from tessera.services.tag_runs import run_due  # tags read audiences: import late

        errors = []
        for due in (lambda: refresh_due(inst=self.inst), lambda: run_due(self.inst)):
            try:
                due()
            except Exception as e:
                errors.append(f"{type(e).__name__}: {e}")
        if errors:
            raise RuntimeError("; ".join(errors))


class Change(BaseModel):
    profile_id: str
    change: Literal["entered", "exited"]
    changed_at: datetime
    run_id: str


class Run(BaseModel):
    run_id: str
    trigger: str
    started_at: datetime
    finished_at: datetime
    members: int
    entered: int
    exited: int


def changes(*, inst: Instance, audience_id: str, limit: int = 100, change: str | None = None) -> list[Change]:
    """Who entered or left, newest first."""
    rows = (
        inst.analytic.cursor()
        .execute(
            "SELECT profile_id, change, changed_at, run_id FROM audience_changes "
            "WHERE audience_id = $aud AND (CAST($change AS VARCHAR) IS NULL OR change = $change) "
            "ORDER BY changed_at DESC, profile_id LIMIT $lim",
            {"aud": audience_id, "change": change, "lim": limit},
        )
        .fetchall()
    )
    return [Change(**dict(zip(("profile_id", "change", "changed_at", "run_id"), r, strict=True))) for r in rows]


def runs(*, inst: Instance, audience_id: str, limit: int = 50) -> list[Run]:
    """The audience's refreshes, newest first."""
    cols = ("run_id", "trigger", "started_at", "finished_at", "members", "entered", "exited")
    rows = (
        inst.analytic.cursor()
        .execute(
            "SELECT run_id, trigger, started_at, finished_at, members, entered, exited FROM audience_runs "
            "WHERE audience_id = $aud ORDER BY started_at DESC LIMIT $lim",
            {"aud": audience_id, "lim": limit},
        )
        .fetchall()
    )
    return [Run(**dict(zip(cols, r, strict=True))) for r in rows]
