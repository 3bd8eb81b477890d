"""Order processing through the real collection path (events sent to the in-process app, loaded by
its pipeline) and the real order import: points per order with a mini-program multiplier, refunds
claw back, bonus events once per day, imported orders earn too, the same order as event and
import earns once, and a re-run processes nothing new."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tessera.services import points
from tessera.services.identity_rules import get_rules
from tessera.services.imports import import_file
from tessera.services.loyalty_orders import process_orders
from tessera.services.profile_attributes import refresh_attributes
from tessera.stores.models import LoyaltyOrderRow, LoyaltyRejectionRow, PointsEntryRow
from tests.journeys.world import World, make_world

PROGRAM = {
    "rates": [{"currency": "CNY", "points_per_unit": 1}],
    "multipliers": [{"key": "mini", "name": "小程序双倍", "name_en": "Mini-program double", "factor": 2,
                     "channels": ["miniprogram"]}],
    "bonuses": [{"key": "checkin", "name": "每日签到", "name_en": "Daily check-in", "event": "Checked In",
                 "points": 5, "per": "day"},
                {"key": "review", "name": "好评", "event": "Review Submitted", "points": 20, "per": "event",
                 "where": {"rating": 5}}],
}  # fmt: skip


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    with make_world(tmp_path) as w:
        points.set_program(w.inst, PROGRAM)
        yield w


def ledger(w: World, pid: str) -> list[tuple[str, int]]:
    with w.inst.operational.session() as s:
        return [(e.key, e.points) for e in reversed(points.history(s, pid, limit=100))]


def balance(w: World, pid: str) -> int:
    with w.inst.operational.session() as s:
        return points.balance(s, pid)


def run(w: World) -> int:
    return process_orders(w.inst, w.clock.now()).orders_new


def test_orders_earn_with_multipliers_and_refunds_claw_back(world: World) -> None:
    w = world
    pid = w.person("u1", phone="+8613800000001", name="王小明")
    w.track("u1", "Order Completed", order_id="A1", revenue=129.9, currency="CNY")
    w.send({"type": "track", "userId": "u1", "event": "Order Completed", "channel": "miniprogram",
            "properties": {"order_id": "A2", "revenue": 50}})  # fmt: skip
    w.track("u1", "Order Completed", order_id="A3", revenue=10, channel="miniprogram")  # properties.channel
    assert run(w) == 3
    assert ledger(w, pid) == [("order:A1", 129), ("order:A2", 100), ("order:A3", 20)]
    with w.inst.operational.session() as s:
        a2 = s.get(LoyaltyOrderRow, "A2")
        assert a2 is not None and (a2.amount, a2.currency, a2.channel, a2.points, a2.source) == (5000, "CNY",
                                                                                                 "miniprogram", 100, "event")  # fmt: skip
    w.track("u1", "Order Refunded", order_id="A2")
    w.track("u1", "Order Completed", order_id="A1", revenue=129.9)  # a duplicate event: the order is known
    assert run(w) == 0
    assert balance(w, pid) == 149 and ledger(w, pid)[-1] == ("refund:A2", -100)
    with w.inst.operational.session() as s:
        assert s.get(LoyaltyOrderRow, "A2").status == "refunded"  # type: ignore[union-attr]
    w.track("u1", "Order Refunded", order_id="A2")  # again: nothing more taken back
    w.track("u1", "Order Refunded", order_id="Z9")  # before its order: recorded as refunded, never earns
    w.track("u1", "Order Completed", order_id="Z9", revenue=1000)
    assert run(w) == 1 and balance(w, pid) == 149
    assert run(w) == 0  # re-running processes nothing new
    with w.inst.operational.session() as s:
        z9 = [e.points for e in s.scalars(select(PointsEntryRow).where(PointsEntryRow.order_id == "Z9"))]
        assert sum(z9) == 0 and s.get(LoyaltyOrderRow, "Z9").status == "refunded"  # type: ignore[union-attr]
        assert s.scalar(select(func.count()).select_from(PointsEntryRow)) == 4 + len(z9)


def test_bonus_events_once_per_day(world: World) -> None:
    w = world
    pid = w.person("u2", phone="+8613800000002")
    w.track("u2", "Checked In")
    w.track("u2", "Checked In")
    w.track("u2", "Review Submitted", rating=5)
    w.track("u2", "Review Submitted", rating=3)  # the where filter keeps it out
    run(w)
    assert balance(w, pid) == 25
    w.clock.advance(timedelta(days=1))
    w.track("u2", "Checked In")
    run(w)
    keys = [k for k, _ in ledger(w, pid)]
    assert balance(w, pid) == 30 and sum(k.startswith("bonus:checkin:") for k in keys) == 2


def test_imported_orders_earn_once_with_the_event(world: World, tmp_path: Path) -> None:
    w = world
    pid = w.person("u3", phone="+8613800000003")
    w.track("u3", "Order Completed", order_id="B1", revenue=200)
    csv = tmp_path / "orders.csv"
    csv.write_text("order_id,phone,ordered_at,total,channel,currency,coupon_code\n"
                   "B1,+8613800000003,2026-11-19T10:00:00+08:00,200.00,门店,CNY,\n"
                   "B2,+8613800000003,2026-11-19T11:00:00+08:00,88.50,门店,CNY,NOSUCHCODE\n", encoding="utf-8")  # fmt: skip
    report = import_file(store=w.inst.analytic, kind="orders", path=csv, now=w.clock.now(),
                         rejects_dir=tmp_path / "rejects", rules=get_rules(w.inst.operational))  # fmt: skip
    assert report.rows_stored == 2
    assert run(w) == 2  # B1 (event) and B2 (import); the import's B1 is the same order
    assert sorted(ledger(w, pid)) == [("order:B1", 200), ("order:B2", 88)]
    with w.inst.operational.session() as s:
        b2 = s.get(LoyaltyOrderRow, "B2")
        assert b2 is not None and (b2.source, b2.coupon_code, b2.amount) == ("import", "NOSUCHCODE", 8850)
        rej = s.scalars(select(LoyaltyRejectionRow)).all()
    assert [(r.key, r.order_id) for r in rej] == [("redeem:B2", "B2")] and rej[0].reason
    assert run(w) == 0


def test_condition_multiplier_for_matching_profiles(world: World) -> None:
    w = world
    points.set_program(w.inst, {**PROGRAM, "multipliers": [
        {"key": "mpjoin", "name": "小程序会员", "factor": "1.5",
         "condition": {"type": "attribute", "field": "join_channel", "op": "eq", "value": "miniprogram"}}]})  # fmt: skip
    a = w.person("u4", join_channel="miniprogram")
    b = w.person("u5", join_channel="app")
    w.track("u4", "Order Completed", order_id="C1", revenue=100)
    w.track("u5", "Order Completed", order_id="C2", revenue=100)
    with w.inst.analytic.transaction() as cur:  # the traits conditions read (the attribute refresh's job)
        refresh_attributes(cur, rules=get_rules(w.inst.operational), source_names={}, now=w.clock.now())
    run(w)
    assert ledger(w, a) == [("order:C1", 150)] and ledger(w, b) == [("order:C2", 100)]
