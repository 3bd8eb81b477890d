"""The points programme and the ledger arithmetic (pure): rates, rounding, multipliers, FIFO lots."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.domain.points import (
    Bonus,
    LedgerItem,
    PointsProgram,
    ProgramError,
    bonus_key,
    lots,
    parse_program,
    points_for_order,
)

T0 = datetime(2026, 11, 1, tzinfo=UTC)
ONE = Decimal(1)


def prog(**kw: object) -> PointsProgram:
    return parse_program({"rates": [{"currency": "CNY", "points_per_unit": 1}, {"currency": "USD", "points_per_unit": 7}],
                          **kw})  # fmt: skip


def test_rates_and_rounding() -> None:
    p = prog()
    assert points_for_order(p, 12_999, "CNY", None, T0, None, ONE, []) == (129, [])
    assert points_for_order(p, 1_050, "usd", None, T0, None, ONE, []) == (73, [])
    assert points_for_order(prog(rounding="half_up"), 12_950, "CNY", None, T0, None, ONE, [])[0] == 130
    assert points_for_order(p, 1000, "JPY", None, T0, None, ONE, []) == (0, ["no_rate:JPY"])
    assert points_for_order(p, -500, "CNY", None, T0, None, ONE, [])[0] == 0


def test_multipliers_by_channel_tier_period_and_stack() -> None:
    ms = [
        {"key": "mini", "name": "小程序双倍", "factor": 2, "channels": ["MiniProgram"]},
        {"key": "gold", "name": "金卡", "factor": "1.5", "tiers": ["gold"]},
        {"key": "d11", "name": "双十一", "factor": 3, "start": "2026-11-11T00:00:00+08:00",
         "end": "2026-11-12T00:00:00+08:00"},
    ]  # fmt: skip
    p = prog(multipliers=ms)
    assert points_for_order(p, 10_000, "CNY", "miniprogram", T0, None, ONE, []) == (200, ["mini"])
    assert points_for_order(p, 10_000, "CNY", "天猫", T0, None, ONE, []) == (100, [])
    assert points_for_order(p, 10_000, "CNY", "miniprogram", T0, "gold", ONE, []) == (300, ["mini", "gold"])
    d11 = datetime(2026, 11, 11, 1, tzinfo=UTC)
    assert points_for_order(p, 10_000, "CNY", "门店", d11, None, ONE, [])[0] == 300
    assert points_for_order(p, 10_000, "CNY", "门店", datetime(2026, 11, 11, 16, tzinfo=UTC), None, ONE, [])[0] == 100
    got = points_for_order(prog(multipliers=ms, stack="max"), 10_000, "CNY", "miniprogram", d11, "gold", ONE, [])
    assert got == (300, ["d11"])
    # the tier benefit multiplier always multiplies
    assert points_for_order(p, 10_000, "CNY", "门店", T0, None, Decimal("1.2"), []) == (120, ["tier"])


def test_condition_multiplier_needs_a_match() -> None:
    p = prog(multipliers=[{"key": "mp", "name": "小程序会员", "factor": 2,
                           "condition": {"type": "attribute", "field": "join_channel", "op": "eq", "value": "mini"}}])  # fmt: skip
    assert points_for_order(p, 10_000, "CNY", None, T0, None, ONE, [])[0] == 100
    assert points_for_order(p, 10_000, "CNY", None, T0, None, ONE, ["mp"])[0] == 200


def test_programme_errors_name_their_path() -> None:
    with pytest.raises(ProgramError) as e:
        parse_program({"multipliers": [{"key": "x", "name": "x", "factor": 101}], "rounding": "up"})
    paths = dict(e.value.errors)
    assert "multipliers[0].factor" in paths and "rounding" in paths
    with pytest.raises(ProgramError) as e:
        parse_program({"multipliers": [{"key": "x", "name": "x", "factor": 2, "condition": {"type": "attribute"}}]})
    assert all(p.startswith("multipliers[0].condition") for p, _ in e.value.errors)
    with pytest.raises(ProgramError) as e:
        parse_program({"bonuses": [{"key": "c", "name": "签到", "event": "Checked In", "points": 0}], "extra": 1})
    assert {"bonuses[0].points", "extra"} <= set(dict(e.value.errors))
    with pytest.raises(ProgramError):
        parse_program({"multipliers": [{"key": "x", "name": "x", "factor": 2, "start": "2026-01-01T00:00:00"}]})


def test_bonus_keys_per_period() -> None:
    b = Bonus(key="checkin", name="签到", event="Checked In", points=5, per="day")
    at = datetime(2026, 11, 20, 17, tzinfo=UTC)  # 01:00 on the 21st in Shanghai
    assert bonus_key(b, "p_1", "m1", at) == "bonus:checkin:p_1:2026-11-21"
    assert bonus_key(b.model_copy(update={"per": "event"}), "p_1", "m1", at) == "bonus:checkin:m1"
    assert bonus_key(b.model_copy(update={"per": "week"}), "p_1", "m1", at) == "bonus:checkin:p_1:2026-W47"
    assert bonus_key(b.model_copy(update={"per": "once"}), "p_1", "m1", at) == "bonus:checkin:p_1"


def _item(i: int, kind: str, pts: int, day: int, exp_days: int | None = None, lot: int | None = None) -> LedgerItem:
    at = T0 + timedelta(days=day)
    return LedgerItem(i, kind, pts, at, at + timedelta(days=exp_days) if exp_days is not None else None, lot)


def test_lots_fifo_soonest_expiry_first() -> None:
    entries = [_item(1, "earn", 100, 0, 365), _item(2, "earn", 50, 1, 30), _item(3, "spend", -70, 2)]
    got = lots(entries, T0)
    assert [(lot.id, lot.remaining) for lot in got.open] == [(1, 80)]  # lot 2 expires first: used first
    assert got.total == 80


def test_debits_skip_expired_lots_and_deficit_is_paid_first() -> None:
    entries = [_item(1, "earn", 100, 0, 10), _item(2, "earn", 30, 1, 365), _item(3, "spend", -50, 20)]
    got = lots(entries, T0 + timedelta(days=20))
    assert [(lot.id, lot.remaining) for lot in got.open] == [(1, 100)] and got.deficit == 20
    entries += [_item(4, "expire", -100, 21, lot=1), _item(5, "earn", 50, 22, 365)]
    got = lots(entries, T0 + timedelta(days=22))
    assert [(lot.id, lot.remaining) for lot in got.open] == [(5, 30)] and got.deficit == 0
    assert got.total == sum(e.points for e in entries)


_ops = st.lists(st.tuples(st.sampled_from(["earn", "spend", "expire", "adjust"]), st.integers(1, 500),
                          st.integers(0, 400), st.integers(1, 400), st.booleans()), max_size=40)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(_ops)
def test_balance_is_open_lots_minus_deficit(ops: list[tuple[str, int, int, int, bool]]) -> None:
    entries: list[LedgerItem] = []
    for i, (kind, pts, day, life, up) in enumerate(ops, 1):
        if kind == "expire":
            cur = lots(entries, T0 + timedelta(days=day))
            if not cur.open:
                continue
            lot = cur.open[0]
            entries.append(_item(i, "expire", -lot.remaining, day, lot=lot.id))
            continue
        sign = 1 if kind == "earn" or (kind == "adjust" and up) else -1
        entries.append(_item(i, kind, sign * pts, day, life if sign > 0 else None))
    got = lots(entries, T0 + timedelta(days=500))
    assert got.total == sum(e.points for e in entries)
    assert all(lot.remaining > 0 for lot in got.open) and got.deficit >= 0
    assert all(lot.remaining <= lot.points for lot in got.open)
    assert got.deficit == 0 or not got.open or all(lot.expires_at is not None for lot in got.open)
