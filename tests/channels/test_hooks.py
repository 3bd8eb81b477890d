"""Webhook, push (推送) and WeChat template message (模板消息) channels against a real receiver that
verifies every Standard Webhooks signature."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from tessera.channels.base import Channel, ChannelConfigError, Outbound
from tessera.channels.hooks import PushChannel, WebhookChannel, WeChatChannel
from tessera.channels.webhook import new_secret
from tessera.clock import FrozenClock
from tests.conftest import free_port
from tests.fakes.hook_receiver import HookReceiver

T0 = datetime(2026, 11, 11, 9, 30, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest.fixture
def receiver(secret: str, clock: FrozenClock) -> Iterator[HookReceiver]:
    with HookReceiver(secret, clock=clock) as r:
        yield r


def test_webhook_posts_a_signed_default_body_with_the_key_as_webhook_id(
    receiver: HookReceiver, secret: str, clock: FrozenClock
) -> None:
    with WebhookChannel("CRM 回调", {"url": receiver.url}, clock=clock, secret=secret) as ch:
        c: Channel = ch
        assert (c.kind, c.max_batch) == ("webhook", 50)
        results = ch.send(
            [
                Outbound("wh_1", "p_1", "您的订单已发货", subject="发货通知", profile_id="p_1"),
                Outbound("wh_2", "p_2", "x", data={"payload": {"event": "coupon", "amount": Decimal("50.00")}}),
            ]
        )
    assert [(r.key, r.accepted, r.status) for r in results] == [("wh_1", True, 200), ("wh_2", True, 200)]
    hits = receiver.wait_for(2)
    assert all(h.error is None for h in hits)  # the signature verified
    assert [h.headers["webhook-id"] for h in hits] == ["wh_1", "wh_2"]
    assert hits[0].headers["webhook-timestamp"] == str(int(T0.timestamp()))
    assert hits[0].payload == {
        "to": "p_1",
        "subject": "发货通知",
        "body": "您的订单已发货",
        "profile_id": "p_1",
        "key": "wh_1",
    }
    assert hits[1].payload == {"event": "coupon", "amount": "50.00"}  # data.payload as it is


def test_webhook_to_may_be_the_url(secret: str, clock: FrozenClock) -> None:
    with HookReceiver(secret, clock=clock) as configured, HookReceiver(secret, clock=clock) as other:
        with WebhookChannel("w", {"url": configured.url}, clock=clock, secret=secret) as ch:
            [r] = ch.send([Outbound("wh_url", other.url + "?shop=7", "b")])
        assert r.accepted
        [hit] = other.wait_for(1)
        assert hit.path == "/hooks?shop=7" and hit.payload["key"] == "wh_url" and configured.hits == []


def test_push_body(receiver: HookReceiver, secret: str, clock: FrozenClock) -> None:
    with PushChannel("App 推送", {"url": receiver.url}, clock=clock, secret=secret) as ch:
        results = ch.send(
            [
                Outbound(
                    "push_1", "device-token-abc", "点击领取", subject="您有一张新券", data={"deeplink": "tq://coupon/1"}
                ),
                Outbound("push_2", "  ", "no token"),
            ]
        )
    assert results[0].accepted and not results[1].accepted and results[1].error == "no push token to send to"
    [hit] = receiver.wait_for(1)
    assert hit.error is None and hit.headers["webhook-id"] == "push_1"
    assert hit.payload == {
        "to": "device-token-abc",
        "title": "您有一张新券",
        "body": "点击领取",
        "data": {"deeplink": "tq://coupon/1"},
        "message_id": "push_1",
    }


def test_wechat_template_message_body(receiver: HookReceiver, secret: str, clock: FrozenClock) -> None:
    data: dict[str, Any] = {
        "template_id": "TPL_ORDER_SHIPPED",
        "url": "https://shop.example.cn/o/1",
        "data": {
            "first": "您的订单已发货",
            "keyword1": "SO-20261111-01",
            "remark": {"value": "感谢惠顾", "color": "#173177"},
        },
    }
    config = {"url": receiver.url, "app_id": "wx1234567890"}
    with WeChatChannel("公众号", config, clock=clock, secret=secret) as ch:
        results = ch.send(
            [
                Outbound("wx_1", "oAbC-openid-1", "", data=data),
                Outbound("wx_2", "oAbC-openid-2", "", data={"data": {"first": "x"}}),
            ]
        )
    assert results[0].accepted
    assert not results[1].accepted and not results[1].retryable and "template_id" in (results[1].error or "")
    [hit] = receiver.wait_for(1)
    assert hit.error is None and hit.headers["webhook-id"] == "wx_1"
    assert hit.payload == {
        "touser": "oAbC-openid-1",
        "template_id": "TPL_ORDER_SHIPPED",
        "url": "https://shop.example.cn/o/1",
        "data": {
            "first": {"value": "您的订单已发货"},
            "keyword1": {"value": "SO-20261111-01"},
            "remark": {"value": "感谢惠顾", "color": "#173177"},
        },
        "message_id": "wx_1",
        "app_id": "wx1234567890",
    }


def test_failures_retryable_or_final(receiver: HookReceiver, secret: str, clock: FrozenClock) -> None:
    receiver.fail_next(1, 503, retry_after=12)
    receiver.fail_next(1, 429)
    receiver.fail_next(1, 400)
    with PushChannel("p", {"url": receiver.url}, clock=clock, secret=secret) as ch:
        results = ch.send([Outbound(f"f{i}", "tok", "b") for i in range(4)] + [Outbound("坏键", "tok", "b")])
    assert [(r.accepted, r.retryable, r.status, r.retry_after) for r in results[:4]] == [
        (False, True, 503, 12.0), (False, True, 429, None), (False, False, 400, None), (True, False, 200, None),
    ]  # fmt: skip
    assert not results[4].accepted and not results[4].retryable and "message id" in (results[4].error or "")
    assert len(receiver.wait_for(4)) == 4
    with WebhookChannel("w", {"url": f"http://127.0.0.1:{free_port()}/x"}, clock=clock, secret=secret) as down:
        [gone] = down.send([Outbound("f9", "p", "b")])
    assert gone.retryable and (gone.error or "").startswith("connection failed")


def test_a_receiver_with_another_secret_refuses_and_that_is_final(receiver: HookReceiver, clock: FrozenClock) -> None:
    with WebhookChannel("w", {"url": receiver.url}, clock=clock, secret=new_secret()) as ch:
        [r] = ch.send([Outbound("bad_sig", "p", "b")])
    assert r.status == 401 and not r.retryable
    assert "no matching v1 signature" in (receiver.wait_for(1)[0].error or "")


def test_the_secret_is_required_and_checked(clock: FrozenClock) -> None:
    with pytest.raises(ChannelConfigError) as missing:
        WebhookChannel("w", {"url": "https://x.example.cn/h"}, clock=clock)
    assert missing.value.field == "secret"
    with pytest.raises(ChannelConfigError) as bad:
        PushChannel("p", {"url": "https://x.example.cn/h"}, clock=clock, secret="not-a-secret")
    assert bad.value.field == "secret" and "whsec_" in bad.value.message
    with pytest.raises(ChannelConfigError) as no_app:
        WeChatChannel("wx", {"url": "https://x.example.cn/h"}, clock=clock, secret=new_secret())
    assert no_app.value.field == "config.app_id"
