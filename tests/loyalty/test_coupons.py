"""The coupon service on the operational store (SQLite and the real PostgreSQL): templates, issuing
(idempotency, limits, stock, validity, code collisions), redemption checks that write nothing,
replays, the expiry job and reports."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select

from tessera.clock import FrozenClock
from tessera.domain import coupons as domain
from tessera.services import coupons as svc
from tessera.services.coupon_reports import coupon_report
from tessera.services.coupons import IssueRequest, Redemption
from tessera.services.loyalty_common import LoyaltyError
from tessera.stores.models import CouponRow, CouponTemplateRow, LoyaltyEventRow
from tessera.stores.operational import OperationalStore

NOW = datetime(2026, 5, 1, 4, tzinfo=UTC)


@dataclass
class Inst:
    """What the template functions use of an Instance."""

    operational: OperationalStore
    clock: FrozenClock


@pytest.fixture
def inst(op_store: OperationalStore) -> Inst:
    return Inst(op_store, FrozenClock(NOW))


def make(inst: Inst, **kw: Any) -> svc.TemplateOut:
    body = {"key": "bday", "name": "生日券", "name_en": "Birthday", "kind": "threshold", "amount": "30",
            "threshold": "300", "valid_days": 30, "code_prefix": "BDAY-", "campaign": "birthday", **kw}  # fmt: skip
    return svc.create_template(inst, body)  # type: ignore[arg-type]


def issue(inst: Inst, *reqs: tuple[str, str], template: str = "bday", **kw: Any) -> svc.IssueResult:
    with inst.operational.session() as s:
        return svc.issue_in_session(s, template, [IssueRequest(p, k, "api") for p, k in reqs], inst.clock.now(), **kw)


def redeem(inst: Inst, code: str, **kw: Any) -> CouponRow:
    args: dict[str, Any] = {"code": code, "profile_id": "p_a", "order_id": "o1", "amount_minor": 35_000,
                            "currency": "CNY", "channel": "app", **kw}  # fmt: skip
    with inst.operational.session() as s:
        return svc.redeem_in_session(s, Redemption(**args), inst.clock.now())


def snapshot(inst: Inst) -> list[Any]:
    with inst.operational.session() as s:
        return [
            [tuple(r) for r in s.execute(select(t).order_by(*t.primary_key.columns))]
            for t in (CouponRow.__table__, CouponTemplateRow.__table__, LoyaltyEventRow.__table__)
        ]


def count(inst: Inst, model: Any) -> int:
    with inst.operational.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


# --- templates -------------------------------------------------------------------------------------------


def test_templates_are_checked_and_problems_named(inst: Inst) -> None:
    with pytest.raises(LoyaltyError) as e:
        make(inst, threshold=None)
    assert (e.value.status, e.value.field, e.value.reason) == (422, "threshold", "invalid")
    assert "needs threshold" in e.value.message and "满减券" in e.value.message
    with pytest.raises(LoyaltyError) as e:
        make(inst, key="Bad Key")
    assert e.value.field == "key"
    made = make(inst)
    assert (made.issued, made.remaining, made.summary) == (0, None, "满300减30 / 30 CNY off on orders of 300 CNY+")
    assert made.amount == "30" and made.threshold == "300"
    with pytest.raises(LoyaltyError) as e:
        make(inst)
    assert e.value.status == 409


def test_patching_keeps_the_key_and_guards_issued_coupons(inst: Inst) -> None:
    make(inst, stock=10)
    inst.clock.advance(timedelta(minutes=1))
    changed = svc.patch_template(inst, "bday", {"name": "生日礼券", "stock": 5})  # type: ignore[arg-type]
    assert (changed.name, changed.stock, changed.updated_at) == ("生日礼券", 5, NOW + timedelta(minutes=1))
    with pytest.raises(LoyaltyError) as e:
        svc.patch_template(inst, "bday", {"key": "other"})  # type: ignore[arg-type]
    assert e.value.field == "key"
    issue(inst, ("p_a", "k1"), ("p_b", "k2"), ("p_c", "k3"))
    with pytest.raises(LoyaltyError) as e:
        svc.patch_template(inst, "bday", {"stock": 2})  # type: ignore[arg-type]
    assert e.value.field == "stock" and "3" in e.value.message
    with pytest.raises(LoyaltyError) as e:
        svc.patch_template(inst, "bday", {"amount": "50", "threshold": "500"})  # type: ignore[arg-type]
    assert e.value.field == "amount"
    assert svc.patch_template(inst, "bday", {"stock": 3}).remaining == 0  # type: ignore[arg-type]


def test_paused_templates_issue_nothing_but_issued_coupons_stay_usable(inst: Inst) -> None:
    make(inst)
    code = issue(inst, ("p_a", "k1")).issued[0].code
    assert svc.set_status(inst, "bday", "paused").status == "paused"  # type: ignore[arg-type]
    got = issue(inst, ("p_b", "k2"), ("p_a", "k1"))
    assert [reason for _r, reason in got.refused] == ["inactive"]
    assert [i.replayed for i in got.issued] == [True]  # a replay still answers
    assert redeem(inst, code).status == "redeemed"
    with pytest.raises(LoyaltyError) as e:
        issue(inst, ("p_b", "k3"), template="nope")
    assert (e.value.status, e.value.reason) == (404, "unknown_template")


# --- issuing ------------------------------------------------------------------------------------------------


def test_issuing_is_idempotent_by_key(inst: Inst) -> None:
    make(inst, per_person=None)
    first = issue(inst, ("p_a", "welcome:p_a"))
    again = issue(inst, ("p_a", "welcome:p_a"), ("p_a", "welcome:p_a"))
    one = first.issued[0]
    assert one.code.startswith("BDAY-") and not one.replayed
    assert [(i.code, i.replayed) for i in again.issued] == [(one.code, True), (one.code, True)]
    assert count(inst, CouponRow) == 1 and svc.get_template(inst, "bday").issued == 1  # type: ignore[arg-type]
    with inst.operational.session() as s:
        events = s.scalars(select(LoyaltyEventRow)).all()
    assert [(e.key, e.name, e.profile_id) for e in events] == [("coupon-issued:welcome:p_a", "Coupon Issued", "p_a")]
    assert events[0].properties["code"] == one.code and events[0].properties["campaign"] == "birthday"
    # a repeated key inside one batch gives one coupon
    both = issue(inst, ("p_b", "x"), ("p_b", "x"))
    assert [i.replayed for i in both.issued] == [False, True] and both.issued[0].code == both.issued[1].code


def test_the_per_person_limit_counts_every_coupon_of_the_template(inst: Inst) -> None:
    make(inst, per_person=2)
    got = issue(inst, ("p_a", "1"), ("p_a", "2"), ("p_a", "3"), ("p_b", "4"))
    assert [i.key for i in got.issued] == ["1", "2", "4"]
    assert [(r.key, reason) for r, reason in got.refused] == [("3", "limit_reached")]
    redeem(inst, got.issued[0].code)  # used coupons still count
    assert [reason for _r, reason in issue(inst, ("p_a", "5")).refused] == ["limit_reached"]


def test_stock_is_never_exceeded_and_the_rest_is_out_of_stock(inst: Inst) -> None:
    make(inst, stock=5, per_person=None)
    got = issue(inst, *[(f"p_{i}", f"k{i}") for i in range(8)])
    assert len(got.issued) == 5
    assert [(r.key, reason) for r, reason in got.refused] == [(f"k{i}", "out_of_stock") for i in (5, 6, 7)]
    assert [reason for _r, reason in issue(inst, ("p_9", "k9")).refused] == ["out_of_stock"]
    assert issue(inst, ("p_0", "k0")).issued[0].replayed  # replays still answer at zero stock
    t = svc.get_template(inst, "bday")  # type: ignore[arg-type]
    assert (t.issued, t.remaining) == (5, 0) and count(inst, CouponRow) == 5


def test_validity_fixed_dates_and_days_after_issue(inst: Inst) -> None:
    make(inst, valid_days=10, valid_until="2026-05-08T00:00:00+08:00")
    one = issue(inst, ("p_a", "a")).issued[0]
    assert (one.valid_from, one.valid_until) == (NOW, datetime(2026, 5, 7, 16, tzinfo=UTC))
    make(inst, key="later", valid_days=3, valid_from="2026-05-02T00:00:00+00:00")
    two = issue(inst, ("p_a", "b"), template="later").issued[0]
    assert (two.valid_from, two.valid_until) == (datetime(2026, 5, 2, tzinfo=UTC), NOW + timedelta(days=3))
    with pytest.raises(LoyaltyError) as e:
        redeem(inst, two.code)
    assert e.value.reason == "not_yet_valid"


@pytest.mark.parametrize("bulk", [False, True], ids=["executemany", "insert-select"])
def test_a_code_that_collides_is_drawn_again(inst: Inst, monkeypatch: pytest.MonkeyPatch, bulk: bool) -> None:
    make(inst, per_person=None)
    taken = issue(inst, ("p_a", "first")).issued[0].code
    real = domain.new_codes
    calls: list[int] = []

    def colliding(n: int, prefix: str = "") -> list[str]:
        calls.append(n)
        codes = real(n, prefix)
        return [taken, *codes[1:]] if len(calls) == 1 else codes

    monkeypatch.setattr(svc, "new_codes", colliding)
    monkeypatch.setattr(svc, "BULK_FROM", 3 if bulk else 10_000)
    got = issue(inst, *[(f"p_{i}", f"k{i}") for i in range(5)])
    assert calls == [5, 1]  # only the collided row was drawn again
    codes = [i.code for i in got.issued]
    assert len(set(codes)) == 5 and taken not in codes and not any(i.replayed for i in got.issued)
    assert count(inst, CouponRow) == 6 and svc.get_template(inst, "bday").issued == 6  # type: ignore[arg-type]
    with inst.operational.session() as s:
        keys = set(s.scalars(select(LoyaltyEventRow.key)))
    assert keys == {"coupon-issued:first", *(f"coupon-issued:k{i}" for i in range(5))}


def test_the_bulk_path_gives_the_same_coupons_and_events(inst: Inst, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(svc, "BULK_FROM", 2)
    make(inst, per_person=1, stock=4)
    got = issue(inst, ("p_a", "a"), ("p_b", "b"), ("p_a", "a2"), ("p_c", "c"), ("p_d", "d"), ("p_e", "e"))
    assert [i.key for i in got.issued] == ["a", "b", "c", "d"]
    assert [(r.key, reason) for r, reason in got.refused] == [("a2", "limit_reached"), ("e", "out_of_stock")]
    with inst.operational.session() as s:
        ev = s.scalars(select(LoyaltyEventRow).where(LoyaltyEventRow.key == "coupon-issued:c")).one()
        row = s.scalars(select(CouponRow).where(CouponRow.key == "c")).one()
    assert ev.properties == {"code": row.code, "template": "bday", "template_name": "生日券", "kind": "threshold",
                             "valid_until": (NOW + timedelta(days=30)).isoformat(), "campaign": "birthday"}  # fmt: skip
    assert (row.profile_id, row.status, row.source, row.campaign) == ("p_c", "issued", "api", "birthday")
    again = issue(inst, ("p_a", "a"), ("p_b", "b"), ("p_c", "c"), ("p_d", "d"))  # replays found through the bulk path
    assert [(i.code, i.valid_until, i.replayed) for i in again.issued] == [
        (i.code, i.valid_until, True) for i in got.issued
    ]
    without = issue(inst, ("p_x", "x"), ("p_y", "y"), template="bday", emit_events=False)
    assert without.refused and count(inst, LoyaltyEventRow) == 4


# --- redemption ------------------------------------------------------------------------------------------------


def test_redeeming_sets_the_discount_and_emits_coupon_redeemed(inst: Inst) -> None:
    make(inst, channels=["App", "Tmall"])
    code = issue(inst, ("p_a", "k")).issued[0].code
    row = redeem(inst, code.lower(), channel="tmall")
    assert (row.status, row.discount, row.order_amount, row.order_id, row.redeem_channel) == (
        "redeemed", 3000, 35_000, "o1", "tmall")  # fmt: skip
    with inst.operational.session() as s:
        ev = s.scalars(select(LoyaltyEventRow).where(LoyaltyEventRow.name == "Coupon Redeemed")).one()
    assert ev.properties["discount"] == "30.00" and ev.properties["amount"] == "350.00"
    assert ev.key == "coupon-redeemed:k"


def test_every_refusal_writes_nothing(inst: Inst) -> None:
    make(inst, channels=["app"])
    make(inst, key="usd", kind="fixed", amount="5", threshold=None, currency="USD")
    mine = issue(inst, ("p_a", "k1")).issued[0].code
    used = issue(inst, ("p_a", "k2"), template="usd").issued[0].code
    redeem(inst, used, currency="USD", amount_minor=100)
    voided = issue(inst, ("p_b", "k3")).issued[0].code
    svc.void(inst, voided)  # type: ignore[arg-type]
    cases = [
        ("NOPE-123", {}, "not_found", 404),
        (mine, {"profile_id": "p_b"}, "not_owner", 422),
        (mine, {"channel": "jd"}, "wrong_channel", 422),
        (mine, {"amount_minor": 29_999}, "threshold_not_met", 422),
        (mine, {"currency": "USD"}, "currency_mismatch", 422),
        (used, {"currency": "USD", "order_id": "o2"}, "already_redeemed", 409),
        (voided, {"profile_id": "p_b"}, "void", 409),
    ]
    before = snapshot(inst)
    for code, kw, reason, status in cases:
        with pytest.raises(LoyaltyError) as e:
            redeem(inst, code, **kw)
        assert (e.value.reason, e.value.status) == (reason, status), code
        assert " / " in e.value.message
    inst.clock.advance(timedelta(days=30))
    with pytest.raises(LoyaltyError) as e:
        redeem(inst, mine)
    assert e.value.reason == "expired"
    assert snapshot(inst) == before


def test_the_same_order_replays_and_another_order_is_refused(inst: Inst) -> None:
    make(inst)
    code = issue(inst, ("p_a", "k")).issued[0].code
    first = redeem(inst, code)
    inst.clock.advance(timedelta(minutes=5))
    again = redeem(inst, code, amount_minor=99_999)
    assert (again.id, again.redeemed_at, again.discount, again.order_amount) == (
        first.id, first.redeemed_at, 3000, 35_000)  # fmt: skip
    with pytest.raises(LoyaltyError) as e:
        redeem(inst, code, order_id="o2")
    assert e.value.reason == "already_redeemed"
    assert count(inst, LoyaltyEventRow) == 2  # issued + one redeemed


def test_void_is_idempotent_and_refuses_a_used_coupon(inst: Inst) -> None:
    make(inst, per_person=None)
    a, b = (i.code for i in issue(inst, ("p_a", "1"), ("p_a", "2")).issued)
    assert svc.void(inst, a).status == "void"  # type: ignore[arg-type]
    assert svc.void(inst, a).status == "void"  # type: ignore[arg-type]
    redeem(inst, b)
    with pytest.raises(LoyaltyError) as e:
        svc.void(inst, b)  # type: ignore[arg-type]
    assert e.value.reason == "already_redeemed"


def test_the_expiry_job_lapses_only_what_is_due(inst: Inst) -> None:
    make(inst, per_person=None, valid_days=7)
    make(inst, key="forever", kind="shipping", amount=None, threshold=None, valid_days=None, per_person=None)
    codes = [i.code for i in issue(inst, ("p_a", "1"), ("p_a", "2"), ("p_a", "3")).issued]
    issue(inst, ("p_a", "4"), template="forever")
    redeem(inst, codes[0])
    with inst.operational.session() as s:
        assert svc.expire_coupons(s, NOW + timedelta(days=7) - timedelta(seconds=1)) == 0
        assert svc.expire_coupons(s, NOW + timedelta(days=7)) == 2
        assert svc.expire_coupons(s, NOW + timedelta(days=700)) == 0
        mine = {c.code: c for c in svc.profile_coupons(s, "p_a", NOW + timedelta(days=8))}
    assert mine[codes[1]].status == "expired" and mine[codes[1]].expired_at == NOW + timedelta(days=7)
    assert mine[codes[0]].status == "redeemed" and mine[codes[0]].discount == "30.00"
    forever = next(c for c in mine.values() if c.template == "forever")
    assert forever.usable and forever.valid_until is None and forever.summary.startswith("包邮")


def test_reports_per_template_and_campaign(inst: Inst) -> None:
    make(inst, per_person=None, valid_days=5)
    make(inst, key="vip", kind="percent", percent="10", amount=None, threshold=None, per_person=None, campaign=None,
         valid_days=None)  # fmt: skip
    codes = [i.code for i in issue(inst, *[(f"p_{i}", f"b{i}") for i in range(5)]).issued]
    vip = [i.code for i in issue(inst, ("p_a", "v1"), ("p_b", "v2"), template="vip").issued]
    redeem(inst, codes[0], profile_id="p_0", amount_minor=40_000)
    redeem(inst, vip[0], profile_id="p_a", amount_minor=12_345, order_id="o9")
    svc.void(inst, codes[1])  # type: ignore[arg-type]
    later = NOW + timedelta(days=6)  # the other birthday coupons lapsed (not yet marked)
    with inst.operational.session() as s:
        rep = coupon_report(s, later)
        only = coupon_report(s, later, campaign="birthday")
        none = coupon_report(s, later, issued_from=NOW + timedelta(days=1))
    bday = next(t for t in rep.templates if t.template == "bday")
    assert (bday.issued, bday.redeemed, bday.void, bday.expired, bday.open) == (5, 1, 1, 3, 0)
    assert (bday.redemption_rate, bday.discount, bday.gmv, bday.currency) == (0.2, "30.00", "400.00", "CNY")
    v = next(t for t in rep.templates if t.template == "vip")
    assert (v.issued, v.redeemed, v.open, v.discount, v.gmv) == (2, 1, 1, "12.35", "123.45")
    assert {(c.campaign, c.issued) for c in rep.campaigns} == {("birthday", 5), (None, 2)}
    assert [t.template for t in only.templates] == ["bday"]
    assert none.templates == [] and none.campaigns == []
