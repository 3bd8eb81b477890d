"""A/B statistics (domain/abstats.py): published Wilson / Newcombe values and the z-test by hand."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2_contingency

from tessera.domain.abstats import Comparison, Proportion, compare, wilson_interval

Z95 = 1.959963984540054  # the two-sided 95 % critical value of the standard normal


def z_test_by_hand(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided two-proportion z-test with pooled variance, straight from the textbook formula."""
    p1, p2 = x1 / n1, x2 / n2
    pooled = (x1 + x2) / (n1 + n2)
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return math.erfc(abs(z) / math.sqrt(2))  # = 2 * (1 - Φ(|z|))


# ------------------------------------------------------------------------------------ Proportion


def test_proportion_rate() -> None:
    assert Proportion(3, 4).rate == 0.75
    assert Proportion(0, 0).rate == 0.0
    assert Proportion(0, 10).rate == 0.0
    assert Proportion(10, 10).rate == 1.0


@pytest.mark.parametrize(
    ("conversions", "total", "problem"),
    [
        (-1, 10, r"Proportion\.conversions must be >= 0"),
        (1, -10, r"Proportion\.total must be >= 0"),
        (11, 10, r"Proportion\.conversions \(11\) must not exceed Proportion\.total \(10\)"),
        (1.5, 10, r"Proportion\.conversions must be an int"),
        (1, 10.0, r"Proportion\.total must be an int"),
        (True, 10, r"Proportion\.conversions must be an int"),
    ],
)
def test_proportion_validates(conversions: Any, total: Any, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        Proportion(conversions, total)


# --------------------------------------------------------------------------------------- Wilson


@pytest.mark.parametrize(
    ("x", "n", "low", "high"),
    [
        # Newcombe (1998a), "Two-sided confidence intervals for the single proportion", Table I, method 3.
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_published_values(x: int, n: int, low: float, high: float) -> None:
    got = wilson_interval(Proportion(x, n))
    assert got == pytest.approx((low, high), abs=5e-5)


def test_wilson_formula_by_hand() -> None:
    x, n = 81, 263
    p = x / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 / (1 + Z95**2 / n) * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n))
    assert wilson_interval(Proportion(x, n)) == pytest.approx((centre - half, centre + half), rel=1e-12)


def test_wilson_edges() -> None:
    assert wilson_interval(Proportion(0, 0)) == (0.0, 1.0)
    low, high = wilson_interval(Proportion(0, 50))
    assert low == 0.0 and 0 < high < 0.1
    low, high = wilson_interval(Proportion(50, 50))
    assert high == 1.0 and 0.9 < low < 1
    # all conversions mirrors no conversions
    assert wilson_interval(Proportion(50, 50))[0] == pytest.approx(1 - wilson_interval(Proportion(0, 50))[1])


def test_wilson_confidence() -> None:
    p = Proportion(81, 263)
    l90, h90 = wilson_interval(p, 0.90)
    l95, h95 = wilson_interval(p, 0.95)
    l99, h99 = wilson_interval(p, 0.99)
    assert l99 < l95 < l90 < p.rate < h90 < h95 < h99
    narrow = wilson_interval(Proportion(810, 2630))
    assert narrow[1] - narrow[0] < h95 - l95


@pytest.mark.parametrize("confidence", [0, 1, 1.5, -0.1, float("nan"), True, "0.95"])
def test_confidence_validated(confidence: Any) -> None:
    with pytest.raises(ValueError, match="confidence must be strictly between 0 and 1"):
        wilson_interval(Proportion(1, 2), confidence)
    with pytest.raises(ValueError, match="confidence"):
        compare(Proportion(1, 2), Proportion(1, 2), confidence)


@settings(max_examples=300, deadline=None)
@given(n=st.integers(0, 10_000), data=st.data(), confidence=st.floats(0.5, 0.999))
def test_wilson_properties(n: int, data: st.DataObject, confidence: float) -> None:
    p = Proportion(data.draw(st.integers(0, n)), n)
    low, high = wilson_interval(p, confidence)
    assert 0.0 <= low <= p.rate <= high <= 1.0
    if n:
        assert low < high


# ------------------------------------------------------------------------------ Newcombe, z-test


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2", "low", "high"),
    [
        # Newcombe (1998b), "Interval estimation for the difference between independent
        # proportions", Statistics in Medicine 17:873-890, Table II, method 10.
        (56, 70, 48, 80, 0.0524, 0.3339),
        (9, 10, 3, 10, 0.1705, 0.8090),
        (5, 56, 0, 29, -0.0381, 0.1926),
        (0, 10, 0, 20, -0.1611, 0.2775),
        (0, 10, 0, 10, -0.2775, 0.2775),
        (10, 10, 0, 20, 0.6791, 1.0000),
        (10, 10, 0, 10, 0.6075, 1.0000),
    ],
)
def test_newcombe_published_values(x1: int, n1: int, x2: int, n2: int, low: float, high: float) -> None:
    result = compare(Proportion(x1, n1), Proportion(x2, n2))
    assert result.diff == pytest.approx(x1 / n1 - x2 / n2)
    assert (result.ci_low, result.ci_high) == pytest.approx((low, high), abs=5e-5)


def test_worked_example() -> None:
    arm, control = Proportion(56, 70), Proportion(48, 80)
    result = compare(arm, control)
    assert isinstance(result, Comparison)
    assert result.arm == arm and result.control == control
    assert result.diff == pytest.approx(0.2)
    assert result.lift == pytest.approx(0.2 / 0.6)
    assert result.p_value == pytest.approx(z_test_by_hand(56, 70, 48, 80), rel=1e-9)
    assert result.p_value == pytest.approx(0.008045, abs=1e-6)
    assert result.significant


@pytest.mark.parametrize(
    ("x1", "n1", "x2", "n2"),
    [(56, 70, 48, 80), (110, 1000, 80, 1000), (3, 7, 5, 9), (0, 50, 4, 60), (1000, 20000, 1100, 21000)],
)
def test_p_value_by_hand_and_chi_square(x1: int, n1: int, x2: int, n2: int) -> None:
    result = compare(Proportion(x1, n1), Proportion(x2, n2))
    expected = z_test_by_hand(x1, n1, x2, n2)
    assert result.p_value == pytest.approx(expected, rel=1e-9)
    chi2 = chi2_contingency([[x1, n1 - x1], [x2, n2 - x2]], correction=False)
    assert result.p_value == pytest.approx(float(chi2.pvalue), rel=1e-9)


def test_significance_follows_confidence() -> None:
    arm, control = Proportion(110, 1000), Proportion(80, 1000)
    at95 = compare(arm, control, 0.95)
    at99 = compare(arm, control, 0.99)
    assert at95.p_value is not None and 0.01 < at95.p_value < 0.05
    assert at95.p_value == at99.p_value
    assert at95.significant and not at99.significant
    assert at99.ci_low < 0 < at95.ci_low  # here the Newcombe interval agrees with the test
    assert not compare(Proportion(95, 1000), control).significant


def test_swapping_arms_mirrors() -> None:
    a, b = Proportion(56, 70), Proportion(48, 80)
    ab, ba = compare(a, b), compare(b, a)
    assert ba.diff == pytest.approx(-ab.diff)
    assert (ba.ci_low, ba.ci_high) == pytest.approx((-ab.ci_high, -ab.ci_low))
    assert ba.p_value == pytest.approx(ab.p_value)


def test_edge_cases() -> None:
    # nobody converted anywhere: no lift, no test, an interval around 0
    none = compare(Proportion(0, 100), Proportion(0, 100))
    assert none.diff == 0.0 and none.lift is None and none.p_value is None and not none.significant
    assert none.ci_low < 0 < none.ci_high
    # everybody converted everywhere: the pooled rate is 1, so the test is undefined
    everyone = compare(Proportion(100, 100), Proportion(50, 50))
    assert everyone.diff == 0.0 and everyone.lift == 0.0 and everyone.p_value is None and not everyone.significant
    # control converted nobody: the lift is undefined, the test is not
    from_zero = compare(Proportion(10, 100), Proportion(0, 100))
    assert from_zero.lift is None
    assert from_zero.p_value == pytest.approx(z_test_by_hand(10, 100, 0, 100))
    assert from_zero.significant
    # arm converted nobody: lift is -100 %
    to_zero = compare(Proportion(0, 100), Proportion(10, 100))
    assert to_zero.lift == pytest.approx(-1.0)
    # an empty group: no test, and the interval is as wide as the data allow
    empty = compare(Proportion(0, 0), Proportion(30, 100))
    assert empty.p_value is None and not empty.significant
    assert -1.0 <= empty.ci_low < empty.diff < empty.ci_high <= 1.0
    both_empty = compare(Proportion(0, 0), Proportion(0, 0))
    assert (both_empty.diff, both_empty.ci_low, both_empty.ci_high) == (0.0, -1.0, 1.0)
    assert both_empty.p_value is None and both_empty.lift is None


def test_compare_rejects_non_proportions() -> None:
    with pytest.raises(ValueError, match="arm must be a Proportion"):
        compare((1, 2), Proportion(1, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="control must be a Proportion"):
        compare(Proportion(1, 2), None)  # type: ignore[arg-type]


@st.composite
def proportions(draw: st.DrawFn) -> Proportion:
    total = draw(st.one_of(st.integers(0, 30), st.integers(0, 1_000_000)))
    return Proportion(draw(st.integers(0, total)), total)


@settings(max_examples=400, deadline=None)
@given(arm=proportions(), control=proportions(), confidence=st.floats(0.5, 0.999))
def test_compare_properties(arm: Proportion, control: Proportion, confidence: float) -> None:
    result = compare(arm, control, confidence)
    assert -1.0 <= result.ci_low <= result.diff <= result.ci_high <= 1.0
    assert result.diff == arm.rate - control.rate
    if control.rate > 0:
        assert result.lift == pytest.approx(result.diff / control.rate)
    else:
        assert result.lift is None
    if result.p_value is None:
        assert not result.significant
        converted, total = arm.conversions + control.conversions, arm.total + control.total
        assert arm.total == 0 or control.total == 0 or converted in (0, total)
    else:
        assert 0.0 <= result.p_value <= 1.0
        assert result.significant == (result.p_value < 1 - confidence)
        assert result.p_value == pytest.approx(
            z_test_by_hand(arm.conversions, arm.total, control.conversions, control.total), rel=1e-6, abs=1e-300
        )
