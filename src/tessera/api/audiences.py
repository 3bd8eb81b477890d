"""Management API of audiences (群组 / 人群包): define, count, list members, explain, export, push, insight."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from tessera.api.deps import get_instance, load_acknowledged, require_admin
from tessera.runtime import Instance
from tessera.services import audience_import, audience_insight, audience_push, audience_refresh, audiences
from tessera.services.audience_import import ImportReport, ImportRow
from tessera.services.audience_insight import Explanation, Insight
from tessera.services.audience_refresh import Change, RefreshResult, Run
from tessera.services.audiences import (
    Audience,
    AudienceDraft,
    AudiencePatch,
    Estimate,
    MemberRow,
    MembersPage,
)

router = APIRouter(prefix="/v1/admin/audiences", tags=["audiences"], dependencies=[Depends(require_admin)])
InstanceDep = Annotated[Instance, Depends(get_instance)]


class DefinitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    definition: dict[str, Any]


class SampleIn(DefinitionIn):
    size: int = Field(default=20, ge=1, le=1000)
    seed: str = Field(default="", max_length=100)


class ExplainIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    identifier: str | None = Field(default=None, description="TYPE:VALUE, e.g. phone:13800138000", max_length=600)
    profile_id: str | None = Field(default=None, max_length=100)
    definition: dict[str, Any] | None = Field(default=None, description="only for /explain without an audience")


class ExportIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    columns: list[str] = Field(
        default_factory=list, max_length=100, description="e.g. name, city, id:phone, tag:rfm_group"
    )
    format: Literal["csv", "parquet"] = "csv"
    hash_identifiers: bool = Field(default=False, description="SHA-256 of normalised phones and emails (ad platforms)")


class PushIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    destination: str = Field(description="destination id or name")
    columns: list[str] = Field(default_factory=list, max_length=100)
    batch_size: int = Field(default=1000, ge=1, le=10_000)
    hash_identifiers: bool = False


@router.post("", status_code=201, response_model=Audience)
def create(request: Request, instance: InstanceDep, body: AudienceDraft) -> Audience:
    """Create a static (snapshot now) or dynamic (evaluated when used, refreshed on ``schedule``) audience."""
    if body.kind == "static":
        load_acknowledged(request)
    return audiences.create_audience(inst=instance, draft=body)


@router.get("", response_model=list[Audience])
def list_all(instance: InstanceDep, kind: str | None = None, status: str | None = None) -> list[Audience]:
    return audiences.list_audiences(inst=instance, kind=kind, status=status)


@router.post("/estimate", response_model=Estimate)
def estimate(request: Request, instance: InstanceDep, body: DefinitionIn) -> Estimate:
    """Count who a definition selects, without saving it (what the editor shows while you type)."""
    return audiences.estimate(inst=instance, definition=body.definition)


@router.post("/sample", response_model=list[MemberRow])
def sample_definition(instance: InstanceDep, body: SampleIn) -> list[MemberRow]:
    return audiences.sample(inst=instance, definition=body.definition, size=body.size, seed=body.seed)


@router.post("/explain", response_model=Explanation)
def explain_definition(instance: InstanceDep, body: ExplainIn) -> Explanation:
    """Why a profile does or does not match a draft definition, leaf by leaf."""
    return audience_insight.explain(
        inst=instance, identifier=body.identifier, profile_id=body.profile_id, definition=body.definition
    )


@router.post("/import", status_code=201, response_model=ImportReport)
async def import_file(
    instance: InstanceDep,
    file: Annotated[UploadFile, File(description="CSV with a header naming identifier types (phone, email, 手机号 …)")],
    name: Annotated[str, Form(min_length=1, max_length=200)],
    id_type: Annotated[str | None, Form(description="for a one-column file without header")] = None,
    encoding: Annotated[str, Form()] = "utf-8",
    name_en: Annotated[str | None, Form(max_length=200)] = None,
) -> ImportReport:
    """Create an imported audience (上传人群包) from a file; every row is matched through OneID and reported."""
    data = await file.read()
    return audience_import.import_audience(
        inst=instance, name=name, data=data, id_type=id_type, encoding=encoding, name_en=name_en
    )


@router.get("/{audience_id}", response_model=Audience)
def read(instance: InstanceDep, audience_id: str) -> Audience:
    return audiences.get_audience(inst=instance, audience_id=audience_id)


@router.patch("/{audience_id}", response_model=Audience)
def update(request: Request, instance: InstanceDep, audience_id: str, body: AudiencePatch) -> Audience:
    """Change names, schedule, status or the definition (a static audience is re-snapshotted)."""
    load_acknowledged(request)
    return audiences.update_audience(inst=instance, audience_id=audience_id, patch=body)


@router.delete("/{audience_id}", status_code=204)
def delete(instance: InstanceDep, audience_id: str) -> Response:
    audiences.delete_audience(inst=instance, audience_id=audience_id)
    return Response(status_code=204)


@router.get("/{audience_id}/count", response_model=Estimate)
def count(instance: InstanceDep, audience_id: str) -> Estimate:
    """How many members now (a dynamic audience is evaluated; others count their stored members)."""
    return audiences.estimate(inst=instance, audience_id=audience_id)


@router.get("/{audience_id}/members", response_model=MembersPage)
def members(
    instance: InstanceDep,
    audience_id: str,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    after: Annotated[int | None, Query(description="next_after of the previous page")] = None,
) -> MembersPage:
    return audiences.members_page(inst=instance, audience_id=audience_id, limit=limit, after=after)


@router.get("/{audience_id}/sample", response_model=list[MemberRow])
def sample(
    instance: InstanceDep,
    audience_id: str,
    size: Annotated[int, Query(ge=1, le=1000)] = 20,
    seed: Annotated[str, Query(max_length=100)] = "",
) -> list[MemberRow]:
    return audiences.sample(inst=instance, audience_id=audience_id, size=size, seed=seed)


@router.post("/{audience_id}/refresh", response_model=RefreshResult)
def refresh(request: Request, instance: InstanceDep, audience_id: str) -> RefreshResult:
    """Re-evaluate a dynamic audience now; record and emit who entered and who left."""
    load_acknowledged(request)
    return audience_refresh.refresh(inst=instance, audience_id=audience_id, trigger="api")


@router.get("/{audience_id}/changes", response_model=list[Change])
def changes(
    instance: InstanceDep,
    audience_id: str,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    change: Literal["entered", "exited"] | None = None,
) -> list[Change]:
    """Membership changes, newest first."""
    audiences.get_audience(inst=instance, audience_id=audience_id)
    return audience_refresh.changes(inst=instance, audience_id=audience_id, limit=limit, change=change)


@router.get("/{audience_id}/runs", response_model=list[Run])
def runs(instance: InstanceDep, audience_id: str, limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> list[Run]:
    audiences.get_audience(inst=instance, audience_id=audience_id)
    return audience_refresh.runs(inst=instance, audience_id=audience_id, limit=limit)


@router.get("/{audience_id}/import-rows", response_model=list[ImportRow])
def import_rows(
    instance: InstanceDep,
    audience_id: str,
    status: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> list[ImportRow]:
    """The rows of an imported audience's file and how each matched (``status=unmatched`` for the misses)."""
    audiences.get_audience(inst=instance, audience_id=audience_id)
    return audience_import.import_rows(
        inst=instance, audience_id=audience_id, status=status, limit=limit, offset=offset
    )


@router.post("/{audience_id}/explain", response_model=Explanation)
def explain(instance: InstanceDep, audience_id: str, body: ExplainIn) -> Explanation:
    """Why a profile is or is not in a dynamic audience: each leaf, matched or not, with the value seen."""
    return audience_insight.explain(
        inst=instance, identifier=body.identifier, profile_id=body.profile_id, audience_id=audience_id
    )


@router.get("/{audience_id}/insight", response_model=Insight)
def insight(
    instance: InstanceDep,
    audience_id: str,
    columns: Annotated[str, Query(description="comma-separated: city, member_level, total_spend, tag:rfm_group …")],
    compare_to: Annotated[str, Query(description="'everyone' or another audience id")] = "everyone",
    top: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> Insight:
    """Distribution of attributes and tags in the audience vs. a comparison, with TGI."""
    names = [c.strip() for c in columns.split(",") if c.strip()]
    return audience_insight.insight(
        inst=instance, audience_id=audience_id, columns=names, compare_to=compare_to, top=top
    )


@router.post("/{audience_id}/export")
def export(instance: InstanceDep, audience_id: str, body: ExportIn) -> FileResponse:
    """Download the members with chosen columns as CSV or Parquet."""
    path, _rows = audience_push.export(
        inst=instance, audience_id=audience_id, columns=body.columns, fmt=body.format,
        hash_identifiers=body.hash_identifiers,
    )  # fmt: skip
    media = "text/csv; charset=utf-8" if body.format == "csv" else "application/vnd.apache.parquet"
    return FileResponse(path, media_type=media, filename=Path(path).name, background=BackgroundTask(Path(path).unlink))


@router.post("/{audience_id}/push", response_model=audience_push.PushOut)
def push(request: Request, instance: InstanceDep, audience_id: str, body: PushIn) -> audience_push.PushOut:
    """Send the members to a webhook destination in signed, retried batches carrying chosen columns."""
    load_acknowledged(request)
    return audience_push.push(
        inst=instance, audience_id=audience_id, destination=body.destination, columns=body.columns,
        batch_size=body.batch_size, hash_identifiers=body.hash_identifiers,
    )  # fmt: skip


@router.get("/{audience_id}/pushes", response_model=list[audience_push.PushOut])
def pushes(instance: InstanceDep, audience_id: str) -> list[audience_push.PushOut]:
    return audience_push.list_pushes(inst=instance, audience_id=audience_id)
