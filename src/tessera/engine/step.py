"""The journey step function: ``step(journey, state, person, now, event) → Step(state, effects, visits)``.

Pure: no store, no clock, no network. The worker loads a person's state, calls :func:`step` when
a timer is due, when the person has just entered, or when an event arrives, and then writes the
new state, the visits and the effects in one transaction. Effects (send, coupon, tag …) are carried
out afterwards by ``services/journey_effects.py`` and the dispatcher, each under an idempotency
key, so a step replayed after a crash changes nothing twice.

Time inside a step is *logical*: a person resumed by a timer continues from the timer's due time,
not from when the worker got round to it. So after a clock jump of a week, a chain of waits
resolves in order and each visit records when it would have happened.

A person's state:

* ``node`` — where they are; ``status`` — ``active`` (to be advanced; ``due_at`` is when they got
  there, the logical time to continue from), ``waiting`` (a timer
  ``due_at`` and/or an event ``wait_event``), ``completed`` (reached a handle with no edge) or
  ``exited`` (an exit node);
* ``data`` — what the journey learned: ``event`` (the trigger's properties), ``arms`` (A/B
  assignments per node), ``waited`` (the properties of each awaited event, per node).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tessera.domain.journeys import EventMatch, Journey, WaitData
from tessera.engine.matching import event_matches

#: Node types that are actions: they produce an effect and continue through ``next``.
ACTION_TYPES = frozenset(
    {"email", "sms", "push", "wechat", "webhook", "coupon", "points", "tag", "attribute", "notify"}
)
_MAX_HOPS = 1000


@dataclass
class State:
    node: str
    status: str = "active"
    due_at: datetime | None = None
    wait_event: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.status in ("active", "waiting")


@dataclass(frozen=True)
class Person:
    """What a step may know about the person: ids, time zone, traits, and split answers.

    ``matches(node_id, path_index)`` answers whether the person meets a split path's condition
    (the worker evaluates conditions for a whole batch with the compiler)."""

    journey_id: str
    profile_id: str
    timezone: str = "Asia/Shanghai"
    traits: Mapping[str, Any] = field(default_factory=dict)
    matches: Callable[[str, int], bool] = lambda _node, _path: False


@dataclass(frozen=True)
class Event:
    name: str
    properties: Mapping[str, Any]
    at: datetime


@dataclass(frozen=True)
class Action:
    """Carry out node ``node`` (its type and data are in the journey version) at logical time ``at``."""

    node: str
    type: str
    at: datetime


@dataclass(frozen=True)
class Converted:
    """The person reached a goal (``node``: a goal node; None: the journey's goal)."""

    node: str | None
    at: datetime


@dataclass(frozen=True)
class Visit:
    """The person left ``node`` through ``handle`` (``exit`` for exit nodes) at ``at``."""

    node: str
    handle: str
    at: datetime


@dataclass
class Step:
    state: State
    effects: list[Action | Converted] = field(default_factory=list)
    visits: list[Visit] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.effects or self.visits)


def enter(journey: Journey, *, trigger: Mapping[str, Any] | None = None) -> State:
    """A new person's state, at the entry node (advance it with :func:`step`)."""
    data: dict[str, Any] = {}
    if trigger:
        data["event"] = dict(trigger)
    return State(node=journey.entry.id, status="active", data=data)


def arm_for(journey_id: str, node_id: str, profile_id: str, weights: list[tuple[str, float]]) -> str:
    """Deterministic A/B assignment: the same person always lands in the same arm of a node."""
    digest = hashlib.sha256(f"{journey_id}\x1f{node_id}\x1f{profile_id}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64
    total = sum(w for _, w in weights)
    acc = 0.0
    for handle, w in weights:
        acc += w / total
        if u < acc:
            return handle
    return weights[-1][0]


def _parse_when(value: Any, zone: ZoneInfo) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=zone)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=zone)
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=zone)
        dt = datetime.fromisoformat(text)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=zone)


def _field_value(name: str, state: State, person: Person) -> Any:
    if name.startswith("event."):
        return (state.data.get("event") or {}).get(name[6:])
    key = name[7:] if name.startswith("traits.") else name
    return person.traits.get(key)


def _at_local_time(moment: datetime, wait: WaitData, zone: ZoneInfo) -> datetime:
    assert wait.at_time is not None
    local = moment.astimezone(zone)
    return datetime.combine(local.date(), wait.at_time, tzinfo=zone).astimezone(UTC)


def wait_due(wait: WaitData, state: State, person: Person, t: datetime) -> datetime | None:
    """When a wait entered at ``t`` ends (None: it does not wait — a missing date)."""
    zone = ZoneInfo(person.timezone)
    if wait.mode == "duration":
        assert wait.span is not None
        return t + wait.span.delta
    if wait.mode in ("event",):
        assert wait.timeout is not None
        return t + wait.timeout.delta
    if wait.mode == "until_date":
        assert wait.field is not None
        when = _parse_when(_field_value(wait.field, state, person), zone)
        if when is None:
            return None
        when = when + wait.offset.delta
        if wait.at_time is not None:
            when = _at_local_time(when, wait, zone)
        return when.astimezone(UTC)
    # local_time: the next at_time (strictly after t) on an allowed day, in the person's zone
    assert wait.at_time is not None
    local = t.astimezone(zone)
    for days in range(0, 9):
        day = local.date() + timedelta(days=days)
        if wait.days_of_week is not None and day.weekday() not in wait.days_of_week:
            continue
        candidate = datetime.combine(day, wait.at_time, tzinfo=zone).astimezone(UTC)
        if candidate > t:
            return candidate
    raise AssertionError("a local time within 8 days always exists")


def _awaited(node: Any) -> EventMatch | None:
    if node.type == "goal":
        return node.data.event
    if node.type == "wait" and node.data.mode == "event":
        return node.data.event
    return None


def step(journey: Journey, state: State, person: Person, now: datetime, event: Event | None = None) -> Step:
    """Advance one person as far as they can go now; see the module docstring."""
    st = replace(state, data={k: (dict(v) if isinstance(v, dict) else v) for k, v in state.data.items()})
    out = Step(st)
    if not st.live:
        return out
    t = now
    if st.status == "waiting":
        node = journey.node(st.node)
        match = _awaited(node)
        if event is not None:
            if match is None or not event_matches(match, event.name, event.properties):
                return out
            if st.due_at is not None and event.at > st.due_at:
                return out  # arrived after the timeout: the timer decides
            since = st.data.get("since")
            if since is not None and event.at < datetime.fromisoformat(since):
                return out  # happened before the person started waiting
            t = min(event.at, now)
            st.data.setdefault("waited", {})[node.id] = dict(event.properties)
            handle = "converted" if node.type == "goal" else "event"
            if node.type == "goal":
                out.effects.append(Converted(node.id, event.at))
        elif st.due_at is not None and now >= st.due_at:
            t = st.due_at
            handle = "timeout" if match is not None else "next"
        else:
            return out
        _move(journey, st, out, node.id, handle, t)
    elif event is not None:
        return out  # an active person is advanced by the timer path, not by events
    elif st.due_at is not None and st.due_at <= now:
        t = st.due_at  # entered (or was moved on) at due_at: continue from then, not from when we got here
    for _ in range(_MAX_HOPS):
        if st.status != "active":
            return out
        node = journey.node(st.node)
        kind = node.type
        if kind == "entry":
            _move(journey, st, out, node.id, "next", t)
        elif kind == "wait":
            due = wait_due(node.data, st, person, t)
            if node.data.mode == "event":
                assert node.data.event is not None and due is not None
                _wait(st, due, node.data.event.name, t)
            elif due is None or due <= t:
                _move(journey, st, out, node.id, "next", t)
            else:
                _wait(st, due, None, t)
        elif kind == "goal":
            _wait(st, t + timedelta(days=node.data.within_days), node.data.event.name, t)
        elif kind == "split":
            handle = "else"
            for i, path in enumerate(node.data.paths):
                if person.matches(node.id, i):
                    handle = path.handle
                    break
            _move(journey, st, out, node.id, handle, t)
        elif kind == "ab":
            arms = st.data.setdefault("arms", {})
            if node.id not in arms:
                arms[node.id] = arm_for(person.journey_id, node.id, person.profile_id,
                                        [(a.handle, a.weight) for a in node.data.arms])  # fmt: skip
            _move(journey, st, out, node.id, arms[node.id], t)
        elif kind in ACTION_TYPES:
            out.effects.append(Action(node.id, kind, t))
            _move(journey, st, out, node.id, "next", t)
        elif kind == "exit":
            out.visits.append(Visit(node.id, "exit", t))
            st.status = "exited"
            st.due_at = None
            st.wait_event = None
        else:  # pragma: no cover - the definition's union has no other types
            raise AssertionError(f"unknown node type {kind}")
    raise AssertionError("a DAG cannot need more hops than it has nodes")


def _wait(st: State, due: datetime, event: str | None, t: datetime) -> None:
    st.status = "waiting"
    st.data["since"] = t.isoformat()
    st.due_at = due
    st.wait_event = event


def _move(journey: Journey, st: State, out: Step, node_id: str, handle: str, t: datetime) -> None:
    out.visits.append(Visit(node_id, handle, t))
    st.data.pop("since", None)
    st.due_at = None
    st.wait_event = None
    nxt = journey.after(node_id, handle)
    if nxt is None:
        st.status = "completed"
    else:
        st.node = nxt
        st.status = "active"


__all__ = ["ACTION_TYPES", "Action", "Converted", "Event", "Person", "State", "Step", "Visit", "arm_for", "enter",
           "step", "wait_due"]  # fmt: skip
