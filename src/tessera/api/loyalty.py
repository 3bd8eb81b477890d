"""Management API of loyalty as a whole (会员运营): run the worker's round now, and one member's
coupons, points and tier together. Coupons, points and tiers have their own routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from tessera.api.deps import get_instance, require_admin
from tessera.api.schemas import REFUSALS
from tessera.runtime import Instance
from tessera.services import loyalty_member
from tessera.services.loyalty_common import resolve_member
from tessera.services.loyalty_member import MemberLoyalty
from tessera.services.loyalty_worker import LoyaltyRound, run_once

router = APIRouter(prefix="/v1/admin/loyalty", tags=["loyalty"], dependencies=[Depends(require_admin)])
InstanceDep = Annotated[Instance, Depends(get_instance)]


@router.post("/run", response_model=LoyaltyRound, responses=REFUSALS)
def run(
    inst: InstanceDep, daily: Annotated[bool, Query(description="also run the daily jobs now")] = False
) -> LoyaltyRound:
    """Run the loyalty worker's round now: orders → points, redemptions, tiers; expiry; events."""
    return run_once(inst, force_daily=daily)


@router.get("/members/{member}", response_model=MemberLoyalty, responses=REFUSALS)
def member(
    inst: InstanceDep,
    member: str,
    history: Annotated[int, Query(ge=1, le=500, description="points entries and tier changes to show")] = 50,
) -> MemberLoyalty:
    """A member's coupons, points (balance, lots, history) and tier (with history) — 会员权益总览."""
    profile_id = resolve_member(inst, member)
    return loyalty_member.member_loyalty(inst, profile_id, history=history)
