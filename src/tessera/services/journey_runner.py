"""Moving people through journeys: entries, events, timers — durable, in batches.

Every change of a person's state is written in one operational-store transaction together with
what it caused: the visits (for reports), the outbox rows of its effects (messages, webhooks, tag
and attribute changes, each with an idempotency key), coupons and points granted. So a crash
before the commit redoes the whole step, a crash after it redoes nothing: nobody is skipped and no
effect is recorded twice.

* :func:`run_entries` — audience entries whose run is due (single or periodic): one
  ``journey_runs`` row per scheduled time (unique, so a run is never done twice), then the members
  are admitted under the re-entry policy.
* :func:`consume_inbox` — events of watched names (the loader writes them to ``journey_inbox`` in
  the same transaction as the events): behaviour triggers admit people; people waiting for an
  event move on; goals convert. Rows are deleted only after the operational commit; a replay is
  harmless (unique trigger references, states that no longer wait).
* :func:`advance_due` — people whose timer is due or who just entered take their next steps
  (:func:`tessera.engine.step.step`).
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import and_, func, insert, or_, select
from sqlalchemy.orm import Session
from sqlglot import exp

from tessera.clock import as_utc
from tessera.compiler.query import run as run_query
from tessera.domain.journeys import Journey
from tessera.engine.matching import event_matches
from tessera.engine.step import Action, Converted, Event, Person, State, Step, enter, step
from tessera.runtime import Instance
from tessera.services.journey_facts import PersonFacts, load_people, matching, refresh_stale
from tessera.services.journeys import live_journeys, load_version, next_entry_run
from tessera.stores.bulk import insert_ignoring_duplicates, update_by_id
from tessera.stores.models import (
    JourneyInstanceRow,
    JourneyOutboxRow,
    JourneyRewardRow,
    JourneyRow,
    JourneyRunRow,
    JourneyVisitRow,
)

log = logging.getLogger(__name__)

LIVE = ("active", "waiting")
#: effects carried out by the dispatcher (outbox rows); coupons and points are granted in the step's transaction
OUTBOX_KINDS = frozenset({"email", "sms", "push", "wechat", "webhook", "notify", "tag", "attribute"})
ADMIT_CHUNK = 5000


def effect_key(journey_id: str, version: int, node_id: str, profile_id: str, entry_no: int) -> str:
    """The idempotency key of an effect: (journey, version, node, person, entry), hashed."""
    raw = f"{journey_id}\x1f{version}\x1f{node_id}\x1f{profile_id}\x1f{entry_no}".encode()
    return hashlib.sha256(raw).hexdigest()[:40]


# --- admitting people ----------------------------------------------------------------------------


@dataclass
class Admitted:
    entered: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class Arrival:
    """Someone arriving at a journey's entry: who, through which trigger (unique per journey and
    person: a replay admits no one), when, and the trigger's properties."""

    profile_idx: int
    profile_id: str
    trigger_ref: str
    at: datetime
    trigger: Mapping[str, Any] | None = None


def admit(session: Session, *, row: JourneyRow, journey: Journey, people: Sequence[tuple[int, str]],
          trigger_ref: str, now: datetime, trigger: Mapping[str, Any] | None = None) -> Admitted:  # fmt: skip
    """Let ``people`` (profile_idx, profile_id) enter through one trigger (an audience run)."""
    arrivals = [Arrival(idx, pid, trigger_ref, now, trigger) for idx, pid in people]
    return admit_arrivals(session, row=row, journey=journey, arrivals=arrivals)


def admit_arrivals(session: Session, *, row: JourneyRow, journey: Journey, arrivals: Sequence[Arrival]) -> Admitted:
    """Let arrivals enter under the re-entry policy and ``max_live``, in order (a person arriving
    twice in one batch is judged against their first arrival). One read of earlier entries per
    chunk — or one for the whole journey when many arrive — and one insert."""
    out = Admitted()
    settings = journey.settings
    cooldown = timedelta(days=settings.reentry.cooldown_days or 0)
    refs = {a.trigger_ref for a in arrivals}
    everyone = _earlier_entries(session, row.id, refs, None) if len(arrivals) > ADMIT_CHUNK else None
    for i in range(0, len(arrivals), ADMIT_CHUNK):
        chunk = arrivals[i : i + ADMIT_CHUNK]
        seen = everyone if everyone is not None else _earlier_entries(session, row.id, refs,
                                                                      sorted({a.profile_id for a in chunk}))  # fmt: skip
        new_rows = []
        for a in chunk:
            prev = seen.get(a.profile_id)
            if prev is not None:
                entry_no, last, live, done_refs = prev
                if (
                    a.trigger_ref in done_refs
                    or settings.reentry.policy == "once"
                    or (settings.reentry.policy == "cooldown" and a.at - last < cooldown)
                    or live >= settings.max_live
                ):
                    out.skipped += 1
                    continue
            state = enter(journey, trigger=a.trigger)
            entry_no = (prev[0] if prev else 0) + 1
            seen[a.profile_id] = (entry_no, a.at, (prev[2] if prev else 0) + 1,
                                  (prev[3] if prev else frozenset()) | {a.trigger_ref})  # fmt: skip
            new_rows.append({
                "journey_id": row.id, "version": row.version, "profile_id": a.profile_id, "profile_idx": a.profile_idx,
                "entry_no": entry_no, "trigger_ref": a.trigger_ref[:100], "node_id": state.node,
                "status": "active", "due_at": a.at, "wait_event": None, "state": state.data,
                "entered_at": a.at, "updated_at": a.at, "ended_at": None,
                "goal_until": a.at + timedelta(days=settings.goal.within_days) if settings.goal else None,
                "converted_at": None,
            })  # fmt: skip
        if new_rows:
            session.execute(insert(JourneyInstanceRow), new_rows)
        out.entered += len(new_rows)
    return out


def _earlier_entries(session: Session, journey_id: str, refs: set[str],
                     ids: Sequence[str] | None) -> dict[str, tuple[int, datetime, int, frozenset[str]]]:  # fmt: skip
    """Per person (all, or ``ids``): last entry number, last entry time, live instances, and which of
    ``refs`` admitted them already."""
    ji = JourneyInstanceRow
    q = select(
        ji.profile_id, func.max(ji.entry_no), func.max(ji.entered_at), func.sum(func.cast(ji.status.in_(LIVE), ji.entry_no.type))
    ).where(ji.journey_id == journey_id)  # fmt: skip
    if ids is not None:
        q = q.where(ji.profile_id.in_(ids))
    out = {pid: (int(n), as_utc(at), int(live or 0), frozenset[str]())
           for pid, n, at, live in session.execute(q.group_by(ji.profile_id))}  # fmt: skip
    ordered = sorted(refs)
    for k in range(0, len(ordered) if out else 0, 1000):
        done = select(ji.profile_id, ji.trigger_ref).where(
            ji.journey_id == journey_id, ji.trigger_ref.in_(ordered[k : k + 1000])
        )
        for pid, ref in session.execute(done):
            if pid in out:
                n, at, live, prev = out[pid]
                out[pid] = (n, at, live, prev | {ref})
    return out


def _within_dates(journey: Journey, now: datetime) -> bool:
    s = journey.settings
    return (s.start_at is None or now >= s.start_at) and (s.end_at is None or now < s.end_at)


def run_entries(*, inst: Instance, now: datetime | None = None) -> list[JourneyRunRow]:
    """Run every audience entry that is due (each scheduled time once)."""
    from tessera.services.audience_refresh import refresh
    from tessera.services.audiences import audience_row, members_of

    now = now or inst.clock.now()
    done: list[JourneyRunRow] = []
    with inst.operational.session() as s:
        due = [
            (r.id, r.version, as_utc(r.next_run_at))
            for r in s.scalars(
                select(JourneyRow).where(
                    JourneyRow.status == "active", JourneyRow.next_run_at.is_not(None), JourneyRow.next_run_at <= now
                )  # fmt: skip
            )
            if r.next_run_at is not None
        ]
    for journey_id, version, scheduled in due:
        with inst.operational.session() as s:
            row = s.get(JourneyRow, journey_id)
            assert row is not None
            journey = load_version(s, journey_id, version)
            entry = journey.entry.data.audience
            assert entry is not None
            if s.scalar(select(JourneyRunRow).where(JourneyRunRow.journey_id == journey_id,
                                                    JourneyRunRow.scheduled_at == scheduled)) is not None:  # fmt: skip
                row.next_run_at = next_entry_run(entry, inst=inst, after=scheduled, first=scheduled)
                continue
            kind = audience_row(s, entry.audience_id).kind
        run_row = JourneyRunRow(journey_id=journey_id, version=version, scheduled_at=scheduled, started_at=now)
        error = None
        members: list[tuple[int, str]] = []
        if _within_dates(journey, scheduled):
            try:
                refresh_stale(inst)  # audiences over attributes see what people told us since
                if kind == "dynamic" and entry.refresh:
                    refresh(inst=inst, audience_id=entry.audience_id, trigger="journey")
                with members_of(inst=inst, audience_id=entry.audience_id) as m:
                    tree = (
                        exp.select(exp.column("profile_idx", "p"), exp.column("profile_id", "p"))
                        .from_(m.tree.subquery("m"))
                        .join(exp.alias_(exp.to_table("profiles"), "p"), on="p.profile_idx = m.profile_idx")
                    )
                    members = [(int(a), str(b)) for a, b in run_query(inst.analytic.cursor(), tree, m.params.values)]
            except Exception as e:  # recorded on the run; the schedule goes on
                error = f"{type(e).__name__}: {e}"
                log.exception("journey %s audience run failed", journey_id)
        with inst.operational.session() as s:
            row = s.get(JourneyRow, journey_id)
            assert row is not None
            run_row.members = len(members)
            if error is None and members:
                got = admit(s, row=row, journey=journey, people=members, trigger_ref=f"run:{scheduled.isoformat()}",
                            now=scheduled if scheduled <= now else now)  # fmt: skip
                run_row.entered, run_row.skipped = got.entered, got.skipped
            run_row.error = error
            run_row.finished_at = inst.clock.now()
            s.add(run_row)
            nxt = next_entry_run(entry, inst=inst, after=max(scheduled, now), first=scheduled)
            if journey.settings.end_at is not None and nxt is not None and nxt >= journey.settings.end_at:
                nxt = None
            row.next_run_at = nxt
            row.last_run_at = scheduled
            if nxt is None and entry.every is None and entry.cron is None and row.kind == "campaign":
                pass  # a single campaign keeps its status until the people inside finish
        done.append(run_row)
    return done


# --- events --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InboxEvent:
    seq: int
    message_id: str
    name: str
    profile_idx: int | None
    profile_id: str | None
    at: datetime
    properties: dict[str, Any]


_INBOX = """
SELECT i.seq, i.message_id, n.name, l.profile_idx, p.profile_id, i."timestamp", i.properties
FROM journey_inbox AS i JOIN event_names AS n ON n.event_id = i.event_id
LEFT JOIN identity_links AS l ON l.obs_idx = i.obs_idx
LEFT JOIN profiles AS p ON p.profile_idx = l.profile_idx
ORDER BY i.seq LIMIT ?
"""


def read_inbox(inst: Instance, limit: int = 5000) -> list[InboxEvent]:
    rows = inst.analytic.cursor().execute(_INBOX, [limit]).fetchall()
    out = []
    for seq, mid, name, idx, pid, ts, props in rows:
        p = orjson.loads(props) if props else {}
        out.append(InboxEvent(int(seq), str(mid), str(name), None if idx is None else int(idx), pid,
                              ts.replace(tzinfo=UTC), p if isinstance(p, dict) else {}))  # fmt: skip
    return out


def _purchase_number(inst: Instance, profile_idx: int, at: datetime, name: str) -> int:
    """How many ``name`` events (orders) the profile had up to and including ``at``."""
    got = (
        inst.analytic.cursor()
        .execute(
            "SELECT count(*) FROM events e JOIN identity_links l ON l.obs_idx = e.identity_idx "
            "WHERE l.profile_idx = ? AND e.event_id = (SELECT event_id FROM event_names WHERE name = ?) "
            'AND e."timestamp" <= ?',
            [profile_idx, name, at.replace(tzinfo=None)],
        )
        .fetchall()
    )
    return int(got[0][0])


def consume_inbox(*, inst: Instance, now: datetime | None = None, limit: int = 5000) -> int:
    """React to the events in the inbox; returns how many were consumed."""
    events = read_inbox(inst, limit)
    if not events:
        return 0
    now = now or inst.clock.now()
    with inst.operational.session() as s:
        live = [(r, j) for r, j in live_journeys(s) if r.status == "active"]
        triggers = [(r, j) for r, j in live if j.entry.data.event is not None]
        names = {e.name for e in events}
        people = {e.profile_id for e in events if e.profile_id}
        waiting: dict[tuple[str, str], list[JourneyInstanceRow]] = defaultdict(list)
        if people:
            for inst_row in s.scalars(
                select(JourneyInstanceRow).where(
                    JourneyInstanceRow.status == "waiting",
                    JourneyInstanceRow.wait_event.in_(names),
                    JourneyInstanceRow.profile_id.in_(people),
                )  # fmt: skip
            ):
                waiting[(inst_row.profile_id, inst_row.wait_event or "")].append(inst_row)
        goals: dict[str, list[JourneyInstanceRow]] = defaultdict(list)
        if people:
            for g in s.scalars(
                select(JourneyInstanceRow).where(
                    JourneyInstanceRow.profile_id.in_(people),
                    JourneyInstanceRow.goal_until.is_not(None),
                    JourneyInstanceRow.converted_at.is_(None),
                )  # fmt: skip
            ):
                goals[g.profile_id].append(g)
        moved: list[tuple[JourneyInstanceRow, Event]] = []
        entries: dict[str, list[Arrival]] = defaultdict(list)
        for ev in events:
            if ev.profile_id is None or ev.profile_idx is None:
                continue
            for row, journey in triggers:
                trig = journey.entry.data.event
                assert trig is not None
                if not _within_dates(journey, ev.at) or not event_matches(trig, ev.name, ev.properties):
                    continue
                if trig.purchase is not None:
                    n = _purchase_number(inst, ev.profile_idx, ev.at, ev.name)
                    if (trig.purchase == "first") != (n <= 1):
                        continue
                entries[row.id].append(Arrival(ev.profile_idx, ev.profile_id, f"event:{ev.message_id}", min(ev.at, now),
                                               {**ev.properties, "event": ev.name, "timestamp": ev.at.isoformat()}))  # fmt: skip
            for w in waiting.get((ev.profile_id, ev.name), ()):
                moved.append((w, Event(ev.name, ev.properties, min(ev.at, now))))
            for g in goals.get(ev.profile_id, ()):
                if g.converted_at is not None:
                    continue
                journey = load_version(s, g.journey_id, g.version)
                goal = journey.settings.goal
                if goal is None or not (as_utc(g.entered_at) <= ev.at <= as_utc(g.goal_until or ev.at)):
                    continue
                if event_matches(goal, ev.name, ev.properties):
                    g.converted_at = ev.at
        for row, journey in triggers:
            if entries.get(row.id):
                admit_arrivals(s, row=row, journey=journey, arrivals=entries[row.id])
        if moved:
            first: dict[int, tuple[JourneyInstanceRow, Event]] = {}
            for w, e in moved:  # one event per waiting person per round; a later one finds them moved on
                first.setdefault(w.id, (w, e))
            _advance(inst, s, [w for w, _ in first.values()], now, events={i: e for i, (_, e) in first.items()})
    with inst.analytic.transaction() as cur:
        cur.execute("DELETE FROM journey_inbox WHERE seq <= ?", [events[-1].seq])
    return len(events)


# --- timers and fresh entries ----------------------------------------------------------------------


def advance_due(*, inst: Instance, now: datetime | None = None, limit: int = 5000) -> int:
    """Advance people who just entered or whose timer is due; returns how many were stepped."""
    now = now or inst.clock.now()
    ji: Any = JourneyInstanceRow.__table__
    with inst.operational.session() as s:
        live_ids = select(JourneyRow.id).where(JourneyRow.status != "paused")
        # two index range scans on (status, due_at) — never a sort of everyone who is due
        rows: list[Any] = list(
            s.execute(select(ji).where(ji.c.status == "active", ji.c.journey_id.in_(live_ids)).limit(limit))
        )
        if len(rows) < limit:
            rows += s.execute(
                select(ji)
                .where(ji.c.status == "waiting", ji.c.due_at <= now, ji.c.journey_id.in_(live_ids))
                .order_by(ji.c.due_at)
                .limit(limit - len(rows))
            ).all()
        if rows:
            _advance(inst, s, rows, now)
        return len(rows)


class _Splits:
    """Answers split paths for a batch: each (node, path) condition is compiled and run once."""

    def __init__(self, inst: Instance, session: Session, idxs: Sequence[int]) -> None:
        from tessera.services.audiences import compile_context

        self.inst = inst
        self.ctx = compile_context(inst, session)
        self.idxs = idxs
        self.cache: dict[tuple[str, int, str, int], set[int]] = {}

    def matches(self, journey: Journey, journey_id: str, version: int, idx: int) -> Any:
        def answer(node_id: str, path: int) -> bool:
            key = (journey_id, version, node_id, path)
            hit = self.cache.get(key)
            if hit is None:
                cond = journey.node(node_id).data.paths[path].condition
                hit = matching(self.inst, cond, self.idxs, self.ctx)
                self.cache[key] = hit
            return idx in hit

        return answer


def _advance(inst: Instance, s: Session, rows: Sequence[Any], now: datetime,
             events: Mapping[int, Event] | None = None) -> None:  # fmt: skip
    """Step each row (with its event, if any) and write states, visits, outbox rows and rewards."""
    facts = load_people(inst, (r.profile_idx for r in rows))
    splits = _Splits(inst, s, [r.profile_idx for r in rows])
    visits: list[dict[str, Any]] = []
    outbox: list[dict[str, Any]] = []
    grants: list[_Grant] = []
    contexts: list[tuple[dict[str, Any], State, Any]] = []
    updates: list[dict[str, Any]] = []
    for r in rows:
        journey = load_version(s, r.journey_id, r.version)
        f = facts.get(r.profile_idx) or PersonFacts(r.profile_idx, r.profile_id, timezone=inst.settings.timezone)
        person = Person(r.journey_id, r.profile_id, f.timezone, f.traits,
                        splits.matches(journey, r.journey_id, r.version, r.profile_idx))  # fmt: skip
        state = State(node=r.node_id, status=r.status, due_at=as_utc(r.due_at) if r.due_at else None,
                      wait_event=r.wait_event, data=dict(r.state or {}))  # fmt: skip
        result: Step = step(journey, state, person, now, (events or {}).get(r.id))
        if not result.changed and result.state.status == r.status and result.state.due_at == state.due_at:
            continue
        st = result.state
        converted = None
        for eff in result.effects:
            if isinstance(eff, Converted):
                converted = converted or eff.at
                continue
            assert isinstance(eff, Action)
            key = effect_key(r.journey_id, r.version, eff.node, r.profile_id, r.entry_no)
            node = journey.node(eff.node)
            if eff.type in ("coupon", "points"):
                grants.append(_Grant(r, node, key, eff.at, st))
                continue
            outbox.append({
                "key": key, "journey_id": r.journey_id, "version": r.version, "node_id": eff.node,
                "instance_id": r.id, "profile_id": r.profile_id, "profile_idx": r.profile_idx, "kind": eff.type,
                "channel": None, "sent_kind": None, "address": None, "status": "pending", "reason": None, "attempts": 0,
                "next_attempt_at": now, "provider_id": None, "error": None,
                "context": None, "created_at": now, "sent_at": None, "delivered_at": None,
            })  # fmt: skip
            contexts.append((outbox[-1], st, r))
        for v in result.visits:
            visits.append({"journey_id": r.journey_id, "version": r.version, "node_id": v.node, "handle": v.handle,
                           "instance_id": r.id, "at": v.at})  # fmt: skip
        updates.append({
            "b_id": r.id, "node_id": st.node, "status": st.status, "due_at": st.due_at, "wait_event": st.wait_event,
            "state": st.data, "updated_at": now, "ended_at": now if not st.live else None,
            "converted_at": converted if converted is not None and r.converted_at is None else r.converted_at,
        })  # fmt: skip
    # coupons and credits first: their codes go into the states and the messages' contexts
    rewards, debits = _grant(s, grants, now)
    for row, st, r in contexts:
        row["context"] = _context(st, r)
    update_by_id(s, JourneyInstanceRow, updates)
    if visits:
        s.execute(insert(JourneyVisitRow), visits)
    insert_ignoring_duplicates(s, JourneyOutboxRow.__table__, outbox)
    rewards += _debit(s, debits, now)  # after a write: each in a savepoint inside this transaction
    insert_ignoring_duplicates(s, JourneyRewardRow.__table__, rewards)
    for r in rows:  # keep the ORM's copies (inbox path) out of the way of the bulk update above
        if isinstance(r, JourneyInstanceRow):
            s.expire(r)


def _context(st: State, r: JourneyInstanceRow) -> dict[str, Any]:
    """What a message's template may use besides the profile: the trigger, awaited events, coupons."""
    out: dict[str, Any] = {"entry_no": r.entry_no}
    for key in ("event", "waited", "coupons", "arms"):
        if key in st.data:
            out[key] = st.data[key]
    return out


#: ``journey_rewards.reason`` prefix of a grant loyalty refused (``refused:out_of_stock`` …)
REFUSED = "refused:"


@dataclass(frozen=True)
class _Grant:
    """A coupon or points effect of a step, granted through loyalty in the step's transaction."""

    row: Any
    node: Any
    key: str
    at: datetime
    state: State


def _grant(s: Session, grants: Sequence[_Grant], now: datetime) -> tuple[list[dict[str, Any]], list[_Grant]]:
    """Issue the coupons (per template, one call) and post the credited points of ``grants``
    through the loyalty services, in the step's transaction; returns the ``journey_rewards`` rows
    and the deductions left for :func:`_debit`. A coupon refused (out of stock, over the per-person
    limit, template paused) is recorded with its reason; the person's journey goes on."""
    from tessera.services import coupons, points
    from tessera.services.loyalty_common import LoyaltyError

    rewards: list[dict[str, Any]] = []
    by_template: dict[tuple[str, int | None], list[_Grant]] = defaultdict(list)
    credits: list[_Grant] = []
    debits: list[_Grant] = []
    for g in grants:
        if g.node.type == "coupon":
            by_template[(g.node.data.template, g.node.data.valid_days)].append(g)
        elif g.node.data.amount > 0:
            credits.append(g)
        else:
            debits.append(g)
    for (template, valid_days), group in by_template.items():
        requests = [
            coupons.IssueRequest(profile_id=g.row.profile_id, key=f"journey:{g.key}", source="journey",
                                 source_ref=f"{g.row.journey_id}/{g.node.id}", campaign=g.row.journey_id)
            for g in group
        ]  # fmt: skip
        try:
            result = coupons.issue_in_session(s, template, requests, now, valid_days=valid_days)
        except LoyaltyError as e:
            for g in group:
                rewards.append(_reward(g, code=None, valid_until=None, reason=_refused(e.reason)))
            continue
        issued = {i.key: i for i in result.issued}
        refused = {req.key: reason for req, reason in result.refused}
        for g, req in zip(group, requests, strict=True):
            got = issued.get(req.key)
            if got is None:
                reason = refused.get(req.key, "refused")
                g.state.data.setdefault("coupons", {})[g.node.id] = {"template": template, "refused": reason}
                rewards.append(_reward(g, code=None, valid_until=None, reason=_refused(reason)))
                continue
            until = got.valid_until.isoformat() if got.valid_until else None
            g.state.data.setdefault("coupons", {})[g.node.id] = {"code": got.code, "template": template,
                                                                 "valid_until": until}  # fmt: skip
            rewards.append(_reward(g, code=got.code, valid_until=got.valid_until, reason=None))
    entries = [_points_entry(g) for g in credits]
    if entries:
        points.post_in_session(s, entries, now)
        rewards += [_reward(g, code=None, valid_until=None, reason=g.node.data.reason) for g in credits]
    return rewards, debits


def _debit(s: Session, debits: Sequence[_Grant], now: datetime) -> list[dict[str, Any]]:
    """Deductions one at a time, each in a savepoint: one beyond the balance is refused (and
    recorded with its reason) without undoing the others."""
    from tessera.services import points
    from tessera.services.loyalty_common import LoyaltyError

    rewards: list[dict[str, Any]] = []
    for g in debits:
        try:
            with s.begin_nested():
                points.post_in_session(s, [_points_entry(g)], now)
            rewards.append(_reward(g, code=None, valid_until=None, reason=g.node.data.reason))
        except LoyaltyError as e:
            rewards.append(_reward(g, code=None, valid_until=None, reason=_refused(e.reason)))
    return rewards


def _refused(reason: str | None) -> str:
    """How a refused grant is recorded in ``journey_rewards.reason`` (the report counts them)."""
    return f"{REFUSED}{reason or 'refused'}"


def _points_entry(g: _Grant) -> Any:
    from tessera.services.points import NewEntry

    amount = int(g.node.data.amount)
    return NewEntry(key=f"journey:{g.key}", profile_id=g.row.profile_id, kind="earn" if amount > 0 else "adjust",
                    points=amount, reason=g.node.data.reason, source="journey",
                    source_ref=f"{g.row.journey_id}/{g.node.id}", campaign=g.row.journey_id, occurred_at=g.at)  # fmt: skip


def _reward(g: _Grant, *, code: str | None, valid_until: datetime | None, reason: str | None) -> dict[str, Any]:
    r, node = g.row, g.node
    coupon = node.type == "coupon"
    return {"key": g.key, "journey_id": r.journey_id, "version": r.version, "node_id": node.id, "instance_id": r.id,
            "profile_id": r.profile_id, "kind": node.type, "template": node.data.template if coupon else None,
            "amount": None if coupon else node.data.amount, "code": code, "reason": reason,
            "valid_until": valid_until, "created_at": g.at}  # fmt: skip


def pending_work(inst: Instance, now: datetime) -> bool:
    """Whether someone is due now (used by the worker to keep going without waiting)."""
    with inst.operational.session() as s:
        got = s.scalar(
            select(JourneyInstanceRow.id)
            .where(
                or_(
                    JourneyInstanceRow.status == "active",
                    and_(JourneyInstanceRow.status == "waiting", JourneyInstanceRow.due_at <= now),
                )
            )  # fmt: skip
            .limit(1)
        )
        return got is not None


def next_due(inst: Instance) -> datetime | None:
    with inst.operational.session() as s:
        got = s.scalar(select(func.min(JourneyInstanceRow.due_at)).where(JourneyInstanceRow.status == "waiting"))
        return as_utc(got) if got is not None else None
