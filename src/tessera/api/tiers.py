"""Management API of loyalty: member tiers (会员等级) — the programme, levels with member counts, a
member's tier and history, manual changes and the review. Refusals answer ``RefusalOut``."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from tessera.api.deps import get_instance, require_admin
from tessera.api.schemas import REFUSALS
from tessera.runtime import Instance
from tessera.services import tiers
from tessera.services.loyalty_common import LoyaltyError, resolve_member
from tessera.services.tiers import ProgramOut, ProgramSet, ReviewOut, SetTierOut, TierOut, TiersOut

router = APIRouter(prefix="/v1/admin/loyalty", tags=["loyalty"], dependencies=[Depends(require_admin)])
InstanceDep = Annotated[Instance, Depends(get_instance)]


class ProgramIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    program: dict[str, Any] = Field(description="the tier programme (docs/tiers.md)")
    remap: dict[str, str] = Field(
        default_factory=dict, description='removed level → level its members move to, e.g. {"vip": "gold"}'
    )


class SetTierIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tier: str = Field(min_length=1, max_length=64, description="the level key, e.g. gold")
    reason: str = Field(min_length=1, max_length=180, description="why (recorded as 'manual: …')")
    key: str = Field(min_length=1, max_length=150, description="idempotency key: a replay changes nothing")


@router.get(
    "/tiers/program",
    response_model=ProgramOut,
    summary="The tier programme",
    description="会员等级方案（版本号；未设置时为 null）。 The tier programme and its version (null when never set).",
)
def get_program(instance: InstanceDep) -> ProgramOut:
    with instance.operational.session() as s:
        return tiers.program_out(s)


@router.put(
    "/tiers/program",
    response_model=ProgramSet,
    responses=REFUSALS,
    summary="Set the tier programme",
    description="保存新版本的等级方案；删除仍有会员的等级需用 remap 指定去向。 Store a new version; removing a level "
    "members hold is refused (409) unless remap moves them. Every problem is named by its path.",
)
def put_program(instance: InstanceDep, body: ProgramIn) -> ProgramSet:
    return tiers.set_program(instance, body.program, remap=body.remap)


@router.get(
    "/tiers",
    response_model=TiersOut,
    summary="Levels with member counts",
    description="各等级（门槛、权益）及会员数。 Every level with its threshold, benefits and members.",
)
def list_tiers(instance: InstanceDep) -> TiersOut:
    with instance.operational.session() as s:
        return tiers.tiers_out(s)


@router.get(
    "/tiers/members/{member}",
    response_model=TierOut,
    responses=REFUSALS,
    summary="A member's tier",
    description="会员当前等级、权益、升级进度与等级历史。 Current tier, benefits, progress to the next level and the "
    "history, newest first. MEMBER is p_… or TYPE:VALUE (phone:+8613800000000).",
)
def member_tier(instance: InstanceDep, member: str) -> TierOut:
    pid = resolve_member(instance, member)
    with instance.operational.session() as s:
        got = tiers.profile_tier(s, pid)
    if got is None:
        raise LoyaltyError(404, "tiers", "no tier programme is enabled / 未启用会员等级方案", reason="not_found")
    return got


@router.post(
    "/tiers/members/{member}",
    response_model=SetTierOut,
    responses=REFUSALS,
    summary="Set a member's tier by hand",
    description="人工调整会员等级（记录原因，幂等键重放不重复）。 A manual change by staff (reason 'manual: …'); "
    "replaying the key changes nothing.",
)
def set_member_tier(instance: InstanceDep, member: str, body: SetTierIn) -> SetTierOut:
    return tiers.set_tier(instance, member, body.tier, body.reason, body.key)


@router.post(
    "/tiers/review",
    response_model=ReviewOut,
    responses=REFUSALS,
    summary="Run the tier review now",
    description="立即评定全部会员（升级与降级）。 Evaluate everyone now (upgrades and downgrades), as the scheduled "
    "review does; returns the counts.",
)
def run_review(instance: InstanceDep) -> ReviewOut:
    return tiers.review(instance, instance.clock.now())
