"""One member's loyalty (会员权益总览): coupons with their state, points (balance, open lots,
history) and tier (benefits, progress, history) — for the API and the 360° profile."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from tessera.runtime import Instance
from tessera.services.coupons import CouponOut
from tessera.services.tiers import TierOut


class EntryOut(BaseModel):
    """A points ledger entry (积分流水)."""

    id: int
    key: str
    profile_id: str
    kind: str = Field(description="earn, spend, expire or adjust")
    points: int
    balance_after: int
    reason: str
    source: str
    source_ref: str | None = None
    campaign: str | None = None
    order_id: str | None = None
    lot_id: int | None = None
    expires_at: datetime | None = None
    occurred_at: datetime
    created_at: datetime


class LotOut(BaseModel):
    """An open lot (积分批次): what is left of a credit, and when it lapses."""

    id: int = Field(description="the crediting entry")
    points: int
    remaining: int
    earned_at: datetime
    expires_at: datetime | None


class AccountOut(BaseModel):
    """A member's points (积分账户)."""

    profile_id: str
    balance: int
    earned: int
    spent: int
    expired: int
    adjusted: int
    lots: list[LotOut] = Field(description="open lots, soonest expiry first (FIFO)")
    deficit: int = Field(description="points owed (a clawback beyond the open lots), paid by the next credits")
    next_expiry: datetime | None
    next_expiry_points: int


class PointsView(AccountOut):
    history: list[EntryOut] = Field(description="newest first")


class MemberLoyalty(BaseModel):
    """Coupons, points and tier of one member."""

    profile_id: str
    coupons: list[CouponOut] = Field(description="newest first, with their state (issued, redeemed, expired, void)")
    points: PointsView
    tier: TierOut | None = Field(description="null when no tier programme is enabled")


def account_out(s: Session, profile_id: str, now: datetime) -> AccountOut:
    from tessera.services import points

    got = points.summary(s, profile_id, now)
    return AccountOut(
        profile_id=profile_id, balance=got.balance, earned=got.earned, spent=got.spent, expired=got.expired,
        adjusted=got.adjusted, deficit=got.lots.deficit, next_expiry=got.next_expiry,
        next_expiry_points=got.next_expiry_points,
        lots=[LotOut(id=lot.id, points=lot.points, remaining=lot.remaining, earned_at=lot.earned_at,
                     expires_at=lot.expires_at) for lot in got.lots.open],
    )  # fmt: skip


def entry_out(e: object) -> EntryOut:
    return EntryOut.model_validate(e, from_attributes=True)


def member_loyalty(inst: Instance, profile_id: str, *, history: int = 50) -> MemberLoyalty:
    from tessera.services import coupons, points, tiers

    now = inst.clock.now()
    with inst.operational.session() as s:
        account = account_out(s, profile_id, now)
        return MemberLoyalty(
            profile_id=profile_id,
            coupons=coupons.profile_coupons(s, profile_id, now),
            points=PointsView(
                **account.model_dump(), history=[entry_out(e) for e in points.history(s, profile_id, limit=history)]
            ),
            tier=tiers.profile_tier(s, profile_id),
        )
