"""Management API of the tag catalogue (标签体系): categories and tag definitions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Body, Depends, HTTPException, Query
from fastapi.responses import Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from tessera.api.deps import get_instance, require_admin
from tessera.domain.tags import Category, Tag
from tessera.runtime import Instance
from tessera.services import tag_catalogue as catalogue
from tessera.services import tag_runs, tag_values
from tessera.services.tag_catalogue import CatalogueError

router = APIRouter(prefix="/v1/admin", tags=["tags"], dependencies=[Depends(require_admin)])
InstanceDep = Annotated[Instance, Depends(get_instance)]
_CODES = {404: "not_found", 409: "conflict"}


@contextmanager
def _session(instance: Instance) -> Iterator[Session]:
    """A unit of work whose refusals become 4xx answers naming the field."""
    try:
        with instance.operational.session() as s:
            yield s
    except CatalogueError as e:
        raise HTTPException(e.status, {"error": _CODES.get(e.status, "invalid_tag"), "field": e.field,
                                       "message": e.message}) from None  # fmt: skip


@router.get("/tag-categories", response_model=list[Category])
def list_categories(instance: InstanceDep) -> list[Category]:
    """The category tree (parents by key), the seeds' defaults first."""
    with _session(instance) as s:
        return catalogue.list_categories(session=s, now=instance.clock.now())


@router.post("/tag-categories", status_code=201, response_model=Category)
def create_category(instance: InstanceDep, body: Annotated[dict[str, Any], Body()]) -> Category:
    with _session(instance) as s:
        return catalogue.create_category(session=s, body=body, now=instance.clock.now())


@router.delete("/tag-categories/{key}", status_code=204)
def delete_category(instance: InstanceDep, key: str) -> Response:
    """Remove an empty category (refused, naming what is in it, otherwise)."""
    with _session(instance) as s:
        catalogue.delete_category(session=s, key=key)
    return Response(status_code=204)


@router.get("/tags", response_model=list[Tag])
def list_tags(instance: InstanceDep, category: str | None = None, status: str | None = None) -> list[Tag]:
    with _session(instance) as s:
        return catalogue.list_tags(session=s, category=category, status=status)


@router.post("/tags", status_code=201, response_model=Tag)
def create_tag(instance: InstanceDep, body: Annotated[dict[str, Any], Body()]) -> Tag:
    """Define a tag: key, name / name_en, category, value_type, enum_values, multi, kind, schedule, status."""
    with _session(instance) as s:
        return catalogue.create_tag(session=s, body=body, now=instance.clock.now())


# -- computing, history and quality ---------------------------------------------------------------
class TagRunOut(BaseModel):
    run_id: str
    tag_key: str
    trigger: str
    status: str
    started_at: datetime
    finished_at: datetime
    rows: int
    profiles: int
    added: int
    removed: int
    error: str | None
    details: dict[str, Any]


@router.post("/tags/preview")
def preview_tag(instance: InstanceDep, body: Annotated[dict[str, Any], Body()]) -> dict[str, Any]:
    """Compute an unsaved rule, SQL or model tag definition: coverage, distribution, the first 100
    (profile id, value) rows. Nothing is written."""
    with _session(instance):
        return tag_runs.preview(instance, body)


@router.get("/tags/quality")
def all_quality(instance: InstanceDep, status: str | None = "active") -> list[dict[str, Any]]:
    """Quality of every tag (of ``status``; empty = all): coverage, distribution, last run, usage, flags."""
    with _session(instance) as s:
        tags = catalogue.list_tags(session=s, status=status or None)
    return tag_runs.qualities(instance, tags)


@router.post("/tags/{key}/run", response_model=list[TagRunOut])
def run_tag(instance: InstanceDep, key: str, incremental: bool = False) -> list[TagRunOut]:
    """Compute a rule, SQL or model tag now and swap its values in (a failed run changes nothing)."""
    with _session(instance) as s:
        tag = catalogue.get_tag(session=s, key=key)
        if tag.status == "archived":
            raise CatalogueError(409, "status", f"tag {key!r} is archived")
        tag_runs.computer_for(tag)  # a static tag answers 422
    results = tag_runs.run_tags(instance, [tag], trigger="manual", incremental=incremental)
    return [TagRunOut.model_validate(r, from_attributes=True) for r in results]


@router.get("/tags/{key}/runs")
def tag_runs_of(
    instance: InstanceDep, key: str, limit: Annotated[int, Query(ge=1, le=1000)] = 50
) -> list[dict[str, Any]]:
    with _session(instance) as s:
        catalogue.get_tag(session=s, key=key)
    return tag_values.runs(instance.analytic.cursor(), key, limit=limit)


@router.get("/tags/{key}/quality")
def tag_quality(instance: InstanceDep, key: str) -> dict[str, Any]:
    with _session(instance) as s:
        tag = catalogue.get_tag(session=s, key=key)
    return tag_runs.quality(instance, tag)


@router.get("/tags/{key}/holders")
def tag_holders(
    instance: InstanceDep,
    key: str,
    at: Annotated[str, Query(description="a date (the end of that local day) or an ISO datetime")],
    value: str | None = None,
    limit: Annotated[int, Query(ge=0, le=10_000)] = 100,
) -> dict[str, Any]:
    """Who had the tag (= ``value``) on a date or at a time, from the history."""
    with _session(instance) as s:
        catalogue.get_tag(session=s, key=key)
        cutoff = _instant(at, instance.settings.timezone)
    total, ids = tag_values.holders_at(instance.analytic.cursor(), key, cutoff, value=value, limit=limit)
    return {"key": key, "value": value, "at": cutoff, "profiles": total, "profile_ids": ids}


@router.get("/tags/{key}/trend")
def tag_trend(instance: InstanceDep, key: str, since: date, until: date, value: str | None = None) -> dict[str, Any]:
    """Per local day and value: how many profiles held it at the end of the day."""
    with _session(instance) as s:
        catalogue.get_tag(session=s, key=key)
        if until < since or (until - since).days > 3660:
            raise CatalogueError(422, "until", "until must be on or after since, at most 10 years later")
    days = tag_values.trend(instance.analytic.cursor(), key, since=since, until=until,
                            tz=instance.settings.timezone, value=value)  # fmt: skip
    return {"key": key, "timezone": instance.settings.timezone, "days": days}


def _instant(text: str, tz: str) -> datetime:
    try:
        if len(text) == 10:
            return tag_values.end_of_day(date.fromisoformat(text), tz)
        t = datetime.fromisoformat(text)
    except ValueError:
        raise CatalogueError(422, "at", f"{text!r} is not an ISO date or datetime") from None
    return t if t.tzinfo else t.replace(tzinfo=ZoneInfo(tz))


@router.get("/tags/{key}", response_model=Tag)
def read_tag(instance: InstanceDep, key: str) -> Tag:
    with _session(instance) as s:
        return catalogue.get_tag(session=s, key=key)


@router.patch("/tags/{key}", response_model=Tag)
def update_tag(instance: InstanceDep, key: str, body: Annotated[dict[str, Any], Body()]) -> Tag:
    """Change a definition (a new version); archiving is refused while an active audience uses the tag."""
    with _session(instance) as s:
        return catalogue.update_tag(session=s, key=key, changes=body, now=instance.clock.now())
