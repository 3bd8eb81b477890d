"""Customer lifetime value (客户终身价值): BG/NBD + Gamma-Gamma, and P(alive) / churn risk from it.

Each buyer's purchase history (:mod:`tessera.tagmodels.purchases`) is summarised as the models
expect — in local purchase *days* (several purchases on one day are one transaction, as in the
CDNOW data and ``lifetimes``), measured in ``unit`` (days or weeks): ``frequency`` x = purchase
days − 1, ``recency`` t_x = last − first purchase day, ``T`` = today − first purchase day, and
``monetary`` m̄ = mean amount of the repeat days (the first day excluded). BG/NBD is fitted on x,
t_x, T and Gamma-Gamma on the repeat buyers' (x, m̄) — on a seeded random sample of at most
``fit_sample`` buyers — by :mod:`tessera.domain.clv`; then every buyer gets:

- ``alive``: P(alive | x, t_x, T); ``churn_risk`` = 1 − P(alive);
- ``expected_purchases``: expected purchase days in the next ``horizon_days`` days;
- ``clv``: Σ over the next months (``horizon_days`` / 30.44, rounded, at least 1) of expected
  average value × expected purchases that month, discounted by ``discount_rate`` a month.

A run refuses (TagRunError) when fewer than ``min_repeat_customers`` buyers bought on two days or
more, or when the fit gives no finite spend model (Gamma-Gamma q ≤ 1). Profiles that never bought
get no value. The run's details record the fitted parameters and how many buyers they saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

from tessera.domain import clv as model
from tessera.services.tag_values import TagRunError
from tessera.tagmodels import ModelSpec, register
from tessera.tagmodels.purchases import cutoff, end_of_today, local_day, refresh_purchases, scope_filter

if TYPE_CHECKING:
    import duckdb

    from tessera.domain.tags import Tag
    from tessera.services.tag_runs import ComputeContext

Output = Literal["clv", "alive", "churn_risk", "expected_purchases"]
DIGITS: dict[str, int] = {"clv": 2, "alive": 4, "churn_risk": 4, "expected_purchases": 3}


class ClvParams(BaseModel):
    """CLV's parameters (defaults in docs/tag_models.md)."""

    model_config = ConfigDict(extra="forbid")

    output: Output = Field("clv", description="clv (amount), alive (0..1), churn_risk (0..1), expected_purchases")
    horizon_days: int = Field(365, ge=1, le=3650, description="how far ahead clv and expected_purchases look")
    discount_rate: float = Field(0.01, ge=0, lt=1, description="clv: monthly discount rate")
    unit: Literal["day", "week"] = Field("week", description="time unit of the fit (the paper's: week)")
    history_days: int | None = Field(
        None, ge=30, le=36600, description="only purchases of the last N days are summarised (null: all)"
    )
    penalizer: float = Field(0.0, ge=0, le=10, description="L2 penalty on the BG/NBD parameters (small data)")
    min_repeat_customers: int = Field(50, ge=2, le=1_000_000, description="refuse to fit with fewer repeat buyers")
    fit_sample: int = Field(10_000, ge=100, le=5_000_000, description="fit on at most this many buyers (seeded)")


def _fit_key(p: ClvParams) -> tuple[Any, ...]:
    return (p.unit, p.history_days, p.penalizer, p.min_repeat_customers, p.fit_sample)


SUMMARY = "_clv_summary"
VALUES = "_clv_values"


def compute(
    cur: duckdb.DuckDBPyConnection, pairs: Sequence[tuple[Tag, ClvParams]], ctx: ComputeContext
) -> dict[str, dict[str, Any]]:
    refreshed = refresh_purchases(cur, ctx)
    fits: dict[tuple[Any, ...], list[tuple[Tag, ClvParams]]] = {}
    for tag, p in pairs:
        fits.setdefault(_fit_key(p), []).append((tag, p))
    details: dict[str, dict[str, Any]] = {}
    try:
        for group in fits.values():
            first = group[0][1]
            summary = _summary(cur, ctx, first)
            fitted, info = fit(summary, first)
            for tag, p in group:
                values = predict(fitted, summary, p)
                _emit(cur, ctx, tag.key, summary["profile_idx"], values, DIGITS[p.output])
                details[tag.key] = {**info, "output": p.output, "horizon_days": p.horizon_days, **refreshed}
                if p.output == "clv":
                    details[tag.key] |= {"months": _months(p), "discount_rate": p.discount_rate}
    finally:
        cur.execute(f"DROP TABLE IF EXISTS {SUMMARY}")
    return details


def _summary(cur: duckdb.DuckDBPyConnection, ctx: ComputeContext, p: ClvParams) -> dict[str, np.ndarray]:
    """Per buyer (everyone, by profile_idx): x, t_x, T in days and m̄."""
    since = cutoff(ctx, p.history_days) if p.history_days is not None else None
    first = cur.execute("SELECT min(bought_at) FROM tag_purchases").fetchall()[0][0]
    day, tz = local_day("d.bought_at", ctx, since or first)
    cur.execute(
        f"""CREATE OR REPLACE TEMP TABLE {SUMMARY} AS
        WITH days AS (
            SELECT l.profile_idx, {day} AS day, sum(d.amount) AS amount
            FROM tag_purchases d JOIN identity_links l ON l.obs_idx = d.obs_idx
            WHERE l.profile_idx IS NOT NULL AND d.bought_at < $end
              AND d.bought_at >= coalesce(CAST($since AS TIMESTAMP), TIMESTAMP '-infinity')
            GROUP BY ALL
        ), per AS (
            SELECT profile_idx, count(*) AS n, min(day) AS first_day, max(day) AS last_day,
                   sum(amount) AS total, arg_min(amount, day) AS first_amount
            FROM days GROUP BY profile_idx
        )
        SELECT profile_idx, CAST(n - 1 AS DOUBLE) AS x,
               CAST(date_diff('day', first_day, last_day) AS DOUBLE) AS t_x,
               CAST(date_diff('day', first_day, $today) AS DOUBLE) AS t_end,
               CASE WHEN n > 1 THEN greatest(CAST((total - first_amount) AS DOUBLE) / (n - 1), 0) ELSE 0 END AS m
        FROM per ORDER BY profile_idx""",  # noqa: S608 - fixed SQL
        {"end": end_of_today(ctx), "since": since, "today": ctx.eval.today, **tz},
    )
    return cur.execute(f"SELECT profile_idx, x, t_x, t_end, m FROM {SUMMARY}").fetchnumpy()  # noqa: S608 - fixed names


def _per_unit(p: ClvParams) -> float:
    return 7.0 if p.unit == "week" else 1.0


def _months(p: ClvParams) -> int:
    return max(1, round(p.horizon_days / model.DAYS_PER_MONTH))


def fit(
    summary: dict[str, np.ndarray], p: ClvParams
) -> tuple[tuple[model.BgNbdParams, model.GammaGammaParams], dict[str, Any]]:
    """Fit both models on (a seeded sample of) the buyers; refuses with TagRunError."""
    unit = _per_unit(p)
    x, t_x, t_end, m = summary["x"], summary["t_x"] / unit, summary["t_end"] / unit, summary["m"]
    repeat = int(np.count_nonzero(x > 0))
    if repeat < p.min_repeat_customers:
        raise TagRunError(
            f"clv: BG/NBD + Gamma-Gamma need at least {p.min_repeat_customers} repeat buyers (purchases on two or "
            f"more days) to fit; there are {repeat} among {x.size} buyers (min_repeat_customers sets the bar)"
        )
    pick = np.arange(x.size)
    if x.size > p.fit_sample:
        pick = np.sort(np.random.default_rng(20050401).choice(x.size, size=p.fit_sample, replace=False))
    try:
        bg = model.fit_bgnbd(x[pick], t_x[pick], t_end[pick], penalizer=p.penalizer)
        spend = pick[(x[pick] > 0) & (m[pick] > 0)]
        if spend.size < 2:
            raise ValueError("too few repeat buyers with a positive spend in the sample")
        gg = model.fit_gamma_gamma(x[spend], m[spend])
    except ValueError as e:
        raise TagRunError(f"clv: the fit failed: {e}") from None
    if not gg.q > 1:
        raise TagRunError(f"clv: Gamma-Gamma gave q = {gg.q:.3f} ≤ 1, so expected spend is undefined")
    info = {
        "model": "BG/NBD + Gamma-Gamma",
        "unit": p.unit,
        "buyers": int(x.size),
        "repeat_buyers": repeat,
        "fit_buyers": int(pick.size),
        "fit_repeat_buyers": int(spend.size),
        "bgnbd": {"r": bg.r, "alpha": bg.alpha, "a": bg.a, "b": bg.b, "loglik": bg.loglik},
        "gamma_gamma": {"p": gg.p, "q": gg.q, "v": gg.v, "loglik": gg.loglik},
    }
    return (bg, gg), info


def predict(
    fitted: tuple[model.BgNbdParams, model.GammaGammaParams], summary: dict[str, np.ndarray], p: ClvParams
) -> np.ndarray:
    bg, gg = fitted
    unit = _per_unit(p)
    x, t_x, t_end, m = summary["x"], summary["t_x"] / unit, summary["t_end"] / unit, summary["m"]
    if p.output in ("alive", "churn_risk"):
        alive = model.probability_alive(bg, x, t_x, t_end)
        return alive if p.output == "alive" else 1.0 - alive
    if p.output == "expected_purchases":
        return model.expected_purchases(bg, p.horizon_days / unit, x, t_x, t_end)
    return model.clv(bg, gg, x, t_x, t_end, m, months=_months(p), discount_rate=p.discount_rate, period_days=unit)


def _emit(
    cur: duckdb.DuckDBPyConnection, ctx: ComputeContext, key: str, profiles: np.ndarray, values: np.ndarray, digits: int
) -> None:
    cur.register(VALUES, pa.table({"profile_idx": pa.array(profiles, pa.int32()), "v": pa.array(values, pa.float64())}))
    try:
        cur.execute(
            f"""INSERT INTO {ctx.target} SELECT $key, profile_idx, CAST(round(v, $digits) AS VARCHAR)
            FROM {VALUES} WHERE isfinite(v) {scope_filter(ctx)}""",  # noqa: S608 - fixed SQL
            {"key": key, "digits": digits},
        ).fetchall()
    finally:
        cur.unregister(VALUES)


register(
    ModelSpec(
        name="clv",
        title="客户终身价值 (CLV)",
        title_en="Customer lifetime value (CLV)",
        method=(
            "Each buyer's purchase days give frequency x (days − 1), recency t_x (last − first day) and age T "
            "(today − first day) in weeks (or days), and the mean amount of the repeat days. BG/NBD (Fader, Hardie "
            "& Lee 2005) is fitted on (x, t_x, T) and Gamma-Gamma on the repeat buyers' (x, mean amount), on a "
            "seeded sample of at most fit_sample buyers; then alive = P(alive), churn_risk = 1 − P(alive), "
            "expected_purchases over horizon_days, and clv = the monthly discounted sum of expected purchases × "
            "expected average value over horizon_days. Refuses with fewer than min_repeat_customers repeat "
            "buyers. Non-buyers get no value."
        ),
        params=ClvParams,
        compute=compute,
        value_type=lambda _p: "number",
        enum_values=lambda _p: None,
        incremental=False,
    )
)
