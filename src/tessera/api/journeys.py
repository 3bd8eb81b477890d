"""Management API of journeys and campaigns (客户旅程 / 营销活动 / 流程画布).

Drafts, validation with every problem named by its JSON path, publishing as immutable versions,
pause / resume / end, reports, the outbox, dry runs, single campaigns in one call, and template
previews for a chosen person. Errors answer ``{success: false, error, field, message, problems}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from tessera.api.deps import get_instance, require_admin
from tessera.runtime import Instance
from tessera.services import journey_preview, journeys
from tessera.services.journey_dry_run import DryRun
from tessera.services.journey_preview import PreviewIn, PreviewOut
from tessera.services.journey_reports import JourneyReport, OutboxMessage
from tessera.services.journeys import CampaignDraft, JourneyDraft, JourneyOut, JourneyPatch

router = APIRouter(prefix="/v1/admin/journeys", tags=["journeys"], dependencies=[Depends(require_admin)])
InstanceDep = Annotated[Instance, Depends(get_instance)]


# --- schemas ---------------------------------------------------------------------------------------


class Problem(BaseModel):
    field: str = Field(description="JSON path, e.g. definition.nodes[1].data.template.body.zh")
    message: str


class ErrorOut(BaseModel):
    """Every refusal (拒绝): ``field`` names the first problem, ``problems`` lists them all."""

    success: Literal[False] = False
    error: str = Field(description="invalid_journey, invalid_request, not_found, conflict, unauthorized, forbidden")
    field: str = ""
    message: str
    problems: list[Problem] = Field(default_factory=list)


ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut, "description": text}
    for code, text in ((404, "not found 不存在"), (409, "conflict 冲突"), (422, "invalid 无效 (every problem named)"))
}


class DefinitionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    definition: dict[str, Any] = Field(description="nodes, edges, settings (docs/journeys.md)")


class Valid(BaseModel):
    valid: Literal[True] = True
    nodes: int = Field(description="nodes in the definition")
    edges: int = Field(description="edges in the definition")


class VersionOut(BaseModel):
    version: int
    published_at: datetime
    definition: dict[str, Any]


class DryRunIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    days: int = Field(default=30, ge=1, le=366, description="how many days to simulate")
    start: datetime | None = Field(default=None, description="when the simulation starts (default: now)")


class DraftDryRunIn(DryRunIn):
    definition: dict[str, Any] = Field(description="a definition that is not stored")


# --- drafts and checks ---------------------------------------------------------------------------------


@router.post(
    "",
    status_code=201,
    response_model=JourneyOut,
    responses=ERRORS,
    summary="Create a journey draft",
    description="新建旅程草稿（检查图结构；发布时完整检查）。 Store a draft; the graph is checked now, everything "
    "else when publishing.",
)
def create(instance: InstanceDep, body: JourneyDraft) -> JourneyOut:
    return journeys.create_journey(inst=instance, draft=body)


@router.get(
    "",
    response_model=list[JourneyOut],
    summary="List journeys",
    description="全部旅程与活动，可按状态、类型筛选。 Every journey and campaign, by status or kind.",
)
def list_all(
    instance: InstanceDep,
    status: Annotated[Literal["draft", "active", "paused", "ended"] | None, Query()] = None,
    kind: Annotated[Literal["journey", "campaign"] | None, Query()] = None,
) -> list[JourneyOut]:
    return journeys.list_journeys(inst=instance, status=status, kind=kind)


@router.post(
    "/validate",
    response_model=Valid,
    responses=ERRORS,
    summary="Validate a definition",
    description="完整检查定义（图、模板、渠道、人群、标签、条件），不保存；422 列出每个问题的 JSON 路径。 Check a "
    "definition in full without storing it; a 422 names every problem by its JSON path.",
)
def validate(instance: InstanceDep, body: DefinitionIn) -> Valid:
    with instance.operational.session() as s:
        checked = journeys.check_journey(body.definition, inst=instance, session=s)
    return Valid(nodes=len(checked.graph.nodes), edges=len(checked.graph.edges))


@router.post(
    "/campaigns",
    status_code=201,
    response_model=JourneyOut,
    responses=ERRORS,
    summary="Create and publish a single campaign",
    description="一次调用创建并发布一次性活动（人群 → 可选对照组 → 一条消息）。 A single campaign in one call: audience "
    "→ optional control group → one message; stored only if it checks.",
)
def campaign(instance: InstanceDep, body: CampaignDraft) -> JourneyOut:
    return journeys.create_campaign(inst=instance, draft=body)


@router.post(
    "/dry-run",
    response_model=DryRun,
    responses=ERRORS,
    summary="Dry-run a draft definition",
    description="模拟未保存的定义：每天进入多少人、各渠道发送多少。 Simulate a definition that is not stored: per "
    "day, people entering and messages per channel; nothing is sent or stored.",
)
def dry_run_draft(instance: InstanceDep, body: DraftDryRunIn) -> DryRun:
    from tessera.services import journey_dry_run

    return journey_dry_run.dry_run(inst=instance, definition=body.definition, days=body.days, start=body.start)


@router.post(
    "/preview",
    response_model=PreviewOut,
    responses=ERRORS,
    summary="Preview a message for a person",
    description="用某位用户的资料渲染模板（中/英），列出缺失变量。 Render a template for one person (their locale "
    "or the one given), listing variables they lack.",
)
def preview(instance: InstanceDep, body: PreviewIn) -> PreviewOut:
    return journey_preview.preview(inst=instance, request=body)


# --- one journey -------------------------------------------------------------------------------------------


@router.get(
    "/{journey_id}",
    response_model=JourneyOut,
    responses=ERRORS,
    summary="Read a journey",
    description="一个旅程：草稿定义、状态、最新版本号。 One journey: its draft, status and latest version.",
)
def read(instance: InstanceDep, journey_id: str) -> JourneyOut:
    return journeys.get_journey(inst=instance, journey_id=journey_id)


@router.patch(
    "/{journey_id}",
    response_model=JourneyOut,
    responses=ERRORS,
    summary="Edit a journey draft",
    description="修改名称或草稿；已发布版本不变（再次发布生成新版本）。 Change names or the draft; published versions "
    "never change (publish again for a new version).",
)
def update(instance: InstanceDep, journey_id: str, body: JourneyPatch) -> JourneyOut:
    return journeys.update_journey(inst=instance, journey_id=journey_id, patch=body)


@router.delete(
    "/{journey_id}",
    status_code=204,
    responses=ERRORS,
    summary="Delete a draft",
    description="删除从未发布的旅程；已发布的请结束 (end)，报表保留。 Delete a journey never published; end a published "
    "one instead (its reports stay).",
)
def delete(instance: InstanceDep, journey_id: str) -> Response:
    journeys.delete_journey(inst=instance, journey_id=journey_id)
    return Response(status_code=204)


@router.post(
    "/{journey_id}/publish",
    response_model=JourneyOut,
    responses=ERRORS,
    summary="Publish the draft as a new version",
    description="完整检查草稿并发布为下一个版本；已进入的人留在原版本。 Check the draft in full and publish it as the "
    "next version; people already inside finish on theirs.",
)
def publish(instance: InstanceDep, journey_id: str) -> JourneyOut:
    return journeys.publish(inst=instance, journey_id=journey_id)


@router.post(
    "/{journey_id}/pause",
    response_model=JourneyOut,
    responses=ERRORS,
    summary="Pause",
    description="暂停：无人进入或前进，计时器到期后恢复时补做。 Pause: no one enters or moves; timers keep their due "
    "times and run late on resume.",
)
def pause(instance: InstanceDep, journey_id: str) -> JourneyOut:
    return journeys.set_status(inst=instance, journey_id=journey_id, status="paused")


@router.post(
    "/{journey_id}/resume",
    response_model=JourneyOut,
    responses=ERRORS,
    summary="Resume",
    description="恢复运行。 Resume a paused journey.",
)
def resume(instance: InstanceDep, journey_id: str) -> JourneyOut:
    return journeys.set_status(inst=instance, journey_id=journey_id, status="active")


@router.post(
    "/{journey_id}/end",
    response_model=JourneyOut,
    responses=ERRORS,
    summary="End",
    description="结束：不再有人进入，已在旅程中的人走完。 End: no one enters any more; people inside finish.",
)
def end(instance: InstanceDep, journey_id: str) -> JourneyOut:
    return journeys.set_status(inst=instance, journey_id=journey_id, status="ended")


@router.get(
    "/{journey_id}/versions",
    response_model=list[VersionOut],
    responses=ERRORS,
    summary="Published versions",
    description="所有已发布版本（不可变）。 Every published version (immutable), oldest first.",
)
def versions(instance: InstanceDep, journey_id: str) -> list[VersionOut]:
    return [VersionOut(**v) for v in journeys.versions(inst=instance, journey_id=journey_id)]


@router.get(
    "/{journey_id}/report",
    response_model=JourneyReport,
    responses=ERRORS,
    summary="Report",
    description="旅程报表：进入、等待、发送、送达、屏蔽、转化，A/B 组对比。 Entered, waiting, sent, delivered, "
    "suppressed per node; conversion; A/B arms against the control.",
)
def report(
    instance: InstanceDep,
    journey_id: str,
    version: Annotated[int | None, Query(ge=1, description="only people who entered this version")] = None,
) -> JourneyReport:
    from tessera.services import journey_reports

    return journey_reports.report(inst=instance, journey_id=journey_id, version=version)


@router.get(
    "/{journey_id}/messages",
    response_model=list[OutboxMessage],
    responses=ERRORS,
    summary="Messages (the outbox)",
    description="发件箱明细，最新在前，地址已脱敏。 The journey's messages and effects, newest first, addresses "
    "masked.",
)
def messages(
    instance: InstanceDep,
    journey_id: str,
    node: Annotated[str | None, Query(max_length=64, description="one node's messages")] = None,
    status: Annotated[str | None, Query(description="pending, sent, delivered, suppressed, failed …")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[OutboxMessage]:
    from tessera.services import journey_reports

    return journey_reports.messages(inst=instance, journey_id=journey_id, node_id=node, status=status, limit=limit)


@router.post(
    "/{journey_id}/dry-run",
    response_model=DryRun,
    responses=ERRORS,
    summary="Dry-run a journey",
    description="模拟旅程（草稿定义）未来若干天：每天进入人数与各渠道消息数。 Simulate the journey over the next days: "
    "per day, people entering and messages per channel; nothing is sent.",
)
def dry_run(instance: InstanceDep, journey_id: str, body: DryRunIn) -> DryRun:
    from tessera.services import journey_dry_run

    return journey_dry_run.dry_run(inst=instance, journey_id=journey_id, days=body.days, start=body.start)


# --- preview -------------------------------------------------------------------------------------------------
