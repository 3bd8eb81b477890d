"""Management API of loyalty: points (积分) — the programme, balances and history, grants, spends and
adjustments, the expiry and notice jobs, order processing and its rejections (docs/points.md).

Refusals answer ``{success: false, error, field, message, reason, problems}`` (404/409/422).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query
from pydantic import BaseModel, ConfigDict, Field

from tessera.api.deps import get_instance, require_admin
from tessera.api.schemas import REFUSALS
from tessera.runtime import Instance
from tessera.services import loyalty_orders, points
from tessera.services.loyalty_common import resolve_member
from tessera.services.loyalty_member import AccountOut, EntryOut, account_out, entry_out

router = APIRouter(prefix="/v1/admin/loyalty", tags=["loyalty"], dependencies=[Depends(require_admin)])
InstanceDep = Annotated[Instance, Depends(get_instance)]


class ProgramOut(BaseModel):
    version: int = Field(description="0: the default programme (never set)")
    program: dict[str, Any]


class PostIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    member: str = Field(description="profile id (p_…) or TYPE:VALUE, e.g. phone:+8613800000000")
    points: int = Field(description="earn / spend: > 0; adjust: ≠ 0 (signed)")
    reason: str = Field(min_length=1, max_length=200)
    key: str = Field(min_length=1, max_length=200, description="idempotency key: the same key answers the first call")
    campaign: str | None = Field(default=None, max_length=100)
    source_ref: str | None = Field(default=None, max_length=200)


class AdjustIn(PostIn):
    allow_negative: bool = Field(default=False, description="let the balance go below 0")


class PostedOut(BaseModel):
    entry: EntryOut
    balance: int
    replayed: bool = Field(description="true: the key existed; this is the first call's entry")


class ExpiryOut(BaseModel):
    profiles: int
    entries: int
    points: int


class NoticesOut(BaseModel):
    notices: int = Field(description="new Points Expiring events queued")


class OrdersOut(BaseModel):
    batches: int
    events_read: int
    orders_read: int
    orders_new: int
    points: int
    bonuses: int
    refunds: int
    rejections: int
    profiles: int
    more: bool
    seconds: float
    notes: list[str]
    timings: dict[str, float] = Field(description="seconds per phase: read, compute, write, commit")


class RejectionOut(BaseModel):
    id: int
    key: str
    kind: str
    profile_id: str | None
    code: str | None
    order_id: str | None
    reason: str
    detail: str | None
    at: datetime


def _entry(e: points.Entry) -> EntryOut:
    return entry_out(e)


def _posted(p: points.Posted) -> PostedOut:
    return PostedOut(entry=_entry(p.entry), balance=p.balance, replayed=p.replayed)


@router.get("/points/program", response_model=ProgramOut, summary="The points programme",
            description="积分规则（未设置时为默认规则）。 The stored points programme, or the default.")  # fmt: skip
def get_program(instance: InstanceDep) -> ProgramOut:
    with instance.operational.session() as s:
        prog, version = points.program_version(s)
    return ProgramOut(version=version, program=prog.model_dump(mode="json"))


@router.put("/points/program", response_model=ProgramOut, responses=REFUSALS, summary="Set the points programme",
            description="保存积分规则（新版本）；422 列出每个问题的字段路径。 Validate and store a new version; a 422 "
            "names every problem by its field path.")  # fmt: skip
def put_program(instance: InstanceDep, body: Annotated[dict[str, Any], Body()]) -> ProgramOut:
    prog, version = points.set_program(instance, body)
    return ProgramOut(version=version, program=prog.model_dump(mode="json"))


@router.post("/points/earn", response_model=PostedOut, responses=REFUSALS, summary="Grant points",
             description="发放积分（幂等键）。 Grant points to a member; emits Points Earned.")  # fmt: skip
def earn(instance: InstanceDep, body: PostIn) -> PostedOut:
    return _posted(points.earn(instance, member=body.member, points=body.points, reason=body.reason, key=body.key,
                               campaign=body.campaign, source_ref=body.source_ref))  # fmt: skip


@router.post("/points/spend", response_model=PostedOut, responses=REFUSALS, summary="Spend points",
             description="积分消费；余额不足时 409 insufficient_points。 Use points; 409 insufficient_points beyond "
             "the balance (nothing written).")  # fmt: skip
def spend(instance: InstanceDep, body: PostIn) -> PostedOut:
    return _posted(points.spend(instance, member=body.member, points=body.points, reason=body.reason, key=body.key,
                                campaign=body.campaign, source_ref=body.source_ref))  # fmt: skip


@router.post("/points/adjust", response_model=PostedOut, responses=REFUSALS, summary="Adjust points",
             description="积分调整（正负）。 Correct a balance up or down.")  # fmt: skip
def adjust(instance: InstanceDep, body: AdjustIn) -> PostedOut:
    return _posted(points.adjust(instance, member=body.member, points=body.points, reason=body.reason, key=body.key,
                                 campaign=body.campaign, source_ref=body.source_ref,
                                 allow_negative=body.allow_negative))  # fmt: skip


@router.post("/points/expire", response_model=ExpiryOut, summary="Expire points now",
             description="立即执行积分过期。 Run the expiry job at the current time.")  # fmt: skip
def expire(instance: InstanceDep) -> ExpiryOut:
    got = points.expire_points(instance, instance.clock.now())
    return ExpiryOut(profiles=got.profiles, entries=got.entries, points=got.points)


@router.post("/points/notices", response_model=NoticesOut, summary="Send expiry notices now",
             description="立即生成积分即将过期事件。 Queue Points Expiring events now.")  # fmt: skip
def notices(instance: InstanceDep) -> NoticesOut:
    return NoticesOut(notices=points.expiring_notices(instance, instance.clock.now()))


@router.post("/orders/process", response_model=OrdersOut, summary="Process orders now",
             description="立即处理新订单、退款与奖励事件。 Process new orders, refunds and bonus events now.")  # fmt: skip
def process(instance: InstanceDep) -> OrdersOut:
    got = loyalty_orders.process_orders(instance, instance.clock.now())
    return OrdersOut(**{f: getattr(got, f) for f in OrdersOut.model_fields})


@router.get("/rejections", response_model=list[RejectionOut], summary="Order processing rejections",
            description="处理订单时被拒的优惠券核销等。 Coupon uses and refunds refused while processing orders.")  # fmt: skip
def rejections(instance: InstanceDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[RejectionOut]:
    return [
        RejectionOut.model_validate(r, from_attributes=True) for r in loyalty_orders.rejections(instance, limit=limit)
    ]


@router.get("/points/{member}", response_model=AccountOut, responses=REFUSALS, summary="A member's points",
            description="会员积分：余额、累计、未过期批次与最近到期。 Balance, totals, open lots and the next expiry.")  # fmt: skip
def account(instance: InstanceDep, member: str) -> AccountOut:
    pid = resolve_member(instance, member)
    with instance.operational.session() as s:
        return account_out(s, pid, instance.clock.now())


@router.get("/points/{member}/history", response_model=list[EntryOut], responses=REFUSALS,
            summary="A member's points history",
            description="积分流水（新到旧）；before 翻页。 Ledger entries, newest first; page with before=<id>.")  # fmt: skip
def history(instance: InstanceDep, member: str, limit: Annotated[int, Query(ge=1, le=1000)] = 50,
            before: Annotated[int | None, Query(ge=1)] = None) -> list[EntryOut]:  # fmt: skip
    pid = resolve_member(instance, member)
    with instance.operational.session() as s:
        return [_entry(e) for e in points.history(s, pid, limit=limit, before=before)]
