"""Journey reports (旅程报表): how many people entered, where they are, what was sent, who converted.

Everything is counted in the operational store with ``GROUP BY`` (SQLAlchemy Core, the same on
SQLite and PostgreSQL); no per-person rows are loaded. The sources:

* ``journey_instances`` — one row per person per entry (进入): its ``status`` (``active`` /
  ``waiting`` = still inside, ``completed``, ``exited``), the node it is at, ``converted_at``;
* ``journey_visits`` — one row each time a person left a node through a handle (``exit`` for exit
  nodes), so per node and per branch counts are visits;
* ``journey_outbox`` — one row per message or effect, with its ``status`` and ``reason``;
* ``journey_rewards`` — coupons and points granted.

Words used below: 进入 *entered*, 等待 *waiting*, 通过 *passed*, 发送 *sent*, 送达 *delivered*,
屏蔽 *suppressed*, 转化 *converted*, 对照组 *control*. Rates carry a Wilson 95 % interval; A/B arms
are compared with the control arm by :func:`tessera.domain.abstats.compare` (Newcombe interval
for the difference, two-proportion z-test for the p-value).
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from tessera.clock import as_utc
from tessera.domain.abstats import Proportion, compare, wilson_interval
from tessera.domain.journeys import Journey, parse_journey
from tessera.runtime import Instance
from tessera.services.journey_runner import REFUSED
from tessera.services.journeys import JourneyRequestError, journey_row
from tessera.stores.models import (
    JourneyInstanceRow,
    JourneyOutboxRow,
    JourneyRewardRow,
    JourneyVersionRow,
    JourneyVisitRow,
)

#: Instance statuses of people still inside a journey (在旅程中).
LIVE = ("active", "waiting")
#: Outbox statuses, in the order a message moves through them.
OUTBOX_STATUSES = ("pending", "sending", "sent", "delivered", "undelivered", "failed", "suppressed", "dead")
#: Statuses of messages the channel accepted (发送 sent, whatever the receipt said later).
ACCEPTED = ("sent", "delivered", "undelivered")
#: Node types whose effects go through the outbox (messages, webhooks, staff notices, tags, attributes).
OUTBOX_NODE_TYPES = frozenset({"email", "sms", "push", "wechat", "webhook", "notify", "tag", "attribute"})
REWARD_NODE_TYPES = frozenset({"coupon", "points"})


# --- result models ----------------------------------------------------------------------------------


class Rate(BaseModel):
    """A conversion rate (转化率): ``converted`` of ``total``, with its Wilson 95 % interval."""

    converted: int = Field(description="转化 converted: people whose instance has converted_at")
    total: int = Field(description="the people the rate is over (进入 entered, or who took a branch)")
    rate: float = Field(description="converted / total (0 when total is 0)")
    ci_low: float = Field(description="Wilson 95 % interval, lower end (0 when total is 0)")
    ci_high: float = Field(description="Wilson 95 % interval, upper end (1 when total is 0)")


def _rate(converted: int, total: int) -> Rate:
    p = Proportion(converted, total)
    low, high = wilson_interval(p)
    return Rate(converted=converted, total=total, rate=p.rate, ci_low=low, ci_high=high)


class VersionCounts(BaseModel):
    """One published version's people (people finish on the version they entered)."""

    version: int
    published_at: datetime | None
    entered: int = Field(description="进入 entered: instances started on this version")
    live: int = Field(description="in the journey now: active + waiting")
    active: int = Field(description="about to take their next step")
    waiting: int = Field(description="等待 waiting for a timer, an event or a goal")
    completed: int = Field(description="reached a handle with no edge (完成)")
    exited: int = Field(description="reached an exit node (退出)")
    converted: int = Field(description="转化 converted: reached the journey's goal or a goal node")


class Summary(VersionCounts):
    """The whole journey (all versions together, or the one asked for); ``version`` is the version
    reported on (the latest published when all are). ``entered`` = live + completed + exited."""

    conversion: Rate = Field(description="转化率 converted / entered, Wilson 95 % interval")
    goal: dict[str, Any] | None = Field(description="the goal of the version reported on (event, within_days)")
    versions: list[VersionCounts] = Field(description="the same counts per version (所有版本)")


class MessageCounts(BaseModel):
    """A message or effect node's outbox rows (发件箱) by status.

    ``total`` = every row; ``by_status`` has the exact status counts. The named fields group them:
    ``sent`` (发送) counts every message the channel accepted — statuses ``sent``, ``delivered`` and
    ``undelivered`` — so ``delivered`` (送达) and ``undelivered`` (未送达, from receipts) are parts of
    it; ``pending`` includes ``held`` (pending with reason ``quiet_hours``: 免打扰 until the window
    opens) and retries; ``failed`` (失败) and ``dead`` (gave up after retries: dead letter) and
    ``suppressed`` (屏蔽: never sent — no address, no consent, opted out, frequency cap …) are status
    counts. ``suppressed_by`` / ``failed_by`` split those two by ``reason``; ``fallback`` counts
    rows sent (or being sent) on a fallback channel kind (渠道降级: ``sent_kind`` ≠ ``kind``)."""

    total: int = 0
    sent: int = 0
    delivered: int = 0
    undelivered: int = 0
    sending: int = 0
    pending: int = 0
    held: int = 0
    failed: int = 0
    dead: int = 0
    suppressed: int = 0
    fallback: int = 0
    by_status: dict[str, int] = Field(default_factory=dict)
    suppressed_by: dict[str, int] = Field(default_factory=dict)
    failed_by: dict[str, int] = Field(default_factory=dict)


class NodeReport(BaseModel):
    """One node (节点) of the journey.

    ``entered`` (进入) = ``passed`` + the people at the node now (active or ``waiting``);
    ``passed`` (通过) = visits: people who left the node (for an exit node: who reached it);
    ``by_handle`` = visits per handle: the branches of a split (paths and ``else``), the arms of an
    A/B node, ``event`` / ``timeout`` of a wait for an event, ``converted`` / ``timeout`` of a goal."""

    id: str
    type: str
    label: str | None = None
    in_latest: bool = Field(description="the node is in the version reported on (else only an older one)")
    entered: int = 0
    active: int = 0
    waiting: int = 0
    passed: int = 0
    by_handle: dict[str, int] = Field(default_factory=dict)
    messages: MessageCounts | None = Field(default=None, description="message and effect nodes: the outbox")
    rewards: int | None = Field(default=None, description="coupon / points nodes: rewards granted")
    rewards_refused: dict[str, int] | None = Field(
        default=None, description="coupon / points nodes: grants loyalty refused, by reason (out_of_stock …)"
    )


class Comparison(BaseModel):
    """An arm against the control group (对照组): ``diff`` = arm rate − control rate; ``lift`` =
    diff / control rate (提升, None when the control rate is 0); ``ci_low`` / ``ci_high`` = Newcombe
    95 % interval for ``diff``; ``p_value`` = two-sided two-proportion z-test (None when undefined);
    ``significant`` (显著) = p < 0.05."""

    control: str = Field(description="the control arm's handle")
    diff: float
    lift: float | None
    ci_low: float
    ci_high: float
    p_value: float | None
    significant: bool


class BranchReport(BaseModel):
    """People who took a branch (a split path or an A/B arm) and their conversions."""

    handle: str
    name: str | None = None
    people: int = Field(description="people who left the node through this handle")
    conversion: Rate = Field(description="转化 among them (instance converted_at set)")
    weight: float | None = Field(default=None, description="A/B arms: the configured weight")
    share: float | None = Field(default=None, description="A/B arms: the configured share of people")
    control: bool = Field(default=False, description="A/B: the control arm (对照组)")
    comparison: Comparison | None = Field(default=None, description="A/B arms other than the control: vs the control")


class SplitReport(BaseModel):
    """A split (条件分支) or an A/B node (AB 测试) and its branches, in the definition's order."""

    node_id: str
    type: str
    label: str | None = None
    control: str | None = Field(default=None, description="A/B: the control arm's handle")
    branches: list[BranchReport]


class JourneyReport(BaseModel):
    """The report of one journey (旅程报表); see the module docstring for where each number comes from."""

    journey_id: str
    name: str
    name_en: str | None
    kind: str
    status: str
    version: int = Field(description="the latest published version (0: never published)")
    scope: int | None = Field(description="the version reported on; None = all versions together")
    summary: Summary
    nodes: list[NodeReport]
    splits: list[SplitReport] = Field(description="split and A/B nodes with their branches' conversions")


class OutboxMessage(BaseModel):
    """One outbox row (a message or effect) as a list shows it; ``address`` is masked."""

    key: str
    version: int
    node_id: str
    profile_id: str
    kind: str
    channel: str | None
    sent_kind: str | None = Field(
        default=None, description="the kind it went out on (≠ kind after a fallback 渠道降级)"
    )
    address: str | None = Field(description="masked: 138****5678, z***@example.com")
    status: str
    reason: str | None
    attempts: int
    error: str | None
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None
    next_attempt_at: datetime | None


# --- report -------------------------------------------------------------------------------------------


def _definitions(session: Session, journey_id: str) -> dict[int, tuple[Journey, datetime]]:
    rows = session.scalars(select(JourneyVersionRow).where(JourneyVersionRow.journey_id == journey_id))
    return {r.version: (parse_journey(r.definition), as_utc(r.published_at)) for r in rows}


def report(*, inst: Instance, journey_id: str, version: int | None = None) -> JourneyReport:
    """The report of a journey: all versions together, or only ``version`` (people who entered it).

    Nodes are those of the version reported on (the latest when ``version`` is None, the draft if
    never published), followed by nodes of other versions that people passed through."""
    with inst.operational.session() as s:
        row = journey_row(s, journey_id)
        defs = _definitions(s, journey_id)
        if version is not None and version not in defs:
            raise JourneyRequestError(404, "version", f"journey {journey_id} has no version {version}")
        scope = version if version is not None else row.version
        primary = defs[scope][0] if scope in defs else parse_journey(row.draft)

        ji, jv, jo = JourneyInstanceRow, JourneyVisitRow, JourneyOutboxRow
        inst_where = [ji.journey_id == journey_id] + ([ji.version == version] if version is not None else [])
        visit_where = [jv.journey_id == journey_id] + ([jv.version == version] if version is not None else [])
        out_where = [jo.journey_id == journey_id] + ([jo.version == version] if version is not None else [])

        # people per version and status
        per_version: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for v, status, n, converted in s.execute(
            select(ji.version, ji.status, func.count(), func.count(ji.converted_at))
            .where(*inst_where)
            .group_by(ji.version, ji.status)
        ):
            per_version[int(v)][str(status)] += int(n)
            per_version[int(v)]["converted"] += int(converted)
        # people at each node now
        at_node: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for node_id, status, n in s.execute(
            select(ji.node_id, ji.status, func.count())
            .where(*inst_where, ji.status.in_(LIVE))
            .group_by(ji.node_id, ji.status)
        ):
            at_node[str(node_id)][str(status)] += int(n)
        # visits per node and handle
        visits: dict[str, dict[str, int]] = defaultdict(dict)
        for node_id, handle, n in s.execute(
            select(jv.node_id, jv.handle, func.count()).where(*visit_where).group_by(jv.node_id, jv.handle)
        ):
            visits[str(node_id)][str(handle)] = int(n)
        # outbox per node, status and reason
        outbox: dict[str, list[tuple[str, str | None, int, int]]] = defaultdict(list)
        fell_back = func.count(case((and_(jo.sent_kind.is_not(None), jo.sent_kind != jo.kind), 1)))
        for node_id, status, reason, n, fb in s.execute(
            select(jo.node_id, jo.status, jo.reason, func.count(), fell_back)
            .where(*out_where)
            .group_by(jo.node_id, jo.status, jo.reason)
        ):
            outbox[str(node_id)].append((str(status), reason, int(n), int(fb)))
        rewards: dict[str, int] = defaultdict(int)
        refused: dict[str, dict[str, int]] = defaultdict(dict)
        for node_id, reason, n in s.execute(
            select(JourneyRewardRow.node_id, JourneyRewardRow.reason, func.count())
            .where(
                JourneyRewardRow.journey_id == journey_id,
                *([JourneyRewardRow.version == version] if version is not None else []),
            )  # fmt: skip
            .group_by(JourneyRewardRow.node_id, JourneyRewardRow.reason)
        ):
            if reason is not None and reason.startswith(REFUSED):
                refused[str(node_id)][reason.removeprefix(REFUSED)] = int(n)
            else:
                rewards[str(node_id)] += int(n)

        # the nodes: the version reported on, then others' nodes that people passed through
        nodes: dict[str, tuple[Any, bool]] = {n.id: (n, True) for n in primary.graph.nodes}
        seen = set(visits) | set(at_node) | set(outbox)
        for v in sorted(defs, reverse=True):
            if version is not None:
                break
            for other in defs[v][0].graph.nodes:
                if other.id in seen and other.id not in nodes:
                    nodes[other.id] = (other, False)
        node_reports = [
            _node_report(n, latest, visits, at_node, outbox, rewards, refused) for n, latest in nodes.values()
        ]

        # branches of splits and A/B nodes, with conversions among the people who took each handle
        branch_nodes = {nid: n for nid, (n, _) in nodes.items() if n.type in ("split", "ab")}
        branch_counts: dict[tuple[str, str], tuple[int, int]] = {}
        if branch_nodes:
            got = s.execute(
                # a conversion counts for a branch when it came after the person took the branch
                select(jv.node_id, jv.handle, func.count(), func.count(case((ji.converted_at >= jv.at, 1))))
                .select_from(jv)
                .join(ji, ji.id == jv.instance_id)
                .where(*visit_where, jv.node_id.in_(sorted(branch_nodes)))
                .group_by(jv.node_id, jv.handle)
            )
            branch_counts = {(str(a), str(b)): (int(n), int(c)) for a, b, n, c in got}
        splits = [_split_report(n, branch_counts) for n in branch_nodes.values()]

        summary = _summary(per_version, defs, version, primary)
        return JourneyReport(
            journey_id=row.id, name=row.name, name_en=row.name_en, kind=row.kind, status=row.status,
            version=row.version, scope=version, summary=summary, nodes=node_reports, splits=splits,
        )  # fmt: skip


def _counts(version: int, published_at: datetime | None, c: dict[str, int]) -> VersionCounts:
    active, waiting = c.get("active", 0), c.get("waiting", 0)
    completed, exited = c.get("completed", 0), c.get("exited", 0)
    return VersionCounts(
        version=version, published_at=published_at, entered=active + waiting + completed + exited,
        live=active + waiting, active=active, waiting=waiting, completed=completed, exited=exited,
        converted=c.get("converted", 0),
    )  # fmt: skip


def _summary(per_version: dict[int, dict[str, int]], defs: dict[int, tuple[Journey, datetime]],
             version: int | None, primary: Journey) -> Summary:  # fmt: skip
    versions = [_counts(v, defs[v][1] if v in defs else None, per_version[v]) for v in sorted(per_version)]
    total: dict[str, int] = defaultdict(int)
    for c in per_version.values():
        for k, n in c.items():
            total[k] += n
    whole = _counts(version if version is not None else max(defs, default=0), None, total)
    goal = primary.settings.goal
    return Summary(
        **whole.model_dump(exclude={"published_at"}), published_at=defs[whole.version][1] if whole.version in defs else None,
        conversion=_rate(whole.converted, whole.entered),
        goal=goal.model_dump(mode="json") if goal is not None else None, versions=versions,
    )  # fmt: skip


def _node_report(node: Any, latest: bool, visits: dict[str, dict[str, int]], at_node: dict[str, dict[str, int]],
                 outbox: dict[str, list[tuple[str, str | None, int, int]]], rewards: dict[str, int],
                 refused: dict[str, dict[str, int]]) -> NodeReport:  # fmt: skip
    by_handle = dict(visits.get(node.id, {}))
    for handle in node.handles():
        by_handle.setdefault(handle, 0)
    if node.type == "exit":
        by_handle.setdefault("exit", 0)
    passed = sum(by_handle.values())
    here = at_node.get(node.id, {})
    active, waiting = here.get("active", 0), here.get("waiting", 0)
    messages = _message_counts(outbox.get(node.id, [])) if node.type in OUTBOX_NODE_TYPES else None
    return NodeReport(
        id=node.id, type=node.type, label=node.label, in_latest=latest, entered=passed + active + waiting,
        active=active, waiting=waiting, passed=passed, by_handle=by_handle, messages=messages,
        rewards=rewards.get(node.id, 0) if node.type in REWARD_NODE_TYPES else None,
        rewards_refused=dict(refused.get(node.id, {})) if node.type in REWARD_NODE_TYPES else None,
    )  # fmt: skip


def _message_counts(rows: list[tuple[str, str | None, int, int]]) -> MessageCounts:
    out = MessageCounts()
    by_status: dict[str, int] = defaultdict(int)
    suppressed_by: dict[str, int] = defaultdict(int)
    failed_by: dict[str, int] = defaultdict(int)
    for status, reason, n, fell_back in rows:
        by_status[status] += n
        out.total += n
        out.fallback += fell_back
        if status == "pending" and reason == "quiet_hours":
            out.held += n
        if status == "suppressed":
            suppressed_by[reason or "unknown"] += n
        if status == "failed":
            failed_by[reason or "unknown"] += n
    out.sent = sum(by_status.get(st, 0) for st in ACCEPTED)
    for name in ("delivered", "undelivered", "sending", "pending", "failed", "dead", "suppressed"):
        setattr(out, name, by_status.get(name, 0))
    out.by_status = {st: by_status[st] for st in OUTBOX_STATUSES if by_status.get(st)} | {
        st: n for st, n in by_status.items() if st not in OUTBOX_STATUSES
    }
    out.suppressed_by = dict(sorted(suppressed_by.items(), key=lambda kv: (-kv[1], kv[0])))
    out.failed_by = dict(sorted(failed_by.items(), key=lambda kv: (-kv[1], kv[0])))
    return out


def _split_report(node: Any, counts: dict[tuple[str, str], tuple[int, int]]) -> SplitReport:
    if node.type == "ab":
        arms = node.data.arms
        total_weight = sum(a.weight for a in arms)
        control = next((a for a in arms if a.control), None)
        branches = []
        ctrl = counts.get((node.id, control.handle), (0, 0)) if control is not None else None
        for a in arms:
            people, converted = counts.get((node.id, a.handle), (0, 0))
            comparison = None
            if ctrl is not None and control is not None and not a.control:
                c = compare(Proportion(converted, people), Proportion(ctrl[1], ctrl[0]))
                comparison = Comparison(control=control.handle, diff=c.diff, lift=c.lift, ci_low=c.ci_low,
                                        ci_high=c.ci_high, p_value=c.p_value, significant=c.significant)  # fmt: skip
            branches.append(BranchReport(
                handle=a.handle, name=a.name, people=people, conversion=_rate(converted, people), weight=a.weight,
                share=a.weight / total_weight, control=a.control, comparison=comparison,
            ))  # fmt: skip
        return SplitReport(node_id=node.id, type="ab", label=node.label, branches=branches,
                           control=control.handle if control is not None else None)  # fmt: skip
    handles = [(p.handle, p.name) for p in node.data.paths] + [("else", "其他 everyone else")]
    branches = []
    for handle, name in handles:
        people, converted = counts.get((node.id, handle), (0, 0))
        branches.append(BranchReport(handle=handle, name=name, people=people, conversion=_rate(converted, people)))
    return SplitReport(node_id=node.id, type="split", label=node.label, branches=branches)


# --- the outbox, row by row ----------------------------------------------------------------------------

_EMAIL = re.compile(r"^([^@\s]+)@([^@\s]+)$")
_PHONE = re.compile(r"^\+?[0-9][0-9 \-]{5,}[0-9]$")


def mask_address(address: str | None, kind: str | None = None) -> str | None:
    """An address as a list may show it: ``13812345678`` → ``138****5678``, ``+8613812345678`` →
    ``+86138****5678``, ``zhang@example.com`` → ``z***@example.com``; other ids (openids, push
    tokens) keep their first and last 4 characters; a webhook URL keeps scheme, host and path."""
    if address is None:
        return None
    text = address.strip()
    m = _EMAIL.match(text)
    if m:
        return f"{m.group(1)[0]}***@{m.group(2)}"
    if _PHONE.match(text):
        digits = re.sub(r"[ \-]", "", text)
        return digits[:-8] + "****" + digits[-4:] if len(digits) > 8 else "****" + digits[-4:]
    if kind == "webhook" or text.startswith(("http://", "https://")):
        return text.split("?", 1)[0].split("#", 1)[0]
    if len(text) <= 8:
        return "****"
    return text[:4] + "****" + text[-4:]


def messages(*, inst: Instance, journey_id: str, node_id: str | None = None, status: str | None = None,
             limit: int = 100) -> list[OutboxMessage]:  # fmt: skip
    """The journey's outbox rows (发件箱), newest first: optionally one node's, one status's; at most
    ``limit`` (1–1000). Addresses are masked (:func:`mask_address`)."""
    if status is not None and status not in OUTBOX_STATUSES:
        raise JourneyRequestError(422, "status", "one of " + ", ".join(OUTBOX_STATUSES))
    if not 1 <= limit <= 1000:
        raise JourneyRequestError(422, "limit", "between 1 and 1000")
    jo = JourneyOutboxRow
    with inst.operational.session() as s:
        journey_row(s, journey_id)
        q = select(jo).where(jo.journey_id == journey_id)
        if node_id is not None:
            q = q.where(jo.node_id == node_id)
        if status is not None:
            q = q.where(jo.status == status)
        rows = s.scalars(q.order_by(jo.created_at.desc(), jo.id.desc()).limit(limit))
        return [
            OutboxMessage(
                key=r.key,
                version=r.version,
                node_id=r.node_id,
                profile_id=r.profile_id,
                kind=r.kind,
                channel=r.channel,
                sent_kind=r.sent_kind,
                address=mask_address(r.address, r.sent_kind or r.kind),
                status=r.status,
                reason=r.reason,
                attempts=r.attempts,
                error=r.error,
                created_at=as_utc(r.created_at),
                sent_at=as_utc(r.sent_at) if r.sent_at else None,
                delivered_at=as_utc(r.delivered_at) if r.delivered_at else None,
                next_attempt_at=as_utc(r.next_attempt_at) if r.status == "pending" else None,
            )  # fmt: skip
            for r in rows
        ]


__all__ = [
    "BranchReport",
    "Comparison",
    "JourneyReport",
    "MessageCounts",
    "NodeReport",
    "OutboxMessage",
    "Rate",
    "SplitReport",
    "Summary",
    "VersionCounts",
    "mask_address",
    "messages",
    "report",
]
