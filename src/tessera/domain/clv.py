"""Customer lifetime value: the BG/NBD purchase model and the Gamma-Gamma spend model (pure).

Inputs are the usual RFM summary per customer, all in one time unit (the *period*, e.g. a week):

- ``frequency`` *x*: number of repeat purchases (purchases after the first);
- ``recency`` *t_x*: age of the customer at the last purchase (0 when *x* = 0);
- ``T``: age of the customer at the end of the observation window;
- ``monetary_value`` *m̄*: mean value of the repeat purchases (ignored when *x* = 0).

**BG/NBD** (Fader, Hardie & Lee 2005, "'Counting Your Customers' the Easy Way: An Alternative to
the Pareto/NBD Model", *Marketing Science* 24(2)). While alive a customer buys as a Poisson
process with rate λ ~ Gamma(r, α); after each purchase they drop out with probability
p ~ Beta(a, b). The likelihood of one customer (their eq. 6) is

    L(r, α, a, b | x, t_x, T) = B(a, b+x)/B(a, b) · Γ(r+x) α^r / Γ(r)
        · [ (α+T)^-(r+x) + δ_{x>0} · a/(b+x-1) · (α+t_x)^-(r+x) ]

evaluated here in logs (``gammaln``, ``betaln``, ``logaddexp``), so it stays finite for large *x*.

**Gamma-Gamma** (Fader & Hardie 2013, "The Gamma-Gamma Model of Monetary Value",
brucehardie.com/notes/025). A customer's transaction values are Gamma(p, ν) with
ν ~ Gamma(q, γ), independent of the purchase process; the mean *m̄* of *x* transactions has density

    f(m̄ | p, q, γ, x) = Γ(px+q) / (Γ(px) Γ(q)) · γ^q (m̄x)^(px-1) x / (γ + m̄x)^(px+q)

and is fitted on repeat customers only (*x* > 0). ``v`` below is γ (the name lifetimes uses).

All functions take array-likes and return ``float64`` arrays (or frozen parameter records).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import optimize, special

FloatArray = npt.NDArray[np.float64]

#: Average month length in days (365.25 / 12), for :func:`clv`.
DAYS_PER_MONTH = 365.25 / 12


@dataclass(frozen=True, slots=True)
class BgNbdParams:
    """Fitted BG/NBD parameters: λ ~ Gamma(r, α), dropout p ~ Beta(a, b); ``loglik`` at the optimum."""

    r: float
    alpha: float
    a: float
    b: float
    loglik: float


@dataclass(frozen=True, slots=True)
class GammaGammaParams:
    """Fitted Gamma-Gamma parameters: spend ~ Gamma(p, ν), ν ~ Gamma(q, v); ``loglik`` at the optimum."""

    p: float
    q: float
    v: float
    loglik: float


# --------------------------------------------------------------------------- validation


def _array(name: str, values: Any, *, allow_empty: bool = False) -> FloatArray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from exc
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0 and not allow_empty:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    if np.any(arr < 0):
        raise ValueError(f"{name} contains negative values")
    return arr


def _rfm(
    frequency: Any, recency: Any, T: Any, *, allow_empty: bool = False
) -> tuple[FloatArray, FloatArray, FloatArray]:
    x = _array("frequency", frequency, allow_empty=allow_empty)
    t_x = _array("recency", recency, allow_empty=allow_empty)
    t_end = _array("T", T, allow_empty=allow_empty)
    try:
        x, t_x, t_end = np.broadcast_arrays(x, t_x, t_end)
    except ValueError as exc:
        raise ValueError(
            f"frequency, recency and T must have the same length, got {x.size}, {t_x.size}, {t_end.size}"
        ) from exc
    if np.any(t_x > t_end):
        raise ValueError("recency must not exceed T")
    return x, t_x, t_end


# --------------------------------------------------------------------------- BG/NBD


def _bgnbd_loglik(
    r: float, alpha: float, a: float, b: float, x: FloatArray, t_x: FloatArray, t_end: FloatArray
) -> FloatArray:
    """Per-customer log-likelihood (FHL 2005, eq. 6), in logs."""
    head = (
        special.gammaln(r + x)
        - special.gammaln(r)
        + r * np.log(alpha)
        + special.betaln(a, b + x)
        - special.betaln(a, b)
    )
    survived = -(r + x) * np.log(alpha + t_end)
    repeat = x > 0
    # b + x - 1 > 0 whenever x ≥ 1; the where keeps x = 0 rows out of the log.
    xr = np.where(repeat, x, 1.0)
    dropped = np.where(
        repeat,
        np.log(a) - np.log(b + xr - 1.0) - (r + xr) * np.log(alpha + t_x),
        -np.inf,
    )
    out: FloatArray = head + np.logaddexp(survived, dropped)
    return out


def _minimise(objective: Any, n_params: int) -> FloatArray:
    """Minimise over log-parameters: L-BFGS-B from 0 (all ones), polished by Nelder-Mead."""
    start = np.zeros(n_params)
    first = optimize.minimize(
        objective, start, method="L-BFGS-B", options={"ftol": 1e-14, "gtol": 1e-10, "maxiter": 2000}
    )
    polished = optimize.minimize(
        objective,
        first.x,
        method="Nelder-Mead",
        options={"xatol": 1e-9, "fatol": 1e-13, "maxiter": 3_000, "maxfev": 4_000},
    )
    best = polished if polished.fun <= first.fun else first
    if not np.isfinite(best.fun):
        raise ValueError("likelihood could not be evaluated; check the inputs")
    result: FloatArray = np.asarray(best.x, dtype=np.float64)
    return result


def fit_bgnbd(frequency: Any, recency: Any, T: Any, *, penalizer: float = 0.0) -> BgNbdParams:
    """Maximum-likelihood BG/NBD fit (Fader, Hardie & Lee 2005).

    Maximises Σ log L(r, α, a, b | x_i, t_x_i, T_i) (see the module docstring) over
    log r, log α, log a, log b with scipy's L-BFGS-B, then Nelder-Mead. ``penalizer`` > 0 adds
    ``penalizer · (r² + α² + a² + b²)`` to the mean negative log-likelihood (L2 shrinkage, as in
    lifetimes), which helps small or degenerate data sets. ``loglik`` is the unpenalised total.
    """
    x, t_x, t_end = _rfm(frequency, recency, T)
    if not (math.isfinite(penalizer) and penalizer >= 0):
        raise ValueError("penalizer must be a finite number ≥ 0")
    n = x.size
    # Identical (x, t_x, T) rows have identical likelihoods: fit on the distinct rows, weighted by
    # how often each occurs (the same sum, often far fewer rows — purchase days, whole weeks).
    rows, weight = np.unique(np.stack([x, t_x, t_end], axis=1), axis=0, return_counts=True)
    ux, ut_x, ut_end = rows[:, 0], rows[:, 1], rows[:, 2]

    def objective(log_params: FloatArray) -> float:
        params = np.exp(np.clip(log_params, -30.0, 30.0))
        r, alpha, a, b = (float(v) for v in params)
        ll = _bgnbd_loglik(r, alpha, a, b, ux, ut_x, ut_end)
        value = -float(np.dot(weight, ll)) / n + penalizer * float(np.sum(params**2))
        return value if math.isfinite(value) else 1e300

    r, alpha, a, b = (float(v) for v in np.exp(_minimise(objective, 4)))
    loglik = float(np.sum(_bgnbd_loglik(r, alpha, a, b, x, t_x, t_end)))
    return BgNbdParams(r=r, alpha=alpha, a=a, b=b, loglik=loglik)


def _dropout_odds(params: BgNbdParams, x: FloatArray, t_x: FloatArray, t_end: FloatArray) -> FloatArray:
    """δ_{x>0} · a/(b+x-1) · ((α+T)/(α+t_x))^(r+x): odds that a customer has already dropped out."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    repeat = x > 0
    xr = np.where(repeat, x, 1.0)
    log_odds = np.log(a) - np.log(b + xr - 1.0) + (r + xr) * (np.log(alpha + t_end) - np.log(alpha + t_x))
    odds: FloatArray = np.where(repeat, np.exp(log_odds), 0.0)
    return odds


def probability_alive(params: BgNbdParams, frequency: Any, recency: Any, T: Any) -> FloatArray:
    """P(alive | x, t_x, T) = 1 / (1 + δ_{x>0} · a/(b+x-1) · ((α+T)/(α+t_x))^(r+x)) (FHL 2005, eq. 11).

    Exactly 1 for customers without repeat purchases (under BG/NBD one can only drop out right
    after a purchase).
    """
    x, t_x, t_end = _rfm(frequency, recency, T, allow_empty=True)
    out: FloatArray = 1.0 / (1.0 + _dropout_odds(params, x, t_x, t_end))
    return out


def expected_purchases(params: BgNbdParams, t: Any, frequency: Any, recency: Any, T: Any) -> FloatArray:
    """E[Y(t) | x, t_x, T]: expected purchases in the next ``t`` periods (FHL 2005, eq. 10).

        E = (a+b+x-1)/(a-1) · [1 - ((α+T)/(α+T+t))^(r+x) · ₂F₁(r+x, b+x; a+b+x-1; t/(α+T+t))]
            / (1 + δ_{x>0} · a/(b+x-1) · ((α+T)/(α+t_x))^(r+x))

    ``t`` may be a scalar or an array broadcast against the customers.
    """
    x, t_x, t_end = _rfm(frequency, recency, T, allow_empty=True)
    horizon = _array("t", t, allow_empty=True)
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    x, t_x, t_end, horizon = np.broadcast_arrays(x, t_x, t_end, horizon)
    z = horizon / (alpha + t_end + horizon)
    ratio = np.exp((r + x) * (np.log(alpha + t_end) - np.log(alpha + t_end + horizon)))
    bracket = 1.0 - ratio * special.hyp2f1(r + x, b + x, a + b + x - 1.0, z)
    out: FloatArray = (a + b + x - 1.0) / (a - 1.0) * bracket / (1.0 + _dropout_odds(params, x, t_x, t_end))
    return np.where(horizon > 0, out, 0.0)


# --------------------------------------------------------------------------- Gamma-Gamma


def _gg_loglik(p: float, q: float, v: float, x: FloatArray, m: FloatArray) -> FloatArray:
    """Per-customer log f(m̄ | p, q, γ, x) (Fader & Hardie 2013, eq. 3)."""
    px = p * x
    out: FloatArray = (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(v)
        + (px - 1.0) * np.log(m * x)
        + np.log(x)
        - (px + q) * np.log(v + m * x)
    )
    return out


def fit_gamma_gamma(frequency: Any, monetary_value: Any) -> GammaGammaParams:
    """Maximum-likelihood Gamma-Gamma fit (Fader & Hardie 2013) on repeat customers (x > 0).

    Rows with ``frequency`` 0 are ignored; repeat customers must have ``monetary_value`` > 0.
    Optimised over log p, log q, log γ. The model assumes spend is independent of frequency —
    check the correlation before relying on it.
    """
    x = _array("frequency", frequency)
    m = _array("monetary_value", monetary_value)
    if x.shape != m.shape:
        raise ValueError(f"frequency and monetary_value must have the same length, got {x.size} and {m.size}")
    repeat = x > 0
    if not np.any(repeat):
        raise ValueError("frequency has no repeat customers (frequency > 0) to fit on")
    x, m = x[repeat], m[repeat]
    if np.any(m <= 0):
        raise ValueError("monetary_value must be > 0 for customers with frequency > 0")
    n = x.size

    def objective(log_params: FloatArray) -> float:
        p, q, v = np.exp(np.clip(log_params, -30.0, 30.0))
        value = -float(np.sum(_gg_loglik(p, q, v, x, m))) / n
        return value if math.isfinite(value) else 1e300

    p, q, v = (float(val) for val in np.exp(_minimise(objective, 3)))
    return GammaGammaParams(p=p, q=q, v=v, loglik=float(np.sum(_gg_loglik(p, q, v, x, m))))


def expected_average_value(params: GammaGammaParams, frequency: Any, monetary_value: Any) -> FloatArray:
    """E[Z | p, q, γ, m̄, x] = p(γ + m̄x) / (px + q - 1) (Fader & Hardie 2013, eq. 5).

    A weighted mean of the population mean pγ/(q-1) and the customer's own m̄ (weight
    px/(px+q-1)); customers with x = 0 get the population mean. Requires q > 1.
    """
    x = _array("frequency", frequency, allow_empty=True)
    m = _array("monetary_value", monetary_value, allow_empty=True)
    if params.q <= 1:
        raise ValueError("expected average value is undefined for q ≤ 1")
    x, m = np.broadcast_arrays(x, m)
    m = np.where(x > 0, m, 0.0)
    out: FloatArray = params.p * (params.v + m * x) / (params.p * x + params.q - 1.0)
    return out


# --------------------------------------------------------------------------- CLV


def clv(
    bgnbd: BgNbdParams,
    gg: GammaGammaParams,
    frequency: Any,
    recency: Any,
    T: Any,
    monetary_value: Any,
    *,
    months: int = 12,
    discount_rate: float = 0.01,
    period_days: float = 7,
) -> FloatArray:
    """Discounted customer lifetime value over the next ``months`` months.

        CLV = Σ_{i=1..months} E[Z] · (E[Y(i·k)] - E[Y((i-1)·k)]) / (1 + d)^i

    with k = (365.25/12) / ``period_days`` model periods per month (``period_days`` is the length
    of the period frequency/recency/T are measured in: 7 for weeks, 1 for days), E[Y] from
    :func:`expected_purchases`, E[Z] from :func:`expected_average_value` and d the monthly
    ``discount_rate`` (the formulation of Fader, Hardie & Lee 2005, "RFM and CLV", and lifetimes).
    """
    if months < 0:
        raise ValueError("months must be ≥ 0")
    if not (math.isfinite(discount_rate) and discount_rate > -1):
        raise ValueError("discount_rate must be a finite number > -1")
    if not (math.isfinite(period_days) and period_days > 0):
        raise ValueError("period_days must be a positive number")
    x, t_x, t_end = _rfm(frequency, recency, T, allow_empty=True)
    value = expected_average_value(gg, x, _array("monetary_value", monetary_value, allow_empty=True))
    k = DAYS_PER_MONTH / period_days
    total = np.zeros_like(x)
    previous = np.zeros_like(x)
    for i in range(1, months + 1):
        cumulative = expected_purchases(bgnbd, i * k, x, t_x, t_end)
        total += value * (cumulative - previous) / (1.0 + discount_rate) ** i
        previous = cumulative
    return total
