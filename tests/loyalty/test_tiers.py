"""Member tiers on the operational store — SQLite and the real PostgreSQL: upgrades on orders,
the scheduled review over a rolling window, minimum stay, multipliers, manual changes and
programme changes. Spend and points are set up by inserting ``loyalty_orders`` / ``points_ledger``
rows directly (the order processor is another part)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, func, insert, select, update

from tessera.clock import FrozenClock, as_utc
from tessera.runtime import Instance
from tessera.services import tiers
from tessera.services.loyalty_common import LoyaltyError, set_cursor
from tessera.stores.models import LoyaltyEventRow, LoyaltyOrderRow, MemberTierRow, PointsEntryRow, TierChangeRow
from tessera.stores.operational import OperationalStore

START = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai


def programme(**over: Any) -> dict[str, Any]:
    levels = [
        {"key": "member", "name": "普通会员", "name_en": "Member", "threshold": 0},
        {"key": "silver", "name": "银卡", "name_en": "Silver", "threshold": 1000, "benefits": {"points_multiplier": "1.2"}},
        {"key": "gold", "name": "金卡", "name_en": "Gold", "threshold": 5000, "keep": 4000,
         "benefits": {"points_multiplier": "1.5", "free_shipping": True}},
        {"key": "black", "name": "黑钻", "name_en": "Black Diamond", "threshold": 20000,
         "benefits": {"points_multiplier": 2}},
    ]  # fmt: skip
    return {"metric": "spend", "currency": "CNY", "levels": levels, **over}


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def inst(op_store: OperationalStore, tmp_path: Path, clock: FrozenClock) -> Iterator[Instance]:
    i = Instance(tmp_path / "data", clock=clock)
    i.__dict__["operational"] = op_store  # the store under test (SQLite or PostgreSQL)
    tiers.set_program(i, programme())
    yield i
    i.__dict__.pop("operational", None)
    i.close()


_orders = 0


def order(
    inst: Instance, pid: str, yuan: int, at: datetime, *, status: str = "completed", currency: str = "CNY"
) -> None:
    global _orders
    _orders += 1
    with inst.operational.session() as s:
        s.execute(insert(LoyaltyOrderRow), [{
            "order_id": f"o{_orders}", "profile_id": pid, "amount": yuan * 100, "currency": currency, "channel": "app",
            "ordered_at": at, "coupon_code": None, "points": yuan, "status": status, "source": "event",
            "message_id": None, "created_at": at}])  # fmt: skip


def earn(inst: Instance, pid: str, points: int, at: datetime, kind: str = "earn") -> None:
    global _orders
    _orders += 1
    with inst.operational.session() as s:
        s.execute(insert(PointsEntryRow), [{
            "key": f"e{_orders}", "profile_id": pid, "kind": kind, "points": points, "balance_after": points,
            "reason": "test", "source": "order", "occurred_at": at, "created_at": at}])  # fmt: skip


def evaluate(inst: Instance, ids: list[str] | None, *, scheduled: bool = False) -> list[tiers.TierChange]:
    with inst.operational.session() as s:
        return tiers.evaluate_in_session(s, ids, inst.clock.now(), scheduled=scheduled)


def tier_of(inst: Instance, pid: str) -> str | None:
    with inst.operational.session() as s:
        row = s.get(MemberTierRow, pid)
        return row.tier if row else None


def count(inst: Instance, model: Any, *where: Any) -> int:
    with inst.operational.session() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def test_an_order_upgrades_once_with_one_event(inst: Instance, clock: FrozenClock) -> None:
    order(inst, "p_a", 1200, START - timedelta(days=3))
    order(inst, "p_a", 4300, START - timedelta(hours=1))  # ¥5,500 in the window: gold, skipping silver
    order(inst, "p_b", 300, START - timedelta(days=1))
    order(inst, "p_c", 9000, START - timedelta(days=1), status="refunded")  # refunded: not counted
    order(inst, "p_c", 9000, START - timedelta(days=1), currency="USD")  # another currency: not counted
    changes = evaluate(inst, ["p_a", "p_b", "p_c", "p_a"])
    assert [(c.profile_id, c.from_tier, c.to_tier, c.direction) for c in changes] == [("p_a", "member", "gold", "up")]
    c = changes[0]
    assert c.metric == 550_000 and c.key == f"tier:p_a:gold:{START.isoformat()}"
    assert c.reason == "近365天消费 ¥5,500.00 ≥ 金卡 ¥5,000.00 / spend ¥5,500.00 in 365 days ≥ Gold ¥5,000.00"
    # p_b and p_c start at the first level silently
    assert (tier_of(inst, "p_b"), tier_of(inst, "p_c")) == ("member", "member")
    with inst.operational.session() as s:
        events = s.scalars(select(LoyaltyEventRow)).all()
        assert [(e.key, e.profile_id, e.name) for e in events] == [(c.key, "p_a", "Tier Changed")]
        props = events[0].properties
        assert (props["from"], props["to"], props["from_name"], props["to_name"], props["direction"]) == (
            "member", "gold", "普通会员", "金卡", "up")  # fmt: skip
        assert props["metric"] == 550_000 and props["benefits"]["free_shipping"] is True
        assert props["benefits"]["points_multiplier"] == "1.5"
        row = s.get(MemberTierRow, "p_a")
        assert row is not None and as_utc(row.since) == START and row.metric == 550_000
    assert count(inst, TierChangeRow) == 1

    # the same evaluation replayed at the same instant changes nothing …
    assert evaluate(inst, ["p_a", "p_b"]) == []
    # … even when it decides again (the row put back): the key makes the change and event a no-op
    with inst.operational.session() as s:
        s.execute(update(MemberTierRow).where(MemberTierRow.profile_id == "p_a").values(tier="member"))
    assert len(evaluate(inst, ["p_a"])) == 1
    assert (count(inst, TierChangeRow), count(inst, LoyaltyEventRow), tier_of(inst, "p_a")) == (1, 1, "gold")

    # more orders never downgrade, and an unscheduled evaluation of a poorer month neither
    clock.advance(timedelta(days=400))
    assert evaluate(inst, ["p_a"]) == [] and tier_of(inst, "p_a") == "gold"


def test_rolling_window_and_the_review(inst: Instance, clock: FrozenClock) -> None:
    order(inst, "p_gold", 6000, START)
    order(inst, "p_black", 30000, START)
    order(inst, "p_keep", 6000, START)
    evaluate(inst, None)
    assert [tier_of(inst, p) for p in ("p_gold", "p_black", "p_keep")] == ["gold", "black", "gold"]
    clock.advance(timedelta(days=300))
    order(inst, "p_keep", 4000, clock.now())  # meets gold's keep of ¥4,000 in the next window
    order(inst, "p_new", 1500, clock.now())
    clock.advance(timedelta(days=100))  # day 400: the first orders left the window
    got = tiers.review(inst, clock.now())
    assert (got.evaluated, got.up, got.down, got.unchanged) == (4, 1, 2, 1)
    # one level at a time
    assert [tier_of(inst, p) for p in ("p_gold", "p_black", "p_keep", "p_new")] == ["silver", "gold", "gold", "silver"]
    with inst.operational.session() as s:
        down = s.scalars(select(TierChangeRow).where(TierChangeRow.profile_id == "p_gold",
                                                     TierChangeRow.direction == "down")).one()  # fmt: skip
        assert down.reason == "近365天消费 ¥0.00 < 金卡保级 ¥4,000.00 / spend ¥0.00 in 365 days < Gold keep ¥4,000.00"
        assert s.get(MemberTierRow, "p_keep").metric == 400_000  # type: ignore[union-attr]
    # the next review moves them on down; the cursor records it
    clock.advance(timedelta(days=1))
    assert tiers.review(inst, clock.now()).down == 2  # silver → member, gold → silver
    assert tier_of(inst, "p_gold") == "member"
    # downgrade "all" goes straight to where the metric is
    tiers.set_program(inst, programme(downgrade="all"))
    order(inst, "p_all", 30000, clock.now())
    evaluate(inst, ["p_all"])
    clock.advance(timedelta(days=366))
    tiers.review(inst, clock.now())
    assert tier_of(inst, "p_all") == "member"


def test_the_review_cron_says_when_one_is_due(inst: Instance, clock: FrozenClock) -> None:
    # the programme was set at 12:00 Shanghai; the default cron is 03:00 Shanghai (19:00 UTC)
    assert not tiers.due(inst, START)
    assert not tiers.due(inst, START.replace(hour=18, minute=59))
    assert tiers.due(inst, START.replace(hour=19))
    tiers.review(inst, START.replace(hour=19, minute=5))
    assert not tiers.due(inst, START + timedelta(days=1, hours=14))
    assert tiers.due(inst, START + timedelta(days=1, hours=15))
    tiers.set_program(inst, programme(enabled=False))
    assert not tiers.due(inst, START + timedelta(days=30))


def test_an_interrupted_review_resumes_without_moving_anyone_twice(inst: Instance, clock: FrozenClock) -> None:
    order(inst, "p_1", 30000, START)
    order(inst, "p_2", 30000, START)
    evaluate(inst, None)
    clock.advance(timedelta(days=400))
    t0 = clock.now()
    with inst.operational.session() as s:  # a review began at t0, evaluated p_1, then the process died
        set_cursor(s, tiers.REVIEW_CURSOR, 2, t0, at=t0)
        assert len(tiers.evaluate_in_session(s, ["p_1"], t0, scheduled=True)) == 1
    assert tiers.due(inst, t0 + timedelta(minutes=1))
    clock.advance(timedelta(minutes=5))
    got = tiers.review(inst, clock.now())
    assert (got.skipped, got.down) == (1, 1)
    assert (tier_of(inst, "p_1"), tier_of(inst, "p_2")) == ("gold", "gold")
    assert not tiers.due(inst, clock.now())


def test_minimum_stay(inst: Instance, clock: FrozenClock) -> None:
    tiers.set_program(inst, programme(window_days=10, min_stay_days=30))
    order(inst, "p_s", 6000, START)
    evaluate(inst, ["p_s"])
    clock.advance(timedelta(days=20))  # the order left the window, but the stay is not over
    assert tiers.review(inst, clock.now()).down == 0
    assert tier_of(inst, "p_s") == "gold"
    clock.advance(timedelta(days=10))
    assert tiers.review(inst, clock.now()).down == 1
    assert tier_of(inst, "p_s") == "silver"


def test_points_metric(inst: Instance) -> None:
    tiers.set_program(inst, programme(metric="points"))
    earn(inst, "p_p", 800, START - timedelta(days=2))
    earn(inst, "p_p", 400, START - timedelta(days=1))
    earn(inst, "p_p", -5000, START, kind="spend")  # spending does not lower the metric
    earn(inst, "p_q", 999, START)
    changes = evaluate(inst, None)
    assert [(c.profile_id, c.to_tier, c.metric) for c in changes] == [("p_p", "silver", 1200)]
    assert "近365天获得积分 1,200 ≥ 银卡 1,000" in changes[0].reason
    assert tier_of(inst, "p_q") == "member"


def test_multipliers_for_a_big_batch(inst: Instance) -> None:
    order(inst, "p_gold", 6000, START)
    order(inst, "p_silver", 2000, START)
    evaluate(inst, None)
    ids = [f"p_{i:05d}" for i in range(50_000)] + ["p_gold", "p_silver"]
    with inst.operational.session() as s:
        started = time.monotonic()
        got = tiers.tier_multipliers(s, ids)
        assert time.monotonic() - started < 20
    assert len(got) == 50_002 and got["p_gold"] == Decimal("1.5") and got["p_silver"] == Decimal("1.2")
    assert got["p_00042"] == 1
    tiers.set_program(inst, programme(enabled=False))
    with inst.operational.session() as s:
        assert tiers.tier_multipliers(s, ["p_gold"]) == {"p_gold": 1}
        assert tiers.evaluate_in_session(s, ["p_gold"], START, scheduled=True) == []
        assert tiers.profile_tier(s, "p_gold") is None


def test_manual_set_and_the_profile_view(inst: Instance, clock: FrozenClock) -> None:
    order(inst, "p_m", 2000, START)
    evaluate(inst, ["p_m"])
    with inst.operational.session() as s:
        got = tiers.set_tier_in_session(s, "p_m", "black", "大客户 / key account", "k1", START)
    assert got.change is not None and not got.replayed
    assert (got.change.from_tier, got.change.to_tier, got.change.direction) == ("silver", "black", "up")
    assert got.change.reason == "manual: 大客户 / key account"
    with inst.operational.session() as s:  # the same key again: nothing new, the first answer
        again = tiers.set_tier_in_session(s, "p_m", "black", "大客户 / key account", "k1", START)
        assert again.replayed and again.change == got.change
        with pytest.raises(LoyaltyError) as e:
            tiers.set_tier_in_session(s, "p_m", "gold", "x", "k1", START)
        assert (e.value.status, e.value.field) == (409, "key")
        with pytest.raises(LoyaltyError) as e:
            tiers.set_tier_in_session(s, "p_m", "platinum", "x", "k2", START)
        assert (e.value.status, e.value.field, e.value.reason) == (422, "tier", "invalid")
    assert count(inst, TierChangeRow, TierChangeRow.profile_id == "p_m") == 2
    assert count(inst, LoyaltyEventRow, LoyaltyEventRow.profile_id == "p_m") == 2
    clock.advance(timedelta(days=1))
    with inst.operational.session() as s:
        down = tiers.set_tier_in_session(s, "p_m", "gold", "调整", "k3", clock.now())
        assert down.change is not None and down.change.direction == "down"
        view = tiers.profile_tier(s, "p_m")
        assert view is not None
        assert (view.tier, view.name, view.name_en, view.since) == ("gold", "金卡", "Gold", clock.now())
        assert view.benefits.free_shipping and view.metric == 200_000 and view.metric_text == "¥2,000.00"
        assert (view.progress.next_tier, view.progress.missing, view.progress.missing_text) == (
            "black", 1_800_000, "¥18,000.00")  # fmt: skip
        assert view.progress.keep_missing == 200_000
        assert [h.to_tier for h in view.history] == ["gold", "black", "silver"]  # newest first
        never = tiers.profile_tier(s, "p_never")
        assert never is not None and (never.tier, never.since, never.history) == ("member", None, [])
        assert never.progress.missing == 100_000
        assert tiers.tier_counts(s) == {"gold": 1}


def test_removing_a_held_level(inst: Instance) -> None:
    order(inst, "p_g", 6000, START)
    order(inst, "p_s", 2000, START)
    evaluate(inst, None)
    without_gold = programme()
    without_gold["levels"] = [lv for lv in without_gold["levels"] if lv["key"] != "gold"]
    with pytest.raises(LoyaltyError) as e:
        tiers.set_program(inst, without_gold)
    assert (e.value.status, e.value.field) == (409, "program.levels")
    assert "level gold is held by 1 members" in e.value.message
    with pytest.raises(LoyaltyError) as e:
        tiers.set_program(inst, without_gold, remap={"gold": "platinum"})
    assert (e.value.status, e.value.field) == (422, "remap.gold")
    with pytest.raises(LoyaltyError) as e:
        tiers.set_program(inst, {"levels": [{"key": "x", "name": "x", "threshold": 5}]})
    assert (e.value.status, e.value.field) == (422, "program.levels[0].threshold")
    with inst.operational.session() as s:
        assert tiers.program_out(s).version == 1  # refusals wrote nothing
    done = tiers.set_program(inst, without_gold, remap={"gold": "silver"})
    assert (done.version, done.moved) == (2, 1)
    assert tier_of(inst, "p_g") == "silver"
    with inst.operational.session() as s:
        moved = s.scalars(
            select(TierChangeRow).where(TierChangeRow.profile_id == "p_g").order_by(TierChangeRow.id)
        ).all()
        assert [(m.from_tier, m.to_tier, m.direction) for m in moved] == [
            ("member", "gold", "up"),
            ("gold", "silver", "down"),
        ]
        assert (
            s.scalar(select(func.count()).select_from(LoyaltyEventRow).where(LoyaltyEventRow.profile_id == "p_g")) == 2
        )
        s.execute(delete(MemberTierRow))
    assert tiers.set_program(inst, programme()).moved == 0  # nobody holds a level: anything goes
