"""Lifecycle stage (生命周期) and AIPL (认知 / 兴趣 / 购买 / 忠诚): two models over purchases and activity.

Both read :mod:`tessera.tagmodels.purchases` (purchases and the latest activity per observation,
kept incrementally) and count days as local calendar days since (0 = today).

**lifecycle** gives every profile exactly one stage (first matching row wins):

======  =====================================================  ======
row     condition                                              stage
======  =====================================================  ======
1       bought, last purchase ≥ ``churn_days`` days ago          流失期
2       bought, last purchase ≥ ``dormant_days`` days ago        休眠期
3       bought, ≥ ``mature_orders`` purchases                    成熟期
4       bought (fewer purchases)                               成长期
5       never bought; first contact < ``intro_days`` days ago
        or last seen < ``dormant_days`` days ago                 导入期
6       never bought; last seen < ``churn_days`` days ago        休眠期
7       never bought, not seen for ``churn_days`` days           流失期
======  =====================================================  ======

"Bought" counts every purchase up to now (all history). First contact is the earliest of the
profile's observations' first sight (``identity_links.first_seen``) and its customer records'
``registered_at`` (else the profile's creation); last seen is the latest of its activity, its
purchases and its observations' first sight (never earlier than the first contact). Row 5's
``intro_days`` is a grace period for new profiles: it only changes a stage when longer than
``dormant_days`` (a profile first seen under 30 days ago was also seen under 90 days ago).

**aipl** gives the highest stage a profile reaches: 忠诚 (Loyalty) ≥ ``loyal_orders`` purchases in
the last ``window_days`` days, or a customer record's ``member_level`` in ``loyal_member_levels``;
购买 (Purchase) ≥ 1 purchase in the window; 兴趣 (Interest) ≥ ``interest_min_events`` of the
``interest_events`` (and page / screen views when ``interest_page_views``) in the last
``interest_days`` days; 认知 (Awareness) any non-system event or purchase in the last
``awareness_days`` days (None: ever). Profiles reaching none get no value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tessera.tagmodels import ModelSpec, register
from tessera.tagmodels.purchases import (
    UNSET,
    ProfileMap,
    cutoff,
    end_of_today,
    obs_scope_filter,
    refresh_activity,
    refresh_purchases,
    us,
)

if TYPE_CHECKING:
    import duckdb

    from tessera.domain.tags import Tag
    from tessera.services.tag_runs import ComputeContext

STAGES = ("导入期", "成长期", "成熟期", "休眠期", "流失期")
AIPL = ("认知", "兴趣", "购买", "忠诚")


class LifecycleParams(BaseModel):
    """Lifecycle thresholds (defaults in docs/tag_models.md)."""

    model_config = ConfigDict(extra="forbid")

    intro_days: int = Field(30, ge=1, le=3650, description="never bought and first contact within N days: 导入期")
    dormant_days: int = Field(90, ge=1, le=3650, description="last purchase (or sight) N+ days ago: 休眠期")
    churn_days: int = Field(180, ge=2, le=3650, description="last purchase (or sight) N+ days ago: 流失期")
    mature_orders: int = Field(3, ge=2, le=1000, description="purchases (all time) from which a buyer is 成熟期")

    @model_validator(mode="after")
    def _order(self) -> LifecycleParams:
        if self.dormant_days >= self.churn_days:
            raise ValueError("dormant_days must be less than churn_days")
        return self


DEFAULT_INTEREST = [
    "Product Viewed", "Product List Viewed", "Product Clicked", "Products Searched", "Product Added",
    "Product Added to Wishlist", "Product Favorited", "Product Shared", "Cart Viewed", "Checkout Started",
]  # fmt: skip


class AiplParams(BaseModel):
    """AIPL thresholds (defaults in docs/tag_models.md)."""

    model_config = ConfigDict(extra="forbid")

    awareness_days: int | None = Field(
        365, ge=1, le=36600, description="认知: any event or purchase within N days (null: ever)"
    )
    interest_days: int = Field(30, ge=1, le=3650, description="兴趣: interest events within N days")
    interest_events: list[str] = Field(
        default_factory=lambda: list(DEFAULT_INTEREST), max_length=200, description="event names showing interest"
    )
    interest_page_views: bool = Field(False, description="page and screen views count as interest too")
    interest_min_events: int = Field(1, ge=1, le=100_000, description="兴趣: at least this many interest events")
    window_days: int = Field(365, ge=1, le=36600, description="购买 / 忠诚: purchases within N days")
    loyal_orders: int = Field(2, ge=1, le=1000, description="忠诚: at least this many purchases in the window")
    loyal_member_levels: list[str] = Field(
        default_factory=list, max_length=100, description="忠诚 too: customers with one of these member_level values"
    )


# -- lifecycle --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Facts:
    """Per profile slot of a :class:`ProfileMap`: purchases so far, the last one, first contact and
    last sight (µs since 1970; NEVER when none)."""

    orders: np.ndarray
    last_buy: np.ndarray
    first: np.ndarray
    last_seen: np.ndarray


def lifecycle_facts(pm: ProfileMap, ctx: ComputeContext) -> Facts:
    end = {"end": end_of_today(ctx)}
    # first contact: the observations' first sight and CRM registration, else the profile's creation
    first = pm.minimum(pm.link_slots, pm.link_first)
    slots, reg = pm.by_obs(
        f"""SELECT identity_idx AS obs_idx, epoch_us(registered_at) AS t FROM customers
        WHERE registered_at IS NOT NULL AND identity_idx IS NOT NULL {obs_scope_filter(ctx, "identity_idx")}"""  # noqa: S608 - fixed SQL
    )
    pm.minimum(slots, reg["t"], into=first)
    alone = np.flatnonzero(first == UNSET)  # no observation, no CRM record: the profile's own time
    first[alone] = pm.created(alone)
    # raw rows reduced in numpy: cheaper than grouping them in SQL first
    slots, buys = pm.by_obs(
        f"""SELECT obs_idx, epoch_us(bought_at) AS t FROM tag_purchases
        WHERE bought_at < $end {obs_scope_filter(ctx, "obs_idx")}""",  # noqa: S608 - fixed SQL
        end,
    )
    orders = pm.count(slots)
    last_buy = pm.maximum(slots, buys["t"])
    seen = pm.maximum(pm.link_slots, pm.link_first)
    slots, act = pm.by_obs(
        f"""SELECT obs_idx, epoch_us(last_seen) AS t FROM tag_activity
        WHERE last_seen < $end {obs_scope_filter(ctx, "obs_idx")}""",  # noqa: S608 - fixed SQL
        end,
    )
    pm.maximum(slots, act["t"], into=seen)
    np.maximum(seen, last_buy, out=seen)
    np.maximum(seen, first, out=seen)
    return Facts(orders=orders, last_buy=last_buy, first=first, last_seen=seen)


def stage_codes(f: Facts, p: LifecycleParams, ctx: ComputeContext) -> np.ndarray:
    """1..5 = STAGES, by the decision table (first matching row wins)."""
    churn, dormant, intro = (us(cutoff(ctx, d)) for d in (p.churn_days, p.dormant_days, p.intro_days))
    # the rows of the table from the last to the first, each overwriting the earlier ones
    code = np.full(len(f.orders), 5, np.int8)
    code[f.last_seen >= churn] = 4
    code[(f.first >= intro) | (f.last_seen >= dormant)] = 1
    bought = f.orders > 0
    code[bought] = 2
    code[f.orders >= p.mature_orders] = 3
    code[bought & (f.last_buy < dormant)] = 4
    code[bought & (f.last_buy < churn)] = 5
    return code


def compute_lifecycle(
    cur: duckdb.DuckDBPyConnection, pairs: Sequence[tuple[Tag, LifecycleParams]], ctx: ComputeContext
) -> dict[str, dict[str, Any]]:
    refreshed = refresh_purchases(cur, ctx)
    refreshed |= refresh_activity(cur, ctx, max(p.churn_days for _, p in pairs))
    pm = ProfileMap(cur, ctx)
    facts = lifecycle_facts(pm, ctx)
    details = {}
    for tag, p in pairs:
        values = pm.bitmaps(stage_codes(facts, p, ctx), STAGES)
        ctx.produced[tag.key] = values
        details[tag.key] = {**p.model_dump(), "stages": {v: len(values.get(v, ())) for v in STAGES}, **refreshed}
    return details


# -- AIPL -------------------------------------------------------------------------------------------
def aipl_codes(pm: ProfileMap, ctx: ComputeContext, p: AiplParams) -> np.ndarray:
    """0 = no stage, 1..4 = AIPL (the highest reached)."""
    cur, end = pm.cur, end_of_today(ctx)
    window = {"since": cutoff(ctx, p.window_days), "end": end}
    slots, _ = pm.by_obs(
        f"""SELECT obs_idx FROM tag_purchases WHERE bought_at >= $since AND bought_at < $end
        {obs_scope_filter(ctx, "obs_idx")}""",  # noqa: S608 - fixed SQL
        window,
    )
    bought = pm.count(slots)
    ids = [
        int(r[0])
        for r in cur.execute(
            "SELECT event_id FROM event_names WHERE list_contains($names, name)", {"names": p.interest_events}
        ).fetchall()
    ]
    slots, _ = pm.by_obs(
        f"""SELECT identity_idx AS obs_idx FROM events
        WHERE "timestamp" >= $since AND "timestamp" < $end AND source_id <> 0 AND identity_idx IS NOT NULL
          AND (list_contains(CAST($ids AS INTEGER[]), event_id) OR ($pages AND type IN ('page', 'screen')))
          {obs_scope_filter(ctx, "identity_idx")}""",  # noqa: S608 - fixed SQL
        {"since": cutoff(ctx, p.interest_days), "end": end, "ids": ids, "pages": p.interest_page_views},
    )
    interest = pm.count(slots)
    aware = np.zeros(pm.n, bool)
    since = {"since": cutoff(ctx, p.awareness_days) if p.awareness_days is not None else None, "end": end}
    for sql in (
        f"""SELECT obs_idx FROM tag_activity
        WHERE last_seen >= coalesce(CAST($since AS TIMESTAMP), TIMESTAMP '-infinity') AND last_seen < $end
        {obs_scope_filter(ctx, "obs_idx")}""",  # noqa: S608 - fixed SQL
        f"""SELECT DISTINCT obs_idx FROM tag_purchases
        WHERE bought_at >= coalesce(CAST($since AS TIMESTAMP), TIMESTAMP '-infinity') AND bought_at < $end
        {obs_scope_filter(ctx, "obs_idx")}""",  # noqa: S608 - fixed SQL
    ):
        aware[pm.by_obs(sql, since)[0]] = True
    member = np.zeros(pm.n, bool)
    if p.loyal_member_levels:
        slots, _ = pm.by_obs(
            f"""SELECT DISTINCT identity_idx AS obs_idx FROM customers
            WHERE list_contains($levels, member_level) AND identity_idx IS NOT NULL
            {obs_scope_filter(ctx, "identity_idx")}""",  # noqa: S608 - fixed SQL
            {"levels": p.loyal_member_levels},
        )
        member[slots] = True
    rows = [member | (bought >= p.loyal_orders), bought > 0, interest >= p.interest_min_events, aware]
    return np.select(rows, [4, 3, 2, 1], 0).astype(np.int8)


def compute_aipl(
    cur: duckdb.DuckDBPyConnection, pairs: Sequence[tuple[Tag, AiplParams]], ctx: ComputeContext
) -> dict[str, dict[str, Any]]:
    refreshed = refresh_purchases(cur, ctx)
    ever = any(p.awareness_days is None for _, p in pairs)
    refreshed |= refresh_activity(cur, ctx, None if ever else max(p.awareness_days or 0 for _, p in pairs))
    pm = ProfileMap(cur, ctx)
    details = {}
    for tag, p in pairs:
        values = pm.bitmaps(aipl_codes(pm, ctx, p), AIPL)
        ctx.produced[tag.key] = values
        details[tag.key] = {**p.model_dump(), "stages": {v: len(values.get(v, ())) for v in AIPL}, **refreshed}
    return details


register(
    ModelSpec(
        name="lifecycle",
        title="生命周期阶段",
        title_en="Lifecycle stage",
        method=(
            "From purchases (qualifying orders and Order Completed events, one per order id) and activity, in "
            "local days since: buyers are 流失期 when the last purchase is churn_days or more ago, 休眠期 when "
            "dormant_days or more, else 成熟期 with mature_orders or more purchases (all time) and 成长期 below; "
            "non-buyers are 导入期 when first contact (first sight or registration) is under intro_days ago or "
            "they were seen under dormant_days ago, 休眠期 when seen under churn_days ago, else 流失期. Every "
            "profile gets exactly one stage."
        ),
        params=LifecycleParams,
        compute=compute_lifecycle,
        value_type=lambda _p: "enum",
        enum_values=lambda _p: list(STAGES),
        incremental=True,
    )
)

register(
    ModelSpec(
        name="aipl",
        title="AIPL 消费者资产",
        title_en="AIPL (awareness, interest, purchase, loyalty)",
        method=(
            "The highest stage reached: 忠诚 with loyal_orders or more purchases in the last window_days days "
            "(or a member level in loyal_member_levels), 购买 with one or more, 兴趣 with interest_min_events "
            "or more interest events (interest_events; page and screen views when interest_page_views) in the "
            "last interest_days days, 认知 with any non-system event or purchase in the last awareness_days "
            "days (null: ever). Profiles reaching none get no value."
        ),
        params=AiplParams,
        compute=compute_aipl,
        value_type=lambda _p: "enum",
        enum_values=lambda _p: list(AIPL),
        incremental=True,
    )
)
