"""Purchase propensity (购买倾向): the probability that a profile does the target in the next days.

A classifier trained on past windows. For each of ``windows`` cutoffs ``now − k·horizon_days``
(k = 1 … windows) every profile already seen before the cutoff is a training row: its features
are computed from what happened before the cutoff, its label is whether it did the target in the
``horizon_days`` after it. A share of the profiles (``holdout_share``, drawn with ``seed``,
stratified by whether the profile was ever positive; all of one profile's rows on the same side)
is held out and the classifier's ROC AUC on them is recorded on the run; the model is then fitted
again on every row and scores every profile with its features as of now.

Features per profile and cutoff (:data:`FEATURES`): purchases (count, in 90 and 365 days, spend,
spend in 365 days, average order value, days since the last one, whether any), activity (events in
7, 30 and 90 days, days since last and first seen, channels), counts of the store's most frequent
event names in 7, 30 and 90 days, and — when the target is not ``purchase`` — the target's own
counts and recency. Counts, money and days go through ``log1p``; days are capped at two years.

The target ``purchase`` means a qualifying order (status not cancelled or refunded:
:data:`EXCLUDED_STATUSES`) or an ``Order Completed`` event whose ``order_id`` is not in ``orders``
(the earliest per order id, so that an order counts once); any other ``event`` is an event name. Rows reach profiles through ``identity_links``
(``obs_idx = identity_idx``), system events (source 0) are ignored.

Classifier: ``logistic`` (default) — standardisation + L2 logistic regression (lbfgs): fast,
deterministic, well calibrated, and it cannot overfit small stores much; ``gradient_boosting`` —
scikit-learn's ``HistGradientBoostingClassifier`` (seeded, no early stopping) for larger stores
with interactions. A run is refused (:class:`TagRunError`) when the training rows are too few,
or when either class has fewer than :data:`MIN_PER_CLASS` rows (e.g. nobody bought).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tessera.domain.tags import Tag
from tessera.services.tag_runs import ComputeContext
from tessera.services.tag_values import TagRunError
from tessera.tagmodels import ModelSpec, register

BANDS = ["高", "中", "低"]
PURCHASE = "purchase"
ORDER_COMPLETED = "Order Completed"
#: Order statuses that are not purchases (compared with ``lower(trim(status))``; the same as the
#: value and lifecycle models').
EXCLUDED_STATUSES = ("cancelled", "canceled", "refunded", "已取消", "已退款")
#: Days are capped here (a profile never seen / never buying counts as this long ago).
CAP_DAYS = 730.0
#: Event names (the most frequent in the store) whose counts are features.
TOP_EVENT_NAMES = 8
#: Each class needs at least this many training rows.
MIN_PER_CLASS = 10
WINDOWS_DAYS = (7, 30, 90)
FEATURES = (
    "purchases", "purchases_90d", "purchases_365d", "spend", "spend_365d", "avg_order_value",
    "days_since_purchase", "has_purchased", "events_7d", "events_30d", "events_90d", "days_since_seen",
    "days_since_first_seen", "channels",
)  # fmt: skip
TARGET_FEATURES = ("target_30d", "target_90d", "target_365d", "days_since_target")


class PropensityParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    output: Literal["probability", "band"] = Field(
        default="probability", description="probability: a number 0..1; band: 高 / 中 / 低 by the cut points"
    )
    horizon_days: int = Field(default=30, ge=1, le=365, description="predict the target within this many days")
    event: str = Field(
        default=PURCHASE, min_length=1, max_length=200,
        description="the target: purchase (qualifying orders or Order Completed) or an event name",
    )  # fmt: skip
    bands: list[float] = Field(
        default=[0.3, 0.6], min_length=2, max_length=2,
        description="[中 from, 高 from]: probability ≥ the second is 高, ≥ the first 中, else 低",
    )  # fmt: skip
    classifier: Literal["logistic", "gradient_boosting"] = "logistic"
    windows: int = Field(default=3, ge=1, le=12, description="past cutoffs to train on (now − k·horizon)")
    holdout_share: float = Field(default=0.25, ge=0.1, le=0.5, description="profiles held out for the AUC")
    min_rows: int = Field(default=100, ge=20, description="refuse with fewer training rows")
    seed: int = Field(default=0, ge=0, description="the holdout draw and the classifier's seed")

    @model_validator(mode="after")
    def _bands(self) -> PropensityParams:
        low, high = self.bands
        if not 0 < low < high < 1:
            raise ValueError("bands must be two increasing probabilities between 0 and 1")
        return self

    def training_key(self) -> tuple[Any, ...]:
        """Tags whose params agree on this share one trained model."""
        return (self.horizon_days, self.event, self.classifier, self.windows, self.holdout_share, self.min_rows,
                self.seed)  # fmt: skip


def _naive(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None)


def _collect(cur: duckdb.DuckDBPyConnection, now: datetime) -> None:
    """Temp tables of every profile's activity before ``now``: events, purchases, touches."""
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE _prop_acts AS
        SELECT l.profile_idx, e."timestamp" AS t, coalesce(n.name, '') AS name, e.source_id, e.channel, e.order_id,
            CAST(e.revenue AS DOUBLE) AS revenue
        FROM events e JOIN identity_links l ON l.obs_idx = e.identity_idx
        LEFT JOIN event_names n ON n.event_id = e.event_id
        WHERE l.profile_idx IS NOT NULL AND e.source_id <> 0 AND e."timestamp" < $now""",
        {"now": now},
    )
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE _prop_buys AS
        SELECT l.profile_idx, o.ordered_at AS t, CAST(o.total AS DOUBLE) AS amount, o.source_id, o.channel
        FROM orders o JOIN identity_links l ON l.obs_idx = o.identity_idx
        WHERE l.profile_idx IS NOT NULL AND o.ordered_at < $now
          AND (o.status IS NULL OR NOT list_contains($excluded, lower(trim(o.status))))
        UNION ALL
        SELECT a.profile_idx, a.t, coalesce(a.revenue, 0), a.source_id, a.channel FROM _prop_acts a
        WHERE a.name = $completed
          AND (a.order_id IS NULL OR NOT EXISTS (SELECT 1 FROM orders o WHERE o.order_id = a.order_id))
        QUALIFY a.order_id IS NULL OR row_number() OVER (PARTITION BY a.order_id ORDER BY a.t, a.profile_idx) = 1""",
        {"now": now, "excluded": list(EXCLUDED_STATUSES), "completed": ORDER_COMPLETED},
    )
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE _prop_touch AS
        SELECT profile_idx, t, 's' || source_id AS chan FROM _prop_acts
        UNION ALL SELECT profile_idx, t, 'c' || channel FROM _prop_acts WHERE channel IS NOT NULL
        UNION ALL SELECT profile_idx, t, 's' || source_id FROM _prop_buys WHERE source_id IS NOT NULL
        UNION ALL SELECT profile_idx, t, 'c' || channel FROM _prop_buys WHERE channel IS NOT NULL
        UNION ALL SELECT profile_idx, t, NULL FROM _prop_buys"""
    )


def _target(cur: duckdb.DuckDBPyConnection, event: str) -> None:
    if event == PURCHASE:
        cur.execute("CREATE OR REPLACE TEMP TABLE _prop_target AS SELECT profile_idx, t FROM _prop_buys")
    else:
        cur.execute(
            "CREATE OR REPLACE TEMP TABLE _prop_target AS SELECT profile_idx, t FROM _prop_acts WHERE name = $e",
            {"e": event},
        )


def _cutoffs(cur: duckdb.DuckDBPyConnection, now: datetime, p: PropensityParams) -> list[datetime]:
    """``_prop_cut (w, c, e)``: w = 0 scores at now; w = k trains on cutoff now − k·h, labels in [c, e)."""
    h = timedelta(days=p.horizon_days)
    cuts = [now - k * h for k in range(p.windows + 1)]
    cur.execute("CREATE OR REPLACE TEMP TABLE _prop_cut (w INTEGER, c TIMESTAMP, e TIMESTAMP)")
    cur.executemany("INSERT INTO _prop_cut VALUES (?, ?, ?)", [[k, c, c + h] for k, c in enumerate(cuts)])
    return cuts


class _Frame:
    """Feature rows keyed by (window, profile_idx); filled column by column from long query results."""

    def __init__(self, w: np.ndarray, idx: np.ndarray, names: Sequence[str]) -> None:
        self.key = w.astype(np.int64) * (1 << 32) + idx.astype(np.int64)
        order = np.argsort(self.key, kind="stable")
        self.key, self.w, self.idx = self.key[order], w[order].astype(np.int64), idx[order].astype(np.int64)
        self.names = list(names)
        self.x = np.zeros((len(self.key), len(self.names)), dtype=np.float64)

    def rows(self, w: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the given keys in the frame, and which of them are in it."""
        key = w.astype(np.int64) * (1 << 32) + idx.astype(np.int64)
        pos = np.searchsorted(self.key, key)
        pos = np.minimum(pos, max(len(self.key) - 1, 0))
        hit = self.key[pos] == key if len(self.key) else np.zeros(len(key), dtype=bool)
        return pos[hit], hit

    def put(self, name: str, w: np.ndarray, idx: np.ndarray, values: np.ndarray) -> None:
        pos, hit = self.rows(w, idx)
        self.x[pos, self.names.index(name)] = np.asarray(values, dtype=np.float64)[hit]


def _frame(cur: duckdb.DuckDBPyConnection, p: PropensityParams, scope: str | None) -> tuple[_Frame, np.ndarray]:
    """Every (window, profile) row with its features, and the labels of the training rows (w > 0)."""
    top = [
        r[0]
        for r in cur.execute(
            "SELECT name FROM _prop_acts WHERE name <> '' GROUP BY name ORDER BY count(*) DESC, name LIMIT $k",
            {"k": TOP_EVENT_NAMES},
        ).fetchall()
    ]
    names = list(FEATURES) + [f"event_{i}_{d}d" for i in range(len(top)) for d in WINDOWS_DAYS]
    if p.event != PURCHASE:
        names += TARGET_FEATURES
    in_scope = f"WHERE profile_idx IN (SELECT profile_idx FROM {scope})" if scope else ""  # noqa: S608 - fixed names
    pop = cur.execute(
        f"""SELECT c.w, f.profile_idx FROM _prop_cut c
            JOIN (SELECT profile_idx, min(t) AS first_t FROM _prop_touch GROUP BY profile_idx) f ON f.first_t < c.c
            WHERE c.w > 0
        UNION ALL
        SELECT 0, profile_idx FROM profiles {in_scope}"""  # noqa: S608 - fixed names
    ).fetchnumpy()
    frame = _Frame(pop["w"], pop["profile_idx"], names)
    for name in ("days_since_purchase", "days_since_seen", "days_since_first_seen", "days_since_target"):
        if name in names:
            frame.x[:, names.index(name)] = CAP_DAYS

    def fill(sql: str, params: dict[str, Any] | None = None) -> None:
        got = cur.execute(sql, params or {}).fetchnumpy()
        for col, values in got.items():
            if col not in ("w", "profile_idx"):
                frame.put(col, got["w"], got["profile_idx"], values)

    days = f"least(date_diff('second', max(x.t), c.c) / 86400.0, {CAP_DAYS})"
    fill(
        f"""SELECT c.w, x.profile_idx, count(*) AS purchases,
            count(*) FILTER (WHERE x.t >= c.c - INTERVAL 90 DAY) AS purchases_90d,
            count(*) FILTER (WHERE x.t >= c.c - INTERVAL 365 DAY) AS purchases_365d,
            greatest(coalesce(sum(x.amount), 0), 0) AS spend,
            greatest(coalesce(sum(x.amount) FILTER (WHERE x.t >= c.c - INTERVAL 365 DAY), 0), 0) AS spend_365d,
            greatest(coalesce(avg(x.amount), 0), 0) AS avg_order_value,
            {days} AS days_since_purchase, 1 AS has_purchased
        FROM _prop_buys x JOIN _prop_cut c ON x.t < c.c GROUP BY c.w, c.c, x.profile_idx"""  # noqa: S608 - fixed names
    )
    fill(
        """SELECT c.w, x.profile_idx,
            count(*) FILTER (WHERE x.t >= c.c - INTERVAL 7 DAY) AS events_7d,
            count(*) FILTER (WHERE x.t >= c.c - INTERVAL 30 DAY) AS events_30d,
            count(*) FILTER (WHERE x.t >= c.c - INTERVAL 90 DAY) AS events_90d
        FROM _prop_acts x JOIN _prop_cut c ON x.t < c.c GROUP BY c.w, c.c, x.profile_idx"""
    )
    fill(
        f"""SELECT c.w, x.profile_idx, {days} AS days_since_seen,
            least(date_diff('second', min(x.t), c.c) / 86400.0, {CAP_DAYS}) AS days_since_first_seen,
            count(DISTINCT x.chan) AS channels
        FROM _prop_touch x JOIN _prop_cut c ON x.t < c.c GROUP BY c.w, c.c, x.profile_idx"""  # noqa: S608 - fixed names
    )
    if top:
        got = cur.execute(
            """SELECT c.w, x.profile_idx, list_position($top, x.name) - 1 AS i,
                count(*) FILTER (WHERE x.t >= c.c - INTERVAL 7 DAY) AS d7,
                count(*) FILTER (WHERE x.t >= c.c - INTERVAL 30 DAY) AS d30,
                count(*) FILTER (WHERE x.t >= c.c - INTERVAL 90 DAY) AS d90
            FROM _prop_acts x JOIN _prop_cut c ON x.t < c.c AND x.t >= c.c - INTERVAL 90 DAY
            WHERE list_contains($top, x.name) GROUP BY ALL""",
            {"top": top},
        ).fetchnumpy()
        for i in range(len(top)):
            sel = got["i"] == i
            for d in WINDOWS_DAYS:
                frame.put(f"event_{i}_{d}d", got["w"][sel], got["profile_idx"][sel], got[f"d{d}"][sel])
    if p.event != PURCHASE:
        fill(
            f"""SELECT c.w, x.profile_idx,
                count(*) FILTER (WHERE x.t >= c.c - INTERVAL 30 DAY) AS target_30d,
                count(*) FILTER (WHERE x.t >= c.c - INTERVAL 90 DAY) AS target_90d,
                count(*) FILTER (WHERE x.t >= c.c - INTERVAL 365 DAY) AS target_365d,
                {days} AS days_since_target
            FROM _prop_target x JOIN _prop_cut c ON x.t < c.c GROUP BY c.w, c.c, x.profile_idx"""  # noqa: S608 - fixed names
        )
    labels = np.zeros(len(frame.key), dtype=np.int64)
    got = cur.execute(
        """SELECT DISTINCT c.w, x.profile_idx FROM _prop_target x
        JOIN _prop_cut c ON x.t >= c.c AND x.t < c.e WHERE c.w > 0"""
    ).fetchnumpy()
    pos, _ = frame.rows(got["w"], got["profile_idx"])
    labels[pos] = 1
    return frame, labels


def _classifier(p: PropensityParams) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if p.classifier == "gradient_boosting":
        return HistGradientBoostingClassifier(
            max_iter=100, learning_rate=0.1, max_leaf_nodes=15, l2_regularization=1.0, early_stopping=False,
            random_state=p.seed,
        )  # fmt: skip
    return make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))


def _fit(model: Any, x: np.ndarray, y: np.ndarray) -> bool:
    """Fit; whether the solver converged (a non-converged logistic fit is still usable).

    One thread (OpenMP / BLAS): runs share the machine with ingestion and DuckDB, and an
    oversubscribed gradient boosting fit that takes 3 s on one thread took 20-50 s with all of them."""
    from sklearn.exceptions import ConvergenceWarning
    from threadpoolctl import threadpool_limits

    with warnings.catch_warnings(record=True) as caught, threadpool_limits(limits=1):
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x, y)
    return not any(issubclass(w.category, ConvergenceWarning) for w in caught)


def _predict(model: Any, x: np.ndarray) -> np.ndarray:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return np.asarray(model.predict_proba(x)[:, 1])


def _holdout(profiles: np.ndarray, labels: np.ndarray, p: PropensityParams) -> np.ndarray:
    """Which rows are held out: a seeded, stratified draw of profiles (all rows of a profile together)."""
    uniq, inverse = np.unique(profiles, return_inverse=True)
    ever = np.zeros(len(uniq), dtype=np.int64)
    np.maximum.at(ever, inverse, labels)
    rng = np.random.default_rng(p.seed)
    held = np.zeros(len(uniq), dtype=bool)
    for cls in (0, 1):
        members = np.flatnonzero(ever == cls)
        take = math.ceil(len(members) * p.holdout_share)
        held[rng.permutation(members)[:take]] = True
    return np.asarray(held[inverse])


def train_and_score(
    cur: duckdb.DuckDBPyConnection, p: PropensityParams, now: datetime, scope: str | None
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(profile_idx, probability) of every profile to score, and the details of the training."""
    from sklearn.metrics import roc_auc_score

    cuts = _cutoffs(cur, now, p)
    _target(cur, p.event)
    frame, labels = _frame(cur, p, scope)
    x = np.log1p(np.maximum(frame.x, 0.0))
    train = frame.w > 0
    xt, yt, pt = x[train], labels[train], frame.idx[train]
    positives, negatives = int(yt.sum()), int(len(yt) - yt.sum())
    target = "purchase" if p.event == PURCHASE else f"event {p.event!r}"
    where = f"profiles seen before cutoffs {', '.join(c.date().isoformat() for c in cuts[1:])}"
    if len(yt) < p.min_rows:
        raise TagRunError(
            f"propensity: too few training rows: {len(yt)} ({where}); need at least {p.min_rows} (min_rows)"
        )
    if positives == 0 or negatives == 0:
        which = "positive (did" if negatives == 0 else "negative (did not do"
        raise TagRunError(
            f"propensity: the training data has only one class: all {len(yt)} rows are {which} the {target} "
            f"within {p.horizon_days} days of the cutoff); a classifier needs both"
        )
    if min(positives, negatives) < MIN_PER_CLASS:
        raise TagRunError(
            f"propensity: too few rows of one class to train on: {positives} positive, {negatives} negative "
            f"(need at least {MIN_PER_CLASS} of each)"
        )
    held = _holdout(pt, yt, p)
    if len(set(yt[held].tolist())) < 2 or len(set(yt[~held].tolist())) < 2:
        raise TagRunError("propensity: the holdout or the training part has only one class; more data is needed")
    model = _classifier(p)
    _fit(model, xt[~held], yt[~held])
    auc = float(roc_auc_score(yt[held], _predict(model, xt[held])))
    final = _classifier(p)
    converged = _fit(final, xt, yt)
    score = frame.w == 0
    prob = _predict(final, x[score]) if score.any() else np.zeros(0)
    details = {
        "auc": round(auc, 4),
        "positives": positives,
        "negatives": negatives,
        "training_rows": int(len(yt)),
        "holdout_rows": int(held.sum()),
        "holdout_positives": int(yt[held].sum()),
        "base_rate": round(positives / len(yt), 4),
        "cutoffs": [c.isoformat() for c in cuts[1:]],
        "horizon_days": p.horizon_days,
        "target": p.event,
        "classifier": p.classifier,
        "features": len(frame.names),
        "converged": converged,
        "scored": int(score.sum()),
        "mean_probability": round(float(prob.mean()), 4) if len(prob) else None,
    }
    return frame.idx[score], prob, details


def _value(p: PropensityParams, prob: np.ndarray) -> list[str]:
    if p.output == "probability":
        return [f"{v:.4f}" for v in np.round(prob, 4)]
    low, high = p.bands
    return [BANDS[0] if v >= high else BANDS[1] if v >= low else BANDS[2] for v in prob]


def compute(
    cur: duckdb.DuckDBPyConnection, pairs: Sequence[tuple[Tag, PropensityParams]], ctx: ComputeContext
) -> dict[str, dict[str, Any]]:
    now = _naive(ctx.now)
    out: dict[str, dict[str, Any]] = {}
    trained: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray, dict[str, Any]]] = {}
    _collect(cur, now)
    try:
        for tag, p in pairs:
            key = p.training_key()
            if key not in trained:
                trained[key] = train_and_score(cur, p, now, ctx.scope)
            idx, prob, details = trained[key]
            rows = pa.table({"profile_idx": pa.array(idx, pa.int32()), "value": pa.array(_value(p, prob), pa.string())})
            cur.register("_prop_rows", rows)
            try:
                sql = f"INSERT INTO {ctx.target} SELECT $key, profile_idx, value FROM _prop_rows"  # noqa: S608 - fixed names
                cur.execute(sql, {"key": tag.key})
            finally:
                cur.unregister("_prop_rows")
            out[tag.key] = {**details, "output": p.output} | ({"bands": p.bands} if p.output == "band" else {})
    finally:
        for t in ("_prop_acts", "_prop_buys", "_prop_touch", "_prop_target", "_prop_cut"):
            cur.execute(f"DROP TABLE IF EXISTS {t}")
    return out


register(
    ModelSpec(
        name="propensity",
        title="购买倾向",
        title_en="Purchase propensity",
        method=(
            "A classifier (standardised logistic regression by default, or gradient boosting) trained on past "
            "windows: for cutoffs now − k·horizon, features from before the cutoff (recency, frequency and spend "
            "of purchases, events by name in 7/30/90 days, days since last seen, channels), label = did the target "
            "within horizon_days after it. Holdout AUC (profiles held out, seeded) is recorded on each run; every "
            "profile is scored with its features as of now."
        ),
        params=PropensityParams,
        compute=compute,
        value_type=lambda p: "number" if p.output == "probability" else "enum",
        enum_values=lambda p: list(BANDS) if p.output == "band" else None,
    )
)
