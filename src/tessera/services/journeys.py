"""Journeys and campaigns (客户旅程 / 营销活动): definitions, versions, publishing.

A journey is edited as a **draft** (the React Flow graph of :mod:`tessera.domain.journeys`);
**publishing** checks the whole definition (graph, conditions, templates, channels, audiences,
tags) and stores it as a new immutable **version**. People who entered an earlier version finish on
it; new entries take the latest. Status: ``draft`` → ``active`` (published, people enter) ⇄
``paused`` (no one enters or moves; timers keep their due times and resume late) → ``ended`` (no
one enters; people inside finish).

A **single campaign** (一次性活动) is a journey with an audience entry and one message: the
:func:`create_campaign` call builds, stores and publishes it in one step.

State lives in the operational store (``journeys``, ``journey_versions``); the worker
(:mod:`tessera.services.journey_worker`) runs published versions.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from typing import Any, Literal

from croniter import croniter
from dateutil.relativedelta import relativedelta
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from tessera.clock import as_utc
from tessera.domain.conditions import Condition, ConditionError
from tessera.domain.journeys import MESSAGE_KINDS, AudienceEntry, Journey, JourneyError, parse_journey
from tessera.errors import RequestError
from tessera.runtime import Instance
from tessera.stores.models import AudienceRow, ChannelRow, JourneyInstanceRow, JourneyRow, JourneyVersionRow

Status = Literal["draft", "active", "paused", "ended"]
LIVE_STATUSES = ("active", "paused")


class JourneyRequestError(RequestError):
    """A journey request that cannot be carried out: ``status`` is the HTTP status to answer."""

    error = "invalid_journey"


class JourneyDraft(BaseModel):
    """A new journey: names, and its definition (``nodes``, ``edges``, ``settings``)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    name_en: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    definition: dict[str, Any]


class JourneyPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, min_length=1, max_length=200)
    name_en: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    definition: dict[str, Any] | None = None


class JourneyOut(BaseModel):
    """A journey as the API shows it; ``version`` is the latest published (0: never published)."""

    id: str
    name: str
    name_en: str | None
    description: str | None
    kind: str
    status: str
    version: int
    definition: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    next_run_at: datetime | None
    last_run_at: datetime | None


def _out(row: JourneyRow) -> JourneyOut:
    return JourneyOut(
        id=row.id, name=row.name, name_en=row.name_en, description=row.description, kind=row.kind,
        status=row.status, version=row.version, definition=dict(row.draft), created_at=as_utc(row.created_at),
        updated_at=as_utc(row.updated_at), next_run_at=as_utc(row.next_run_at) if row.next_run_at else None,
        last_run_at=as_utc(row.last_run_at) if row.last_run_at else None,
    )  # fmt: skip


def new_id() -> str:
    return "jrn_" + secrets.token_hex(8)


def journey_row(session: Session, journey_id: str) -> JourneyRow:
    row = session.get(JourneyRow, journey_id)
    if row is None:
        raise JourneyRequestError(404, "journey", f"no journey {journey_id!r}")
    return row


# --- checking a definition -----------------------------------------------------------------------


def _parse(definition: Any, field: str = "definition") -> Journey:
    try:
        return parse_journey(definition)
    except JourneyError as e:
        errors = [(f"{field}.{p}" if p else field, m) for p, m in e.errors]
        raise JourneyRequestError(422, errors[0][0], errors[0][1], errors) from None


def check_journey(definition: Any, *, inst: Instance, session: Session) -> Journey:
    """Everything publishing needs: the graph, templates, channels, audiences, tags, conditions."""
    from tessera.services.audiences import compile_context
    from tessera.services.templates import MessageTemplate, check_template

    journey = _parse(definition)
    problems: list[tuple[str, str]] = []
    index = {n.id: i for i, n in enumerate(journey.graph.nodes)}
    channels = {r.name: r.kind for r in session.scalars(select(ChannelRow))}
    ctx = compile_context(inst, session)

    def at(node_id: str, rest: str) -> str:
        return f"definition.nodes[{index[node_id]}].data.{rest}"

    entry = journey.entry.data
    if entry.audience is not None and session.get(AudienceRow, entry.audience.audience_id) is None:
        problems.append((at(journey.entry.id, "audience.audience_id"), f"no audience {entry.audience.audience_id!r}"))
    nodes: list[Any] = list(journey.graph.nodes)
    for node in nodes:
        if node.type in (*MESSAGE_KINDS, "notify"):
            try:
                template = MessageTemplate.model_validate(node.data.template)
            except ValueError as e:
                problems.append((at(node.id, "template"), str(e).splitlines()[-1].strip()))
            else:
                problems += [(at(node.id, f"template.{p}"), m) for p, m in check_template(template)]
        if node.type in MESSAGE_KINDS:
            name = node.data.channel
            if name is not None and channels.get(name) != node.type:
                problems.append((at(node.id, "channel"), f"no {node.type} channel named {name!r}"))
            for j, kind in enumerate(node.data.fallback):
                if kind == node.type:
                    problems.append((at(node.id, f"fallback[{j}]"), "a fallback is another channel kind"))
        if node.type in ("webhook", "notify") and node.data.channel not in channels:
            problems.append((at(node.id, "channel"), f"no channel named {node.data.channel!r}"))
        if node.type == "webhook" and channels.get(node.data.channel) not in (None, "webhook"):
            problems.append((at(node.id, "channel"), f"channel {node.data.channel!r} is not a webhook channel"))
        if node.type == "tag":
            problems += _check_tag(session, node.data.key, node.data.value, at(node.id, "key"))
        if node.type == "coupon":
            problems += _check_coupon_template(session, node.data.template, at(node.id, "template"))
        if node.type == "split":
            for j, path in enumerate(node.data.paths):
                problems += _check_condition(path.condition, ctx, at(node.id, f"paths[{j}].condition"))
    if problems:
        raise JourneyRequestError(422, problems[0][0], problems[0][1], problems)
    return journey


def _check_coupon_template(session: Session, key: str, path: str) -> list[tuple[str, str]]:
    """A coupon node issues an active template of the coupon catalogue (docs/coupons.md)."""
    from tessera.stores.models import CouponTemplateRow

    row = session.get(CouponTemplateRow, key)
    if row is None:
        return [(path, f"no coupon template {key!r} / 没有券模板 {key!r}")]
    if row.status != "active":
        return [(path, f"coupon template {key!r} is {row.status} / 券模板 {key!r} 已{row.status}")]
    return []


def _check_tag(session: Session, key: str, value: Any, path: str) -> list[tuple[str, str]]:
    from tessera.services.tag_static import settable_tag

    try:
        settable_tag(session, key)
    except Exception as e:  # a TagError names the problem (unknown, archived, computed)
        return [(path, getattr(e, "message", str(e)))]
    return []


def _check_condition(cond: Condition, ctx: Any, path: str) -> list[tuple[str, str]]:
    from tessera.compiler import CompileError, resolve

    try:
        resolve(cond, ctx)
    except (CompileError, ConditionError) as e:
        return [(path, str(e))]
    return []


# --- versions --------------------------------------------------------------------------------------


_VERSIONS: dict[tuple[str, str, int], Journey] = {}
_VERSIONS_MAX = 2048


def load_version(session: Session, journey_id: str, version: int) -> Journey:
    """A published version. Versions never change, so each is read and parsed once per process and
    store (the worker asks for it for every person it moves)."""
    key = (str(session.get_bind().engine.url), journey_id, version)
    hit = _VERSIONS.get(key)
    if hit is not None:
        return hit
    row = session.get(JourneyVersionRow, (journey_id, version))
    if row is None:
        raise JourneyRequestError(404, "version", f"journey {journey_id} has no version {version}")
    journey = parse_journey(row.definition)
    if len(_VERSIONS) >= _VERSIONS_MAX:
        _VERSIONS.clear()
    _VERSIONS[key] = journey
    return journey


def versions(*, inst: Instance, journey_id: str) -> list[dict[str, Any]]:
    with inst.operational.session() as s:
        journey_row(s, journey_id)
        rows = s.scalars(
            select(JourneyVersionRow)
            .where(JourneyVersionRow.journey_id == journey_id)
            .order_by(JourneyVersionRow.version)
        )
        return [
            {"version": r.version, "published_at": as_utc(r.published_at), "definition": r.definition} for r in rows
        ]


# --- schedule of audience entries ------------------------------------------------------------------


def next_entry_run(entry: AudienceEntry, *, inst: Instance, after: datetime, first: datetime | None) -> datetime | None:
    """The next audience run strictly after ``after`` (``first``: the published time or ``entry.at``)."""
    from zoneinfo import ZoneInfo

    zone = ZoneInfo(inst.settings.timezone)
    start = as_utc(entry.at) if entry.at is not None else first
    if entry.cron is not None:
        it = croniter(entry.cron, after.astimezone(zone))
        return as_utc(it.get_next(datetime))
    if start is None:
        return None
    if entry.every is None:
        return start if start > after else None
    step = {"year": relativedelta(years=1), "month": relativedelta(months=1), "week": timedelta(weeks=1),
            "day": timedelta(days=1)}[entry.every]  # fmt: skip
    local = start.astimezone(zone)
    n = 0
    while True:
        candidate = as_utc(local + step * n)
        if candidate > after:
            return candidate
        n += 1
        if n > 100_000:
            return None


# --- lifecycle -------------------------------------------------------------------------------------


def _check_name(session: Session, name: str, own_id: str | None = None) -> None:
    other = session.scalar(select(JourneyRow).where(JourneyRow.name == name))
    if other is not None and other.id != own_id:
        raise JourneyRequestError(409, "name", f"a journey named {name!r} exists ({other.id})")


def create_journey(*, inst: Instance, draft: JourneyDraft, kind: str = "journey") -> JourneyOut:
    """Store a draft (checked as a graph; publishing checks the rest)."""
    now = inst.clock.now()
    journey = _parse(draft.definition)
    with inst.operational.session() as s:
        _check_name(s, draft.name)
        row = JourneyRow(
            id=new_id(), name=draft.name, name_en=draft.name_en, description=draft.description, kind=kind,
            status="draft", draft=journey.as_json(), version=0, created_at=now, updated_at=now,
        )  # fmt: skip
        s.add(row)
        s.flush()
        return _out(row)


def update_journey(*, inst: Instance, journey_id: str, patch: JourneyPatch) -> JourneyOut:
    """Change the names or the draft; published versions never change (publish again)."""
    with inst.operational.session() as s:
        row = journey_row(s, journey_id)
        if row.status == "ended":
            raise JourneyRequestError(409, "status", "an ended journey cannot be edited; copy it")
        if patch.name is not None:
            _check_name(s, patch.name, own_id=row.id)
            row.name = patch.name
        if patch.name_en is not None:
            row.name_en = patch.name_en
        if patch.description is not None:
            row.description = patch.description
        if patch.definition is not None:
            row.draft = _parse(patch.definition).as_json()
        row.updated_at = inst.clock.now()
        return _out(row)


def publish(*, inst: Instance, journey_id: str) -> JourneyOut:
    """Check the draft in full and publish it as the next version; people inside stay on theirs."""
    now = inst.clock.now()
    with inst.operational.session() as s:
        row = journey_row(s, journey_id)
        if row.status == "ended":
            raise JourneyRequestError(409, "status", "an ended journey cannot be published again")
        journey = check_journey(row.draft, inst=inst, session=s)
        version = row.version + 1
        s.add(JourneyVersionRow(journey_id=row.id, version=version, definition=journey.as_json(), published_at=now))
        row.version = version
        if row.status == "draft":
            row.status = "active"
        row.updated_at = now
        entry = journey.entry.data.audience
        start = journey.settings.start_at
        first = max(as_utc(start), now) if start is not None else now
        row.next_run_at = (
            next_entry_run(entry, inst=inst, after=now - timedelta(microseconds=1), first=first)
            if entry is not None else None
        )  # fmt: skip
        s.flush()
        out = _out(row)
    sync_watch(inst=inst)
    return out


def set_status(*, inst: Instance, journey_id: str, status: Literal["active", "paused", "ended"]) -> JourneyOut:
    """Pause, resume or end a published journey."""
    with inst.operational.session() as s:
        row = journey_row(s, journey_id)
        if row.version == 0:
            raise JourneyRequestError(409, "status", "publish the journey first")
        if row.status == "ended":
            raise JourneyRequestError(409, "status", "the journey has ended")
        row.status = status
        row.updated_at = inst.clock.now()
        if status == "ended":
            row.next_run_at = None
        out = _out(row)
    sync_watch(inst=inst)
    return out


def get_journey(*, inst: Instance, journey_id: str) -> JourneyOut:
    with inst.operational.session() as s:
        return _out(journey_row(s, journey_id))


def list_journeys(*, inst: Instance, status: str | None = None, kind: str | None = None) -> list[JourneyOut]:
    with inst.operational.session() as s:
        q = select(JourneyRow).order_by(JourneyRow.created_at)
        if status is not None:
            q = q.where(JourneyRow.status == status)
        if kind is not None:
            q = q.where(JourneyRow.kind == kind)
        return [_out(r) for r in s.scalars(q)]


def delete_journey(*, inst: Instance, journey_id: str) -> None:
    """Delete a journey that was never published (published ones are ended, and kept for reports)."""
    with inst.operational.session() as s:
        row = journey_row(s, journey_id)
        if row.version > 0:
            raise JourneyRequestError(409, "status", "a published journey is ended, not deleted (its reports stay)")
        s.delete(row)


def live_journeys(session: Session) -> list[tuple[JourneyRow, Journey]]:
    """Active and paused journeys with their latest published version."""
    rows = session.scalars(select(JourneyRow).where(JourneyRow.status.in_(LIVE_STATUSES)))
    return [(r, load_version(session, r.id, r.version)) for r in rows]


def tags_used(journey: Journey) -> set[str]:
    """Tags a journey sets or removes (tag nodes) or reads (split conditions)."""
    from tessera.domain.conditions import TagLeaf, leaves

    out: set[str] = set()
    for node in journey.graph.nodes:
        if node.type == "tag":
            out.add(node.data.key)
        elif node.type == "split":
            for path in node.data.paths:
                out |= {leaf.tag for _, leaf in leaves(path.condition) if isinstance(leaf, TagLeaf)}
    return out


def sync_watch(*, inst: Instance) -> set[str]:
    """Tell the loader which event names go to the journeys' inbox: those of live journeys, and of
    ended ones that still have people waiting (for events or goals)."""
    with inst.operational.session() as s:
        names: set[str] = set()
        for _row, journey in live_journeys(s):
            names |= journey.watched_events()
        pending = s.execute(
            select(JourneyInstanceRow.journey_id, JourneyInstanceRow.version)
            .where(JourneyInstanceRow.status.in_(("active", "waiting")))
            .group_by(JourneyInstanceRow.journey_id, JourneyInstanceRow.version)
        ).all()
        for journey_id, version in pending:
            names |= load_version(s, journey_id, version).watched_events()
    with inst.analytic.transaction() as cur:
        cur.execute("DELETE FROM journey_watch")
        if names:
            cur.executemany("INSERT INTO journey_watch VALUES (?)", [[n] for n in sorted(names)])
    return names


# --- single campaigns -------------------------------------------------------------------------------


class CampaignDraft(BaseModel):
    """A single campaign (一次性活动) in one call: an audience, when, and one message.

    ``channel``: the message kind (``sms``, ``email``, ``push``, ``wechat``); ``template`` as in a
    message node; ``at``: when (default: now); ``every``/``cron``: make it periodic."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    name_en: str | None = Field(default=None, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    audience_id: str = Field(min_length=1, max_length=64)
    channel: Literal["email", "sms", "push", "wechat"]
    template: dict[str, Any]
    channel_name: str | None = Field(default=None, max_length=100)
    fallback: list[Literal["email", "sms", "push", "wechat"]] = Field(default_factory=list)
    at: datetime | None = None
    every: Literal["year", "month", "week", "day"] | None = None
    cron: str | None = None
    end_at: datetime | None = None
    goal: dict[str, Any] | None = None
    control_percent: float | None = Field(default=None, gt=0, lt=100)
    transactional: bool = False


def campaign_definition(c: CampaignDraft) -> dict[str, Any]:
    """The journey a campaign is: entry → (control split) → message."""
    audience: dict[str, Any] = {"audience_id": c.audience_id, "refresh": True}
    for name in ("at", "every", "cron"):
        if getattr(c, name) is not None:
            audience[name] = getattr(c, name).isoformat() if name == "at" else getattr(c, name)
    message: dict[str, Any] = {"template": c.template, "fallback": c.fallback}
    if c.channel_name:
        message["channel"] = c.channel_name
    nodes: list[dict[str, Any]] = [
        {"id": "entry", "type": "entry", "data": {"audience": audience}, "position": {"x": 0, "y": 0}},
        {"id": "send", "type": c.channel, "data": message, "position": {"x": 0, "y": 120}},
    ]
    edges: list[dict[str, Any]] = []
    if c.control_percent is not None:
        nodes.insert(1, {"id": "holdout", "type": "ab", "position": {"x": 0, "y": 60}, "data": {"arms": [
            {"handle": "send", "weight": 100 - c.control_percent, "name": "发送 send"},
            {"handle": "control", "weight": c.control_percent, "control": True, "name": "对照组 control"},
        ]}})  # fmt: skip
        edges += [
            {"source": "entry", "target": "holdout"},
            {"source": "holdout", "sourceHandle": "send", "target": "send"},
        ]
    else:
        edges.append({"source": "entry", "target": "send"})
    settings: dict[str, Any] = {"reentry": {"policy": "always" if (c.every or c.cron) else "once"},
                                "transactional": c.transactional}  # fmt: skip
    if c.end_at is not None:
        settings["end_at"] = c.end_at.isoformat()
    if c.goal is not None:
        settings["goal"] = c.goal
    return {"nodes": nodes, "edges": edges, "settings": settings}


def create_campaign(*, inst: Instance, draft: CampaignDraft) -> JourneyOut:
    """Create and publish a single campaign in one step (nothing is stored if it does not check)."""
    definition = campaign_definition(draft)
    now = inst.clock.now()
    with inst.operational.session() as s:
        _check_name(s, draft.name)
        journey = check_journey(definition, inst=inst, session=s)
        row = JourneyRow(
            id=new_id(), name=draft.name, name_en=draft.name_en, description=draft.description, kind="campaign",
            status="draft", draft=journey.as_json(), version=0, created_at=now, updated_at=now,
        )  # fmt: skip
        s.add(row)
        s.flush()
        journey_id = row.id
    return publish(inst=inst, journey_id=journey_id)


def count_live(session: Session, journey_id: str) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                JourneyInstanceRow.journey_id == journey_id, JourneyInstanceRow.status.in_(("active", "waiting"))
            )
        )
        or 0
    )
