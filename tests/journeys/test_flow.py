"""End to end on a small brand: a trigger, a wait, a message on a real channel, the outbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

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
