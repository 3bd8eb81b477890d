"""Loyalty end to end (会员运营全链路): real collection path, the loyalty worker's round, journeys
on loyalty events, real SMS provider — the clock jumps instead of sleeping.

* An order through the SDK path redeems the member's coupon, earns points (mini-program ×2),
  upgrades the tier; ``Tier Changed`` starts a journey that issues a gift coupon and texts its code.
* Points lapse after their lifetime; ``Points Expiring`` comes 30 days ahead and a journey texts it.
* A journey's coupon node issues through the coupon catalogue: out of stock is counted, not fatal.
* The 360° profile and the member view show coupons, points and tier.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from tessera.services import coupon_issue, coupons, points, tiers
from tessera.services.loyalty_worker import LoyaltyRound, run_once
from tessera.stores.models import CouponRow, LoyaltyEventRow, PointsEntryRow
from tests.journeys.world import World, make_world

PHONE = "+8613800138000"
MINI = "wechat_miniprogram"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with make_world(tmp_path, quiet_hours="", cap_sms="") as w:
        yield w


def settle(w: World) -> LoyaltyRound:
    """Loyalty, then journeys, until neither moves (events published by one feed the other)."""
    total = LoyaltyRound()
    for _ in range(6):
        r = run_once(w.inst, w.clock.now())
        total.orders += r.orders
        total.published += r.published
        total.tier_changes += r.tier_changes
        total.notices += r.notices
        total.points_expired += r.points_expired
        moved = w.run()
        if not r.busy and not moved.busy:
            break
    return total


def order(w: World, user: str, order_id: str, amount: str, *, channel: str = MINI, **props: Any) -> None:
    w.send({"type": "track", "userId": user, "event": "Order Completed", "context": {"channel": channel},
            "properties": {"order_id": order_id, "revenue": amount, "currency": "CNY", **props}})  # fmt: skip


def setup_programme(w: World) -> None:
    coupons.create_template(w.inst, {"key": "welcome_20", "name": "新人满99减20", "name_en": "¥20 off ¥99",
                                     "kind": "threshold", "amount": "20", "threshold": "99", "valid_days": 30})  # fmt: skip
    coupons.create_template(w.inst, {"key": "tier_gift", "name": "升级礼遇券", "name_en": "Upgrade gift",
                                     "kind": "fixed", "amount": "30", "valid_days": 30, "per_person": 5})  # fmt: skip
    points.set_program(w.inst, {
        "rates": [{"currency": "CNY", "points_per_unit": "1"}], "lifetime_days": 365, "notice_days": 30,
        "multipliers": [{"key": "mini_x2", "name": "小程序双倍", "name_en": "Mini-program ×2", "factor": "2",
                         "channels": [MINI]}],
    })  # fmt: skip
    tiers.set_program(w.inst, {
        "enabled": True, "metric": "spend", "window_days": 365,
        "levels": [{"key": "regular", "name": "普通会员", "name_en": "Member", "threshold": "0"},
                   {"key": "silver", "name": "银卡会员", "name_en": "Silver", "threshold": "1000",
                    "benefits": {"points_multiplier": "1.5"}}],
    })  # fmt: skip


def tier_journey(w: World) -> str:
    return w.journey("升级礼遇", {
        "nodes": [
            {"id": "up", "type": "entry", "data": {"event": {"name": "Tier Changed",
                                                              "where": [{"property": "direction", "op": "eq", "value": "up"}]}}},
            {"id": "gift", "type": "coupon", "data": {"template": "tier_gift"}},
            {"id": "sms", "type": "sms", "data": {"template": {
                "body": "恭喜升级{{ event.to_name }}！礼遇券 {{ coupon.code }}，满意请回复。回复TD退订"}}},
        ],
        "edges": [{"source": "up", "target": "gift"}, {"source": "gift", "target": "sms"}],
        "settings": {"reentry": {"policy": "always"}},
    })  # fmt: skip


def test_order_redeems_earns_upgrades_and_the_upgrade_journey_sends_a_gift_coupon(world: World) -> None:
    w = world
    setup_programme(w)
    pid = w.person("u1", name="王小明", phone=PHONE)
    jid = tier_journey(w)
    welcome = coupon_issue.issue(w.inst, "welcome_20", "user_id:u1", "welcome:u1")
    code = welcome.coupon.code

    order(w, "u1", "o-1001", "1200.00", coupon=code)
    r = settle(w)
    assert r.orders >= 1 and r.tier_changes == 0  # upgraded on the order, not by a review

    member = w.admin("GET", "/v1/admin/loyalty/members/user_id:u1")
    used = {c["code"]: c for c in member["coupons"]}
    assert used[code]["status"] == "redeemed" and used[code]["order_id"] == "o-1001"
    # 1,200 yuan × 2 (mini-program); the tier multiplier applies from the next order on
    assert member["points"]["balance"] == 2400
    assert member["tier"]["tier"] == "silver" and member["tier"]["history"][0]["direction"] == "up"

    # the Tier Changed event started the journey: a gift coupon issued through the catalogue, texted
    gift = [c for c in member["coupons"] if c["template"] == "tier_gift"]
    assert len(gift) == 1 and gift[0]["status"] == "issued"
    texts = w.sms_to(PHONE)
    assert len(texts) == 1 and "银卡会员" in texts[0] and gift[0]["code"] in texts[0]
    report = w.admin("GET", f"/v1/admin/journeys/{jid}/report")
    node = {n["id"]: n for n in report["nodes"]}["gift"]
    assert node["rewards"] == 1 and node["rewards_refused"] == {}

    # the same order again (a client retry with a new message id) changes nothing
    order(w, "u1", "o-1001", "1200.00", coupon=code)
    settle(w)
    again = w.admin("GET", "/v1/admin/loyalty/members/user_id:u1")
    assert again["points"]["balance"] == 2400 and len(again["coupons"]) == 2 and len(w.sms_to(PHONE)) == 1

    # the 360° view carries the same loyalty section
    view = w.admin("GET", f"/v1/admin/profiles/{pid}")
    assert view["loyalty"]["points"]["balance"] == 2400 and view["loyalty"]["tier"]["tier"] == "silver"


def test_points_expire_fifo_and_members_hear_thirty_days_before(world: World) -> None:
    w = world
    setup_programme(w)
    w.person("u2", name="李娜", phone="+8613900139000")
    w.journey("积分到期提醒", {
        "nodes": [
            {"id": "e", "type": "entry", "data": {"event": {"name": "Points Expiring"}}},
            {"id": "sms", "type": "sms", "data": {"template": {"body": "您有{{ event.points }}积分即将到期。回复TD退订"}}},
        ],
        "edges": [{"source": "e", "target": "sms"}],
        "settings": {"reentry": {"policy": "always"}},
    })  # fmt: skip
    order(w, "u2", "o-2001", "300", channel="app")
    settle(w)
    w.clock.advance(timedelta(days=100))
    order(w, "u2", "o-2002", "200", channel="app")
    settle(w)
    w.admin("POST", "/v1/admin/loyalty/points/spend",
            json={"member": "user_id:u2", "points": 100, "reason": "兑换帆布袋", "key": "spend-u2-1"})  # fmt: skip
    # 336 days after the first order: its lot (300, 100 spent FIFO → 200 left) lapses within 30 days
    w.clock.advance(timedelta(days=236))
    r = run_once(w.inst, w.clock.now(), force_daily=True)
    assert r.notices == 1
    w.run()
    assert w.sms_to("+8613900139000") == ["您有200积分即将到期。回复TD退订"]
    # once per member and expiry date
    assert run_once(w.inst, w.clock.now(), force_daily=True).notices == 0
    w.clock.advance(timedelta(days=30))
    settle(w)
    member = w.admin("GET", "/v1/admin/loyalty/members/user_id:u2")
    assert member["points"]["balance"] == 200 and member["points"]["expired"] == 200
    assert [lot["remaining"] for lot in member["points"]["lots"]] == [200]
    with w.inst.operational.session() as s:
        total = s.scalar(
            select(func.sum(PointsEntryRow.points)).where(PointsEntryRow.profile_id == member["profile_id"])
        )
    assert total == 200


def test_a_journey_coupon_node_out_of_stock_is_counted_not_fatal(world: World) -> None:
    w = world
    coupons.create_template(w.inst, {"key": "scarce", "name": "限量券", "kind": "fixed", "amount": "10",
                                     "valid_days": 7, "stock": 2})  # fmt: skip
    jid = w.journey("注册送券", {
        "nodes": [
            {"id": "in", "type": "entry", "data": {"event": {"name": "Signed Up"}}},
            {"id": "c", "type": "coupon", "data": {"template": "scarce"}},
            {"id": "sms", "type": "sms", "data": {"template": {"body": "{% if coupon.code %}券 {{ coupon.code }}{% else %}券已领完{% endif %}"}}},
        ],
        "edges": [{"source": "in", "target": "c"}, {"source": "c", "target": "sms"}],
    })  # fmt: skip
    for i in range(3):
        w.person(f"s{i}", phone=f"+86139001390{i:02d}")
        w.track(f"s{i}", "Signed Up")
    w.run()
    with w.inst.operational.session() as s:
        issued = s.scalar(select(func.count()).select_from(CouponRow).where(CouponRow.template == "scarce"))
    assert issued == 2
    texts = sorted(m["body"] for m in w.sms.messages)
    assert texts[-1] == "券已领完" and all(t.startswith("券 ") for t in texts[:2])
    node = {n["id"]: n for n in w.admin("GET", f"/v1/admin/journeys/{jid}/report")["nodes"]}["c"]
    assert node["rewards"] == 2 and node["rewards_refused"] == {"out_of_stock": 1}


def test_loyalty_events_are_published_once_even_when_publishing_repeats(world: World) -> None:
    w = world
    setup_programme(w)
    pid = w.person("u3", phone="+8613700137000")
    order(w, "u3", "o-3001", "1500", channel="app")
    run_once(w.inst, w.clock.now())
    with w.inst.operational.session() as s:
        queued = s.scalars(select(LoyaltyEventRow).where(LoyaltyEventRow.profile_id == pid)).all()
        assert [e.name for e in queued] == ["Tier Changed"] and queued[0].published_at is not None
        # as if the process died after the DuckDB commit and before marking it published
        queued[0].published_at = None
    from tessera.services.loyalty_events import publish

    assert publish(w.inst, w.clock.now()) == 1
    got = (
        w.inst.analytic.cursor()
        .execute("SELECT count(*) FROM events e JOIN event_names n USING (event_id) WHERE n.name = 'Tier Changed'")
        .fetchall()
    )
    assert got[0][0] == 1


def test_a_oneid_merge_carries_points_coupons_and_spend_to_the_survivor(world: World) -> None:
    w = world
    setup_programme(w)
    # a shopper buys anonymously on the web, then signs in as a member who already has a coupon
    w.send({"type": "track", "anonymousId": "web-1", "event": "Order Completed", "context": {"channel": "web"},
            "properties": {"order_id": "w-1", "revenue": "600", "currency": "CNY"}})  # fmt: skip
    member = w.person("M9", name="陈静", phone="+8613600136000")
    order(w, "M9", "m-1", "500", channel="app")
    welcome = coupon_issue.issue(w.inst, "welcome_20", "user_id:M9", "welcome:M9")
    settle(w)
    anon = (
        w.inst.analytic.cursor()
        .execute(
            "SELECT p.profile_id FROM profile_identifiers i JOIN profiles p USING (profile_idx) "
            "WHERE i.id_type = 'anonymous_id' AND i.id_value = 'web-1'"
        )
        .fetchall()[0][0]
    )
    assert anon != member
    with w.inst.operational.session() as s:
        assert points.balance(s, anon) == 600 and points.balance(s, member) == 500
    w.send({"type": "track", "userId": "M9", "anonymousId": "web-1", "event": "Signed In"})  # OneID merges the two
    r = run_once(w.inst, w.clock.now())
    assert r.merges == 1
    survivor = w.admin("GET", f"/v1/admin/loyalty/members/{member}")  # the merged-away id follows the merge
    assert survivor["points"]["balance"] == 1100
    assert [c["code"] for c in survivor["coupons"]] == [welcome.coupon.code]
    assert survivor["tier"]["tier"] == "silver"  # ¥600 + ¥500 in the window: the combined spend upgrades
    with w.inst.operational.session() as s:
        sums = dict(s.execute(select(PointsEntryRow.profile_id, func.sum(PointsEntryRow.points))
                              .group_by(PointsEntryRow.profile_id)).all())  # fmt: skip
    assert sums[survivor["profile_id"]] == 1100 and sum(sums.values()) == 1100
    # folding again moves nothing
    assert run_once(w.inst, w.clock.now()).merges == 0


def test_birthdays_bring_bonus_points_and_the_tiers_birthday_coupon_once_a_year(world: World) -> None:
    w = world
    coupons.create_template(w.inst, {"key": "silver_bday", "name": "银卡生日券", "kind": "fixed", "amount": "50",
                                     "valid_days": 30, "per_person": None})  # fmt: skip
    points.set_program(w.inst, {"rates": [{"currency": "CNY", "points_per_unit": "1"}],
                                "bonuses": [{"key": "bday", "name": "生日积分", "name_en": "Birthday points",
                                             "event": "birthday", "points": 100, "per": "year"}]})  # fmt: skip
    levels = [{"key": "regular", "name": "普通会员", "name_en": "Member", "threshold": "0"},
              {"key": "silver", "name": "银卡会员", "name_en": "Silver", "threshold": "1000",
               "benefits": {"birthday_coupon": "no_such_template"}}]  # fmt: skip
    refused = w.client.put("/v1/admin/loyalty/tiers/program", headers={"Authorization": "Bearer journey-tests"},
                           json={"program": {"enabled": True, "levels": levels}})  # fmt: skip
    assert refused.status_code == 422 and refused.json()["field"] == "program.levels[1].benefits.birthday_coupon"
    levels[1]["benefits"] = {"birthday_coupon": "silver_bday"}
    tiers.set_program(w.inst, {"enabled": True, "levels": levels})
    today = w.clock.now().astimezone(ZoneInfo("Asia/Shanghai")).strftime("%m-%d")
    w.person("b1", name="周雨", phone="+8613500135000", birthday=f"1990-{today}")
    w.person("b2", name="孙磊", phone="+8613500135001", birthday=f"1992-{today}")
    order(w, "b1", "b-1", "1500", channel="app")  # silver
    order(w, "b2", "b-2", "100", channel="app")  # regular: no birthday coupon
    r = run_once(w.inst, w.clock.now())  # the orders first (b1 becomes silver), then the day's first daily jobs
    assert (r.birthdays, r.birthday_coupons) == (2, 1)
    b1 = w.admin("GET", "/v1/admin/loyalty/members/user_id:b1")
    assert b1["points"]["balance"] == 1600 and [c["template"] for c in b1["coupons"]] == ["silver_bday"]
    again = run_once(w.inst, w.clock.now(), force_daily=True)
    assert (again.birthdays, again.birthday_coupons) == (0, 0)


def test_a_coupon_about_to_lapse_starts_a_reminder_journey_once(world: World) -> None:
    w = world
    coupons.create_template(w.inst, {"key": "week_10", "name": "周末10元券", "kind": "fixed", "amount": "10",
                                     "valid_days": 7, "per_person": None})  # fmt: skip
    w.person("c1", name="刘洋", phone="+8613300133000")
    w.journey("优惠券到期提醒", {
        "nodes": [
            {"id": "e", "type": "entry", "data": {"event": {"name": "Coupon Expiring"}}},
            {"id": "sms", "type": "sms", "data": {"template": {
                "body": "您的{{ event.template_name }} {{ event.code }} 还有{{ event.days_left }}天到期。回复TD退订"}}},
        ],
        "edges": [{"source": "e", "target": "sms"}],
        "settings": {"reentry": {"policy": "always"}},
    })  # fmt: skip
    code = coupon_issue.issue(w.inst, "week_10", "user_id:c1", "weekend:c1").coupon.code
    settle(w)
    assert w.sms_to("+8613300133000") == []  # 7 days left: not yet
    w.clock.advance(timedelta(days=4, hours=12))  # 2.5 days left
    settle(w)
    assert w.sms_to("+8613300133000") == [f"您的周末10元券 {code} 还有2天到期。回复TD退订"]
    w.clock.advance(timedelta(days=1))
    settle(w)
    assert len(w.sms_to("+8613300133000")) == 1  # once per coupon


def test_a_refund_claws_back_points_and_gives_back_a_returnable_coupon(world: World) -> None:
    w = world
    setup_programme(w)
    coupons.create_template(w.inst, {"key": "back_15", "name": "退款可退券", "kind": "fixed", "amount": "15",
                                     "valid_days": 30, "return_on_refund": True})  # fmt: skip
    w.person("r1", name="黄磊", phone="+8613200132000")
    keep = coupon_issue.issue(w.inst, "welcome_20", "user_id:r1", "w:r1").coupon.code  # not returnable
    back = coupon_issue.issue(w.inst, "back_15", "user_id:r1", "b:r1").coupon.code
    order(w, "r1", "r-1", "300", channel="app", coupon=back)
    order(w, "r1", "r-2", "200", channel="app", coupon=keep)
    settle(w)
    member = w.admin("GET", "/v1/admin/loyalty/members/user_id:r1")
    assert member["points"]["balance"] == 500 and {c["status"] for c in member["coupons"]} == {"redeemed"}
    for oid in ("r-1", "r-2"):
        w.send({"type": "track", "userId": "r1", "event": "Order Refunded", "properties": {"order_id": oid}})
    settle(w)
    member = w.admin("GET", "/v1/admin/loyalty/members/user_id:r1")
    states = {c["code"]: (c["status"], c["order_id"]) for c in member["coupons"]}
    assert states == {back: ("issued", None), keep: ("redeemed", "r-2")}
    assert member["points"]["balance"] == 0
