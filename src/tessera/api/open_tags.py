"""The open tag API (开放标签接口) for third parties: read a profile's tags, set static tags.

Authenticated by a tag API key (``Authorization: Bearer tsk_…``, created with
``POST /v1/admin/tag-api-keys``) whose scopes name the tag categories it may read and write; a
category covers its sub-categories. 401: unknown or revoked key; 403: out of scope (the message
names the category); 404: unknown tag or profile; 422: a bad body (naming the field).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request

from tessera.api.deps import Caller, get_instance, load_acknowledged, require_tag_key
from tessera.api.tag_values import refusals
from tessera.runtime import Instance
from tessera.services import tag_static
from tessera.services.tag_static import OpenProfile, OpenTag, SetReport

router = APIRouter(prefix="/v1/tags", tags=["open tag API"])
InstanceDep = Annotated[Instance, Depends(get_instance)]
CallerDep = Annotated[Caller, Depends(require_tag_key)]


def _access(instance: Instance, who: Caller) -> tag_static.Access:
    with instance.operational.session() as s:
        return tag_static.access(session=s, scopes=who.scopes, now=instance.clock.now())


@router.get("/definitions", response_model=list[OpenTag])
def definitions(instance: InstanceDep, who: CallerDep) -> list[OpenTag]:
    """The tags (not archived) in categories the key may read or write."""
    allowed = _access(instance, who)
    with instance.operational.session() as s:
        return tag_static.definitions(session=s, allowed=allowed)


@router.get("/profiles", response_model=OpenProfile)
def profile_by_identifier(
    instance: InstanceDep,
    who: CallerDep,
    id_type: Annotated[str, Query(description="phone, email, user_id, member_id, wechat_unionid …")],
    id_value: Annotated[str, Query(description="as written: +86 138 0013 8000, 13800138000 …")],
) -> OpenProfile:
    """A profile's values of the tags the key may read, found by an identifier (normalised first)."""
    with refusals():
        return tag_static.profile_values(instance, allowed=_access(instance, who), id_type=id_type, id_value=id_value)


@router.get("/profiles/{profile_id}", response_model=OpenProfile)
def profile_by_id(instance: InstanceDep, who: CallerDep, profile_id: str) -> OpenProfile:
    """A profile's values of the tags the key may read (key, names, category, values, updated_at)."""
    with refusals():
        return tag_static.profile_values(instance, allowed=_access(instance, who), profile_id=profile_id)


@router.post("/{key}/values", response_model=SetReport)
def set_values(
    request: Request,
    instance: InstanceDep,
    who: CallerDep,
    key: str,
    body: Annotated[
        dict[str, Any],
        Body(examples=[{"op": "add", "items": [{"id_type": "phone", "id_value": "13800138000", "value": "高价值"}]}]),
    ],
) -> SetReport:
    """Add or remove values of a static tag in a category the key may write (at most 100,000 items)."""
    allowed = _access(instance, who)
    with refusals():
        with instance.operational.session() as s:
            tag_static.writable_tag(session=s, allowed=allowed, key=key)
        op, items = tag_static.parse_body(body, allow_replace=False)
        load_acknowledged(request)
        source = f"key {who.token_id} {who.name}" if who.token_id is not None else who.name
        return tag_static.set_values(instance, key, items, op=op, trigger="open_api", source=source)
