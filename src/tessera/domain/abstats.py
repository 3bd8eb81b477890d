"""A/B and control-group statistics (A/B 测试与对照组): conversion rates, intervals, significance.

Pure functions over conversion counts; no I/O. The methods are the standard, well-behaved ones for
proportions:

- **Wilson score interval** for one rate (Wilson 1927): unlike the Wald interval it stays inside
  [0, 1] and behaves at 0 and 100 % conversion.
- **Newcombe's hybrid score interval** for a difference of two independent rates (Newcombe 1998,
  "Interval estimation for the difference between independent proportions", *Statistics in
  Medicine* 17, method 10): combine the two Wilson intervals; it stays inside [-1, 1].
- **Two-proportion z-test** with pooled variance for the p-value (equivalently the Pearson χ² test
  on the 2×2 table without continuity correction).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import norm


@dataclass(frozen=True)
class Proportion:
    """``conversions`` out of ``total`` (转化数 / 总数), e.g. people who bought out of people sent.

    Raises ValueError naming the field when a count is negative or ``conversions`` > ``total``.
    """

    conversions: int
    total: int

    def __post_init__(self) -> None:
        for name in ("conversions", "total"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"Proportion.{name} must be an int, got {value!r}")
            if value < 0:
                raise ValueError(f"Proportion.{name} must be >= 0, got {value}")
        if self.conversions > self.total:
            raise ValueError(
                f"Proportion.conversions ({self.conversions}) must not exceed Proportion.total ({self.total})"
            )

    @property
    def rate(self) -> float:
        """The conversion rate ``conversions / total`` (转化率); 0.0 when ``total`` is 0."""
        return self.conversions / self.total if self.total else 0.0


def _z(confidence: float) -> float:
    """The two-sided critical value z_{1-α/2} for ``confidence`` = 1 − α (1.95996… for 0.95)."""
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence!r}")
    return float(norm.ppf(0.5 + confidence / 2.0))


def _wilson(p: Proportion, z: float) -> tuple[float, float]:
    if p.total == 0:
        return 0.0, 1.0  # no data: every rate is plausible
    n = p.total
    phat = p.rate
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (phat + z2 / (2 * n)) / denom
    half = z * math.sqrt(phat * (1.0 - phat) / n + z2 / (4 * n * n)) / denom
    low = 0.0 if p.conversions == 0 else max(0.0, centre - half)
    high = 1.0 if p.conversions == n else min(1.0, centre + half)
    return low, high


def wilson_interval(p: Proportion, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval (置信区间) for the rate of ``p``, as ``(low, high)`` within [0, 1].

    With rate p̂ = x/n and z the two-sided critical value:
    (p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n). Exactly 0 below at 0 conversions and 1
    above at n conversions; ``(0.0, 1.0)`` when ``total`` is 0.
    """
    return _wilson(p, _z(confidence))


@dataclass(frozen=True)
class Comparison:
    """One arm against the control group (对照组).

    ``diff``: arm rate − control rate (absolute, in rate units). ``lift``: ``diff`` / control rate
    (relative 提升), None when the control rate is 0. ``ci_low``/``ci_high``: Newcombe's hybrid score
    interval for ``diff`` at the requested confidence. ``p_value``: two-sided two-proportion z-test
    with pooled variance, None when undefined (a group is empty, or nobody / everybody converted in
    both). ``significant`` (显著): ``p_value`` < 1 − confidence.
    """

    arm: Proportion
    control: Proportion
    diff: float
    lift: float | None
    ci_low: float
    ci_high: float
    p_value: float | None
    significant: bool


def compare(arm: Proportion, control: Proportion, confidence: float = 0.95) -> Comparison:
    """Compare ``arm`` with ``control``: difference, relative lift, Newcombe interval and z-test.

    Newcombe (method 10), with (l₁, u₁) and (l₂, u₂) the Wilson intervals of the two rates:
    low = d − √((p̂₁−l₁)² + (u₂−p̂₂)²), high = d + √((u₁−p̂₁)² + (p̂₂−l₂)²).
    z-test: pooled p̄ = (x₁+x₂)/(n₁+n₂), z = d / √(p̄(1−p̄)(1/n₁ + 1/n₂)), p = 2·(1 − Φ(|z|)).
    Raises ValueError for a confidence outside (0, 1) or inputs that are not :class:`Proportion`.
    """
    for name, value in (("arm", arm), ("control", control)):
        if not isinstance(value, Proportion):
            raise ValueError(f"{name} must be a Proportion, got {value!r}")
    z = _z(confidence)
    p1, p2 = arm.rate, control.rate
    diff = p1 - p2
    l1, u1 = _wilson(arm, z)
    l2, u2 = _wilson(control, z)
    ci_low = max(-1.0, diff - math.hypot(p1 - l1, u2 - p2))
    ci_high = min(1.0, diff + math.hypot(u1 - p1, p2 - l2))
    lift = diff / p2 if p2 > 0 else None

    p_value: float | None = None
    if arm.total and control.total:
        pooled = (arm.conversions + control.conversions) / (arm.total + control.total)
        if 0.0 < pooled < 1.0:
            se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / arm.total + 1.0 / control.total))
            p_value = min(1.0, float(2.0 * norm.sf(abs(diff) / se)))
    significant = p_value is not None and p_value < 1.0 - confidence
    return Comparison(
        arm=arm,
        control=control,
        diff=diff,
        lift=lift,
        ci_low=ci_low,
        ci_high=ci_high,
        p_value=p_value,
        significant=significant,
    )
