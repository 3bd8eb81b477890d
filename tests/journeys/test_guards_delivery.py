"""Guards on every send and delivery on real channels: consent, opt-outs, fallback, frequency caps in
the person's time zone, quiet hours, the global rate limit, retries with backoff, dead letters,
receipts; versions (people finish on the version they entered)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from tessera.services import channels as channels_service
from tessera.services import journeys as journeys_service
from tessera.services.journey_dispatch import Dispatcher
from tessera.stores.models import DeliveryDeadLetterRow, JourneyInstanceRow
from tests.journeys.world import World, make_world

SH = ZoneInfo("Asia/Shanghai")


def edges(*pairs: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"source": p[0], "target": p[1], **({"sourceHandle": p[2]} if len(p) > 2 else {})} for p in pairs]


def promo(fallback: list[str] | None = None, **settings: Any) -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "in", "type": "entry", "data": {"event": {"name": "Coupon Claimed"}}},
            {"id": "sms", "type": "sms", "data": {"template": {"body": "限时优惠 {{ event.code }}",
                                                               "subject": "限时优惠"}, "fallback": fallback or []}},
        ],
        "edges": edges(("in", "sms")),
        "settings": {"reentry": {"policy": "always"}, "max_live": 100, **settings},
    }  # fmt: skip


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with make_world(tmp_path, quiet_hours="") as w:
        yield w


def reasons(world: World, jid: str) -> list[tuple[str, str | None]]:
    return [(r.status, r.reason) for r in world.outbox(jid)]


def test_consent_opt_out_and_fallback_to_email(world: World) -> None:
    jid = world.journey("促销", promo(fallback=["email"]))
    world.person("ok", phone="13100000001")
    world.person("no_sms", phone="13100000002", email="no_sms@mail.example", consent={"sms": False})
    world.person("nothing", phone="13100000003", marketing_opt_out="是")
    world.person("mail_only", email="mail_only@mail.example")
    world.person("opted", phone="13100000005")
    channels_service.opt_out(inst=world.inst, profile_id=world.profile_id("opted"), channel="sms", source="回复TD退订")
    for uid in ("ok", "no_sms", "nothing", "mail_only", "opted"):
        world.track(uid, "Coupon Claimed", code="C88")
    world.run()
    assert [m["to"] for m in world.sms.messages] == ["+8613100000001"]
    mails = world.smtp.wait_for(2)
    assert sorted(m["To"] for m in mails) == ["mail_only@mail.example", "no_sms@mail.example"]
    assert mails[0]["List-Unsubscribe"]  # every marketing email carries a one-click unsubscribe
    got = {r.profile_id: (r.status, r.reason, r.channel) for r in world.outbox(jid)}
    assert got[world.profile_id("nothing")][:2] == ("suppressed", "no_consent")
    assert got[world.profile_id("opted")][:2] == ("suppressed", "opted_out")
    assert got[world.profile_id("no_sms")] == ("sent", None, "email_main")
    assert got[world.profile_id("mail_only")] == ("sent", None, "email_main")
    assert {r.sent_kind for r in world.outbox(jid) if r.status == "sent"} == {"sms", "email"}


def test_frequency_caps_count_in_the_persons_local_day_and_week(tmp_path: Path) -> None:
    with make_world(tmp_path, quiet_hours="", cap_sms="2/3") as world:
        jid = world.journey("促销", promo())
        world.person("sh", phone="13100000011")
        world.person("ny", phone="13100000012", timezone="America/New_York")
        # Friday 20 Nov 23:00 in Shanghai = 10:00 in New York
        world.clock.set(datetime(2026, 11, 20, 23, 0, tzinfo=SH))
        for _ in range(3):
            world.track("sh", "Coupon Claimed", code="A")
            world.track("ny", "Coupon Claimed", code="A")
        world.run()
        assert len(world.sms_to("+8613100000011")) == 2 and len(world.sms_to("+8613100000012")) == 2
        assert (
            sorted(r.reason or "" for r in world.outbox(jid) if r.status == "suppressed") == ["frequency_cap_day"] * 2
        )
        # 1 h later it is a new day in Shanghai (Saturday) but still Friday in New York
        world.clock.advance(timedelta(hours=1, minutes=1))
        world.track("sh", "Coupon Claimed", code="B")
        world.track("ny", "Coupon Claimed", code="B")
        world.run()
        assert len(world.sms_to("+8613100000011")) == 3 and len(world.sms_to("+8613100000012")) == 2
        # Saturday in Shanghai, and the week cap (3) is reached: Monday starts a new week
        world.clock.advance(timedelta(hours=12))
        world.track("sh", "Coupon Claimed", code="C")
        world.run()
        assert len(world.sms_to("+8613100000011")) == 3
        assert reasons(world, jid)[-1] == ("suppressed", "frequency_cap_week")
        world.clock.set(datetime(2026, 11, 23, 9, 0, tzinfo=SH))
        world.track("sh", "Coupon Claimed", code="D")
        world.run()
        assert len(world.sms_to("+8613100000011")) == 4


def test_transactional_journeys_skip_caps_and_quiet_hours(tmp_path: Path) -> None:
    with make_world(tmp_path, cap_sms="1/1") as world:  # quiet hours 21:00-08:00 by default
        jid = world.journey("验证码", promo(transactional=True))
        world.person("t", phone="13100000021")
        world.clock.set(datetime(2026, 11, 20, 23, 30, tzinfo=SH))
        for _ in range(3):
            world.track("t", "Coupon Claimed", code="X")
        world.run()
        assert len(world.sms_to("+8613100000021")) == 3
        assert {s for s, _ in reasons(world, jid)} == {"sent"}


def test_the_global_rate_limit_spreads_sends_over_rounds(world: World) -> None:
    ticks = [0.0]
    world.dispatcher = Dispatcher(world.inst, monotonic=lambda: ticks[0])
    world.dispatcher.limiter = type(world.dispatcher.limiter)(5, now=lambda: ticks[0])
    jid = world.journey("促销", promo())
    world.send(*[{"type": "identify", "userId": f"r{i}", "traits": {"phone": f"1310000{i:04d}"}} for i in range(12)])
    world.send(
        *[
            {"type": "track", "userId": f"r{i}", "event": "Coupon Claimed", "properties": {"code": "R"}}
            for i in range(12)
        ]
    )
    world.run()
    assert len(world.sms.messages) == 5  # the bucket holds 5; the rest stay pending
    assert sorted(s for s, _ in reasons(world, jid)).count("pending") == 7
    ticks[0] += 1.0
    world.run()
    assert len(world.sms.messages) == 10
    ticks[0] += 1.0
    world.run()
    assert len(world.sms.messages) == 12


def test_provider_errors_are_retried_with_backoff_then_dead_lettered(world: World) -> None:
    jid = world.journey("促销", promo())
    world.person("e1", phone="13100000031")
    world.sms.fail_next(1, 503, retry_after=120)
    world.track("e1", "Coupon Claimed", code="Z")
    world.run()
    [row] = world.outbox(jid)
    assert (row.status, row.reason, row.attempts) == ("pending", "retrying", 1)
    wait = (row.next_attempt_at.replace(tzinfo=None) - world.clock.now().replace(tzinfo=None)).total_seconds()
    assert 120 <= wait <= 3600  # Retry-After honoured, within the backoff ceiling
    world.advance(seconds=wait + 1)
    assert world.sms_to("+8613100000031") == ["限时优惠 Z"]
    assert world.outbox(jid)[0].status == "sent" and world.outbox(jid)[0].attempts == 2
    # a final refusal (400) is not retried: failed, and kept as a dead letter
    world.person("e2", phone="13100000032")
    world.sms.fail_next(1, 400)
    world.track("e2", "Coupon Claimed", code="Z")
    world.run()
    last = world.outbox(jid)[-1]
    assert (last.status, last.reason) == ("failed", "delivery")
    with world.inst.operational.session() as s:
        dead = list(s.scalars(select(DeliveryDeadLetterRow)))
    assert len(dead) == 1 and dead[0].last_status == 400 and dead[0].payload["to"] == "+8613100000032"
    # retries exhausted on 5xx → dead
    world.person("e3", phone="13100000033")
    world.sms.fail_next(100, 502)
    world.track("e3", "Coupon Claimed", code="Z")
    for _ in range(8):
        world.advance(hours=2)
    assert world.outbox(jid)[-1].status == "dead"
    assert world.outbox(jid)[-1].attempts == world.inst.settings.journeys.max_attempts


def test_delivery_receipts_mark_messages_delivered(world: World) -> None:
    jid = world.journey("促销", promo())
    world.person("d1", phone="13100000041")
    world.person("d2", phone="13100000042")
    world.track("d1", "Coupon Claimed", code="Q")
    world.track("d2", "Coupon Claimed", code="Q")
    world.run()
    k1, k2 = (r.key for r in world.outbox(jid))
    token = world.secrets["sms_receipts"]
    got = channels_service.apply_receipts(inst=world.inst, channel="sms_main", token=token, body=[
        {"message_id": k1, "status": "delivered"}, {"message_id": k2, "status": "undelivered", "error": "空号"},
        {"message_id": "nope", "status": "delivered"}])  # fmt: skip
    assert got == {"applied": 2, "unknown": 1, "ignored": 0}
    rows = {r.key: r for r in world.outbox(jid)}
    assert rows[k1].status == "delivered" and rows[k1].delivered_at is not None
    assert (rows[k2].status, rows[k2].error) == ("undelivered", "空号")
    with pytest.raises(journeys_service.JourneyRequestError) as e:
        channels_service.apply_receipts(inst=world.inst, channel="sms_main", token="wrong", body=[])
    assert e.value.status == 401
    with pytest.raises(journeys_service.JourneyRequestError) as e:
        channels_service.apply_receipts(inst=world.inst, channel="sms_main", token=token, body=[{"message_id": k1}])
    assert e.value.status == 422 and "status" in e.value.message


def test_people_finish_on_the_version_they_entered(world: World) -> None:
    v1 = {
        "nodes": [
            {"id": "in", "type": "entry", "data": {"event": {"name": "Signed Up"}}},
            {"id": "wait", "type": "wait", "data": {"mode": "duration", "span": {"days": 2}}},
            {"id": "sms", "type": "sms", "data": {"template": {"body": "第一版文案"}}},
        ],
        "edges": edges(("in", "wait"), ("wait", "sms")),
    }
    jid = world.journey("版本", v1)
    world.person("v_old", phone="13100000051")
    world.track("v_old", "Signed Up")
    world.run()
    v2 = {**v1, "nodes": [*v1["nodes"][:2], {"id": "sms", "type": "sms", "data": {"template": {"body": "第二版文案"}}}]}
    journeys_service.update_journey(inst=world.inst, journey_id=jid, patch=journeys_service.JourneyPatch(definition=v2))
    assert journeys_service.publish(inst=world.inst, journey_id=jid).version == 2
    world.person("v_new", phone="13100000052")
    world.track("v_new", "Signed Up")
    world.advance(days=3)
    assert world.sms_to("+8613100000051") == ["第一版文案"]
    assert world.sms_to("+8613100000052") == ["第二版文案"]
    with world.inst.operational.session() as s:
        versions = sorted(
            r.version for r in s.scalars(select(JourneyInstanceRow).where(JourneyInstanceRow.journey_id == jid))
        )
    assert versions == [1, 2]


def test_paused_journeys_hold_people_and_admit_no_one(world: World) -> None:
    jid = world.journey("暂停", promo())
    world.person("p1", phone="13100000061")
    journeys_service.set_status(inst=world.inst, journey_id=jid, status="paused")
    world.track("p1", "Coupon Claimed", code="P")
    world.run()
    assert world.sms.messages == [] and world.outbox(jid) == []
    journeys_service.set_status(inst=world.inst, journey_id=jid, status="active")
    world.track("p1", "Coupon Claimed", code="P2")
    world.run()
    assert world.sms_to("+8613100000061") == ["限时优惠 P2"]


def test_a_channel_a_live_journey_relies_on_cannot_be_deleted(world: World) -> None:
    jid = world.journey("促销", promo(fallback=["email"]))
    for name in ("sms_main", "email_main"):  # the defaults of their kinds: unnamed nodes use them
        with pytest.raises(journeys_service.JourneyRequestError, match="促销") as e:
            channels_service.delete_channel(inst=world.inst, name=name)
        assert e.value.status == 409
    channels_service.delete_channel(inst=world.inst, name="push_main")  # nobody needs push
    journeys_service.set_status(inst=world.inst, journey_id=jid, status="ended")
    channels_service.delete_channel(inst=world.inst, name="sms_main")
