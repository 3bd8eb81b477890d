"""Coupon templates, discounts, refusals and codes (pure domain: tessera.domain.coupons)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from tessera.domain.coupons import ALPHABET, CouponState, CouponTemplate, discount_minor, new_codes, refusal

NOW = datetime(2026, 5, 1, 12, tzinfo=UTC)


def tpl(**kw: Any) -> CouponTemplate:
    return CouponTemplate.model_validate({"key": "t", "name": "券", **kw})


def state(**kw: Any) -> CouponState:
    return CouponState(**{"status": "issued", "profile_id": "p_a", "valid_from": NOW - timedelta(days=1),
                          "valid_until": NOW + timedelta(days=1), **kw})  # fmt: skip


# --- discounts -----------------------------------------------------------------------------------------


def test_fixed_takes_the_amount_but_never_more_than_the_order() -> None:
    t = tpl(kind="fixed", amount="20")
    assert discount_minor(t, 10_000) == 2000
    assert discount_minor(t, 1500) == 1500


def test_percent_rounds_half_up_to_the_fen_and_stops_at_the_cap() -> None:
    t = tpl(kind="percent", percent="15")
    assert discount_minor(t, 333) == 50  # 49.95 → 50
    assert discount_minor(t, 330) == 50  # 49.5 → 50 (half up)
    assert discount_minor(t, 329) == 49  # 49.35
    capped = tpl(kind="percent", percent="50", cap="30")
    assert discount_minor(capped, 10_000) == 3000
    assert discount_minor(capped, 4000) == 2000


def test_threshold_takes_the_amount_only_once_the_order_reaches_it() -> None:
    t = tpl(kind="threshold", amount="30", threshold="300")
    assert discount_minor(t, 30_000) == 3000
    assert discount_minor(t, 29_999) == 0


def test_shipping_waives_the_shipping_and_gift_takes_nothing_off() -> None:
    assert discount_minor(tpl(kind="shipping"), 5000, 1200) == 1200
    assert discount_minor(tpl(kind="shipping"), 5000) == 0
    assert discount_minor(tpl(kind="gift", gift="帆布袋 SKU-BAG-01"), 5000, 800) == 0


def test_zero_decimal_currency_counts_whole_units() -> None:
    t = tpl(kind="percent", percent="10", currency="jpy")
    assert t.currency == "JPY"
    assert discount_minor(t, 1005) == 101  # 100.5 yen → 101


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from(["fixed", "percent", "threshold"]),
    amount=st.integers(1, 100_000),
    percent=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99.99"), places=2),
    cap=st.one_of(st.none(), st.integers(1, 50_000)),
    order=st.integers(0, 10_000_000),
)
def test_a_discount_never_exceeds_the_order_nor_the_cap(kind: str, amount: int, percent: Decimal, cap: int | None,
                                                        order: int) -> None:  # fmt: skip
    if kind == "percent":
        t = tpl(kind=kind, percent=percent, cap=None if cap is None else Decimal(cap) / 100)
    elif kind == "threshold":
        t = tpl(kind=kind, amount=Decimal(amount) / 100, threshold=Decimal(amount * 2) / 100)
    else:
        t = tpl(kind=kind, amount=Decimal(amount) / 100)
    got = discount_minor(t, order)
    assert 0 <= got <= order
    if kind == "percent" and cap is not None:
        assert got <= cap


# --- template checks ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"kind": "fixed"}, "needs amount"),
        ({"kind": "threshold", "amount": "30"}, "needs threshold"),
        ({"kind": "threshold", "amount": "50", "threshold": "30"}, "exceeds the threshold"),
        ({"kind": "percent", "percent": "100"}, "between 0 and 100"),
        ({"kind": "percent", "percent": "20", "amount": "5"}, "takes no amount"),
        ({"kind": "fixed", "amount": "0"}, "more than 0"),
        ({"kind": "fixed", "amount": "1.005"}, "at most 2 decimals"),
        ({"kind": "fixed", "amount": "abc"}, "not an amount"),
        ({"kind": "gift"}, "needs gift"),
        ({"kind": "fixed", "amount": "5", "currency": "RMB1"}, "3-letter"),
        ({"kind": "fixed", "amount": "5", "valid_from": "2026-06-01T00:00:00+08:00",
          "valid_until": "2026-05-01T00:00:00+08:00"}, "after valid_from"),
        ({"kind": "fixed", "amount": "5", "valid_until": "2026-05-01T00:00:00"}, "time zone"),
        ({"kind": "fixed", "amount": "5", "code_prefix": "bday-"}, "pattern"),
        ({"kind": "fixed", "amount": "5", "colour": "red"}, "Extra inputs"),
    ],
)  # fmt: skip
def test_bad_templates_are_refused_with_a_message_naming_the_problem(body: dict[str, Any], words: str) -> None:
    with pytest.raises(ValidationError) as e:
        tpl(**body)
    assert words in str(e.value)


def test_validity_takes_the_earlier_end_and_never_starts_before_issue() -> None:
    t = tpl(kind="fixed", amount="5", valid_days=7, valid_until="2026-05-05T00:00:00+00:00",
            valid_from="2026-04-01T00:00:00+00:00")  # fmt: skip
    assert t.validity(NOW) == (NOW, datetime(2026, 5, 5, tzinfo=UTC))
    assert tpl(kind="fixed", amount="5", valid_days=3).validity(NOW) == (NOW, NOW + timedelta(days=3))
    assert tpl(kind="fixed", amount="5").validity(NOW) == (NOW, None)


def test_summaries_read_like_the_coupon() -> None:
    assert tpl(kind="threshold", amount="30", threshold="300").describe().startswith("满300减30")
    assert tpl(kind="percent", percent="20").describe().startswith("8折")


# --- refusals ----------------------------------------------------------------------------------------------


def check(coupon: CouponState, t: CouponTemplate | None = None, **kw: Any) -> str | None:
    args: dict[str, Any] = {"profile_id": "p_a", "channel": "app", "amount_minor": 50_000, "currency": "CNY",
                            "now": NOW, **kw}  # fmt: skip
    got = refusal(coupon, t or tpl(kind="threshold", amount="30", threshold="300", channels=["App", "Tmall"]), **args)
    if got is not None:
        assert " / " in got[1]  # 中文 / English
    return got[0] if got else None


def test_a_good_use_is_not_refused_and_channels_compare_case_insensitively() -> None:
    assert check(state()) is None
    assert check(state(), channel="TMALL") is None


@pytest.mark.parametrize(
    ("coupon", "kw", "reason"),
    [
        ({"status": "void"}, {}, "void"),
        ({"status": "expired"}, {}, "expired"),
        ({"status": "redeemed"}, {}, "already_redeemed"),
        ({"valid_from": NOW + timedelta(hours=1)}, {}, "not_yet_valid"),
        ({"valid_until": NOW}, {}, "expired"),
        ({}, {"profile_id": "p_other"}, "not_owner"),
        ({}, {"channel": "jd"}, "wrong_channel"),
        ({}, {"channel": None}, "wrong_channel"),
        ({}, {"currency": "usd"}, "currency_mismatch"),
        ({}, {"amount_minor": 29_999}, "threshold_not_met"),
        # order: the first failing check wins
        ({"status": "void", "valid_until": NOW}, {"profile_id": "p_other"}, "void"),
        ({"valid_until": NOW}, {"profile_id": "p_other", "channel": "jd"}, "expired"),
        ({}, {"profile_id": "p_other", "channel": "jd"}, "not_owner"),
        ({}, {"channel": "jd", "currency": "USD", "amount_minor": 1}, "wrong_channel"),
        ({}, {"currency": "USD", "amount_minor": 1}, "currency_mismatch"),
    ],
)
def test_each_refusal_reason_in_order(coupon: dict[str, Any], kw: dict[str, Any], reason: str) -> None:
    assert check(state(**coupon), **kw) == reason


def test_no_buyer_skips_the_owner_check() -> None:
    assert check(state(profile_id="p_x"), profile_id=None) is None


# --- codes -------------------------------------------------------------------------------------------------


def test_codes_are_unique_unambiguous_and_carry_the_prefix() -> None:
    codes = new_codes(200_000, "BDAY-")
    assert len(codes) == len(set(codes)) == 200_000
    assert all(c.startswith("BDAY-") and len(c) == 18 for c in codes[:1000])
    used = set("".join(c[5:] for c in codes))
    assert used == set(ALPHABET)
    assert not used & set("0O1IL")
    assert new_codes(0) == []


def test_symbols_are_evenly_used() -> None:
    text = "".join(new_codes(20_000))
    counts = [text.count(ch) for ch in ALPHABET]
    expected = len(text) / len(ALPHABET)
    assert max(abs(c - expected) for c in counts) < expected * 0.05
