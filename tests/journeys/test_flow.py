"""End to end on a small brand: a trigger, a wait, a message on a real channel, the outbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.journeys.world import World, make_world


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with make_world(tmp_path) as w:
        yield w


def test_signed_up_then_a_day_later_a_welcome_sms(world: World) -> None:
    jid = world.journey("注册欢迎", {
        "nodes": [
            {"id": "in", "type": "entry", "data": {"event": {"name": "Signed Up"}}},
            {"id": "wait", "type": "wait", "data": {"mode": "duration", "span": {"days": 1}}},
            {"id": "sms", "type": "sms", "data": {"template": {"body": {"zh": "{{ profile.name }}，欢迎加入！",
                                                                         "en": "Welcome, {{ profile.name }}!"}}}},
        ],
        "edges": [{"source": "in", "target": "wait"}, {"source": "wait", "target": "sms"}],
    })  # fmt: skip
    world.person("u1", name="王小明", phone="13800138001")
    world.person("u2", name="Alice", phone="+8613800138002", locale="en")
    world.track("u1", "Signed Up")
    world.track("u2", "Signed Up")
    world.run()
    assert world.sms.messages == []
    world.advance(hours=23)
    assert world.sms.messages == []
    world.advance(hours=2)
    assert sorted(world.sms_to("+8613800138001")) == ["王小明，欢迎加入！"]
    assert world.sms_to("+8613800138002") == ["Welcome, Alice!"]
    rows = world.outbox(jid)
    assert {r.status for r in rows} == {"sent"} and len({r.key for r in rows}) == 2
    # the same events again (a replayed trigger) change nothing: once per person by default
    world.track("u1", "Signed Up")
    world.advance(days=2)
    assert len(world.sms.messages) == 2


def test_audience_entered_triggers_a_journey(world: World) -> None:
    from tessera.services.audience_refresh import refresh
    from tessera.services.audiences import AudienceDraft, create_audience

    vip = create_audience(inst=world.inst, draft=AudienceDraft(
        name="金卡会员", definition={"type": "attribute", "field": "member_level", "op": "eq", "value": "金卡"}))  # fmt: skip
    world.journey("升级金卡关怀", {
        "nodes": [
            {"id": "in", "type": "entry", "data": {"event": {"name": "Audience Entered", "where": [
                {"property": "audience_id", "op": "eq", "value": vip.id}]}}},
            {"id": "sms", "type": "sms", "data": {"template": {"body": "恭喜升级{{ event.audience_name }}！"}}},
        ],
        "edges": [{"source": "in", "target": "sms"}],
        "settings": {"transactional": True},
    })  # fmt: skip
    world.person("g1", phone="13800138011", member_level="银卡")
    from tessera.services.journey_facts import refresh_stale

    refresh_stale(world.inst)
    refresh(inst=world.inst, audience_id=vip.id)
    world.run()
    assert world.sms.messages == []
    world.clock.advance(timedelta(minutes=5))
    world.person("g1", member_level="金卡")
    refresh_stale(world.inst)
    refresh(inst=world.inst, audience_id=vip.id)
    world.run()
    assert world.sms_to("+8613800138011") == ["恭喜升级金卡会员！"]


def sms_journey(entry: dict[str, Any], body: str, **settings: Any) -> dict[str, Any]:
    return {
        "nodes": [{"id": "in", "type": "entry", "data": entry},
                  {"id": "sms", "type": "sms", "data": {"template": {"body": body}}}],
        "edges": [{"source": "in", "target": "sms"}],
        "settings": {"transactional": True, **settings},
    }  # fmt: skip


def test_first_and_repeat_purchases_trigger_different_journeys(world: World) -> None:
    world.journey("首单", sms_journey({"event": {"name": "Order Completed", "purchase": "first"}}, "首单感谢 {{ event.order_id }}",
                                       reentry={"policy": "always"}))  # fmt: skip
    world.journey("复购", sms_journey({"event": {"name": "Order Completed", "purchase": "repeat"}}, "复购感谢 {{ event.order_id }}",
                                       reentry={"policy": "always"}))  # fmt: skip
    world.person("o1", phone="13800138021")
    world.track("o1", "Order Completed", order_id="A1", revenue=100)
    world.run()
    world.clock.advance(timedelta(days=1))
    world.track("o1", "Order Completed", order_id="A2", revenue=100)
    world.run()
    assert world.sms_to("+8613800138021") == ["首单感谢 A1", "复购感谢 A2"]


def test_start_and_end_dates_and_one_live_instance_per_person(world: World) -> None:
    start = world.clock.now() + timedelta(days=1)
    jid = world.journey("限时活动", {
        "nodes": [{"id": "in", "type": "entry", "data": {"event": {"name": "Coupon Claimed"}}},
                  {"id": "wait", "type": "wait", "data": {"mode": "duration", "span": {"days": 2}}},
                  {"id": "sms", "type": "sms", "data": {"template": {"body": "券快过期了"}}}],
        "edges": [{"source": "in", "target": "wait"}, {"source": "wait", "target": "sms"}],
        "settings": {"start_at": start.isoformat(), "end_at": (start + timedelta(days=5)).isoformat(),
                     "reentry": {"policy": "always"}, "transactional": True},
    })  # fmt: skip
    world.person("d1", phone="13800138031")
    world.track("d1", "Coupon Claimed")  # before the start: nobody enters
    world.run()
    assert world.outbox(jid) == [] and _instances(world, jid) == []
    world.clock.set(start + timedelta(hours=1))
    world.track("d1", "Coupon Claimed")
    world.clock.advance(timedelta(hours=1))
    world.track("d1", "Coupon Claimed")  # still inside: one live instance per person
    world.run()
    assert len(_instances(world, jid)) == 1
    world.advance(days=2)
    assert world.sms_to("+8613800138031") == ["券快过期了"]
    world.track("d1", "Coupon Claimed")  # finished: "always" lets them in again
    world.run()
    assert len(_instances(world, jid)) == 2
    world.clock.set(start + timedelta(days=6))
    world.track("d1", "Coupon Claimed")  # after the end
    world.run()
    assert len(_instances(world, jid)) == 2


def test_attribute_and_tag_actions_change_the_profile(world: World) -> None:
    from tessera.services.tag_catalogue import create_tag

    with world.inst.operational.session() as s:
        create_tag(session=s, now=world.clock.now(), body={
            "key": "double12", "name": "双十二参与", "name_en": "Double 12", "category": "scenario",
            "value_type": "string", "status": "active"})  # fmt: skip
    jid = world.journey("标记参与", {
        "nodes": [{"id": "in", "type": "entry", "data": {"event": {"name": "Coupon Claimed"}}},
                  {"id": "attr", "type": "attribute", "data": {"traits": {"last_campaign": "双十二", "claimed": "{{ event.coupon_id }}"}}},
                  {"id": "tag", "type": "tag", "data": {"key": "double12", "value": "已领券"}}],
        "edges": [{"source": "in", "target": "attr"}, {"source": "attr", "target": "tag"}],
    })  # fmt: skip
    world.person("t1", phone="13800138041")
    world.track("t1", "Coupon Claimed", coupon_id="D12-50")
    world.run()
    assert {r.kind: r.status for r in world.outbox(jid)} == {"attribute": "sent", "tag": "sent"}
    world.admin("POST", "/v1/admin/flush")
    from tessera.services.journey_facts import load_people

    idx = world.inst.analytic.cursor().execute(
        "SELECT profile_idx FROM profiles WHERE profile_id = ?", [world.profile_id("t1")]).fetchall()[0][0]  # fmt: skip
    world.clock.advance(timedelta(seconds=1))
    facts = load_people(world.inst, [idx], tags=True)[idx]
    assert facts.traits["last_campaign"] == "双十二" and facts.traits["claimed"] == "D12-50"
    assert facts.tags["double12"] == "已领券"


def _instances(world: World, journey_id: str) -> list[Any]:
    from sqlalchemy import select

    from tessera.stores.models import JourneyInstanceRow

    with world.inst.operational.session() as s:
        return list(s.scalars(select(JourneyInstanceRow).where(JourneyInstanceRow.journey_id == journey_id)))
