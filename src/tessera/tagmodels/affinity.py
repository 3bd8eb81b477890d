"""Affinities (偏好): a profile's top category, colour, size or price band.

Each purchase and each product view is a signal on the product's category, colour, size and
price band. A signal weighs ``purchase_weight`` (purchases) or ``view_weight`` (views) times
``0.5 ** (age_days / half_life_days)`` — a signal ``half_life_days`` old counts half as much as one
from now. A profile's score for a value is the sum of its signals' weights; the ``top_n`` values
with the highest scores (at least ``min_score``; ties by value) are the tag's values — one value
(single-valued) when ``top_n`` is 1, several (multi-valued) otherwise.

Signals:

* purchases — every line of a qualifying order (status not cancelled or refunded), joined to
  ``products`` by ``product_id`` (once per line, whatever the quantity, so that a bulk buy does not
  drown the rest), at ``ordered_at``; and ``Order Completed`` events whose ``order_id`` is not in
  ``orders`` (the earliest per order id; their ``product_id`` / ``category``);
* views — events named in ``view_events`` (default ``Product Viewed``), by ``product_id`` joined to
  ``products``; an event's own ``category`` column (or ``properties.colour`` / ``size`` /
  ``price``) stands in when the product is unknown.

The price band of a product is where its list price (``products.price``, else the line's unit
price or the event's ``properties.price``) falls among ``price_bands`` (CNY cut points, default
100, 300, 1000 → ``0-100``, ``100-300``, ``300-1000``, ``1000+``). Rows reach profiles through
``identity_links`` (``obs_idx = identity_idx``). Only signals within ``window_days`` count.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, timedelta
from typing import Any, Literal

import duckdb
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tessera.domain.tags import Tag
from tessera.services.tag_runs import ComputeContext
from tessera.tagmodels import ModelSpec, register
from tessera.tagmodels.propensity import EXCLUDED_STATUSES, ORDER_COMPLETED

SIGNALS = "_aff_signals"


def _num(v: float) -> str:
    return f"{v:g}"


def band_labels(cuts: Sequence[float]) -> list[str]:
    """``[100, 300]`` → ``["0-100", "100-300", "300+"]``."""
    edges = [0.0, *cuts]
    return [f"{_num(lo)}-{_num(hi)}" for lo, hi in zip(edges, cuts, strict=False)] + [f"{_num(cuts[-1])}+"]


class AffinityParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dimension: Literal["category", "colour", "size", "price_band"] = "category"
    half_life_days: float = Field(default=30, gt=0, le=3650, description="a signal this old weighs half")
    purchase_weight: float = Field(default=3, ge=0, le=1000)
    view_weight: float = Field(default=1, ge=0, le=1000)
    top_n: int = Field(default=1, ge=1, le=20, description="values per profile (multi-valued when > 1)")
    min_score: float = Field(default=0, ge=0, description="values scoring less are left out")
    window_days: int | None = Field(default=365, ge=1, le=3650, description="signals older are ignored; null = all")
    view_events: list[str] = Field(default=["Product Viewed"], min_length=1, max_length=20)
    price_bands: list[float] = Field(
        default=[100, 300, 1000], min_length=1, max_length=20, description="ascending CNY cut points"
    )

    @field_validator("price_bands")
    @classmethod
    def _cuts(cls, v: list[float]) -> list[float]:
        if any(c <= 0 for c in v) or any(b <= a for a, b in zip(v, v[1:], strict=False)):
            raise ValueError("price_bands must be positive and strictly ascending")
        return v


def _collect(cur: duckdb.DuckDBPyConnection, now: Any, since: Any, views: list[str]) -> None:
    """``_aff_signals``: (profile_idx, t, kind, event name, category, colour, size, price) of every signal."""
    cur.execute(
        f"""CREATE OR REPLACE TEMP TABLE {SIGNALS} AS
        SELECT l.profile_idx, o.ordered_at AS t, 'purchase' AS kind, CAST(NULL AS VARCHAR) AS name, pr.category, pr.colour, pr.size,
            CAST(coalesce(pr.price, oi.unit_price) AS DOUBLE) AS price
        FROM order_items oi JOIN orders o ON o.order_id = oi.order_id
        JOIN identity_links l ON l.obs_idx = o.identity_idx
        LEFT JOIN products pr ON pr.product_id = oi.product_id
        WHERE l.profile_idx IS NOT NULL AND o.ordered_at <= $now
          AND (CAST($since AS TIMESTAMP) IS NULL OR o.ordered_at >= $since)
          AND (o.status IS NULL OR NOT list_contains($excluded, lower(trim(o.status))))
        UNION ALL
        SELECT l.profile_idx, e."timestamp", CASE WHEN n.name = $completed THEN 'purchase' ELSE 'view' END, n.name,
            coalesce(pr.category, e.category),
            coalesce(pr.colour, json_extract_string(e.properties, '$.colour'),
                     json_extract_string(e.properties, '$.color')),
            coalesce(pr.size, json_extract_string(e.properties, '$.size')),
            coalesce(CAST(pr.price AS DOUBLE), TRY_CAST(json_extract_string(e.properties, '$.price') AS DOUBLE))
        FROM events e JOIN event_names n ON n.event_id = e.event_id
        JOIN identity_links l ON l.obs_idx = e.identity_idx
        LEFT JOIN products pr ON pr.product_id = e.product_id
        WHERE l.profile_idx IS NOT NULL AND e."timestamp" <= $now
          AND (CAST($since AS TIMESTAMP) IS NULL OR e."timestamp" >= $since)
          AND (list_contains($views, n.name)
               OR (n.name = $completed AND (e.order_id IS NULL
                   OR NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = e.order_id))))
        QUALIFY n.name <> $completed OR e.order_id IS NULL
            OR row_number() OVER (PARTITION BY n.name = $completed, e.order_id ORDER BY e."timestamp", e.message_id) = 1""",  # noqa: S608 - fixed names
        {"now": now, "since": since, "excluded": list(EXCLUDED_STATUSES), "completed": ORDER_COMPLETED,
         "views": views},
    )  # fmt: skip


def _score(
    cur: duckdb.DuckDBPyConnection, tag: Tag, p: AffinityParams, now: Any, ctx: ComputeContext
) -> dict[str, Any]:
    since = now - timedelta(days=p.window_days) if p.window_days else None
    in_scope = f"AND profile_idx IN (SELECT profile_idx FROM {ctx.scope})" if ctx.scope else ""  # noqa: S608 - fixed names
    cur.execute(
        f"""INSERT INTO {ctx.target}
        WITH s AS (
            SELECT profile_idx,
                trim(CASE CAST($dim AS VARCHAR) WHEN 'category' THEN category WHEN 'colour' THEN colour
                    WHEN 'size' THEN size
                    ELSE list_extract(CAST($labels AS VARCHAR[]),
                                      len(list_filter(CAST($cuts AS DOUBLE[]), lambda c: c <= price)) + 1
                                      + CASE WHEN price IS NULL THEN NULL ELSE 0 END) END) AS v,
                CASE kind WHEN 'purchase' THEN CAST($pw AS DOUBLE) ELSE CAST($vw AS DOUBLE) END
                    * pow(0.5, greatest(date_diff('second', t, $now), 0) / 86400.0 / CAST($hl AS DOUBLE)) AS w
            FROM {SIGNALS}
            WHERE (CAST($since AS TIMESTAMP) IS NULL OR t >= $since) {in_scope}
              AND (kind = 'purchase' OR list_contains($views, name))
        ), scores AS (
            SELECT profile_idx, v, sum(w) AS score FROM s WHERE v IS NOT NULL AND v <> '' GROUP BY profile_idx, v
        )
        SELECT $key, profile_idx, v FROM scores WHERE score > 0 AND score >= $min
        QUALIFY row_number() OVER (PARTITION BY profile_idx ORDER BY score DESC, v) <= $top""",  # noqa: S608 - fixed names
        {"dim": p.dimension, "labels": band_labels(p.price_bands), "cuts": p.price_bands, "pw": p.purchase_weight,
         "vw": p.view_weight, "now": now, "hl": p.half_life_days, "since": since, "min": p.min_score,
         "views": p.view_events, "top": p.top_n, "key": tag.key},
    )  # fmt: skip
    row = cur.execute(
        f"SELECT count(DISTINCT profile_idx), count(DISTINCT value), count(*) FROM {ctx.target} WHERE tag_key = $key",  # noqa: S608 - fixed names
        {"key": tag.key},
    ).fetchall()[0]
    top = cur.execute(
        f"""SELECT value, count(*) AS n FROM {ctx.target} WHERE tag_key = $key
        GROUP BY value ORDER BY n DESC, value LIMIT 5""",  # noqa: S608 - fixed names
        {"key": tag.key},
    ).fetchall()
    return {"dimension": p.dimension, "profiles": int(row[0]), "values": int(row[1]), "rows": int(row[2]),
            "top_values": {v: int(n) for v, n in top}, "half_life_days": p.half_life_days}  # fmt: skip


def compute(
    cur: duckdb.DuckDBPyConnection, pairs: Sequence[tuple[Tag, AffinityParams]], ctx: ComputeContext
) -> dict[str, dict[str, Any]]:
    now = ctx.now.astimezone(UTC).replace(tzinfo=None)
    windows = [p.window_days for _, p in pairs]
    since = None if any(w is None for w in windows) else now - timedelta(days=max(w or 0 for w in windows))
    views = sorted({e for _, p in pairs for e in p.view_events})
    _collect(cur, now, since, views)
    try:
        counts = dict(cur.execute(f"SELECT kind, count(*) FROM {SIGNALS} GROUP BY kind").fetchall())  # noqa: S608 - fixed names
        out = {}
        for tag, p in pairs:
            details = _score(cur, tag, p, now, ctx)
            details["signals"] = {"purchases": int(counts.get("purchase", 0)), "views": int(counts.get("view", 0))}
            out[tag.key] = details
        return out
    finally:
        cur.execute(f"DROP TABLE IF EXISTS {SIGNALS}")


register(
    ModelSpec(
        name="affinity",
        title="偏好",
        title_en="Affinity",
        method=(
            "Top category, colour, size or price band by recency-weighted purchases and views: each purchase "
            "(order line or Order Completed) weighs purchase_weight, each product view view_weight, times "
            "0.5 ** (age_days / half_life_days); the top_n values by summed weight (≥ min_score) are kept."
        ),
        params=AffinityParams,
        compute=compute,
        value_type=lambda p: "enum" if p.dimension == "price_band" else "string",
        enum_values=lambda p: band_labels(p.price_bands) if p.dimension == "price_band" else None,
        multi=lambda p: p.top_n > 1,
    )
)
