"""Management API of static tag values (静态标签): bulk set, file import, and tag API keys."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, File, Form, HTTPException, Request, UploadFile

from tessera.api.deps import get_instance, load_acknowledged, require_admin
from tessera.runtime import Instance
from tessera.services import tag_static
from tessera.services.tag_catalogue import CatalogueError
from tessera.services.tag_static import ApiKey, IssuedApiKey, SetReport

router = APIRouter(prefix="/v1/admin", tags=["tag values"], dependencies=[Depends(require_admin)])
InstanceDep = Annotated[Instance, Depends(get_instance)]
CODES = {403: "forbidden", 404: "not_found", 409: "conflict", 413: "too_large"}


@contextmanager
def refusals() -> Iterator[None]:
    """Refusals of the tag services as 4xx answers naming the field (``{"error", "field", "message"}``)."""
    try:
        yield
    except CatalogueError as e:
        raise HTTPException(e.status, {"error": CODES.get(e.status, "invalid_tag"), "field": e.field,
                                       "message": e.message}) from None  # fmt: skip


@router.post("/tags/{key}/values", response_model=SetReport)
def set_values(
    request: Request,
    instance: InstanceDep,
    key: str,
    body: Annotated[
        dict[str, Any],
        Body(
            examples=[
                {
                    "op": "add",
                    "items": [
                        {"profile_id": "p_…", "value": "高价值"},
                        {"id_type": "phone", "id_value": "138 0013 8000", "value": "高价值"},
                        {"email": "zs@example.com", "value": "高价值"},
                    ],
                }
            ]  # fmt: skip
        ),
    ],
) -> SetReport:
    """Set, remove or replace values of a static tag (``op``: add | remove | replace; at most 100,000
    items). Items that fail are reported with their index and not applied; the rest apply at once."""
    load_acknowledged(request)
    with refusals():
        op, items = tag_static.parse_body(body)
        return tag_static.set_values(instance, key, items, op=op, trigger="api", source="api")


@router.post("/tags/{key}/import", response_model=SetReport)
def import_values(
    request: Request,
    instance: InstanceDep,
    key: str,
    file: Annotated[UploadFile, File(description="CSV: an identifier column (phone / 手机号 …) and value / 标签值")],
    op: Annotated[str, Form(description="add, remove or replace")] = "add",
    encoding: Annotated[str, Form(description="utf-8 (with or without BOM) or gbk …")] = "utf-8",
) -> SetReport:
    """Set values of a static tag from a CSV file; lines that fail are reported by line number."""
    load_acknowledged(request)
    data = file.file.read()
    with refusals():
        return tag_static.import_values(instance, key, data, op=tag_static.check_op(op), encoding=encoding,
                                        source=file.filename or "file")  # fmt: skip


@router.post("/tag-api-keys", status_code=201, response_model=IssuedApiKey)
def create_api_key(instance: InstanceDep, body: Annotated[dict[str, Any], Body()]) -> IssuedApiKey:
    """A key for the open tag API: ``{name, read: [category | "*"], write: [category | "*"]}``; the key
    is in this answer only."""
    with refusals(), instance.operational.session() as s:
        return tag_static.create_api_key(session=s, body=body, now=instance.clock.now())


@router.get("/tag-api-keys", response_model=list[ApiKey])
def list_api_keys(instance: InstanceDep) -> list[ApiKey]:
    """Every tag API key (revoked ones too), without secrets."""
    with instance.operational.session() as s:
        return tag_static.list_api_keys(session=s)


@router.delete("/tag-api-keys/{key_id}", response_model=ApiKey)
def revoke_api_key(instance: InstanceDep, key_id: int) -> ApiKey:
    """Revoke a tag API key: it is refused (401) from now on."""
    with refusals(), instance.operational.session() as s:
        return tag_static.revoke_api_key(session=s, key_id=key_id, now=instance.clock.now())
