"""The tier programme (会员等级方案) and the pure rule that moves members between levels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.domain.tiers import TierProgram, TierProgramError, decide, parse_program

NOW = datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(days=1000)


def body(**over: Any) -> dict[str, Any]:
    levels = [
        {"key": "member", "name": "普通会员", "name_en": "Member", "threshold": 0},
        {"key": "silver", "name": "银卡", "name_en": "Silver", "threshold": 1000, "keep": 800,
         "benefits": {"points_multiplier": "1.2"}},
        {"key": "gold", "name": "金卡", "name_en": "Gold", "threshold": 5000, "keep": 4000,
         "benefits": {"points_multiplier": 1.5, "free_shipping": True, "birthday_coupon": "birthday_gold",
                      "perks": [{"zh": "专属客服", "en": "Dedicated service"}]}},
        {"key": "black", "name": "黑钻", "name_en": "Black Diamond", "threshold": "20000.00",
         "benefits": {"points_multiplier": 2}},
    ]  # fmt: skip
    return {"metric": "spend", "currency": "CNY", "levels": levels, **over}


def prog(**over: Any) -> TierProgram:
    return parse_program(body(**over))


def problems(data: Any) -> dict[str, str]:
    with pytest.raises(TierProgramError) as got:
        parse_program(data)
    return dict(got.value.errors)


def yuan(amount: int) -> int:
    return amount * 100


def test_a_good_programme_and_its_units() -> None:
    p = prog()
    assert [lv.key for lv in p.levels] == ["member", "silver", "gold", "black"]
    assert p.units(p.levels[2].threshold) == 500_000  # ¥5,000.00 in 分
    assert p.levels[3].keep_or_threshold == Decimal("20000.00")
    assert p.levels[2].benefits.points_multiplier == Decimal("1.5")
    assert p.text(520_000) == "¥5,200.00"
    assert p.review == "0 3 * * *" and p.window_days == 365 and p.downgrade == "one"
    pts = prog(metric="points")
    assert pts.units(pts.levels[2].threshold) == 5000 and pts.text(12000) == "12,000"
    assert parse_program(p.model_dump(mode="json")) == p  # what is stored reads back the same


def test_every_problem_is_named_by_its_path() -> None:
    bad = body(review="every day", window_days=0, colour="red")
    bad["levels"][1]["key"] = "Silver Card"
    bad["levels"][2]["benefits"]["points_multiplier"] = "0.5"
    bad["levels"][2]["benefits"]["perks"] = [{"en": "no Chinese"}]
    got = problems(bad)
    assert got["review"].startswith("not a cron expression: 'every day'")
    assert "window_days" in got and "colour" in got
    assert "pattern" in got["levels[1].key"]
    assert "greater than or equal to 1" in got["levels[2].benefits.points_multiplier"]
    assert "levels[2].benefits.perks[0].zh" in got


def test_level_order_keep_and_first_threshold() -> None:
    bad = body()
    bad["levels"][0]["threshold"] = 10
    bad["levels"][2]["threshold"] = 900  # below silver
    bad["levels"][1]["keep"] = 1200  # above its threshold
    bad["levels"][3]["key"] = "gold"
    got = problems(bad)
    assert got["levels[0].threshold"] == "the first level is everyone's default: its threshold is 0"
    assert got["levels[2].threshold"].startswith("thresholds rise strictly")
    assert got["levels[1].keep"] == "keep 1200 must not exceed threshold 1000"
    assert got["levels[3].key"] == "duplicates levels[2].key (gold)"
    assert "levels" in problems(body(levels=[]))
    assert "more decimals" in problems(body(levels=[{"key": "a", "name": "a", "threshold": 0},
                                                    {"key": "b", "name": "b", "threshold": "1.005"}]))["levels[1].threshold"]  # fmt: skip
    points = body(metric="points")
    points["levels"][1]["threshold"] = "10.5"
    assert problems(points)["levels[1].threshold"] == "points are whole numbers, not 10.5"


def test_upgrades_skip_levels_and_happen_on_orders() -> None:
    p = prog()
    assert decide(p, "member", NOW, yuan(999), NOW, scheduled=False) is None
    assert decide(p, "member", NOW, yuan(1000), NOW, scheduled=False) == ("silver", "up")
    assert decide(p, "member", NOW, yuan(25_000), NOW, scheduled=False) == ("black", "up")
    assert decide(p, "silver", NOW, yuan(6000), NOW, scheduled=True) == ("gold", "up")
    assert decide(p, "black", NOW, yuan(50_000), NOW, scheduled=True) is None


def test_no_downgrade_on_orders_and_keep_protects() -> None:
    p = prog()
    assert decide(p, "gold", LONG_AGO, 0, NOW, scheduled=False) is None
    assert decide(p, "gold", LONG_AGO, yuan(4000), NOW, scheduled=True) is None  # keep 4,000 met
    assert decide(p, "gold", LONG_AGO, yuan(3999), NOW, scheduled=True) == ("silver", "down")


def test_downgrade_one_level_or_all_the_way() -> None:
    assert decide(prog(), "black", LONG_AGO, 0, NOW, scheduled=True) == ("gold", "down")
    assert decide(prog(downgrade="all"), "black", LONG_AGO, 0, NOW, scheduled=True) == ("member", "down")
    assert decide(prog(downgrade="all"), "black", LONG_AGO, yuan(1500), NOW, scheduled=True) == ("silver", "down")
    # "all" never lands above one below the current level, and never below the first
    assert decide(prog(downgrade="all"), "silver", LONG_AGO, 0, NOW, scheduled=True) == ("member", "down")
    assert decide(prog(downgrade="all"), "member", LONG_AGO, 0, NOW, scheduled=True) is None
    assert decide(prog(), "member", LONG_AGO, 0, NOW, scheduled=True) is None


def test_minimum_stay() -> None:
    p = prog(min_stay_days=90)
    assert decide(p, "gold", NOW - timedelta(days=89), 0, NOW, scheduled=True) is None
    assert decide(p, "gold", NOW - timedelta(days=90), 0, NOW, scheduled=True) == ("silver", "down")
    assert decide(p, "silver", NOW, yuan(5000), NOW, scheduled=False) == ("gold", "up")  # stay never blocks upgrades


def test_a_level_the_programme_lost_moves_to_where_the_metric_is() -> None:
    assert decide(prog(), "vip", NOW, yuan(6000), NOW, scheduled=False) == ("gold", "up")
    assert decide(prog(), "vip", NOW, 0, NOW, scheduled=False) == ("member", "down")


@st.composite
def programmes(draw: st.DrawFn) -> TierProgram:
    steps = draw(st.lists(st.integers(1, 10_000), min_size=0, max_size=5))
    levels: list[dict[str, Any]] = [{"key": "l0", "name": "普通", "threshold": 0}]
    total = 0
    for i, step in enumerate(steps, start=1):
        total += step
        keep = draw(st.integers(0, total))
        levels.append({"key": f"l{i}", "name": f"等级{i}", "threshold": total, "keep": keep})
    return parse_program({"metric": "points", "levels": levels, "downgrade": draw(st.sampled_from(["one", "all"])),
                          "min_stay_days": draw(st.integers(0, 400))})  # fmt: skip


@given(p=programmes(), data=st.data())
def test_decide_invariants(p: TierProgram, data: st.DataObject) -> None:
    cur = data.draw(st.integers(0, len(p.levels) - 1))
    metric = data.draw(st.integers(0, 60_000))
    since = NOW - timedelta(days=data.draw(st.integers(0, 800)))
    key = p.levels[cur].key
    unscheduled = decide(p, key, since, metric, NOW, scheduled=False)
    if unscheduled is not None:  # never a downgrade off the schedule
        assert unscheduled[1] == "up"
    for got in (unscheduled, decide(p, key, since, metric, NOW, scheduled=True)):
        if got is None:
            continue
        to = p.index(got[0])
        assert to is not None and to != cur
        if got[1] == "up":  # only to a level the metric reaches, the highest one
            assert to > cur and metric >= p.units(p.levels[to].threshold)
            assert to == len(p.levels) - 1 or metric < p.units(p.levels[to + 1].threshold)
        else:
            assert 0 <= to < cur and metric < p.units(p.levels[cur].keep_or_threshold)
            assert since + timedelta(days=p.min_stay_days) <= NOW
