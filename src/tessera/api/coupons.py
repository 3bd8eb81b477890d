"""Management API of loyalty: coupons (优惠券) — templates, issuing (one member, an audience, a CSV
file), coupons, redemption, voiding, the expiry job and reports (docs/coupons.md).

Refusals answer ``{success: false, error, field, message, reason}`` (reason: ``unknown_template``,
``out_of_stock``, ``limit_reached``, ``inactive``, ``not_found``, ``expired``, ``not_owner`` …).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from tessera.api.deps import get_instance, require_admin
from tessera.api.schemas import REFUSALS
from tessera.domain.coupons import CouponTemplate
from tessera.runtime import Instance
from tessera.services import coupon_issue, coupon_reports
from tessera.services import coupons as svc
from tessera.services.coupon_issue import BulkIssueOut, FileIssueOut, IssueOut
from tessera.services.coupon_reports import CouponReport
from tessera.services.coupons import CouponOut, TemplateOut
from tessera.services.loyalty_common import LoyaltyError

router = APIRouter(prefix="/v1/admin/loyalty", tags=["loyalty"], dependencies=[Depends(require_admin)])
InstanceDep = Annotated[Instance, Depends(get_instance)]
_TEMPLATE_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": CouponTemplate.model_json_schema(mode="validation")}}}}  # fmt: skip
_PATCH_BODY = {"requestBody": {"required": True, "content": {"application/json": {"schema": {
    "type": "object", "description": "any template fields but key (the merged template is checked whole)"}}}}}  # fmt: skip


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["active", "paused", "archived"]


class IssueIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    member: str = Field(min_length=1, description="profile id (p_…) or TYPE:VALUE, e.g. phone:+8613800000000")
    key: str = Field(min_length=1, max_length=150, description="idempotency key: the same key answers the same coupon")
    campaign: str | None = Field(default=None, max_length=100)


class AudienceIssueIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    audience_id: str = Field(min_length=1)
    key: str = Field(min_length=1, max_length=100, description="per person the key is KEY:PROFILE_ID")
    events: bool = Field(default=True, description="queue a Coupon Issued event per new coupon")


class RedeemIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    member: str = Field(min_length=1, description="the buyer: profile id or TYPE:VALUE")
    order_id: str = Field(min_length=1, max_length=200, description="also the idempotency key of the redemption")
    amount: Decimal = Field(description='the order\'s amount before the coupon, e.g. "320.00"')
    currency: str = Field(default="CNY", min_length=3, max_length=3)
    channel: str | None = Field(default=None, max_length=50)
    shipping: Decimal | None = Field(default=None, description="the shipping charge (free-shipping coupons)")


class ExpiredOut(BaseModel):
    expired: int = Field(description="coupons that lapsed now")


# --- templates ---------------------------------------------------------------------------------------


@router.post("/coupon-templates", status_code=201, response_model=TemplateOut, responses=REFUSALS,
             openapi_extra=_TEMPLATE_BODY, summary="Create a coupon template",
             description="新建券模板（立减、折扣、满减、免运费、赠品）。 Create a template: fixed, percent, threshold, "
             "shipping or gift; a 422 names the field.")  # fmt: skip
def create_template(instance: InstanceDep, body: Annotated[dict[str, Any], Body()]) -> TemplateOut:
    return svc.create_template(instance, body)


@router.get("/coupon-templates", response_model=list[TemplateOut], responses=REFUSALS, summary="List coupon templates",
            description="全部券模板，可按状态、活动筛选。 Every template, by status or campaign.")  # fmt: skip
def list_templates(
    instance: InstanceDep,
    status: Annotated[Literal["active", "paused", "archived"] | None, Query()] = None,
    campaign: Annotated[str | None, Query()] = None,
) -> list[TemplateOut]:
    return svc.list_templates(instance, status=status, campaign=campaign)


@router.get("/coupon-templates/{key}", response_model=TemplateOut, responses=REFUSALS, summary="One coupon template",
            description="查看券模板及已发数量。 A template with issued and remaining stock.")  # fmt: skip
def get_template(instance: InstanceDep, key: str) -> TemplateOut:
    return svc.get_template(instance, key)


@router.patch("/coupon-templates/{key}", response_model=TemplateOut, responses=REFUSALS, openapi_extra=_PATCH_BODY,
              summary="Change a coupon template",
              description="修改券模板（key 不变；已发券后券面不可改，库存不少于已发）。 Change fields (not the key); once "
              "coupons exist the terms are fixed and stock cannot go below issued.")  # fmt: skip
def patch_template(instance: InstanceDep, key: str, body: Annotated[dict[str, Any], Body()]) -> TemplateOut:
    return svc.patch_template(instance, key, body)


@router.post("/coupon-templates/{key}/status", response_model=TemplateOut, responses=REFUSALS,
             summary="Pause, resume or archive a template",
             description="暂停/恢复/归档：暂停与归档后不再发券，已发的券在有效期内仍可用。 Paused and archived templates "
             "issue nothing; coupons already issued stay usable until they lapse.")  # fmt: skip
def set_status(instance: InstanceDep, key: str, body: StatusIn) -> TemplateOut:
    return svc.set_status(instance, key, body.status)


# --- issuing -------------------------------------------------------------------------------------------


@router.post("/coupon-templates/{key}/issue", response_model=IssueOut, responses=REFUSALS,
             summary="Issue a coupon to a member",
             description="给一位会员发券；同一幂等键返回同一张券。 One coupon for a member; the same key answers the "
             "same coupon (replayed). 409 reasons: inactive, limit_reached, out_of_stock.")  # fmt: skip
def issue(instance: InstanceDep, key: str, body: IssueIn) -> IssueOut:
    return coupon_issue.issue(instance, key, body.member, body.key, campaign=body.campaign)


@router.post("/coupon-templates/{key}/issue-audience", response_model=BulkIssueOut, responses=REFUSALS,
             summary="Issue a coupon to every member of an audience",
             description="给群组全部成员发券（一个事务；每人幂等键 KEY:PROFILE_ID；库存不足时超出部分记为 out_of_stock）。 "
             "One transaction; per person the key is KEY:PROFILE_ID; beyond the stock people are refused "
             "out_of_stock.")  # fmt: skip
def issue_audience(instance: InstanceDep, key: str, body: AudienceIssueIn) -> BulkIssueOut:
    return coupon_issue.bulk_issue(instance, key, body.audience_id, body.key, emit_events=body.events)


@router.post("/coupon-templates/{key}/issue-file", response_model=FileIssueOut, responses=REFUSALS,
             summary="Issue coupons from a CSV file",
             description="按 CSV 文件发券（member 列：会员 ID 或 TYPE:VALUE）；问题行按行号列出。 The body is a CSV "
             "file (raw, or a multipart upload field 'file') with a member column; every row without a coupon is "
             "listed by line.", openapi_extra={"requestBody": {"content": {"text/csv": {"schema": {
                 "type": "string"}}}}})  # fmt: skip
async def issue_file(
    instance: InstanceDep,
    request: Request,
    key: str,
    issue_key: Annotated[str, Query(alias="key", min_length=1, max_length=100, description="idempotency key")],
    encoding: Annotated[str, Query()] = "utf-8",
) -> FileIssueOut:
    data: bytes
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        async with request.form() as form:
            upload = form.get("file")
            if upload is None or isinstance(upload, str):
                raise LoyaltyError(422, "file", "上传字段应为 file / upload the CSV as field 'file'", reason="invalid")
            data = await upload.read()
    else:
        data = await request.body()
    from starlette.concurrency import run_in_threadpool

    out: FileIssueOut = await run_in_threadpool(
        coupon_issue.import_issue, instance, key, data, issue_key, encoding=encoding
    )
    return out


# --- coupons ------------------------------------------------------------------------------------------------


@router.get("/coupons", response_model=list[CouponOut], responses=REFUSALS, summary="List coupons",
            description="券列表（最新在前），可按会员、模板、状态筛选。 Coupons newest first, by member, template, status.")  # fmt: skip
def list_coupons(
    instance: InstanceDep,
    member: Annotated[str | None, Query(description="profile id or TYPE:VALUE")] = None,
    template: Annotated[str | None, Query()] = None,
    status: Annotated[Literal["issued", "redeemed", "expired", "void"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
) -> list[CouponOut]:
    return svc.list_coupons(instance, member=member, template=template, status=status, limit=limit)


@router.post("/coupons/expire", response_model=ExpiredOut, responses=REFUSALS, summary="Run the expiry job now",
             description="把已过有效期的券标记为过期。 Mark issued coupons whose validity has passed as expired.")  # fmt: skip
def expire(instance: InstanceDep) -> ExpiredOut:
    return ExpiredOut(expired=svc.run_expiry(instance))


@router.get("/coupons/{code}", response_model=CouponOut, responses=REFUSALS, summary="One coupon",
            description="按券码查看。 A coupon by its code.")  # fmt: skip
def get_coupon(instance: InstanceDep, code: str) -> CouponOut:
    return svc.get_coupon(instance, code)


@router.post("/coupons/{code}/redeem", response_model=CouponOut, responses=REFUSALS, summary="Redeem a coupon",
             description="核销：检查状态、有效期、归属、渠道、币种、门槛；同一订单重复核销返回同一结果。 Checks status, "
             "validity, owner, channel, currency and threshold; the same order again answers the same.")  # fmt: skip
def redeem(instance: InstanceDep, code: str, body: RedeemIn) -> CouponOut:
    return svc.redeem(instance, code, body.member, body.order_id, body.amount, body.currency, body.channel,
                      body.shipping)  # fmt: skip


@router.post("/coupons/{code}/void", response_model=CouponOut, responses=REFUSALS, summary="Void a coupon",
             description="作废未使用的券（库存不退回）。 Void an unused coupon (stock is not given back).")  # fmt: skip
def void(instance: InstanceDep, code: str) -> CouponOut:
    return svc.void(instance, code)


# --- reports ---------------------------------------------------------------------------------------------------


@router.get("/coupon-reports", response_model=CouponReport, responses=REFUSALS, summary="Coupon reports",
            description="按模板与活动统计：发放、核销、过期、作废、可用、核销率、优惠金额、带动 GMV。 Per template and "
            "campaign: issued, redeemed, expired, void, open, redemption rate, discount, GMV.")  # fmt: skip
def reports(
    instance: InstanceDep,
    template: Annotated[str | None, Query()] = None,
    campaign: Annotated[str | None, Query()] = None,
    issued_from: Annotated[datetime | None, Query(description="coupons issued from (aware time)")] = None,
    issued_until: Annotated[datetime | None, Query(description="… until (exclusive)")] = None,
) -> CouponReport:
    return coupon_reports.report(instance, template=template, campaign=campaign, issued_from=issued_from,
                                 issued_until=issued_until)  # fmt: skip
