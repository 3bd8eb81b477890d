"""Channels (渠道), opt-outs (退订) and the public endpoints providers and recipients call.

Management (admin token): ``/v1/admin/channels`` and ``/v1/admin/opt-outs``. Public (no admin
token, each checked by its own secret): ``POST /v1/channels/{name}/receipts?token=…`` (delivery
receipts from the SMS provider) and ``/v1/unsubscribe?p=&c=&t=`` (the one-click unsubscribe link
of a message: ``GET`` from a browser, ``POST`` for RFC 8058 ``List-Unsubscribe-Post``).
"""

from __future__ import annotations

from html import escape
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from tessera.api.deps import get_instance, require_admin
from tessera.api.journeys import ERRORS, ErrorOut
from tessera.runtime import Instance
from tessera.services import channels
from tessera.services.channels import ChannelDraft, ChannelOut, IssuedChannel
from tessera.services.journeys import JourneyRequestError

InstanceDep = Annotated[Instance, Depends(get_instance)]
admin_router = APIRouter(prefix="/v1/admin", tags=["channels"], dependencies=[Depends(require_admin)])
public_router = APIRouter(tags=["channels (public)"])


class ChannelPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    config: dict[str, Any] | None = Field(default=None, description="settings to change (merged into the current ones)")
    disabled: bool | None = Field(default=None, description="true: journeys skip this channel")


class OptOutIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile_id: str = Field(min_length=1, max_length=64)
    channel: Literal["email", "sms", "push", "wechat"]


class OptOutOut(BaseModel):
    profile_id: str
    channel: str
    opted_out: bool = Field(description="whether the person is now opted out of the channel kind")
    changed: bool = Field(description="false when it already was so")


class ReceiptCounts(BaseModel):
    applied: int = Field(description="messages whose delivery status was recorded")
    unknown: int = Field(description="receipts for message ids not in the outbox (or not sent yet)")
    ignored: int = Field(description="queued / sent receipts: acknowledged, nothing to record")


# --- management ------------------------------------------------------------------------------------


@admin_router.post(
    "/channels",
    status_code=201,
    response_model=IssuedChannel,
    responses=ERRORS,
    summary="Create a channel",
    description="新建渠道；签名密钥与回执令牌只显示这一次。 Create a channel; its signing secret and receipt token "
    "are shown once, here.",
)
def create_channel(instance: InstanceDep, body: ChannelDraft) -> IssuedChannel:
    return channels.create_channel(inst=instance, draft=body)


@admin_router.get(
    "/channels",
    response_model=list[ChannelOut],
    summary="List channels",
    description="全部渠道（不含密钥）。 Every channel, secrets never included.",
)
def list_channels(instance: InstanceDep) -> list[ChannelOut]:
    return channels.list_channels(inst=instance)


@admin_router.get(
    "/channels/{name}",
    response_model=ChannelOut,
    responses=ERRORS,
    summary="Read a channel",
    description="一个渠道的配置（密码类字段隐去）。 One channel's settings (passwords and keys hidden).",
)
def read_channel(instance: InstanceDep, name: str) -> ChannelOut:
    found = [c for c in channels.list_channels(inst=instance) if c.name == name]
    if not found:
        raise JourneyRequestError(404, "channel", f"no channel {name!r}")
    return found[0]


@admin_router.patch(
    "/channels/{name}",
    response_model=ChannelOut,
    responses=ERRORS,
    summary="Change a channel",
    description="修改渠道配置或停用/启用。 Change settings (merged, checked again) or disable / enable.",
)
def update_channel(instance: InstanceDep, name: str, body: ChannelPatch) -> ChannelOut:
    return channels.update_channel(inst=instance, name=name, config=body.config, disabled=body.disabled)


@admin_router.delete(
    "/channels/{name}",
    status_code=204,
    responses=ERRORS,
    summary="Delete a channel",
    description="删除渠道；仍被进行中的旅程使用时拒绝 (409)。 Delete a channel; refused (409) while a live journey "
    "uses it.",
)
def delete_channel(instance: InstanceDep, name: str) -> Response:
    channels.delete_channel(inst=instance, name=name)
    return Response(status_code=204)


@admin_router.post(
    "/opt-outs",
    response_model=OptOutOut,
    responses=ERRORS,
    summary="Opt a person out of a channel",
    description="记录退订：此后该渠道不再向此人发送。 Record an opt-out: that channel kind no longer sends to the "
    "person (suppressed with reason opted_out).",
)
def opt_out(instance: InstanceDep, body: OptOutIn) -> OptOutOut:
    changed = channels.opt_out(inst=instance, profile_id=body.profile_id, channel=body.channel, source="api")
    return OptOutOut(profile_id=body.profile_id, channel=body.channel, opted_out=True, changed=changed)


@admin_router.delete(
    "/opt-outs",
    response_model=OptOutOut,
    responses=ERRORS,
    summary="Opt a person back in",
    description="取消退订（本人重新订阅）。 Remove an opt-out (the person subscribed again).",
)
def opt_in(
    instance: InstanceDep,
    profile_id: Annotated[str, Query(min_length=1, max_length=64)],
    channel: Annotated[Literal["email", "sms", "push", "wechat"], Query()],
) -> OptOutOut:
    changed = channels.opt_in(inst=instance, profile_id=profile_id, channel=channel)
    return OptOutOut(profile_id=profile_id, channel=channel, opted_out=False, changed=changed)


# --- public: receipts and unsubscribe links ------------------------------------------------------------

_RECEIPT_EXAMPLE = [{"message_id": "3f1c…", "status": "delivered", "provider_id": "p-1"}]


@public_router.post(
    "/v1/channels/{name}/receipts",
    response_model=ReceiptCounts,
    responses={401: {"model": ErrorOut, "description": "wrong token 令牌错误"}, **ERRORS},
    summary="Post delivery receipts",
    description="短信服务商回调的送达回执（一个对象或列表），以渠道的回执令牌认证。 Delivery receipts from the provider "
    "(one object or a list of {message_id, status, error?, provider_id?}), authenticated by the channel's receipt "
    "token.",
)
def receipts(
    instance: InstanceDep,
    name: str,
    token: Annotated[str, Query(description="the channel's receipt token (in its receipt_url)")],
    body: Annotated[Any, Body(openapi_examples={"delivered": {"value": _RECEIPT_EXAMPLE}})],
) -> ReceiptCounts:
    return ReceiptCounts(**channels.apply_receipts(inst=instance, channel=name, token=token, body=body))


_KIND_NAMES = {"email": ("邮件", "email"), "sms": ("短信", "SMS"), "push": ("推送", "push notifications"),
               "wechat": ("微信消息", "WeChat messages")}  # fmt: skip


def _page(status: int, title: str, zh: str, en: str) -> HTMLResponse:
    html = (
        '<!doctype html><html lang="zh"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>body{{font-family:system-ui,sans-serif;max-width:32rem;"
        "margin:4rem auto;padding:0 1rem;color:#222}h1{font-size:1.4rem}p{line-height:1.5}</style></head>"
        f'<body><h1>{escape(title)}</h1><p>{escape(zh)}</p><p lang="en">{escape(en)}</p></body></html>'
    )
    return HTMLResponse(html, status_code=status)


def _unsubscribe(instance: Instance, p: str, c: str, t: str) -> HTMLResponse:
    try:
        channels.unsubscribe(inst=instance, profile_id=p, channel=c, token=t)
    except JourneyRequestError as e:
        return _page(
            e.status,
            "链接无效 / Link not valid",
            "此退订链接无效或已损坏，请使用消息中的完整链接。",
            f"This unsubscribe link is not valid ({e.message}); please use the whole link from the message.",
        )
    zh, en = _KIND_NAMES.get(c, (c, c))
    return _page(
        200,
        "已退订 / You are unsubscribed",
        f"您已退订{zh}，今后不会再收到此类营销消息。",
        f"You are unsubscribed from {en}; you will not receive such marketing messages again.",
    )


_P = Annotated[str, Query(description="profile id")]
_C = Annotated[str, Query(description="channel kind: email, sms, push, wechat")]
_T = Annotated[str, Query(description="the link's token (an HMAC of profile and channel)")]
_HTML = {"content": {"text/html": {}}, "description": "a small bilingual page 双语页面"}


@public_router.get(
    "/v1/unsubscribe",
    response_class=HTMLResponse,
    responses={200: _HTML, 403: _HTML},
    summary="Unsubscribe (link in a message)",
    description="消息中的一键退订链接：记录退订并显示“已退订”页面；令牌不符时 403。 The one-click unsubscribe link of "
    "a message: records the opt-out and answers a bilingual page; a token that does not match → 403 page.",
)
def unsubscribe_link(instance: InstanceDep, p: _P = "", c: _C = "", t: _T = "") -> HTMLResponse:
    return _unsubscribe(instance, p, c, t)


@public_router.post(
    "/v1/unsubscribe",
    response_class=HTMLResponse,
    responses={200: _HTML, 403: _HTML},
    summary="Unsubscribe (RFC 8058 one-click)",
    description="邮件客户端的一键退订 (List-Unsubscribe-Post)，参数同上。 RFC 8058 List-Unsubscribe-Post one-click "
    "from a mail client; the same parameters in the query string.",
)
def unsubscribe_post(instance: InstanceDep, p: _P = "", c: _C = "", t: _T = "") -> HTMLResponse:
    return _unsubscribe(instance, p, c, t)
