"""Seed story: the 4S dealer's test drive (试驾) journey.

Booked → an SMS reminder the day before → arrived? a welcome SMS with the complaint hotline : the
outbound call centre is called (signed webhook) → the day after, a rating request → score ≥ 7:
thanks, else an apology and the dealer's manager is told by email.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tessera.channels.webhook import verify
from tests.journeys.world import START, World, make_world

SCORE_OK = {"type": "event", "event": "Rating Submitted", "where": [{"property": "score", "op": "gte", "value": 7}],
            "window": {"last": 7, "unit": "days"}}  # fmt: skip

TEST_DRIVE = {
    "nodes": [
        {"id": "booked", "type": "entry", "data": {"event": {"name": "Test Drive Booked"}}},
        {"id": "day_before", "type": "wait", "data": {"mode": "until_date", "field": "event.booked_at", "offset": {"days": -1}}},
        {"id": "reminder", "type": "sms", "data": {"template": {
            "body": {"zh": "{{ profile.name }}您好，提醒您明天 {{ event.booked_at | date('%H:%M') }} 在{{ event.store }}试驾。"}}}},
        {"id": "arrived", "type": "wait", "data": {"mode": "event", "event": {"name": "Test Drive Arrived"},
                                                    "timeout": {"days": 1, "hours": 3}}},
        {"id": "welcome", "type": "sms", "data": {"template": {
            "body": {"zh": "欢迎莅临{{ event.store }}！如有不满请致电投诉热线 400-800-1234。"}}}},
        {"id": "call", "type": "webhook", "data": {"channel": "webhook_main", "payload": {
            "task": "outbound_call", "phone": "{{ profile.phone }}", "store": "{{ event.store }}",
            "script": "试驾未到店回访"}}},
        {"id": "next_day", "type": "wait", "data": {"mode": "local_time", "at_time": "10:00"}},
        {"id": "ask", "type": "sms", "data": {"template": {"body": {"zh": "请为本次试驾打分（0-10）：https://s.brand.cn/r"}}}},
        {"id": "rated", "type": "wait", "data": {"mode": "event", "event": {"name": "Rating Submitted"},
                                                  "timeout": {"days": 3}}},
        {"id": "score", "type": "split", "data": {"paths": [{"handle": "happy", "name": "≥ 7 分", "condition": SCORE_OK}]}},
        {"id": "thanks", "type": "sms", "data": {"template": {"body": {"zh": "感谢您的好评！"}}}},
        {"id": "sorry", "type": "sms", "data": {"template": {"body": {"zh": "非常抱歉给您带来不好的体验，店长会尽快联系您。"}}}},
        {"id": "dealer", "type": "notify", "data": {"channel": "email_main", "to": "manager@dealer.example",
                                                     "template": {"subject": {"zh": "差评提醒：{{ profile.name }}"},
                                                                  "body": {"zh": "客户 {{ profile.name }}（{{ profile.phone | mask_phone }}）"
                                                                                 "试驾评分 {{ waited.rated.score }} 分，请跟进。"}}}},
    ],
    "edges": [
        {"source": "booked", "target": "day_before"}, {"source": "day_before", "target": "reminder"},
        {"source": "reminder", "target": "arrived"},
        {"source": "arrived", "sourceHandle": "event", "target": "welcome"},
        {"source": "arrived", "sourceHandle": "timeout", "target": "call"},
        {"source": "welcome", "target": "next_day"}, {"source": "next_day", "target": "ask"},
        {"source": "ask", "target": "rated"}, {"source": "rated", "sourceHandle": "event", "target": "score"},
        {"source": "score", "sourceHandle": "happy", "target": "thanks"},
        {"source": "score", "sourceHandle": "else", "target": "sorry"}, {"source": "sorry", "target": "dealer"},
    ],
    "settings": {"transactional": True},
}  # fmt: skip


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with make_world(tmp_path) as w:
        yield w


def test_the_test_drive_journey_for_three_customers(world: World) -> None:
    jid = world.journey("4S店试驾旅程", TEST_DRIVE)
    booked_at = START + timedelta(days=3)  # Monday 10:00 Shanghai
    when = booked_at.isoformat()  # UTC; the reminder shows Shanghai time
    for uid, name, phone in (
        ("c1", "张伟", "13900000001"),
        ("c2", "李娜", "13900000002"),
        ("c3", "陈静", "13900000003"),
    ):
        world.person(uid, name=name, phone=phone)
        world.track(uid, "Test Drive Booked", booked_at=when, store="杭州西湖店", model="Model Y")
    world.run()
    assert world.sms.messages == []  # nothing until the day before
    world.at(booked_at - timedelta(days=1))
    reminders = world.sms.messages
    assert len(reminders) == 3
    assert world.sms_to("+8613900000001") == ["张伟您好，提醒您明天 10:00 在杭州西湖店试驾。"]

    world.clock.set(booked_at + timedelta(minutes=20))
    world.track("c1", "Test Drive Arrived", store="杭州西湖店")
    world.track("c3", "Test Drive Arrived", store="杭州西湖店")
    world.run()
    assert any("投诉热线 400-800-1234" in m for m in world.sms_to("+8613900000001"))
    assert world.hooks.hits == []  # c2 is not late yet

    world.at(booked_at + timedelta(hours=3, minutes=1))  # c2 never came: the call centre is asked to call
    hits = world.hooks.wait_for(1)
    body = verify(world.secrets["webhook"], hits[0].headers, hits[0].body, now=world.clock.now())
    assert body["task"] == "outbound_call" and body["phone"] == "+8613900000002" and body["store"] == "杭州西湖店"
    assert body["profile_id"] == world.profile_id("c2")

    world.at(booked_at + timedelta(days=1))  # the next day at 10:00 local: the rating request
    assert any("请为本次试驾打分" in m for m in world.sms_to("+8613900000001"))
    assert any("请为本次试驾打分" in m for m in world.sms_to("+8613900000003"))
    assert not any("打分" in m for m in world.sms_to("+8613900000002"))

    world.clock.advance(timedelta(hours=2))
    world.track("c1", "Rating Submitted", score=9)
    world.track("c3", "Rating Submitted", score=4)
    world.run()
    assert world.sms_to("+8613900000001")[-1] == "感谢您的好评！"
    assert world.sms_to("+8613900000003")[-1].startswith("非常抱歉")
    mails = world.smtp.wait_for(1)
    assert mails[0]["To"] == "manager@dealer.example"
    assert mails[0]["Subject"] == "差评提醒：陈静"
    assert "139****0003" in mails[0].get_body(preferencelist=("plain",)).get_content()
    assert "评分 4 分" in mails[0].get_body(preferencelist=("plain",)).get_content()
    sent = {(r.node_id, r.profile_id) for r in world.outbox(jid) if r.status == "sent"}
    assert len(sent) == len(world.outbox(jid))  # every effect went out exactly once
