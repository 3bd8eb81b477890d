"""The demo brand's loyalty programme (远山户外会员体系), end to end on the built demo: the history's
orders became points, redemptions of the campaigns' shared codes and tiers; balances equal the
ledger; the loyalty journeys are live and fire on the events loyalty publishes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tessera.clock import FrozenClock
from tessera.runtime import Instance
from tessera.services import coupon_reports, points
from tessera.services.journey_dispatch import Dispatcher
from tessera.services.journey_worker import run_until_idle
from tessera.services.loyalty_member import member_loyalty
from tessera.services.loyalty_worker import run_once
from tessera.settings import load_settings
from tessera.stores.models import (
    CouponRow,
    JourneyRow,
    LoyaltyOrderRow,
    LoyaltyRejectionRow,
    MemberTierRow,
    PointsAccountRow,
    PointsEntryRow,
)


@pytest.fixture(scope="module")
def inst(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    root = tmp_path_factory.mktemp("demo-loyalty") / "data"
    shutil.copytree(demo_dir, root)
    built = Instance(root)
    with built.operational.session() as s:
        latest = s.scalar(select(func.max(LoyaltyOrderRow.created_at)))
    built.close()
    assert latest is not None
    clock = FrozenClock(latest)
    i = Instance(root, settings=load_settings(data=root), clock=clock)
    yield i
    i.close()


def test_the_history_became_points_redemptions_and_tiers(inst: Instance) -> None:
    with inst.operational.session() as s:
        orders = s.scalar(select(func.count()).select_from(LoyaltyOrderRow))
        redeemed = dict(s.execute(select(CouponRow.template, func.count()).where(CouponRow.status == "redeemed")
                                  .group_by(CouponRow.template)).all())  # fmt: skip
        rejected = s.scalar(select(func.count()).select_from(LoyaltyRejectionRow))
        tiers = dict(s.execute(select(MemberTierRow.tier, func.count()).group_by(MemberTierRow.tier)).all())
        ledger = dict(s.execute(select(PointsEntryRow.profile_id, func.sum(PointsEntryRow.points))
                                .group_by(PointsEntryRow.profile_id)).all())  # fmt: skip
        accounts = dict(s.execute(select(PointsAccountRow.profile_id, PointsAccountRow.balance)).all())
    assert orders and orders > 1000
    # the campaigns' shared codes (通用码) became each buyer's own redeemed coupon
    assert redeemed.get("double11", 0) > 0 and redeemed.get("newmember_20", 0) > 0
    assert rejected == 0  # every code in the history is a known template's, and each met its threshold
    assert tiers.get("silver", 0) > 0 and tiers.get("gold", 0) > 0
    assert accounts == {pid: total for pid, total in ledger.items()}  # balance = sum of the ledger, everyone


def test_a_campaign_report_adds_up_with_gmv(inst: Instance) -> None:
    r = coupon_reports.report(inst, campaign="double11")
    line = next(c for c in r.campaigns if c.campaign == "double11")
    with inst.operational.session() as s:
        used = s.execute(select(func.count(), func.sum(CouponRow.order_amount))
                         .where(CouponRow.campaign == "double11", CouponRow.status == "redeemed")).one()  # fmt: skip
    assert line.redeemed == used[0] > 0 and line.issued >= line.redeemed
    assert Decimal(line.gmv) == Decimal(used[1]) / 100


def test_loyalty_journeys_fire_on_the_events_loyalty_publishes(inst: Instance) -> None:
    with inst.operational.session() as s:
        live = {r.name: r.status for r in s.scalars(select(JourneyRow))}
        # a member with a phone whose oldest points lapse within the coming month
        soon = inst.clock.now() + timedelta(days=25)
        lots = s.execute(select(PointsEntryRow.profile_id).where(
            PointsEntryRow.kind == "earn", PointsEntryRow.expires_at > inst.clock.now() + timedelta(days=31),
            PointsEntryRow.expires_at <= soon + timedelta(days=30)).order_by(PointsEntryRow.expires_at)).scalars().all()  # fmt: skip
    assert live.get("积分到期提醒") == "active" and live.get("升级礼遇") == "active"
    assert lots, "the demo has points lapsing in the coming months"
    member = lots[0]
    before = member_loyalty(inst, member)
    points.earn(inst, member=member, points=50, reason="门店活动", key="demo-test-earn")
    got = points.spend(inst, member=member, points=20, reason="兑换", key="demo-test-spend")
    assert got.balance == before.points.balance + 30
    assert isinstance(inst.clock, FrozenClock)
    inst.clock.set(soon)
    r = run_once(inst, force_daily=True)
    assert r.daily_jobs and r.notices >= 1 and r.published >= r.notices
    dispatcher = Dispatcher(inst)
    try:
        moved = run_until_idle(inst, dispatcher)
    finally:
        dispatcher.close()
    assert moved.entries >= 1
    got_events = (
        inst.analytic.cursor()
        .execute(
            "SELECT count(*) FROM events e JOIN event_names n USING (event_id) "
            "WHERE n.name = 'Points Expiring' AND e.source_id = 0"
        )
        .fetchall()[0][0]
    )
    assert got_events >= r.notices
