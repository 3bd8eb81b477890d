"""Seed stories (营销活动 examples from the seeds), each on a fresh small brand with a moving clock:
birthday coupons on the 1st, the 60/30/15-day win-back, the welcome series with an A/B split, the
points-expiry reminder, the 7-day check-in incentive, and the referral reward for sharing."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from tessera.services.audiences import AudienceDraft, create_audience
from tessera.services.tag_catalogue import create_tag, update_tag
from tessera.stores.models import JourneyInstanceRow, JourneyRewardRow
from tests.journeys.world import START, World, make_world

SH = ZoneInfo("Asia/Shanghai")


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with make_world(tmp_path, quiet_hours="") as w:
        yield w


def edges(*pairs: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"source": p[0], "target": p[1], **({"sourceHandle": p[2]} if len(p) > 2 else {})} for p in pairs]


def local(y: int, m: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, m, d, h, mi, tzinfo=SH)


def rewards(world: World, journey_id: str) -> list[JourneyRewardRow]:
    with world.inst.operational.session() as s:
        return list(s.scalars(select(JourneyRewardRow).where(JourneyRewardRow.journey_id == journey_id)))


def test_birthday_coupons_on_the_first_of_each_month(world: World) -> None:
    people = {
        "b1": ("赵敏", "1990-12-09"),
        "b2": ("周杰", "1985-12-31"),
        "b3": ("吴芳", "1992-01-15"),
        "b4": ("郑凯", "1988-06-01"),
    }
    for uid, (name, birthday) in people.items():
        world.person(uid, name=name, phone=f"1370000000{uid[1]}", birthday=birthday)
    aud = create_audience(inst=world.inst, draft=AudienceDraft(
        name="本月生日会员", definition={"type": "attribute", "field": "birthday", "op": "anniversary_this_month"}))  # fmt: skip
    world.coupon_template("bday50", "50")
    jid = world.journey("生日有礼", {
        "nodes": [
            {"id": "month", "type": "entry", "data": {"audience": {"audience_id": aud.id, "at": local(2026, 12, 1, 10).isoformat(), "every": "month"}}},
            {"id": "gift", "type": "coupon", "data": {"template": "bday50", "valid_days": 30}},
            {"id": "sms", "type": "sms", "data": {"template": {"body": {"zh": "{{ profile.name }}，生日快乐！送您50元券 {{ coupon.code }}，{{ coupon.valid_until | date('%m月%d日') }}前有效。"}}}},
        ],
        "edges": edges(("month", "gift"), ("gift", "sms")),
        "settings": {"reentry": {"policy": "cooldown", "cooldown_days": 300}},
    })  # fmt: skip
    world.at(local(2026, 11, 30, 10))
    assert world.sms.messages == []
    world.at(local(2026, 12, 1, 10))
    got = {m["to"]: m["body"] for m in world.sms.messages}
    assert set(got) == {"+8613700000001", "+8613700000002"}
    codes = {r.profile_id: r.code for r in rewards(world, jid)}
    assert len(codes) == 2 and all(c and len(c) == 13 for c in codes.values())  # unique codes of the catalogue
    assert got["+8613700000001"] == f"赵敏，生日快乐！送您50元券 {codes[world.profile_id('b1')]}，12月31日前有效。"
    world.at(local(2026, 12, 15, 10))  # nothing between the runs
    assert len(world.sms.messages) == 2
    world.at(local(2027, 1, 1, 10))  # January: 吴芳 only; the December people are not sent again
    assert [m["to"] for m in world.sms.messages[2:]] == ["+8613700000003"]
    assert len(rewards(world, jid)) == 3


def test_win_back_after_60_then_30_then_15_days_with_different_copy(world: World) -> None:
    for uid in ("w1", "w2", "w3"):
        world.person(uid, name=f"会员{uid}", phone=f"1360000000{uid[1]}")
        world.track(uid, "Order Completed", at=START - timedelta(days=70), order_id=f"o-{uid}", revenue=199)
    aud = create_audience(inst=world.inst, draft=AudienceDraft(name="60天未购", definition={"type": "and", "children": [
        {"type": "event", "event": "Order Completed"},
        {"type": "event", "event": "Order Completed", "window": {"last": 60}, "count": {"op": "eq", "value": 0}},
    ]}))  # fmt: skip
    bought = {"name": "Order Completed"}
    jid = world.journey("沉睡唤醒 60/30/15", {
        "nodes": [
            {"id": "in", "type": "entry", "data": {"audience": {"audience_id": aud.id}}},
            {"id": "d60", "type": "sms", "data": {"template": {"body": "好久不见！全场9折等你回来"}}},
            {"id": "w30", "type": "wait", "data": {"mode": "event", "event": bought, "timeout": {"days": 30}}},
            {"id": "d90", "type": "sms", "data": {"template": {"body": "专属8折券已到账，别错过"}}},
            {"id": "w15", "type": "wait", "data": {"mode": "event", "event": bought, "timeout": {"days": 15}}},
            {"id": "d105", "type": "sms", "data": {"template": {"body": "最后机会：7折回归礼仅剩3天"}}},
            {"id": "back", "type": "exit"},
        ],
        "edges": edges(("in", "d60"), ("d60", "w30"), ("w30", "d90", "timeout"), ("w30", "back", "event"),
                       ("d90", "w15"), ("w15", "d105", "timeout")),
        "settings": {"goal": {"name": "Order Completed", "within_days": 60}},
    })  # fmt: skip
    world.run()
    assert sorted(m["body"] for m in world.sms.messages) == ["好久不见！全场9折等你回来"] * 3
    world.clock.advance(timedelta(days=10))
    world.track("w1", "Order Completed", order_id="o-w1-2", revenue=99)  # w1 comes back after the first message
    world.advance(days=21)
    world.track("w2", "Order Completed", order_id="o-w2-2", revenue=99)  # w2 after the second
    world.advance(days=16)
    assert world.sms_to("+8613600000001") == ["好久不见！全场9折等你回来"]
    assert world.sms_to("+8613600000002") == ["好久不见！全场9折等你回来", "专属8折券已到账，别错过"]
    assert world.sms_to("+8613600000003") == [
        "好久不见！全场9折等你回来",
        "专属8折券已到账，别错过",
        "最后机会：7折回归礼仅剩3天",
    ]
    with world.inst.operational.session() as s:
        rows = {
            r.profile_id: r for r in s.scalars(select(JourneyInstanceRow).where(JourneyInstanceRow.journey_id == jid))
        }
    assert rows[world.profile_id("w1")].status == "exited" and rows[world.profile_id("w1")].converted_at is not None
    assert rows[world.profile_id("w2")].converted_at is not None
    assert rows[world.profile_id("w3")].converted_at is None and rows[world.profile_id("w3")].status == "completed"


def test_welcome_series_day_0_1_3_7_14_with_an_ab_split_of_new_members(world: World) -> None:
    arms = [{"handle": "coupon", "weight": 45, "name": "券"}, {"handle": "points", "weight": 45, "name": "积分"},
            {"handle": "control", "weight": 10, "control": True, "name": "对照组"}]  # fmt: skip
    nodes = [
        {"id": "joined", "type": "entry", "data": {"event": {"name": "Signed Up"}}},
        {"id": "ab", "type": "ab", "data": {"arms": arms}},
        {"id": "c0", "type": "sms", "data": {"template": {"body": "欢迎！新人券已到账"}}},
        {"id": "p0", "type": "sms", "data": {"template": {"body": "欢迎！注册送200积分"}}},
        {"id": "w1", "type": "wait", "data": {"mode": "duration", "span": {"days": 1}}},
        {
            "id": "d1",
            "type": "email",
            "data": {"template": {"subject": "第1天：品牌故事", "body": "<p>{{ profile.name }}，认识一下我们</p>"}},
        },
        {"id": "w3", "type": "wait", "data": {"mode": "duration", "span": {"days": 2}}},
        {"id": "d3", "type": "sms", "data": {"template": {"body": "第3天：热卖推荐"}}},
        {"id": "w7", "type": "wait", "data": {"mode": "duration", "span": {"days": 4}}},
        {"id": "d7", "type": "sms", "data": {"template": {"body": "第7天：会员权益"}}},
        {"id": "w14", "type": "wait", "data": {"mode": "duration", "span": {"days": 7}}},
        {"id": "d14", "type": "sms", "data": {"template": {"body": "第14天：专属好礼"}}},
    ]
    jid = world.journey("新会员欢迎系列", {
        "nodes": nodes,
        "edges": edges(("joined", "ab"), ("ab", "c0", "coupon"), ("ab", "p0", "points"), ("c0", "w1"), ("p0", "w1"),
                       ("w1", "d1"), ("d1", "w3"), ("w3", "d3"), ("d3", "w7"), ("w7", "d7"), ("d7", "w14"), ("w14", "d14")),
        "settings": {"goal": {"name": "Order Completed", "within_days": 30}, "transactional": True},
    })  # fmt: skip
    n = 40
    for i in range(n):
        world.person(f"n{i}", name=f"新人{i}", phone=f"135{i:08d}", email=f"n{i}@mail.example")
    world.send(*[{"type": "track", "userId": f"n{i}", "event": "Signed Up"} for i in range(n)])
    days_seen: dict[int, Counter[str]] = {}
    for day in range(15):
        world.at(START + timedelta(days=day, minutes=1))
        days_seen[day] = Counter(m["body"] for m in world.sms.messages)
    with world.inst.operational.session() as s:
        inst_rows = list(s.scalars(select(JourneyInstanceRow).where(JourneyInstanceRow.journey_id == jid)))
    arm_of = {r.profile_id: r.state["arms"]["ab"] for r in inst_rows}
    counts = Counter(arm_of.values())
    assert sum(counts.values()) == n and set(counts) <= {"coupon", "points", "control"} and counts["control"] < n / 2
    sent_to = Counter(m["to"] for m in world.sms.messages)
    for i in range(n):
        arm, phone = arm_of[world.profile_id(f"n{i}")], f"+86135{i:08d}"
        assert sent_to[phone] == (0 if arm == "control" else 4)  # day 0, 3, 7, 14 by SMS (day 1 by email)
    treated = n - counts["control"]
    assert (
        days_seen[0]["欢迎！新人券已到账"] == counts["coupon"]
        and days_seen[0]["欢迎！注册送200积分"] == counts["points"]
    )
    assert days_seen[2]["第3天：热卖推荐"] == 0 and days_seen[3]["第3天：热卖推荐"] == treated
    assert days_seen[6]["第7天：会员权益"] == 0 and days_seen[7]["第7天：会员权益"] == treated
    assert days_seen[13]["第14天：专属好礼"] == 0 and days_seen[14]["第14天：专属好礼"] == treated
    assert len(world.smtp.messages) == treated and world.smtp.messages[0]["Subject"] == "第1天：品牌故事"


def test_points_expiry_reminder_waits_for_the_morning(tmp_path: Path) -> None:
    with make_world(tmp_path) as world:  # the default quiet hours 21:00-08:00
        jid = world.journey("积分到期提醒", {
            "nodes": [
                {"id": "in", "type": "entry", "data": {"event": {"name": "Points Expiring", "where": [{"property": "points", "op": "gte", "value": 100}]}}},
                {"id": "sms", "type": "sms", "data": {"template": {"body": {"zh": "您有{{ event.points }}积分将于{{ event.expire_on }}过期，快来兑换吧",
                                                                             "en": "{{ event.points }} points expire on {{ event.expire_on }}"}}}},
            ],
            "edges": edges(("in", "sms")),
        })  # fmt: skip
        world.person("x1", name="孙丽", phone="13400000001")
        world.person("x2", name="Tom", phone="13400000002", locale="en-GB", timezone="Europe/London")
        world.person("x3", name="钱程", phone="13400000003")
        world.clock.set(local(2026, 11, 20, 22, 30))  # 22:30 in Shanghai: quiet hours for x1
        world.track("x1", "Points Expiring", points=520, expire_on="2026-12-31")
        world.track("x2", "Points Expiring", points=300, expire_on="2026-12-31")
        world.track("x3", "Points Expiring", points=50, expire_on="2026-12-31")  # below the filter
        world.run()
        assert world.sms_to("+8613400000002") == ["300 points expire on 2026-12-31"]  # 14:30 in London
        assert world.sms_to("+8613400000001") == []
        held = [r for r in world.outbox(jid) if r.reason == "quiet_hours"]
        assert len(held) == 1 and held[0].status == "pending"
        world.at(local(2026, 11, 21, 7, 59))
        assert world.sms_to("+8613400000001") == []
        world.at(local(2026, 11, 21, 8, 0))
        assert world.sms_to("+8613400000001") == ["您有520积分将于2026-12-31过期，快来兑换吧"]
        assert world.sms_to("+8613400000003") == []


def test_seven_day_check_in_incentives(world: World) -> None:
    world.person("k1", name="VIP客户", phone="13300000001", member_level="VIP", wechat_openid="o_k1")
    world.person("k2", name="普通买家", phone="13300000002", member_level="普通", wechat_openid="o_k2")
    world.person("k3", name="未购用户", phone="13300000003", member_level="普通")
    world.track("k1", "Order Completed", order_id="k1-1", revenue=1288)
    world.track("k2", "Order Completed", order_id="k2-1", revenue=88)
    non_vip = {"type": "not", "child": {"type": "attribute", "field": "member_level", "op": "eq", "value": "VIP"}}
    buyer = {"type": "event", "event": "Order Completed"}
    world.coupon_template("vip_trial_7d", "0.01")
    world.coupon_template("first_order_20")
    jid = world.journey("连续签到7天", {
        "nodes": [
            {"id": "streak", "type": "entry", "data": {"event": {"name": "Checked In", "where": [{"property": "streak", "op": "eq", "value": 7}]}}},
            {"id": "who", "type": "split", "data": {"paths": [
                {"handle": "buyer_non_vip", "name": "非VIP买家", "condition": {"type": "and", "children": [non_vip, buyer]}},
                {"handle": "non_buyer", "name": "未购", "condition": {"type": "not", "child": buyer}}]}},
            {"id": "trial", "type": "coupon", "data": {"template": "vip_trial_7d", "valid_days": 7}},
            {"id": "wx", "type": "wechat", "data": {"template": {"body": "VIP体验卡", "data": {
                "template_id": "TM_VIP_TRIAL", "data": {"first": "恭喜连续签到7天", "keyword1": "{{ coupon.code }}"}}}}},
            {"id": "first_buy", "type": "coupon", "data": {"template": "first_order_20"}},
            {"id": "sms", "type": "sms", "data": {"template": {"body": "签到满7天！首单立减20元券 {{ coupon.code }}"}}},
            {"id": "pts", "type": "points", "data": {"amount": 70, "reason": "连续签到7天"}},
        ],
        "edges": edges(("streak", "who"), ("who", "trial", "buyer_non_vip"), ("trial", "wx"),
                       ("who", "first_buy", "non_buyer"), ("first_buy", "sms"), ("who", "pts", "else")),
    })  # fmt: skip
    lapsed = create_audience(inst=world.inst, draft=AudienceDraft(name="签到中断", definition={"type": "and", "children": [
        {"type": "event", "event": "Checked In", "window": {"last": 30}},
        {"type": "event", "event": "Checked In", "window": {"last": 3}, "count": {"op": "eq", "value": 0}}]}))  # fmt: skip
    lapsed_jid = world.journey("签到中断提醒", {
        "nodes": [{"id": "daily", "type": "entry", "data": {"audience": {"audience_id": lapsed.id, "every": "day",
                                                                          "at": local(2026, 11, 20, 10).isoformat()}}},
                  {"id": "nudge", "type": "sms", "data": {"template": {"body": "签到断了？今天签到继续领积分"}}}],
        "edges": edges(("daily", "nudge")),
        "settings": {"reentry": {"policy": "cooldown", "cooldown_days": 7}},
    })  # fmt: skip
    for uid in ("k1", "k2", "k3"):
        world.track(uid, "Checked In", streak=7)
    world.run()
    hooks = world.hooks.wait_for(1)
    assert (
        len(hooks) == 1 and hooks[0].payload["touser"] == "o_k2" and hooks[0].payload["template_id"] == "TM_VIP_TRIAL"
    )
    codes = {(r.profile_id, r.template): r.code for r in rewards(world, jid)}
    assert hooks[0].payload["data"]["keyword1"]["value"] == codes[(world.profile_id("k2"), "vip_trial_7d")]
    assert world.sms_to("+8613300000003") == [
        f"签到满7天！首单立减20元券 {codes[(world.profile_id('k3'), 'first_order_20')]}"
    ]
    points = [r for r in rewards(world, jid) if r.kind == "points"]
    assert [(r.profile_id, r.amount) for r in points] == [(world.profile_id("k1"), 70)]
    world.at(local(2026, 11, 24, 10))  # four days without a check-in: everyone is nudged once
    nudges = [m["to"] for m in world.sms.messages if m["body"].startswith("签到断了")]
    assert sorted(nudges) == ["+8613300000001", "+8613300000002", "+8613300000003"]
    world.at(local(2026, 11, 25, 10))
    assert len([m for m in world.sms.messages if m["body"].startswith("签到断了")]) == 3  # cooldown: not daily
    assert lapsed_jid


def test_sharing_a_product_ten_times_earns_a_referral_reward_once(world: World) -> None:
    world.person("s1", name="分享达人", phone="13200000001")
    with world.inst.operational.session() as s:
        create_tag(session=s, now=world.clock.now(), body={
            "key": "referral_rewarded", "name": "已获推荐奖励", "name_en": "Referral rewarded", "category": "scenario",
            "value_type": "bool", "status": "active"})  # fmt: skip
    ten = {"type": "and", "children": [
        {"type": "event", "event": "Product Shared", "window": {"last": 30}, "count": {"op": "gte", "value": 10}},
        {"type": "not", "child": {"type": "tag", "tag": "referral_rewarded", "op": "has"}}]}  # fmt: skip
    jid = world.journey("分享有礼", {
        "nodes": [
            {"id": "shared", "type": "entry", "data": {"event": {"name": "Product Shared"}}},
            {"id": "enough", "type": "split", "data": {"paths": [{"handle": "ten", "condition": ten}]}},
            {"id": "reward", "type": "points", "data": {"amount": 500, "reason": "分享满10次推荐奖励"}},
            {"id": "sms", "type": "sms", "data": {"template": {"body": "感谢分享！500积分推荐奖励已到账"}}},
            {"id": "mark", "type": "tag", "data": {"key": "referral_rewarded", "value": True}},
        ],
        "edges": edges(("shared", "enough"), ("enough", "reward", "ten"), ("reward", "sms"), ("sms", "mark")),
        "settings": {"reentry": {"policy": "always"}},
    })  # fmt: skip
    for i in range(9):
        world.clock.advance(timedelta(minutes=5))
        world.track("s1", "Product Shared", product_id=f"sku-{i}")
        world.run()
    assert world.sms.messages == []
    world.clock.advance(timedelta(minutes=5))
    world.track("s1", "Product Shared", product_id="sku-9")
    world.run()
    assert world.sms_to("+8613200000001") == ["感谢分享！500积分推荐奖励已到账"]
    world.clock.advance(timedelta(minutes=5))
    world.track("s1", "Product Shared", product_id="sku-10")
    world.run()
    assert len(world.sms_to("+8613200000001")) == 1  # the 11th share: the reward is once
    assert [r.amount for r in rewards(world, jid)] == [500]
    with world.inst.operational.session() as s, pytest.raises(Exception, match="分享有礼"):
        update_tag(session=s, key="referral_rewarded", changes={"status": "archived"}, now=world.clock.now())
