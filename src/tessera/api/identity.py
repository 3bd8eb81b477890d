"""Management API of OneID: rules, rebuild, unmerge, the merge log, rejected values."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field

from tessera.api.deps import get_instance, load_acknowledged, require_admin
from tessera.domain.identity import IdentityRules
from tessera.runtime import Instance
from tessera.services import identity_admin
from tessera.services.identity_rules import RulesError, get_rules, parse_rules, rules_version, save_rules

router = APIRouter(prefix="/v1/admin/identity", tags=["identity"], dependencies=[Depends(require_admin)])
InstanceDep = Annotated[Instance, Depends(get_instance)]


class RulesOut(BaseModel):
    version: int = Field(description="0 = the defaults, never saved")
    rules: IdentityRules


class RebuildIn(BaseModel):
    reextract: bool = Field(
        default=False, description="re-derive the raw links from stored events, customers and orders first"
    )


class RebuildOut(BaseModel):
    identifiers: int
    observations: int
    profiles: int
    components_over_limit: int
    replayed_observations: int
    redirects_added: int
    decisions: int
    seconds: dict[str, float]


class UnmergeIn(BaseModel):
    identifier: str = Field(description="TYPE:VALUE, e.g. phone:13800138000", min_length=3, max_length=600)
    reason: str | None = Field(default=None, max_length=500)


class UnmergeOut(BaseModel):
    identifier: str
    profile_id: str = Field(description="the profile that held the identifier (kept by the part with its anchor)")
    profiles: list[str] = Field(description="the profiles its observations belong to now")
    observations: int


class LogEntryOut(BaseModel):
    seq: int
    logged_at: datetime
    event_time: datetime | None
    action: str
    profile_id: str | None
    other_ids: list[str] | None
    id_type: str | None
    id_value: str | None
    reason: str
    origin: str | None
    run: str


class RejectionOut(BaseModel):
    id_type: str
    raw_value: str
    reason: str
    first_seen: datetime
    last_seen: datetime
    seen_count: int
    origin: str | None


def _identity_error(exc: identity_admin.IdentityError) -> HTTPException:
    code = "not_found" if exc.status == 404 else "invalid_identifier"
    return HTTPException(exc.status, {"error": code, "field": exc.field, "message": exc.message})


@router.get("/rules", response_model=RulesOut)
def read_rules(instance: InstanceDep) -> RulesOut:
    return RulesOut(version=rules_version(instance.operational), rules=get_rules(instance.operational))


@router.put("/rules", response_model=RulesOut)
def write_rules(request: Request, instance: InstanceDep, body: Annotated[dict[str, Any], Body()]) -> RulesOut:
    """Replace the rules. New links follow them at once; run a rebuild to apply them to stored links."""
    try:
        rules = parse_rules(body)
    except RulesError as exc:
        raise HTTPException(422, {"error": "invalid_rules", "field": exc.field, "message": exc.message}) from None
    version = save_rules(instance.operational, rules, now=instance.clock.now())
    pipeline = getattr(request.app.state, "pipeline", None)
    if pipeline is not None:
        pipeline.loader.set_rules(rules)
    return RulesOut(version=version, rules=rules)


@router.post("/rebuild", response_model=RebuildOut)
def rebuild(request: Request, instance: InstanceDep, body: RebuildIn | None = None) -> RebuildOut:
    """Recompute every profile from the raw links (``reextract``: from the stored rows)."""
    rules = get_rules(instance.operational)
    store = instance.analytic
    load_acknowledged(request)
    with store.transaction() as cur:
        report = identity_admin.rebuild_all(
            cur,
            rules=rules,
            now=instance.clock.now().replace(tzinfo=None),
            reextract_links=bool(body and body.reextract),
        )
    return RebuildOut(**vars(report))


@router.post("/unmerge", response_model=UnmergeOut)
def unmerge(request: Request, instance: InstanceDep, body: UnmergeIn) -> UnmergeOut:
    """Remove a wrong link: the identifier links to nothing else from now on; its profile splits back."""
    rules = get_rules(instance.operational)
    load_acknowledged(request)
    try:
        with instance.analytic.transaction() as cur:
            report = identity_admin.unmerge(
                cur,
                rules=rules,
                identifier=body.identifier,
                reason=body.reason,
                origin="api",
                now=instance.clock.now().replace(tzinfo=None),
            )
    except identity_admin.IdentityError as exc:
        raise _identity_error(exc) from None
    return UnmergeOut(**vars(report))


@router.get("/log", response_model=list[LogEntryOut])
def merge_log(
    instance: InstanceDep,
    action: Annotated[str | None, Query(pattern="^(merge|drop|unmerge|rebuild)$")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    before: Annotated[int | None, Query(ge=1, description="seq cursor: entries older than this")] = None,
) -> list[LogEntryOut]:
    """The append-only merge log, newest first."""
    cur = instance.analytic.cursor()
    return [LogEntryOut(**r) for r in identity_admin.recent_log(cur, action=action, limit=limit, before=before)]


@router.get("/rejections", response_model=list[RejectionOut])
def rejected_values(instance: InstanceDep, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[RejectionOut]:
    """Identifier values that were not linked (invalid phone, blocked junk value …) and why."""
    return [RejectionOut(**r) for r in identity_admin.rejections(instance.analytic.cursor(), limit=limit)]
