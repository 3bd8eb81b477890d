"""RFM (最近一次消费 / 消费频率 / 消费金额): scores 1..bins and the eight classic groups.

Over the purchases (:mod:`tessera.tagmodels.purchases`) of the last ``window_days`` local days,
every buyer gets R = days since the last purchase (0 = today), F = purchases, M = amount spent.
Each is scored 1..``bins`` (higher is better: recent, frequent, big):

- ``quantile``: the cut points are the buyers' k/bins quantiles (``quantile_disc``) of −R, F and M;
  score = 1 + how many cut points the value is above. Equal values share a score (a dimension with
  many ties, like F, uses fewer scores);
- ``threshold``: fixed ascending edges, ``bins − 1`` each — R score = 1 + #{edges > R},
  F score = 1 + #{edges ≤ F}, M score = 1 + #{edges ≤ M}.

The eight groups split each dimension into high / low — ``split="mean"`` (the classic rule): high
when the score is above the buyers' mean score; ``split="threshold"``: R high when R <
``split_recency_days``, F high when F ≥ ``split_frequency``, M high when M ≥ ``split_monetary`` —
then (R, F, M) high/low gives 重要价值 (高高高), 重要发展 (高低高), 重要保持 (低高高),
重要挽留 (低低高), 一般价值 (高高低), 一般发展 (高低低), 一般保持 (低高低), 一般挽留 (低低低).
Profiles without a purchase in the window get no value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import product
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tessera.tagmodels import ModelSpec, register
from tessera.tagmodels.purchases import (
    code_bitmaps,
    cutoff,
    end_of_today,
    local_day,
    refresh_purchases,
    scope_filter,
)

if TYPE_CHECKING:
    import duckdb

    from tessera.domain.tags import Tag
    from tessera.services.tag_runs import ComputeContext

#: In the order of the index 4·(M low) + 2·(R low) + (F low).
GROUPS = ("重要价值", "重要发展", "重要保持", "重要挽留", "一般价值", "一般发展", "一般保持", "一般挽留")
SCORES = ("r", "f", "m", "score", "group")
RAW = ("recency", "frequency", "monetary")


class RfmParams(BaseModel):
    """RFM's parameters (defaults in docs/tag_models.md)."""

    model_config = ConfigDict(extra="forbid")

    output: Literal["r", "f", "m", "score", "group", "recency", "frequency", "monetary"] = Field(
        "group",
        description="r, f, m: the 1..bins score (enum); score: the three digits, e.g. 545; group: the eight "
        "groups; recency (days), frequency (purchases), monetary (amount): the raw numbers",
    )
    method: Literal["quantile", "threshold"] = Field("quantile", description="how scores are cut")
    bins: int = Field(5, ge=2, le=9, description="scores 1..bins")
    window_days: int = Field(365, ge=1, le=36600, description="purchases of the last N local days count")
    recency_days: list[int] = Field(
        [30, 90, 180, 270], description="threshold: ascending day edges; R score = 1 + edges above R"
    )
    frequency: list[float] = Field([2, 3, 5, 8], description="threshold: ascending edges; F score = 1 + edges ≤ F")
    monetary: list[float] = Field(
        [300, 1000, 3000, 10000], description="threshold: ascending amount edges; M score = 1 + edges ≤ M"
    )
    split: Literal["mean", "threshold"] = Field(
        "mean", description="groups: high = score above the mean score (mean) or raw value past split_* (threshold)"
    )
    split_recency_days: int = Field(90, ge=1, description="split=threshold: R high when R < this")
    split_frequency: float = Field(2, ge=0, description="split=threshold: F high when F ≥ this")
    split_monetary: float = Field(1000, ge=0, description="split=threshold: M high when M ≥ this")

    @model_validator(mode="after")
    def _edges(self) -> RfmParams:
        if self.method == "threshold":
            for name in ("recency_days", "frequency", "monetary"):
                edges = getattr(self, name)
                if len(edges) != self.bins - 1:
                    raise ValueError(f"{name}: method threshold with {self.bins} bins needs {self.bins - 1} edges")
                if any(b <= a for a, b in zip(edges, edges[1:], strict=False)) or edges[0] < 0:
                    raise ValueError(f"{name}: edges must be ≥ 0 and strictly ascending")
        return self


def _value_type(p: RfmParams) -> str:
    return "enum" if p.output in SCORES else "number"


def _enum_values(p: RfmParams) -> list[str] | None:
    digits = [str(i) for i in range(1, p.bins + 1)]
    if p.output in ("r", "f", "m"):
        return digits
    if p.output == "score":
        return ["".join(c) for c in product(digits, repeat=3)]
    if p.output == "group":
        return list(GROUPS)
    return None


# -- computing ---------------------------------------------------------------------------------------
BASE = "_rfm_base"
#: The column of each raw-number output (scores and groups are made in numpy from the same base).
_OUTPUT = {
    "recency": "CAST(recency AS VARCHAR)",
    "frequency": "CAST(frequency AS VARCHAR)",
    "monetary": "CAST(monetary AS VARCHAR)",
}


def _num(v: Any) -> float | int:
    return float(v) if isinstance(v, Decimal | float) else int(v)


@dataclass(frozen=True)
class Scores:
    """One scoring of the window's buyers (arrays parallel to ``Buyers``)."""

    r: np.ndarray
    f: np.ndarray
    m: np.ndarray
    r_high: np.ndarray
    f_high: np.ndarray
    m_high: np.ndarray


def compute(
    cur: duckdb.DuckDBPyConnection, pairs: Sequence[tuple[Tag, RfmParams]], ctx: ComputeContext
) -> dict[str, dict[str, Any]]:
    """One purchase refresh per call; one base per window; one scoring per (method, bins, edges, split)."""
    refreshed = refresh_purchases(cur, ctx)
    scope = None
    if ctx.scope:
        scope = cur.execute(f"SELECT profile_idx FROM {ctx.scope}").fetchnumpy()["profile_idx"]  # noqa: S608 - fixed names
    details: dict[str, dict[str, Any]] = {}
    try:
        for window in sorted({p.window_days for _, p in pairs}):
            _base(cur, ctx, window)
            buyers = cur.execute(
                f"SELECT profile_idx, recency, frequency, CAST(monetary AS DOUBLE) AS monetary FROM {BASE}"  # noqa: S608 - fixed names
            ).fetchnumpy()
            n = len(buyers["profile_idx"])
            shown = np.isin(buyers["profile_idx"], scope) if scope is not None else None
            scorings: dict[tuple[Any, ...], list[tuple[Tag, RfmParams]]] = {}
            for tag, p in pairs:
                if p.window_days == window:
                    scorings.setdefault(_scoring_key(p), []).append((tag, p))
            for group in scorings.values():
                info, scores = _score(cur, group[0][1], buyers) if n else ({}, None)
                for tag, p in group:
                    if p.output in RAW:
                        cur.execute(
                            f"INSERT INTO {ctx.target} SELECT $key, profile_idx, {_OUTPUT[p.output]} FROM {BASE} "  # noqa: S608 - fixed SQL
                            f"WHERE true {scope_filter(ctx)}",
                            {"key": tag.key},
                        )
                    else:
                        codes = _codes(p, scores) if scores is not None else np.zeros(0, np.int64)
                        ids = buyers["profile_idx"]
                        if shown is not None:
                            codes, ids = codes[shown], ids[shown]
                        ctx.produced[tag.key] = code_bitmaps(codes, ids, _enum_values(p) or [])
                    details[tag.key] = {"buyers": n, "window_days": window, **info, **refreshed}
    finally:
        cur.execute(f"DROP TABLE IF EXISTS {BASE}")
    return details


def _scoring_key(p: RfmParams) -> tuple[Any, ...]:
    edges = (tuple(p.recency_days), tuple(p.frequency), tuple(p.monetary)) if p.method == "threshold" else ()
    split = (p.split_recency_days, p.split_frequency, p.split_monetary) if p.split == "threshold" else ()
    return (p.method, p.bins, edges, p.split, split)


def _base(cur: duckdb.DuckDBPyConnection, ctx: ComputeContext, window: int) -> None:
    """Every buyer of the window (everyone: scores compare people): recency (days), frequency, monetary."""
    start = cutoff(ctx, window)
    day, tz = local_day("last_at", ctx, start)
    cur.execute(
        f"""CREATE OR REPLACE TEMP TABLE {BASE} AS
        SELECT profile_idx, date_diff('day', {day}, $today) AS recency, frequency, monetary FROM (
            SELECT l.profile_idx, max(p.bought_at) AS last_at, count(*) AS frequency,
                   CAST(sum(p.amount) AS DECIMAL(18, 2)) AS monetary
            FROM tag_purchases p JOIN identity_links l ON l.obs_idx = p.obs_idx
            WHERE l.profile_idx IS NOT NULL AND p.bought_at >= $start AND p.bought_at < $end
            GROUP BY l.profile_idx)""",  # noqa: S608 - fixed names and SQL
        {"today": ctx.eval.today, "start": start, "end": end_of_today(ctx), **tz},
    )


def _score(cur: duckdb.DuckDBPyConnection, p: RfmParams, b: dict[str, np.ndarray]) -> tuple[dict[str, Any], Scores]:
    """Scores 1..bins and the high / low split of one scoring; its cut points and means for the run."""
    info: dict[str, Any] = {"method": p.method, "bins": p.bins, "split": p.split}
    recency, frequency, monetary = b["recency"], b["frequency"], b["monetary"]
    if p.method == "quantile":
        qs = [k / p.bins for k in range(1, p.bins)]
        r_e, f_e, m_e = cur.execute(
            f"SELECT quantile_disc(-recency, $qs), quantile_disc(frequency, $qs), quantile_disc(monetary, $qs) FROM {BASE}",  # noqa: S608 - fixed names
            {"qs": qs},
        ).fetchall()[0]
        info["cut_points"] = {
            "recency_days": [-_num(v) for v in r_e],
            "frequency": [_num(v) for v in f_e],
            "monetary": [_num(v) for v in m_e],
        }
        # 1 + the cut points the value is above (of −R for recency)
        r = 1 + np.searchsorted(np.array(r_e, np.float64), -recency, side="left")
        f = 1 + np.searchsorted(np.array(f_e, np.float64), frequency, side="left")
        m = 1 + np.searchsorted(np.array([float(v) for v in m_e]), monetary, side="left")
    else:
        info["cut_points"] = {"recency_days": p.recency_days, "frequency": p.frequency, "monetary": p.monetary}
        r = 1 + len(p.recency_days) - np.searchsorted(np.array(p.recency_days, np.float64), recency, side="right")
        f = 1 + np.searchsorted(np.array(p.frequency), frequency, side="right")
        m = 1 + np.searchsorted(np.array(p.monetary), monetary, side="right")
    if p.split == "mean":
        means = [float(x.mean()) for x in (r, f, m)]
        info["mean_scores"] = dict(zip("rfm", (round(x, 4) for x in means), strict=True))
        highs = (r > means[0], f > means[1], m > means[2])
    else:
        highs = (recency < p.split_recency_days, frequency >= p.split_frequency, monetary >= p.split_monetary)
    return info, Scores(r=r, f=f, m=m, r_high=highs[0], f_high=highs[1], m_high=highs[2])


def _codes(p: RfmParams, s: Scores) -> np.ndarray:
    """1-based positions in the output's enum values."""
    if p.output == "group":  # GROUPS is ordered by 4·(M low) + 2·(R low) + (F low)
        return 1 + 4 * (~s.m_high).astype(np.int64) + 2 * (~s.r_high).astype(np.int64) + (~s.f_high).astype(np.int64)
    if p.output == "score":
        return 1 + (s.r - 1) * p.bins**2 + (s.f - 1) * p.bins + (s.m - 1)
    return {"r": s.r, "f": s.f, "m": s.m}[p.output]


register(
    ModelSpec(
        name="rfm",
        title="RFM 价值分层",
        title_en="RFM value segments",
        method=(
            "Over the purchases (qualifying orders and Order Completed events, one per order id) of the "
            "last window_days local days, each buyer gets R = days since the last purchase, F = purchases, "
            "M = amount. Each is scored 1..bins, higher = better: by the buyers' quantile cut points "
            "(score = 1 + cut points exceeded; ties share a score) or by fixed ascending edges. The eight "
            "groups mark each dimension high when its score is above the buyers' mean score (or, with "
            "split=threshold, when R < split_recency_days, F ≥ split_frequency, M ≥ split_monetary): "
            "重要价值 RFM all high, 重要发展 R,M high F low, 重要保持 F,M high R low, 重要挽留 M high only, "
            "and the same four with M low as 一般价值/发展/保持/挽留. Non-buyers get no value."
        ),
        params=RfmParams,
        compute=compute,
        value_type=_value_type,
        enum_values=_enum_values,
        incremental=True,
    )
)
