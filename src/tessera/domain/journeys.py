"""A journey (客户旅程 / 流程画布) as data: nodes and edges, validated, with no I/O.

The shape is the one a React Flow canvas edits::

    {"nodes": [{"id": "start", "type": "entry", "data": {...}, "position": {"x": 0, "y": 0}}, ...],
     "edges": [{"source": "start", "target": "wait1"},
               {"source": "split1", "sourceHandle": "vip", "target": "sms1"}, ...],
     "settings": {"reentry": {"policy": "once"}, "goal": {"event": "Order Completed", "within_days": 7}}}

Rules (each broken rule is reported with its JSON path, ``nodes[3].data.paths[0].condition.op``):

* exactly one ``entry`` node, which has no incoming edge; every other node is reachable from it;
* the graph is a DAG (a journey never loops; repeat a step by drawing it again);
* an edge leaves a node through one of that node's handles (:meth:`JourneyNode.handles`) and each
  handle leads to at most one node; a handle without an edge ends the journey for that person
  (``completed``), an ``exit`` node ends it explicitly (``exited``);
* ``position`` is UI metadata, kept but never read by the engine.

Node types and their handles:

* ``entry`` (``next``) — an audience (once at ``at``, or every year / month / week / day, or on a
  cron) or a behaviour trigger (an event with property filters; ``Order Completed`` as a
  ``first`` or ``repeat`` purchase).
* ``wait`` (``next``; with ``mode: event``: ``event`` and ``timeout``) — a duration, until a date
  attribute ± an offset ("the day before the booked time"), until a local time of day, or until an
  event with a timeout.
* ``split`` (each path's ``handle`` and ``else``) — ranked condition paths in the Audiences step's
  language; the first path that matches wins, "everyone else" takes ``else``.
* ``ab`` (each arm's ``handle``) — a random split with weights and a control arm, assigned
  deterministically from (journey, node, person) and recorded.
* actions (``next``): ``email``, ``sms``, ``push``, ``wechat`` (a message through the channel of that
  kind, with ``fallback`` kinds), ``webhook``, ``coupon``, ``points``, ``tag``, ``attribute``,
  ``notify`` (a message to staff).
* ``goal`` (``converted`` / ``timeout``) — waits up to ``within_days`` for a conversion event.
* ``exit`` — no handles.
"""

from __future__ import annotations

import re
from collections import defaultdict, deque
from collections.abc import Iterator, Sequence
from datetime import datetime, time, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from tessera.domain.conditions import Condition, PropertyFilter, _message, json_path, parse_condition

MAX_NODES = 200
_ID_RE = re.compile(r"^[A-Za-z0-9_\-.:]{1,64}$")
_HANDLE_RE = re.compile(r"^[A-Za-z0-9_\-]{1,40}$")
#: The message channels an action can send on.
MESSAGE_KINDS = ("email", "sms", "push", "wechat")
#: Filter operators that a trigger's property filters support (evaluated on the event itself).
TRIGGER_OPS = frozenset(
    {"eq", "neq", "in", "not_in", "gt", "gte", "lt", "lte", "between", "contains", "starts_with", "regex"}
    | {"is_set", "is_not_set"}
)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Span(_Model):
    """A length of time: any of days, hours, minutes, seconds (negative for "before")."""

    days: int = Field(default=0, ge=-3660, le=3660)
    hours: int = Field(default=0, ge=-87840, le=87840)
    minutes: int = Field(default=0, ge=-5_270_400, le=5_270_400)
    seconds: int = Field(default=0, ge=-316_224_000, le=316_224_000)

    @property
    def delta(self) -> timedelta:
        return timedelta(days=self.days, hours=self.hours, minutes=self.minutes, seconds=self.seconds)


def _check_filters(where: Sequence[PropertyFilter]) -> Sequence[PropertyFilter]:
    for f in where:
        if f.op not in TRIGGER_OPS:
            raise ValueError(f"operator {f.op} is not supported on event properties here; use one of "
                             + ", ".join(sorted(TRIGGER_OPS)))  # fmt: skip
    return where


class EventMatch(_Model):
    """An event and filters on its properties (``{"property": "score", "op": "gte", "value": 7}``)."""

    name: str = Field(min_length=1, max_length=200)
    where: list[PropertyFilter] = Field(default_factory=list, max_length=20)

    @field_validator("where")
    @classmethod
    def _filters(cls, v: list[PropertyFilter]) -> list[PropertyFilter]:
        _check_filters(v)
        return v


# --- entry -------------------------------------------------------------------------------------


class AudienceEntry(_Model):
    """Enter the members of an audience: once at ``at`` (default: when published), or periodically.

    ``every``: ``year`` / ``month`` / ``week`` / ``day`` counted from ``at``; or ``cron`` (workspace
    time zone). A dynamic audience is re-evaluated right before each run when ``refresh``."""

    audience_id: str = Field(min_length=1, max_length=64)
    at: datetime | None = None
    every: Literal["year", "month", "week", "day"] | None = None
    cron: str | None = Field(default=None, max_length=100)
    refresh: bool = True

    @model_validator(mode="after")
    def _one_schedule(self) -> AudienceEntry:
        if self.every is not None and self.cron is not None:
            raise ValueError("give every or cron, not both")
        if self.cron is not None:
            from croniter import croniter

            if not croniter.is_valid(self.cron):
                raise ValueError(f"cron is not a valid cron expression: {self.cron!r}")
        return self


class EventEntry(EventMatch):
    """Enter when an event arrives (行为触发). ``purchase``: only a ``first`` or a ``repeat`` order."""

    purchase: Literal["first", "repeat"] | None = None


class EntryData(_Model):
    audience: AudienceEntry | None = None
    event: EventEntry | None = None

    @model_validator(mode="after")
    def _one(self) -> EntryData:
        if (self.audience is None) == (self.event is None):
            raise ValueError("an entry has either audience or event")
        return self


# --- nodes -------------------------------------------------------------------------------------


class WaitData(_Model):
    """How long to wait (等待). ``mode``:

    * ``duration``: ``span``;
    * ``until_date``: the date in ``field`` (a profile trait ``traits.x`` / ``x``, or a property of
      the triggering event ``event.x``) plus ``offset`` (``{"days": -1}``: the day before), at the
      local ``at_time`` if given; a missing or past date does not wait;
    * ``local_time``: the next ``at_time`` in the person's time zone, on ``days_of_week`` (0 = Monday);
    * ``event``: until ``event`` happens (handle ``event``) or ``timeout`` passes (handle ``timeout``).
    """

    mode: Literal["duration", "until_date", "local_time", "event"]
    span: Span | None = None
    field: str | None = Field(default=None, min_length=1, max_length=200)
    offset: Span = Span()
    at_time: time | None = None
    days_of_week: list[int] | None = None
    event: EventMatch | None = None
    timeout: Span | None = None

    @model_validator(mode="after")
    def _shape(self) -> WaitData:
        need = {
            "duration": ("span",),
            "until_date": ("field",),
            "local_time": ("at_time",),
            "event": ("event", "timeout"),
        }
        for name in need[self.mode]:
            if getattr(self, name) is None:
                raise ValueError(f"a {self.mode} wait needs {name}")
        if self.mode == "duration" and self.span is not None and self.span.delta <= timedelta(0):
            raise ValueError("span must be longer than zero")
        if self.mode == "event" and self.timeout is not None and self.timeout.delta <= timedelta(0):
            raise ValueError("timeout must be longer than zero")
        if self.days_of_week is not None and (not self.days_of_week or any(d < 0 or d > 6 for d in self.days_of_week)):
            raise ValueError("days_of_week are 0 (Monday) … 6 (Sunday), at least one")
        return self


class SplitPath(_Model):
    handle: str
    name: str | None = Field(default=None, max_length=200)
    condition: Condition

    @field_validator("condition", mode="before")
    @classmethod
    def _condition(cls, v: Any) -> Any:
        return v if not isinstance(v, dict) else parse_condition(v)


class SplitData(_Model):
    """Ranked paths (条件分支): the first whose condition holds; everyone else leaves by ``else``."""

    paths: list[SplitPath] = Field(min_length=1, max_length=20)


class Arm(_Model):
    handle: str
    name: str | None = Field(default=None, max_length=200)
    weight: float = Field(gt=0, le=1_000_000)
    control: bool = False


class AbData(_Model):
    """A random / A-B split (AB 测试) with an optional control group (对照组)."""

    arms: list[Arm] = Field(min_length=2, max_length=10)

    @model_validator(mode="after")
    def _one_control(self) -> AbData:
        if sum(a.control for a in self.arms) > 1:
            raise ValueError("at most one arm is the control group")
        return self


class MessageData(_Model):
    """Send a message (``template``: ``{"subject": {"zh": …, "en": …}, "body": {…}, "data": {…}}``).

    ``channel``: a configured channel's name (default: the one channel of this kind); ``fallback``:
    kinds to try in order when this one cannot reach the person (no email → SMS)."""

    template: dict[str, Any]
    channel: str | None = Field(default=None, max_length=100)
    fallback: list[Literal["email", "sms", "push", "wechat"]] = Field(default_factory=list, max_length=3)


class WebhookData(_Model):
    """POST a signed JSON ``payload`` (string values are templates) through a webhook channel."""

    channel: str = Field(min_length=1, max_length=100)
    payload: dict[str, Any] = Field(default_factory=dict)


class CouponData(_Model):
    """Issue a coupon of a template of the coupon catalogue (docs/coupons.md); ``code`` and
    ``valid_until`` are available to later templates. ``valid_days`` can shorten the template's
    validity (the earlier end wins)."""

    template: str = Field(min_length=1, max_length=100)
    valid_days: int | None = Field(default=None, gt=0, le=3660)


class PointsData(_Model):
    """Grant points (the Loyalty step's ledger)."""

    amount: int = Field(ge=-10_000_000, le=10_000_000)
    reason: str = Field(min_length=1, max_length=200)

    @field_validator("amount")
    @classmethod
    def _nonzero(cls, v: int) -> int:
        if v == 0:
            raise ValueError("amount must not be 0")
        return v


class TagData(_Model):
    """Add or remove a static tag's value."""

    op: Literal["add", "remove"] = "add"
    key: str = Field(min_length=1, max_length=100)
    value: str | int | float | bool | None = None


class AttributeData(_Model):
    """Set profile traits; string values are templates (``{{ event.store }}``)."""

    traits: dict[str, Any] = Field(min_length=1, max_length=50)


class NotifyData(_Model):
    """Tell staff (通知员工, e.g. the dealer's manager): a message to a fixed address on a channel."""

    channel: str = Field(min_length=1, max_length=100)
    to: str = Field(min_length=1, max_length=500)
    template: dict[str, Any]


class GoalData(_Model):
    """A goal (转化目标): waits up to ``within_days`` for the event; ``converted`` or ``timeout``."""

    event: EventMatch
    within_days: float = Field(gt=0, le=3660)


class Position(BaseModel):
    model_config = ConfigDict(extra="allow")
    x: float = 0
    y: float = 0


class _NodeBase(_Model):
    id: str
    position: Position | None = None
    label: str | None = Field(default=None, max_length=200)

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not _ID_RE.match(v):
            raise ValueError("an id is 1-64 letters, digits or _-.:")
        return v

    def handles(self) -> tuple[str, ...]:
        return ("next",)


class EntryNode(_NodeBase):
    type: Literal["entry"]
    data: EntryData


class WaitNode(_NodeBase):
    type: Literal["wait"]
    data: WaitData

    def handles(self) -> tuple[str, ...]:
        return ("event", "timeout") if self.data.mode == "event" else ("next",)


class SplitNode(_NodeBase):
    type: Literal["split"]
    data: SplitData

    def handles(self) -> tuple[str, ...]:
        return (*(p.handle for p in self.data.paths), "else")


class AbNode(_NodeBase):
    type: Literal["ab"]
    data: AbData

    def handles(self) -> tuple[str, ...]:
        return tuple(a.handle for a in self.data.arms)


class MessageNode(_NodeBase):
    type: Literal["email", "sms", "push", "wechat"]
    data: MessageData


class WebhookNode(_NodeBase):
    type: Literal["webhook"]
    data: WebhookData


class CouponNode(_NodeBase):
    type: Literal["coupon"]
    data: CouponData


class PointsNode(_NodeBase):
    type: Literal["points"]
    data: PointsData


class TagNode(_NodeBase):
    type: Literal["tag"]
    data: TagData


class AttributeNode(_NodeBase):
    type: Literal["attribute"]
    data: AttributeData


class NotifyNode(_NodeBase):
    type: Literal["notify"]
    data: NotifyData


class GoalNode(_NodeBase):
    type: Literal["goal"]
    data: GoalData

    def handles(self) -> tuple[str, ...]:
        return ("converted", "timeout")


class ExitNode(_NodeBase):
    type: Literal["exit"]
    data: dict[str, Any] = Field(default_factory=dict)

    def handles(self) -> tuple[str, ...]:
        return ()


JourneyNode = Annotated[
    EntryNode | WaitNode | SplitNode | AbNode | MessageNode | WebhookNode | CouponNode | PointsNode | TagNode
    | AttributeNode | NotifyNode | GoalNode | ExitNode,
    Field(discriminator="type"),
]  # fmt: skip
NODE_TYPES = ("entry", "wait", "split", "ab", *MESSAGE_KINDS, "webhook", "coupon", "points", "tag", "attribute",
              "notify", "goal", "exit")  # fmt: skip


class Edge(_Model):
    id: str | None = Field(default=None, max_length=200)
    source: str
    target: str
    sourceHandle: str | None = None


class Reentry(_Model):
    """May a person enter again (重复进入)? ``once`` ever; after ``cooldown_days``; ``always``."""

    policy: Literal["once", "cooldown", "always"] = "once"
    cooldown_days: float | None = Field(default=None, gt=0, le=3660)

    @model_validator(mode="after")
    def _cooldown(self) -> Reentry:
        if (self.policy == "cooldown") != (self.cooldown_days is not None):
            raise ValueError("cooldown_days goes with (and only with) policy cooldown")
        return self


class JourneyGoal(EventMatch):
    """The journey's conversion (转化): the event within ``within_days`` of entering."""

    within_days: float = Field(default=7, gt=0, le=3660)


class CapSetting(_Model):
    per_day: int | None = Field(default=None, ge=0, le=1000)
    per_week: int | None = Field(default=None, ge=0, le=10000)


class JourneySettings(_Model):
    """When it runs and who may enter; goal; guard overrides (``None``: the workspace's)."""

    start_at: datetime | None = None
    end_at: datetime | None = None
    reentry: Reentry = Reentry()
    #: live instances one person may have at once (1: one at a time)
    max_live: int = Field(default=1, ge=1, le=100)
    goal: JourneyGoal | None = None
    quiet_hours: str | None = Field(default=None, max_length=20)
    caps: dict[Literal["email", "sms", "push", "wechat"], CapSetting] | None = None
    #: skip quiet hours and frequency caps (transactional journeys such as a booking reminder)
    transactional: bool = False

    @model_validator(mode="after")
    def _dates(self) -> JourneySettings:
        for name in ("start_at", "end_at"):
            v = getattr(self, name)
            if v is not None and v.tzinfo is None:
                raise ValueError(f"{name} needs a time zone offset (e.g. +08:00)")
        if self.start_at and self.end_at and self.end_at <= self.start_at:
            raise ValueError("end_at must be after start_at")
        if self.quiet_hours is not None:
            from tessera.domain.guards import QuietHours

            QuietHours.parse(self.quiet_hours)
        return self


class Graph(_Model):
    nodes: list[JourneyNode] = Field(min_length=1, max_length=MAX_NODES)
    edges: list[Edge] = Field(default_factory=list, max_length=MAX_NODES * 10)
    settings: JourneySettings = JourneySettings()


class JourneyError(ValueError):
    """A definition that does not validate; ``errors`` are (JSON path, message) pairs."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in self.errors))


_ADAPTER = TypeAdapter(Graph)


class Journey:
    """A validated journey definition with its graph indexed for the engine."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.settings = graph.settings
        self.nodes: dict[str, Any] = {n.id: n for n in graph.nodes}
        self.next: dict[tuple[str, str], str] = {(e.source, e.sourceHandle or "next"): e.target for e in graph.edges}
        entries = [n for n in graph.nodes if n.type == "entry"]
        self.entry: EntryNode = entries[0]

    def node(self, node_id: str) -> Any:
        return self.nodes[node_id]

    def after(self, node_id: str, handle: str) -> str | None:
        """The node reached from ``node_id`` through ``handle``; None ends the journey."""
        return self.next.get((node_id, handle))

    def watched_events(self) -> set[str]:
        """Event names the journey reacts to: its trigger, waits for events, goals."""
        names = set()
        if self.entry.data.event is not None:
            names.add(self.entry.data.event.name)
        for n in self.graph.nodes:
            if n.type == "wait" and n.data.event is not None:
                names.add(n.data.event.name)
            if n.type == "goal":
                names.add(n.data.event.name)
        if self.settings.goal is not None:
            names.add(self.settings.goal.name)
        return names

    def message_nodes(self) -> Iterator[Any]:
        return (n for n in self.graph.nodes if n.type in (*MESSAGE_KINDS, "notify"))

    def as_json(self) -> dict[str, Any]:
        return self.graph.model_dump(mode="json", exclude_none=True)


def _pydantic_errors(e: ValidationError) -> list[tuple[str, str]]:
    errors: dict[str, str] = {}
    for err in e.errors(include_url=False):
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p in NODE_TYPES)]
        errors.setdefault(json_path(loc), _message(err))
    return list(errors.items())


def _structure(g: Graph) -> Iterator[tuple[str, str]]:
    ids: dict[str, int] = {}
    for i, n in enumerate(g.nodes):
        if n.id in ids:
            yield f"nodes[{i}].id", f"duplicates nodes[{ids[n.id]}].id ({n.id})"
        ids.setdefault(n.id, i)
        for handle in n.handles():
            if not _HANDLE_RE.match(handle):
                yield f"nodes[{i}].data", f"handle {handle!r} must be 1-40 letters, digits, _ or -"
        if len(set(n.handles())) != len(n.handles()):
            yield f"nodes[{i}].data", "handles must be distinct (else is reserved for everyone else)"
    entries = [i for i, n in enumerate(g.nodes) if n.type == "entry"]
    if len(entries) != 1:
        yield "nodes", f"a journey has exactly one entry node, not {len(entries)}"
    by_id = {n.id: n for n in g.nodes}
    out: dict[tuple[str, str], int] = {}
    succ: dict[str, list[str]] = defaultdict(list)
    indeg: dict[str, int] = dict.fromkeys(by_id, 0)
    for j, e in enumerate(g.edges):
        path = f"edges[{j}]"
        src, dst = by_id.get(e.source), by_id.get(e.target)
        if src is None:
            yield f"{path}.source", f"no node {e.source!r}"
        if dst is None:
            yield f"{path}.target", f"no node {e.target!r}"
        if src is None or dst is None:
            continue
        handle = e.sourceHandle or "next"
        if handle not in src.handles():
            allowed = ", ".join(src.handles()) or "none (an exit ends the journey)"
            yield f"{path}.sourceHandle", f"{src.type} node {src.id} has handles: {allowed}; not {handle!r}"
            continue
        if (e.source, handle) in out:
            yield f"{path}", f"{e.source}.{handle} already leads to another node (edges[{out[(e.source, handle)]}])"
            continue
        if dst.type == "entry":
            yield f"{path}.target", "nothing leads into the entry node"
            continue
        if e.source == e.target:
            yield f"{path}", "a node cannot lead to itself"
            continue
        out[(e.source, handle)] = j
        succ[e.source].append(e.target)
        indeg[e.target] += 1
    if len(entries) == 1:
        start = g.nodes[entries[0]].id
        seen = {start}
        todo = deque([start])
        while todo:
            for t in succ[todo.popleft()]:
                if t not in seen:
                    seen.add(t)
                    todo.append(t)
        for i, n in enumerate(g.nodes):
            if n.id not in seen:
                yield f"nodes[{i}]", f"node {n.id} cannot be reached from the entry"
    # Kahn: whatever is left has a cycle
    left = dict(indeg)
    todo = deque(k for k, v in left.items() if v == 0)
    done = 0
    while todo:
        k = todo.popleft()
        done += 1
        for t in succ[k]:
            left[t] -= 1
            if left[t] == 0:
                todo.append(t)
    if done < len(left):
        cyc = sorted(k for k, v in left.items() if v > 0)
        yield "edges", "the journey loops through " + ", ".join(cyc) + " (it must be a DAG)"


def parse_journey(data: Any) -> Journey:
    """Validate a definition into a :class:`Journey`, or raise :class:`JourneyError` naming each problem."""
    try:
        graph = _ADAPTER.validate_python(data)
    except ValidationError as e:
        raise JourneyError(_pydantic_errors(e)) from None
    problems = list(_structure(graph))
    if problems:
        raise JourneyError(problems)
    return Journey(graph)


__all__ = [
    "MESSAGE_KINDS",
    "NODE_TYPES",
    "Edge",
    "Graph",
    "Journey",
    "JourneyError",
    "JourneyNode",
    "Span",
    "parse_journey",
]
