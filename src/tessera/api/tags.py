"""Management API of the tag catalogue (标签体系): categories and tag definitions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException
from fastapi.responses import Response
from sqlalchemy.orm import Session

from tessera.api.deps import get_instance, require_admin
from tessera.domain.tags import Category, Tag
from tessera.runtime import Instance
from tessera.services import tag_catalogue as catalogue
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


@router.get("/tags/{key}", response_model=Tag)
def read_tag(instance: InstanceDep, key: str) -> Tag:
    with _session(instance) as s:
        return catalogue.get_tag(session=s, key=key)


@router.patch("/tags/{key}", response_model=Tag)
def update_tag(instance: InstanceDep, key: str, body: Annotated[dict[str, Any], Body()]) -> Tag:
    """Change a definition (a new version); archiving is refused while an active audience uses the tag."""
    with _session(instance) as s:
        return catalogue.update_tag(session=s, key=key, changes=body, now=instance.clock.now())
