"""The loyalty worker (会员运营执行器): one thread in the server that keeps loyalty current.

Each round, at the clock's time:

0. loyalty of profiles OneID merged is carried over to the survivor
   (:func:`tessera.services.loyalty_merges.fold_merges`);
1. new orders, refunds and bonus events → points, coupon redemptions, tier upgrades
   (:func:`tessera.services.loyalty_orders.process_orders`, one transaction per batch);
2. coupons that lapsed are expired;
3. once a day (from ``loyalty.daily_hour`` in the workspace time zone): points lots that lapsed
   are expired (a spend expires the member's own lapsed lots first, so none is ever spent),
   ``Points Expiring`` and ``Coupon Expiring`` notices, birthday bonuses and the tiers' birthday coupons;
4. the tier review when its cron says one is due (upgrades and downgrades);
5. the queued loyalty events are published as system events (journeys trigger on them).

The loader wakes it after each load; otherwise it looks every ``worker_interval_seconds``.
:func:`run_once` is the same round, synchronous — tests move the clock and call it, and
``tessera loyalty run`` / ``POST /v1/admin/loyalty/run`` call it by hand.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from pydantic import BaseModel, Field

from tessera.runtime import Instance
from tessera.services import loyalty_common, loyalty_events
from tessera.services.background import Worker

_DAILY = "daily_jobs"


class LoyaltyRound(BaseModel):
    """What one round did."""

    orders: int = Field(default=0, description="new orders processed (events and imported rows, once per order id)")
    bonuses: int = Field(default=0, description="bonus events granted (check-in, review …)")
    refunds: int = Field(default=0, description="refunds clawed back")
    rejections: int = Field(default=0, description="coupon uses refused (loyalty_rejections)")
    merges: int = Field(default=0, description="OneID merges whose loyalty (points, coupons, orders) was carried over")
    coupons_expired: int = 0
    points_expired: int = Field(default=0, description="expire entries written (lots that lapsed)")
    daily_jobs: bool = Field(default=False, description="whether the daily jobs (notices, birthdays) ran")
    notices: int = Field(default=0, description="Points Expiring events queued")
    birthdays: int = Field(default=0, description="birthday bonuses granted")
    coupon_notices: int = Field(default=0, description="Coupon Expiring events queued")
    birthday_coupons: int = Field(default=0, description="tier-benefit birthday coupons issued")
    tier_review: bool = Field(default=False, description="whether a scheduled tier review ran")
    tier_changes: int = 0
    published: int = Field(default=0, description="loyalty events stored as system events")

    @property
    def busy(self) -> bool:
        return bool(self.merges or self.orders or self.bonuses or self.refunds or self.published)


def run_once(inst: Instance, now: datetime | None = None, *, force_daily: bool = False) -> LoyaltyRound:
    """One round of everything the worker does (at ``now``, default the clock's)."""
    from tessera.services import coupons, loyalty_merges, loyalty_orders, points, tiers
    from tessera.services.journey_facts import refresh_stale

    now = now or inst.clock.now()
    out = LoyaltyRound()
    out.merges = loyalty_merges.fold_merges(inst, now)
    got = loyalty_orders.process_orders(inst, now, limit=inst.settings.loyalty.batch_size)
    out.orders, out.bonuses, out.refunds, out.rejections = got.orders_new, got.bonuses, got.refunds, got.rejections
    with inst.operational.session() as s:
        out.coupons_expired = coupons.expire_coupons(s, now)
    if force_daily or _daily_due(inst, now):
        out.daily_jobs = True
        out.points_expired = points.expire_points(inst, now).entries
        out.notices = points.expiring_notices(inst, now)
        with inst.operational.session() as s:
            out.coupon_notices = coupons.expiring_notices(s, now, inst.settings.loyalty.coupon_notice_days)
        refresh_stale(inst)  # traits given since the attributes were computed (a birthday just entered)
        people = points.birthdays_today(inst, now)
        out.birthdays = points.grant_birthdays(inst, now, people)
        out.birthday_coupons = tiers.issue_birthday_coupons(inst, people, now)
        with inst.operational.session() as s:
            loyalty_common.set_cursor(s, _DAILY, _local_day(inst, now).toordinal(), now, at=now)
    if tiers.due(inst, now):
        review = tiers.review(inst, now)
        out.tier_review = True
        out.tier_changes = review.up + review.down
    out.published = loyalty_events.publish(inst, now)
    return out


def _local_day(inst: Instance, now: datetime) -> datetime:
    return now.astimezone(ZoneInfo(inst.settings.timezone))


def _daily_due(inst: Instance, now: datetime) -> bool:
    local = _local_day(inst, now)
    if local.hour < inst.settings.loyalty.daily_hour:
        return False
    with inst.operational.session() as s:
        done, _ = loyalty_common.cursor(s, _DAILY)
    return done < local.toordinal()


class LoyaltyWorker(Worker):
    """The worker thread. ``wake()`` makes it look now (the loader calls it after each load)."""

    name = "loyalty"

    def __init__(
        self, inst: Instance, *, interval: float | None = None, on_published: Callable[[], None] | None = None
    ) -> None:
        super().__init__(interval=interval if interval is not None else inst.settings.loyalty.worker_interval_seconds)
        self.inst = inst
        self.on_published = on_published

    def round(self) -> bool:
        r = run_once(self.inst)
        if r.published and self.on_published is not None:
            self.on_published()
        return r.busy
