"""The 360° profile view over HTTP (admin token): lookup by identifier or id, timeline pages, search."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any

import duckdb
from fastapi import APIRouter, Depends, HTTPException, Query

from tessera.api.deps import get_instance, require_admin
from tessera.domain.identity import IdentityRules
from tessera.runtime import Instance
from tessera.services import loyalty_member, profile_view, tag_catalogue
from tessera.services import sources as sources_service
from tessera.services.identity_rules import get_rules
from tessera.services.profile_view import Profile360, ProfileHit, ProfileRef, ProfileViewError, Timeline

router = APIRouter(prefix="/v1/admin/profiles", tags=["profiles"], dependencies=[Depends(require_admin)])
InstanceDep = Annotated[Instance, Depends(get_instance)]
TimelineLimit = Annotated[int, Query(ge=1, le=1000, description="events on the timeline page")]
OrdersLimit = Annotated[int, Query(ge=1, le=1000, description="latest orders shown")]
Before = Annotated[str | None, Query(description="next_before of the previous page, or an ISO time")]
Events = Annotated[list[str] | None, Query(description="keep only these event names (repeatable)")]
LiveAttributes = Annotated[
    bool, Query(description="compute attributes now instead of reading the stored ones (profile refresh)")
]


@contextmanager
def _reading(instance: Instance) -> Iterator[duckdb.DuckDBPyConnection]:
    """A cursor in a read transaction: every section sees the same snapshot."""
    cur = instance.analytic.cursor()
    try:
        cur.execute("BEGIN TRANSACTION")
        try:
            yield cur
        finally:
            cur.execute("ROLLBACK")
    finally:
        cur.close()


def _context(instance: Instance) -> tuple[IdentityRules, dict[int, str]]:
    return get_rules(instance.operational), sources_service.source_names(instance.operational)


def _bad(exc: ProfileViewError) -> HTTPException:
    return HTTPException(400, {"error": "invalid_request", "field": exc.field, "message": exc.message})


def _not_found(field: str, message: str) -> HTTPException:
    return HTTPException(404, {"error": "not_found", "field": field, "message": message})


def _before(value: str | None) -> str | datetime | None:
    """A cursor stays a string; an ISO time (``2025-03-01T08:00:00+08:00``) means events before it."""
    if value is None or "|" in value:
        return value
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return value  # the service names it as a bad cursor


def _view(instance: Instance, *, identifier: str | None, profile_id: str | None, **kw: Any) -> Profile360:
    rules, names = _context(instance)
    with instance.operational.session() as s:
        tags = {t.key: t for t in tag_catalogue.list_tags(session=s)}
    try:
        with _reading(instance) as cur:
            ref = profile_view.find_profile(cur, rules=rules, identifier=identifier, profile_id=profile_id)
            if ref is None and identifier is not None:
                id_type, value = profile_view.normalised_identifier(rules, identifier)
                raise _not_found("identifier", f"no profile has the identifier {id_type}:{value}")
            if ref is None:
                raise _not_found("profile_id", f"no profile {profile_id}")
            view = profile_view.profile_360(cur, ref=ref, rules=rules, source_names=names, tag_catalogue=tags, **kw)
    except ProfileViewError as exc:
        raise _bad(exc) from None
    view.loyalty = loyalty_member.member_loyalty(instance, view.profile.profile_id)
    return view


@router.get("/lookup", response_model=Profile360)
def lookup(
    instance: InstanceDep,
    identifier: Annotated[str, Query(min_length=1, description="TYPE:VALUE, e.g. phone:13800138000")],
    timeline_limit: TimelineLimit = 50,
    orders_limit: OrdersLimit = 20,
    live: LiveAttributes = False,
) -> Profile360:
    """The 360° view of the profile holding an identifier (normalised first: any phone format works)."""
    return _view(
        instance,
        identifier=identifier,
        profile_id=None,
        timeline_limit=timeline_limit,
        orders_limit=orders_limit,
        live_attributes=live,
    )


@router.get("/search", response_model=list[ProfileHit])
def search(
    instance: InstanceDep,
    q: Annotated[str, Query(description="part of a phone number, an e-mail address or a name (2+ characters)")],
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> list[ProfileHit]:
    """Profiles by partial phone, e-mail or name (for the console), most recently seen first."""
    rules = get_rules(instance.operational)
    try:
        with _reading(instance) as cur:
            return profile_view.search_profiles(cur, q=q, limit=limit, rules=rules)
    except ProfileViewError as exc:
        raise _bad(exc) from None


@router.post("/refresh")
def refresh(instance: InstanceDep) -> dict[str, Any]:
    """Recompute the stored attributes (``profile_attributes``) of every profile."""
    from tessera.services.profile_attributes import refresh_attributes

    rules, names = _context(instance)
    with instance.analytic.transaction() as cur:
        n = refresh_attributes(cur, rules=rules, source_names=names, now=instance.clock.now())
    return {"refreshed": n}


@router.get("/{profile_id}", response_model=Profile360)
def show(
    profile_id: str,
    instance: InstanceDep,
    timeline_limit: TimelineLimit = 50,
    orders_limit: OrdersLimit = 20,
    live: LiveAttributes = False,
) -> Profile360:
    """The 360° view by profile id; a merged-away id answers the surviving profile (``redirected_from``)."""
    return _view(
        instance,
        identifier=None,
        profile_id=profile_id,
        timeline_limit=timeline_limit,
        orders_limit=orders_limit,
        live_attributes=live,
    )


@router.get("/{profile_id}/events", response_model=Timeline)
def events(
    profile_id: str,
    instance: InstanceDep,
    before: Before = None,
    event: Events = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: TimelineLimit = 50,
) -> Timeline:
    """A page of the profile's timeline, newest first; follow ``next_before`` for older pages."""
    rules, names = _context(instance)
    try:
        with _reading(instance) as cur:
            ref: ProfileRef | None = profile_view.find_profile(cur, rules=rules, profile_id=profile_id)
            if ref is None:
                raise _not_found("profile_id", f"no profile {profile_id}")
            obs = profile_view.observations(cur, profile_idx=ref.profile_idx)
            return profile_view.timeline(
                cur, obs=obs, source_names=names, limit=limit, before=_before(before), events=event,
                since=since, until=until,
            )  # fmt: skip
    except ProfileViewError as exc:
        raise _bad(exc) from None
