"""A journey's dry run (试运行 / 预演): who would enter, what would be sent, day by day — writing nothing.

The dry run checks a definition (a draft, or a stored journey's draft) as publishing would, then
simulates it over ``days`` from ``start`` on the data as it is now:

* **Entry** (进入). An audience entry admits the audience's current members at each scheduled run
  in the period (``at``, ``every``, ``cron``; once at ``start`` when unscheduled), under the
  re-entry policy and ``max_live``. An event entry is *forecast from history*: the matching events
  (name, property filters, first / repeat purchase) of the ``days`` before ``start`` are replayed
  shifted forward by ``days`` — the next period looks like the last one.
* **Steps**. Each person runs through the pure step function (:func:`tessera.engine.step.step`) with
  their own logical clock: at entry, then at each timer's due time, until they leave or the period
  ends. Split conditions are evaluated once, on today's data. No future events are simulated, so
  waits for events and goals end by their timeout and nothing converts.
* **Guards** (发送保护) on each message: the channel kinds in order (the node's, then ``fallback``)
  that have a configured channel, an address and consent (opt-outs included); none → 屏蔽
  *suppressed* with the first reason. Quiet hours (免打扰) move a send to when the window opens.
  Frequency caps (频次控制) are not simulated.

Counts are by local date in the workspace time zone. When more than ``max_people`` entries are in
prospect, a deterministic sample of people is simulated and the counts are scaled up (``sampled``,
``scale``). Nothing is written to either store: the operational session only reads, the analytic
store is only queried.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import orjson
from pydantic import BaseModel, Field
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session
from sqlglot import exp

from tessera.clock import as_utc
from tessera.compiler.query import run as run_query
from tessera.domain.guards import QuietHours, choose_channel, consent_decision, quiet_until
from tessera.domain.journeys import MESSAGE_KINDS, Journey
from tessera.engine.matching import event_matches
from tessera.engine.step import Action, Person, enter, step
from tessera.runtime import Instance
from tessera.services.journey_facts import PersonFacts, load_people, matching
from tessera.services.journeys import JourneyRequestError, check_journey, journey_row, next_entry_run
from tessera.stores.models import ChannelRow, JourneyInstanceRow

MAX_DAYS = 366
#: audience runs simulated at most (a cron every minute would otherwise make tens of thousands)
MAX_RUNS = 1000
_LIVE = ("active", "waiting")
_CHUNK = 5000


# --- result models ----------------------------------------------------------------------------------


class Horizon(BaseModel):
    """The simulated period: [``start``, ``end``), ``days`` long; dates are local to ``timezone``."""

    start: datetime
    end: datetime
    days: int
    timezone: str


class DryRunEntry(BaseModel):
    """How people enter (进入) in the simulation."""

    kind: Literal["audience", "event"]
    method: str = Field(description="how entries were found (zh + en)")
    audience_id: str | None = None
    members: int | None = Field(default=None, description="audience entry: the audience's members now")
    runs: list[datetime] = Field(default_factory=list, description="audience entry: the scheduled runs in the period")
    event: str | None = Field(default=None, description="event entry: the trigger event's name")
    history_start: datetime | None = Field(default=None, description="event entry: the history window's start")
    history_events: int | None = Field(default=None, description="event entry: matching events in the window")
    candidates: int = Field(description="entries considered: members × runs, or events (before sampling)")
    skipped: int = Field(description="entries refused by the re-entry policy or max_live (scaled)")


class DryRunDay(BaseModel):
    """One local day: people who enter (进入), messages that go out (发送) per channel kind (after
    fallback and quiet hours), messages suppressed (屏蔽) that day, and other effects."""

    date: date
    entered: int = 0
    messages: dict[str, int] = Field(default_factory=dict)
    suppressed: int = 0
    effects: int = 0


class DryRunNode(BaseModel):
    """A node in the simulation: ``reached`` = arrivals (进入); ``by_handle`` = people who left it
    through each handle; ``waiting_at_end`` = still waiting there (等待) when the period ends."""

    id: str
    type: str
    label: str | None = None
    reached: int = 0
    by_handle: dict[str, int] = Field(default_factory=dict)
    waiting_at_end: int = 0


class DryRun(BaseModel):
    """What the journey would do (see the module docstring). All counts are scaled when ``sampled``."""

    journey_id: str | None
    horizon: Horizon
    entry: DryRunEntry
    entered: int = Field(description="进入 people entering in the period (instances)")
    live_at_end: int = Field(description="still inside (waiting) when the period ends")
    completed: int = Field(description="finished through a handle with no edge")
    exited: int = Field(description="finished at an exit node")
    days: list[DryRunDay]
    messages: dict[str, int] = Field(description="发送 messages per channel kind (after fallback), in the period")
    suppressed: dict[str, int] = Field(description="屏蔽 messages not sent, per reason (no_address, no_consent …)")
    fallback: int = Field(description="messages sent on a fallback kind (渠道降级)")
    delayed_by_quiet_hours: int = Field(description="messages moved to the end of quiet hours (免打扰)")
    after_horizon: int = Field(description="messages quiet hours push past the period's end (not in the days)")
    effects: dict[str, int] = Field(
        description="other actions per node type: coupon, points, tag, attribute, webhook, notify"
    )
    nodes: list[DryRunNode]
    sampled: bool = Field(description="a sample of people was simulated (抽样)")
    scale: float = Field(description="counts were multiplied by this (1 when not sampled)")
    simulated: int = Field(description="entries actually simulated (before scaling)")
    assumptions: list[str] = Field(description="what the simulation assumes (zh + en)")
    warnings: list[str] = Field(default_factory=list, description="things that look wrong (zh + en)")


# --- entries ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    at: datetime
    profile_idx: int
    profile_id: str
    trigger: dict[str, Any] | None = None


def _within_dates(journey: Journey, t: datetime) -> bool:
    s = journey.settings
    return (s.start_at is None or t >= s.start_at) and (s.end_at is None or t < s.end_at)


def _unit(profile_id: str) -> float:
    """A person's place in [0, 1) for sampling (deterministic, independent of A/B assignment)."""
    digest = hashlib.sha256(f"dry-run\x1f{profile_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _audience_runs(
    inst: Instance, journey: Journey, start: datetime, end: datetime, warnings: list[str]
) -> list[datetime]:
    entry = journey.entry.data.audience
    assert entry is not None
    begin = journey.settings.start_at
    first = max(as_utc(begin), start) if begin is not None else start
    runs: list[datetime] = []
    t = next_entry_run(entry, inst=inst, after=start - timedelta(microseconds=1), first=first)
    while t is not None and t < end:
        if journey.settings.end_at is not None and t >= journey.settings.end_at:
            break
        if _within_dates(journey, t):
            runs.append(t)
        if len(runs) >= MAX_RUNS:
            warnings.append(f"只模拟了前 {MAX_RUNS} 次运行。 Only the first {MAX_RUNS} scheduled runs are simulated.")
            break
        t = next_entry_run(entry, inst=inst, after=t, first=first)
    if not runs:
        warnings.append("这段时间内入口不会运行（时间已过或不在旅程的起止时间内）。 "
                        "The entry does not run in this period (its time has passed, or it is outside the "
                        "journey's start and end).")  # fmt: skip
    return runs


def _members(inst: Instance, audience_id: str, *, at: datetime | None = None) -> list[tuple[int, str]]:
    """The audience's members: a dynamic one evaluated as of ``at`` (None: now), others as stored."""
    from tessera.compiler import CompileContext, compile_members
    from tessera.domain.conditions import EvalContext, parse_condition
    from tessera.services.audiences import StoreResolver, audience_row, members_of

    def with_profiles(tree: exp.Query, params: dict[str, Any]) -> list[tuple[int, str]]:
        select_ = (
            exp.select(exp.column("profile_idx", "p"), exp.column("profile_id", "p"))
            .from_(tree.subquery("m"))
            .join(exp.alias_(exp.to_table("profiles"), "p"), on="p.profile_idx = m.profile_idx")
        )
        return sorted((int(a), str(b)) for a, b in run_query(inst.analytic.cursor(), select_, params))

    with inst.operational.session() as s:
        row = audience_row(s, audience_id)
        if row.kind == "dynamic" and at is not None:
            ctx = CompileContext(eval=EvalContext(now=at, timezone=inst.settings.timezone), audiences=StoreResolver(s))
            query = compile_members(parse_condition(row.definition), ctx)
            return with_profiles(query.tree, query.params)
    with members_of(inst=inst, audience_id=audience_id) as m:
        return with_profiles(m.tree, m.params.values)


# The trigger's events before ``start`` (to count first / repeat purchases), kept from the window's start.
_HISTORY = """
SELECT x.message_id, x.ts, x.properties, x.profile_idx, p.profile_id, x.nth
FROM (
    SELECT e.message_id, e."timestamp" AS ts, e.properties, l.profile_idx,
           count(*) OVER (PARTITION BY l.profile_idx ORDER BY e."timestamp") AS nth
    FROM events AS e JOIN identity_links AS l ON l.obs_idx = e.identity_idx
    WHERE e.event_id = (SELECT n.event_id FROM event_names AS n WHERE n.name = ?) AND e."timestamp" < ?
) AS x JOIN profiles AS p ON p.profile_idx = x.profile_idx
WHERE x.ts >= ?
ORDER BY x.ts, x.message_id
"""


def _event_candidates(inst: Instance, journey: Journey, start: datetime, days: int) -> tuple[list[_Candidate], int]:
    """The trigger's matching events of the ``days`` before ``start``, shifted forward by ``days``."""
    trig = journey.entry.data.event
    assert trig is not None
    shift = timedelta(days=days)
    naive = [(start - shift).astimezone(UTC).replace(tzinfo=None), start.astimezone(UTC).replace(tzinfo=None)]
    rows = inst.analytic.cursor().execute(_HISTORY, [trig.name, naive[1], naive[0]]).fetchall()
    out: list[_Candidate] = []
    matched = 0
    for _mid, ts, props_json, idx, pid, nth in rows:
        props = orjson.loads(props_json) if props_json else {}
        props = props if isinstance(props, dict) else {}
        if not event_matches(trig, trig.name, props):
            continue
        if trig.purchase is not None and (trig.purchase == "first") != (int(nth) <= 1):
            continue
        matched += 1
        at = ts.replace(tzinfo=UTC) + shift
        if not _within_dates(journey, at):
            continue
        trigger = {**props, "event": trig.name, "timestamp": at.isoformat()}
        out.append(_Candidate(at, int(idx), str(pid), trigger))
    return out, matched


def _prior(session: Session, journey_id: str, profile_ids: Sequence[str]) -> dict[str, tuple[datetime, int]]:
    """People who entered the stored journey before: (when they last entered, their live instances now)."""
    ji = JourneyInstanceRow
    live = func.sum(case((ji.status.in_(_LIVE), 1), else_=0))
    out: dict[str, tuple[datetime, int]] = {}
    ids = sorted(set(profile_ids))
    for i in range(0, len(ids), _CHUNK):
        q = (
            select(ji.profile_id, func.max(ji.entered_at), live)
            .where(ji.journey_id == journey_id, ji.profile_id.in_(ids[i : i + _CHUNK]))
            .group_by(ji.profile_id)
        )
        for pid, last, n in session.execute(q):
            out[str(pid)] = (as_utc(last), int(n or 0))
    return out


# --- the simulation -------------------------------------------------------------------------------------


@dataclass
class _Tally:
    zone: ZoneInfo
    end: datetime
    entered: dict[date, int] = field(default_factory=lambda: defaultdict(int))
    messages: dict[date, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    suppressed_day: dict[date, int] = field(default_factory=lambda: defaultdict(int))
    effects_day: dict[date, int] = field(default_factory=lambda: defaultdict(int))
    suppressed: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    effects: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    reached: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    handles: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(lambda: defaultdict(int)))
    waiting: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    status: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    fallback: int = 0
    delayed: int = 0
    after: int = 0
    skipped: int = 0

    def day(self, t: datetime) -> date:
        return t.astimezone(self.zone).date()


class _Guards:
    """The dispatcher's choice of channel (kind, fallback, address, consent, opt-outs) and quiet hours."""

    def __init__(self, inst: Instance, session: Session, journey: Journey, people: Mapping[int, PersonFacts]) -> None:
        from tessera.services.channels import opted_out

        self.channels = {
            c.name: c.kind for c in session.scalars(select(ChannelRow).where(ChannelRow.disabled.is_(False)))
        }
        self.by_kind: dict[str, str] = {}
        for name in sorted(self.channels):
            self.by_kind.setdefault(self.channels[name], name)
        self.optouts = opted_out(session, (f.profile_id for f in people.values())) if people else set()
        self.require_opt_in = inst.settings.journeys.require_opt_in
        text = journey.settings.quiet_hours or inst.settings.journeys.quiet_hours
        self.quiet = None if journey.settings.transactional or not text else QuietHours.parse(text)
        self.quiet_text = text

    def choose(self, node: Any, f: PersonFacts) -> tuple[str | None, list[tuple[str, str]]]:
        def has_channel(kind: str) -> bool:
            if kind == node.type and node.data.channel:
                return self.channels.get(node.data.channel) == kind
            return kind in self.by_kind

        def reachable(kind: str) -> str | None:
            if not has_channel(kind):
                return "no_channel"
            if f.address(kind) is None:
                return "no_address"
            return consent_decision(f.traits, kind, opted_out=(f.profile_id, kind) in self.optouts,
                                    require_opt_in=self.require_opt_in)  # fmt: skip

        return choose_channel([node.type, *node.data.fallback], reachable)


def _simulate(journey: Journey, c: _Candidate, person: Person, facts: PersonFacts, guards: _Guards,
              tally: _Tally) -> datetime | None:  # fmt: skip
    """One entry, to its end or the horizon; returns when it ended (None: still inside at the end)."""
    state = enter(journey, trigger=c.trigger)
    tally.reached[journey.entry.id] += 1
    tally.entered[tally.day(c.at)] += 1
    t = c.at
    while True:
        result = step(journey, state, person, t)
        for v in result.visits:
            tally.handles[v.node][v.handle] += 1
            nxt = journey.after(v.node, v.handle)
            if nxt is not None:
                tally.reached[nxt] += 1
        for eff in result.effects:
            if isinstance(eff, Action):
                _effect(journey, eff, facts, guards, tally)
        state = result.state
        if state.status == "waiting" and state.due_at is not None and state.due_at < tally.end:
            t = state.due_at
            continue
        if state.live:
            tally.waiting[state.node] += 1
            tally.status["live"] += 1
            return None
        tally.status[state.status] += 1
        return result.visits[-1].at if result.visits else t


def _effect(journey: Journey, eff: Action, f: PersonFacts, guards: _Guards, tally: _Tally) -> None:
    day = tally.day(eff.at)
    if eff.type not in MESSAGE_KINDS:
        tally.effects[eff.type] += 1
        tally.effects_day[day] += 1
        return
    node = journey.node(eff.node)
    kind, skipped = guards.choose(node, f)
    if kind is None:
        tally.suppressed[skipped[0][1] if skipped else "no_channel"] += 1
        tally.suppressed_day[day] += 1
        return
    if skipped:
        tally.fallback += 1
    at = eff.at
    if guards.quiet is not None:
        until = quiet_until(at, f.timezone, guards.quiet)
        if until is not None:
            tally.delayed += 1
            at = until
    if at >= tally.end:
        tally.after += 1
        return
    tally.messages[tally.day(at)][kind] += 1


class _Splits:
    """Split answers for everyone simulated: each (node, path) condition is run once, on today's data."""

    def __init__(self, inst: Instance, session: Session, journey: Journey, idxs: Sequence[int]) -> None:
        from tessera.services.audiences import compile_context

        self.inst, self.journey, self.idxs = inst, journey, idxs
        self.ctx = compile_context(inst, session)
        self.cache: dict[tuple[str, int], set[int]] = {}

    def for_person(self, idx: int) -> Callable[[str, int], bool]:
        def answer(node_id: str, path: int) -> bool:
            hit = self.cache.get((node_id, path))
            if hit is None:
                cond = self.journey.node(node_id).data.paths[path].condition
                hit = self.cache[(node_id, path)] = matching(self.inst, cond, self.idxs, self.ctx)
            return idx in hit

        return answer


# --- the dry run ----------------------------------------------------------------------------------------


def dry_run(*, inst: Instance, definition: dict[str, Any] | None = None, journey_id: str | None = None, days: int = 30,
            start: datetime | None = None, max_people: int = 200_000) -> DryRun:  # fmt: skip
    """Simulate a journey for ``days`` from ``start`` (default now) without writing anything.

    ``definition``: a draft to try; else the stored journey ``journey_id``'s draft. With
    ``journey_id``, A/B arms are those the journey will assign and people who entered it before
    count for the re-entry policy. Raises :class:`JourneyRequestError` (422) for a definition that
    would not publish, 404 for an unknown journey."""
    if not 1 <= days <= MAX_DAYS:
        raise JourneyRequestError(422, "days", f"between 1 and {MAX_DAYS}")
    if max_people < 1:
        raise JourneyRequestError(422, "max_people", "at least 1")
    start = as_utc(start) if start is not None else inst.clock.now()
    end = start + timedelta(days=days)
    zone = ZoneInfo(inst.settings.timezone)
    warnings: list[str] = []
    with inst.operational.session() as s:
        if journey_id is not None:
            row = journey_row(s, journey_id)
            if definition is None:
                definition = dict(row.draft)
        if definition is None:
            raise JourneyRequestError(422, "definition", "give a definition or a journey_id")
        journey = check_journey(definition, inst=inst, session=s)
        settings = journey.settings

        # who enters, when
        audience = journey.entry.data.audience
        candidates: list[_Candidate]
        if audience is not None:
            runs = _audience_runs(inst, journey, start, end, warnings)
            # "once": only the first run can admit anyone (later runs find everyone entered already)
            simulated_runs = runs[:1] if settings.reentry.policy == "once" else runs
            # a dynamic audience is evaluated as of each run ("birthday this month" on the 1st is that month's)
            by_run = {t: _members(inst, audience.audience_id, at=t) for t in simulated_runs}
            members = by_run[runs[0]] if runs else []
            total = sum(len(v) for v in by_run.values())
            fraction = min(1.0, max_people / total) if total else 1.0
            candidates = [_Candidate(t, idx, pid) for t, ms in by_run.items() for idx, pid in ms
                          if fraction >= 1.0 or _unit(pid) < fraction]  # fmt: skip
            later_skips = len(members) * (len(runs) - len(simulated_runs))
            scale = (total / len(candidates)) if candidates and fraction < 1.0 else 1.0
            entry = DryRunEntry(
                kind="audience", audience_id=audience.audience_id, members=len(members), runs=runs,
                candidates=len(members) * len(runs),
                skipped=0, method="动态人群按每次计划运行的时间评估（数据为当前数据），其成员在该次运行时进入。 A dynamic "
                                  "audience is evaluated as of each scheduled run (on today's data); its members then enter.",
            )  # fmt: skip
        else:
            trig = journey.entry.data.event
            assert trig is not None
            events, matched = _event_candidates(inst, journey, start, days)
            later_skips = 0
            total = len(events)
            fraction = min(1.0, max_people / total) if total else 1.0
            candidates = [c for c in events if fraction >= 1.0 or _unit(c.profile_id) < fraction]
            scale = (total / len(candidates)) if candidates and fraction < 1.0 else 1.0
            entry = DryRunEntry(
                kind="event", event=trig.name, history_start=start - timedelta(days=days), history_events=matched,
                candidates=total, skipped=0,
                method=f"按过去 {days} 天的「{trig.name}」事件预测，整体后移 {days} 天。 Forecast from the matching "
                       f"“{trig.name}” events of the last {days} days, each shifted forward by {days} days (the "
                       "next period looks like the last one).",
            )  # fmt: skip
        sampled = fraction < 1.0

        # the people, their answers, their guards
        idxs = sorted({c.profile_idx for c in candidates})
        facts = load_people(inst, idxs)
        guards = _Guards(inst, s, journey, facts)
        splits = _Splits(inst, s, journey, idxs)
        prior = _prior(s, journey_id, [c.profile_id for c in candidates]) if journey_id is not None else {}
        for node in journey.message_nodes():
            if node.type in MESSAGE_KINDS and not any(k in guards.by_kind for k in (node.type, *node.data.fallback)):
                warnings.append(f"没有可用的 {node.type} 渠道：节点 {node.id} 的消息都会被屏蔽（no_channel）。 "
                                f"No {node.type} channel is configured: the messages of node {node.id} would all be "
                                "suppressed (no_channel).")  # fmt: skip

        # admit in time order under the re-entry policy, simulating each entry as it comes; an instance
        # whose timer is due at the very moment of a new entry still counts as live (the worker runs
        # entries before timers in a round)
        tally = _Tally(zone, end, skipped=later_skips)
        cooldown = timedelta(days=settings.reentry.cooldown_days or 0)
        last: dict[str, datetime] = {pid: p[0] for pid, p in prior.items()}
        ends: dict[str, list[datetime | None]] = defaultdict(list)
        simulated = 0
        persons: dict[int, Person] = {}
        jid = journey_id or "draft"
        for c in sorted(candidates, key=lambda c: (c.at, c.profile_id)):
            prev = last.get(c.profile_id)
            if prev is not None:
                live = (prior[c.profile_id][1] if c.profile_id in prior else 0) + sum(
                    1 for e in ends[c.profile_id] if e is None or e >= c.at
                )
                if (
                    settings.reentry.policy == "once"
                    or (settings.reentry.policy == "cooldown" and c.at - prev < cooldown)
                    or live >= settings.max_live
                ):
                    tally.skipped += 1
                    continue
            f = facts.get(c.profile_idx) or PersonFacts(c.profile_idx, c.profile_id, timezone=inst.settings.timezone)
            person = persons.get(c.profile_idx)
            if person is None:
                person = persons[c.profile_idx] = Person(jid, c.profile_id, f.timezone, f.traits,
                                                         splits.for_person(c.profile_idx))  # fmt: skip
            last[c.profile_id] = c.at
            ends[c.profile_id].append(_simulate(journey, c, person, f, guards, tally))
            simulated += 1

    def sc(n: float) -> int:
        return int(round(n * scale))

    entry.skipped = sc(tally.skipped)
    day_list: list[DryRunDay] = []
    d, last_day = start.astimezone(zone).date(), (end - timedelta(microseconds=1)).astimezone(zone).date()
    while d <= last_day:
        day_list.append(DryRunDay(
            date=d, entered=sc(tally.entered.get(d, 0)),
            messages={k: sc(n) for k, n in sorted(tally.messages.get(d, {}).items())},
            suppressed=sc(tally.suppressed_day.get(d, 0)), effects=sc(tally.effects_day.get(d, 0)),
        ))  # fmt: skip
        d += timedelta(days=1)
    messages: dict[str, int] = defaultdict(int)
    for per_kind in tally.messages.values():
        for k, n in per_kind.items():
            messages[k] += n
    nodes = [
        DryRunNode(
            id=n.id,
            type=n.type,
            label=n.label,
            reached=sc(tally.reached.get(n.id, 0)),
            by_handle={h: sc(tally.handles.get(n.id, {}).get(h, 0)) for h in (n.handles() or ("exit",))},
            waiting_at_end=sc(tally.waiting.get(n.id, 0)),
        )  # fmt: skip
        for n in journey.graph.nodes
    ]
    return DryRun(
        journey_id=journey_id, horizon=Horizon(start=start, end=end, days=days, timezone=inst.settings.timezone),
        entry=entry, entered=sc(sum(tally.entered.values())), live_at_end=sc(tally.status.get("live", 0)),
        completed=sc(tally.status.get("completed", 0)), exited=sc(tally.status.get("exited", 0)), days=day_list,
        messages={k: sc(n) for k, n in sorted(messages.items())},
        suppressed={k: sc(n) for k, n in sorted(tally.suppressed.items(), key=lambda kv: (-kv[1], kv[0]))},
        fallback=sc(tally.fallback), delayed_by_quiet_hours=sc(tally.delayed), after_horizon=sc(tally.after),
        effects={k: sc(n) for k, n in sorted(tally.effects.items())}, nodes=nodes, sampled=sampled,
        scale=scale, simulated=simulated,
        assumptions=_assumptions(inst, journey, journey_id, days, sampled, scale, len(idxs), guards, bool(prior)),
        warnings=warnings,
    )  # fmt: skip


def _assumptions(inst: Instance, journey: Journey, journey_id: str | None, days: int, sampled: bool, scale: float,
                 people: int, guards: _Guards, prior: bool) -> list[str]:  # fmt: skip
    tz = inst.settings.timezone
    out = []
    if journey.entry.data.audience is not None:
        out.append("人群按现在的成员计算，成员变化不做预测；每次运行受重复进入规则限制。 The audience's members are "
                   "taken as they are now (changes are not forecast); each run admits them under the re-entry policy.")  # fmt: skip
    else:
        out.append(f"行为触发按过去 {days} 天的同类事件预测：下一周期与上一周期相同。 The trigger is forecast from the "
                   f"last {days} days of matching events: the next period looks like the last one.")  # fmt: skip
    if any(n.type == "split" for n in journey.graph.nodes):
        out.append("条件分支按今天的数据判断（对每个人只判断一次）。 Split conditions are evaluated on today's data, "
                   "once per person.")  # fmt: skip
    out.append("不模拟未来事件：等待事件和转化目标都按超时处理，不计转化。 No future events are simulated: waits for "
               "events and goals end by their timeout, and nothing converts.")  # fmt: skip
    out.append("未模拟频次控制（它只会减少发送量）。 Frequency caps are not simulated (they can only lower the "
               "message counts).")  # fmt: skip
    if guards.quiet is not None:
        out.append(f"免打扰时段 {guards.quiet_text}（按每个人的时区）：其间的消息推迟到时段结束。 Quiet hours "
                   f"{guards.quiet_text} (in each person's time zone): a message due inside them goes when they end.")  # fmt: skip
    elif journey.settings.transactional:
        out.append("事务型旅程：不受免打扰和频次控制限制。 A transactional journey: no quiet hours, no frequency caps.")
    if any(n.type == "ab" for n in journey.graph.nodes):
        if journey_id is not None:
            out.append("A/B 分组与正式运行相同（按旅程、节点和人确定）。 A/B arms are those the journey will assign "
                       "(fixed by journey, node and person).")  # fmt: skip
        else:
            out.append("草稿还没有旅程 ID：A/B 各组人数比例相同，但分到的人会与发布后不同。 A draft has no journey id "
                       "yet: the A/B arms have the right sizes but not the same people as after publishing.")  # fmt: skip
    if prior:
        out.append("之前进入过该旅程的人按重复进入规则处理；仍在旅程中的人视为整个期间都在。 People who entered this "
                   "journey before count for the re-entry policy; those inside now are taken to stay inside.")  # fmt: skip
    if sampled:
        out.append(f"抽样模拟了 {people} 人，计数乘以 {scale:.3f}。 A deterministic sample of {people} people was "
                   f"simulated; counts are multiplied by {scale:.3f}.")  # fmt: skip
    out.append(f"日期按工作区时区 {tz} 计算。 Days are local dates in the workspace time zone {tz}.")
    return out


__all__ = ["DryRun", "DryRunDay", "DryRunEntry", "DryRunNode", "Horizon", "dry_run"]
