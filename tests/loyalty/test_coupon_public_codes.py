"""Shared codes (通用码) on the operational store (SQLite and the real PostgreSQL): a public code
used on an order becomes the buyer's own coupon, within the per-person limit and the stock; every
refusal writes nothing; the same order again answers the same coupon."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from tessera.clock import FrozenClock
from tessera.services import coupons as svc
from tessera.services.coupon_reports import coupon_report
from tessera.services.loyalty_common import LoyaltyError
from tessera.stores.models import CouponRow
from tessera.stores.operational import OperationalStore
from tests.loyalty.test_coupons import NOW, Inst, make, redeem, snapshot

D11 = "D11-300-30"


@pytest.fixture(name="inst")
def _inst(op_store: OperationalStore) -> Inst:
    return Inst(op_store, FrozenClock(NOW))


def poster(inst: Inst, **kw: Any) -> None:
    make(inst, key="double11", name="双11 满300减30", public_code=D11.lower(), code_prefix="", valid_days=None,
         campaign="double11", **kw)  # fmt: skip


def held(inst: Inst) -> list[tuple[str, str, str | None, int | None]]:
    with inst.operational.session() as s:
        rows = s.execute(select(CouponRow.profile_id, CouponRow.status, CouponRow.order_id, CouponRow.discount)
                         .order_by(CouponRow.id)).all()  # fmt: skip
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_a_public_code_becomes_each_buyers_own_redeemed_coupon(inst: Inst) -> None:
    poster(inst, per_person=None)
    a = redeem(inst, D11, profile_id="p_a", order_id="o1", amount_minor=35_000)
    b = redeem(inst, D11.lower(), profile_id="p_b", order_id="o2", amount_minor=30_000)
    assert a.status == b.status == "redeemed" and a.code != b.code and D11 not in (a.code, b.code)
    assert held(inst) == [("p_a", "redeemed", "o1", 3_000), ("p_b", "redeemed", "o2", 3_000)]
    # the same order again (a retried event) answers its coupon; nothing new
    again = redeem(inst, D11, profile_id="p_a", order_id="o1", amount_minor=35_000)
    assert again.code == a.code and len(held(inst)) == 2
    with inst.operational.session() as s:
        line = next(c for c in coupon_report(s, inst.clock.now(), campaign="double11").campaigns)
    assert (line.issued, line.redeemed, line.gmv) == (2, 2, "650.00")


@pytest.mark.parametrize(
    ("setup", "order", "reason"),
    [
        ({"per_person": 1}, {"order_id": "o9"}, "limit_reached"),  # p_a already used it once
        ({"per_person": None, "stock": 1}, {"profile_id": "p_c", "order_id": "o9"}, "out_of_stock"),
        ({"per_person": None}, {"profile_id": "p_c", "order_id": "o9", "amount_minor": 29_999}, "threshold_not_met"),
        ({"per_person": None, "channels": ["tmall"]}, {"profile_id": "p_c", "order_id": "o9"}, "wrong_channel"),
    ],
)
def test_refused_uses_of_a_public_code_write_nothing(
    inst: Inst, setup: dict[str, Any], order: dict[str, Any], reason: str
) -> None:
    poster(inst, **setup)
    if reason in ("limit_reached", "out_of_stock"):
        redeem(inst, D11, profile_id="p_a", order_id="o1", amount_minor=35_000, channel="tmall")
    before = snapshot(inst)
    with pytest.raises(LoyaltyError) as refused:
        redeem(inst, D11, **{"amount_minor": 35_000, "channel": "app", **order})
    assert refused.value.reason == reason
    assert snapshot(inst) == before


def test_a_public_code_is_unique_across_templates_and_paused_templates_refuse_it(inst: Inst) -> None:
    poster(inst, per_person=None)
    with pytest.raises(LoyaltyError) as taken:
        make(inst, key="other", public_code=D11)
    assert taken.value.field == "public_code"
    svc.set_status(inst, "double11", "paused")  # type: ignore[arg-type]
    with pytest.raises(LoyaltyError) as paused:
        redeem(inst, D11, profile_id="p_z", order_id="o5")
    assert paused.value.reason == "inactive"
    with inst.operational.session() as s:
        assert s.scalar(select(func.count()).select_from(CouponRow)) == 0
