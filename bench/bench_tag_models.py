"""RFM and lifecycle model tags (价值与生命周期模型标签) from 100,000,000 events.

Builds (or reuses) a data dir whose analytic store holds ``--profiles`` profiles, 1.1 observations
each (``identity_links``: a tenth of the profiles have a second device), 30% with a CRM record
(registration, member level), ``--events`` events over the 365 days before now (the event mix of
bench_audience.py: 1.5% ``Order Completed`` with revenue — half with their own order id, a tenth
with the id of an order row, the rest without), and ``events / 50`` orders in 20 imports (5%
refunded, 3% cancelled). Then, through ``tag_runs.run_tags`` with the models' compute timed apart
from the value swap:

(a) a full run of ``rfm`` (group and score, one pass) and ``lifecycle``: purchases and activity
    rebuilt from the events and orders, scores and stages for every profile;
(b) one day later, after one day of events (``events / 365``) and orders (a new import that also
    marks 1,000 older orders refunded): an incremental run of the same tags;
(c) the baseline: the obvious hand-written DuckDB SQL computing the same RFM groups from the same
    tables in this process (one statement; its groups are checked equal to the model's).

Target (issue "Step 4 · The tag system", item 5): RFM + lifecycle from 100M events ≤ 15 s full;
a daily incremental update ≤ 5 s (2 cores, 24 GB).

    .venv/bin/python bench/bench_tag_models.py [--profiles 10000000] [--events 100000000]
        [--reuse /tmp/tessera-bench-models/data] [--memory-limit 12GB] [--threads 2]

With ``--reuse`` the data dir is built there first when missing and kept; the day added in (b) is
removed again at the end, so runs can be repeated.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, timedelta
from pathlib import Path
from typing import Any

import duckdb

sys.path.insert(0, str(Path(__file__).parent))

from bench_audience import EVENTS, NOW
from tessera.clock import FrozenClock
from tessera.domain.tags import Tag
from tessera.runtime import Instance
from tessera.services import tag_catalogue, tag_runs, tag_values
from tessera.services.tag_values import RunResult
from tessera.settings import load_settings
from tessera.tagmodels import MODELS, models
from tessera.tagmodels.purchases import EXCLUDED_STATUSES

SPAN_DAYS = 365
DAY_IMPORT = "bench-day"
KEYS = ("bench_rfm_group", "bench_rfm_score", "bench_lifecycle")


def _u(k: int, col: str = "i") -> str:
    """A uniform [0, 1) draw per row, the ``k``-th (deterministic: a hash of the row and k)."""
    return f"((hash({col}, {k}) >> 11) / 9007199254740992.0)"


def _event_rows(n_obs: int, n_orders: int, prefix: str) -> str:
    """SELECT of events for rows i in [$lo, $hi), times spread from $start over $span microseconds."""
    cases, acc = [], 0.0
    for k, (_, share) in enumerate(EVENTS[:-1]):
        acc += share
        cases.append(f"WHEN u < {acc:.4f} THEN {k + 1}")
    event_id = f"CASE {' '.join(cases)} ELSE {len(EVENTS)} END"
    oc = 1 + [e for e, _ in EVENTS].index("Order Completed")
    return f"""
        SELECT '{prefix}' || i, 1, 'track', eid, ts, ts + to_microseconds(CAST(hash(i, 74) % 5000000 AS BIGINT)),
               CASE WHEN eid = {oc} THEN CAST(30 + {_u(71)} * 1200 AS DECIMAL(18, 2)) END,
               CASE WHEN eid = {oc} AND {_u(75)} < 0.5 THEN '{prefix}o' || i
                    WHEN eid = {oc} AND {_u(75)} < 0.6 THEN 'o' || (hash(i, 76) % {n_orders}) END,
               1 + CAST(floor(pow({_u(72)}, 1.6) * {n_obs}) AS BIGINT)
        FROM (SELECT i, {event_id} AS eid, $start + to_microseconds(CAST((i - $lo) * ($span / ($hi - $lo)) AS BIGINT)) AS ts
              FROM (SELECT i, {_u(73)} AS u FROM range($lo, $hi) t(i)))"""


def build(cur: duckdb.DuckDBPyConnection, n: int, m: int) -> None:
    """Fill a migrated store: ``n`` profiles, their observations and CRM records, ``m`` events, orders."""
    extra, n_orders = n // 10, max(1, m // 50)
    n_obs = n + extra
    cur.execute(
        f"""INSERT INTO profiles (profile_idx, profile_id, created_at, first_seen, anchor_type, anchor_value, created_key)
        SELECT i, 'p_' || substr(md5('anonymous_id:a' || i), 1, 20), t, t, 'anonymous_id', 'a' || i, 'anonymous_id:a' || i
        FROM (SELECT i, $now - to_seconds(CAST({_u(1)} * 700 * 86400 AS BIGINT)) AS t FROM range(1, $n + 1) r(i))""",
        {"n": n, "now": NOW},
    )
    cur.execute(
        f"""INSERT INTO identity_links (obs_idx, key_hash, ids_key, ids, first_seen, source_id, origin, profile_idx)
        SELECT i, CAST(i AS UHUGEINT), 'k' || i, [], p.first_seen, 1, 'bench', i FROM range(1, $n + 1) r(i)
        JOIN profiles p ON p.profile_idx = i
        UNION ALL
        SELECT i, CAST(i AS UHUGEINT), 'k' || i, [], $now - to_seconds(CAST({_u(2)} * 365 * 86400 AS BIGINT)), 1,
               'bench', 1 + CAST(hash(i, 3) % $n AS INTEGER)
        FROM range($n + 1, $n_obs + 1) r(i)""",
        {"n": n, "n_obs": n_obs, "now": NOW},
    )
    cur.execute(
        f"""INSERT INTO customers (customer_id, identity_idx, registered_at, member_level, import_id)
        SELECT 'c' || i, i, $now - to_seconds(CAST({_u(4)} * 1500 * 86400 AS BIGINT)),
               CASE WHEN {_u(5)} < 0.6 THEN '普通会员' WHEN {_u(5)} < 0.85 THEN '银卡' WHEN {_u(5)} < 0.97 THEN '金卡'
                    ELSE '黑钻' END, 'bench-crm'
        FROM range(1, $n + 1) r(i) WHERE hash(i, 6) % 100 < 30""",
        {"n": n, "now": NOW},
    )
    _orders(cur, 0, n_orders, n_obs, start=NOW - timedelta(days=SPAN_DAYS), days=SPAN_DAYS, imports=20)
    cur.executemany(
        "INSERT INTO event_names (event_id, name) VALUES (?, ?)", [[k + 1, e] for k, (e, _) in enumerate(EVENTS)]
    )
    chunk = 20_000_000
    for lo in range(0, m, chunk):
        hi = min(m, lo + chunk)
        cur.execute(
            f"""INSERT INTO events (message_id, source_id, type, event_id, "timestamp", received_at, revenue, order_id,
                                    identity_idx) {_event_rows(n_obs, n_orders, "e")}""",
            {"lo": lo, "hi": hi, "span": SPAN_DAYS * 86400 * 1_000_000 * (hi - lo) // m,
             "start": NOW - timedelta(days=SPAN_DAYS) + timedelta(days=SPAN_DAYS * lo / m)},
        )  # fmt: skip
    cur.execute(
        "CREATE TABLE bench_models_meta AS SELECT $n AS profiles, $m AS events, $o AS orders, $obs AS observations",
        {"n": n, "m": m, "o": n_orders, "obs": n_obs},
    )
    cur.execute("CHECKPOINT")


def _orders(cur: duckdb.DuckDBPyConnection, lo: int, hi: int, n_obs: int, *, start: Any, days: float, imports: int,
            import_id: str | None = None) -> None:  # fmt: skip
    cur.execute(
        f"""INSERT INTO orders (order_id, source_id, channel, status, ordered_at, total, currency, identity_idx, import_id)
        SELECT 'o' || i, 2, CASE WHEN {_u(81)} < 0.6 THEN '天猫' ELSE '门店' END,
               CASE WHEN {_u(82)} < 0.05 THEN 'refunded' WHEN {_u(82)} < 0.08 THEN 'cancelled'
                    WHEN {_u(82)} < 0.10 THEN NULL WHEN {_u(82)} < 0.6 THEN 'completed' ELSE 'paid' END,
               $start + to_seconds(CAST({_u(83)} * $days * 86400 AS BIGINT)),
               CAST(50 + pow({_u(84)}, 2) * 2000 AS DECIMAL(18, 2)), 'CNY',
               1 + CAST(floor(pow({_u(85)}, 1.6) * $n_obs) AS BIGINT),
               coalesce(CAST($import AS VARCHAR), 'bench-imp-' || (i % $imports))
        FROM range($lo, $hi) r(i)""",
        {"lo": lo, "hi": hi, "n_obs": n_obs, "start": start, "days": days, "imports": imports, "import": import_id},
    )


def add_day(cur: duckdb.DuckDBPyConnection, meta: dict[str, int]) -> dict[str, int]:
    """One more day of events and orders (a new import that also marks 1,000 older orders refunded).
    Returns what is needed to take it back."""
    m, n_orders, n_obs = meta["events"], meta["orders"], meta["observations"]
    rowid = int(cur.execute("SELECT max(rowid) FROM events").fetchall()[0][0])
    per_day, orders_day = m // SPAN_DAYS, max(1, n_orders // SPAN_DAYS)
    cur.execute(
        f"""INSERT INTO events (message_id, source_id, type, event_id, "timestamp", received_at, revenue, order_id,
                                identity_idx) {_event_rows(n_obs, n_orders, "d")}""",
        {"lo": 0, "hi": per_day, "span": 86400 * 1_000_000, "start": NOW},
    )
    cur.execute(
        """CREATE OR REPLACE TABLE bench_models_undo AS SELECT order_id, status, import_id FROM orders
        WHERE order_id IN (SELECT 'o' || (hash(i, 91) % $n) FROM range(1000) r(i))""",
        {"n": n_orders},
    )
    cur.execute("UPDATE orders SET status = 'refunded', import_id = $imp WHERE order_id IN "
                "(SELECT order_id FROM bench_models_undo)", {"imp": DAY_IMPORT})  # fmt: skip
    _orders(cur, n_orders, n_orders + orders_day, n_obs, start=NOW, days=1, imports=1, import_id=DAY_IMPORT)
    return {"events_rowid": rowid, "events": per_day, "orders": orders_day}


def remove_day(cur: duckdb.DuckDBPyConnection, undo: dict[str, int], meta: dict[str, int]) -> None:
    cur.execute("DELETE FROM events WHERE rowid > $r", {"r": undo["events_rowid"]})
    cur.execute("DELETE FROM orders WHERE import_id = $imp AND order_id NOT IN (SELECT order_id FROM bench_models_undo)",
                {"imp": DAY_IMPORT})  # fmt: skip
    cur.execute(
        """UPDATE orders SET status = u.status, import_id = u.import_id FROM bench_models_undo u
        WHERE orders.order_id = u.order_id"""
    )
    cur.execute("DROP TABLE bench_models_undo")


# --- the baseline ---------------------------------------------------------------------------------
BASELINE = """
CREATE OR REPLACE TEMP TABLE bench_baseline AS
WITH oc AS (SELECT event_id FROM event_names WHERE name = 'Order Completed'),
good_orders AS (
    SELECT identity_idx, ordered_at AS t, total AS amount FROM orders
    WHERE identity_idx IS NOT NULL AND (status IS NULL OR lower(trim(status)) NOT IN $excluded)
), event_orders AS (
    SELECT identity_idx, "timestamp" AS t, coalesce(revenue, 0) AS amount FROM events
    WHERE event_id = (SELECT event_id FROM oc) AND identity_idx IS NOT NULL
      AND (order_id IS NULL OR order_id NOT IN (SELECT order_id FROM orders))
    QUALIFY order_id IS NULL OR row_number() OVER (PARTITION BY order_id ORDER BY "timestamp", identity_idx, amount) = 1
), rfm AS (
    SELECT l.profile_idx, date_diff('day', CAST(max(b.t) + INTERVAL 8 HOUR AS DATE), $today) AS r, count(*) AS f,
           sum(b.amount) AS m
    FROM (SELECT * FROM good_orders UNION ALL SELECT * FROM event_orders) b
    JOIN identity_links l ON l.obs_idx = b.identity_idx
    WHERE l.profile_idx IS NOT NULL AND b.t >= $start AND b.t < $end
    GROUP BY l.profile_idx
), cuts AS (
    SELECT quantile_disc(-r, [0.2, 0.4, 0.6, 0.8]) AS qr, quantile_disc(f, [0.2, 0.4, 0.6, 0.8]) AS qf,
           quantile_disc(m, [0.2, 0.4, 0.6, 0.8]) AS qm FROM rfm
), scored AS (
    SELECT profile_idx, 1 + len(list_filter(qr, lambda e: -r > e)) AS rs, 1 + len(list_filter(qf, lambda e: f > e)) AS fs,
           1 + len(list_filter(qm, lambda e: m > e)) AS ms
    FROM rfm, cuts
)
SELECT profile_idx, CASE
    WHEN rs > ar AND fs > af AND ms > am THEN '重要价值' WHEN rs > ar AND ms > am THEN '重要发展'
    WHEN fs > af AND ms > am THEN '重要保持' WHEN ms > am THEN '重要挽留'
    WHEN rs > ar AND fs > af THEN '一般价值' WHEN rs > ar THEN '一般发展' WHEN fs > af THEN '一般保持'
    ELSE '一般挽留' END AS grp
FROM scored, (SELECT avg(rs) AS ar, avg(fs) AS af, avg(ms) AS am FROM scored)
"""


def baseline(cur: duckdb.DuckDBPyConnection, inst: Instance) -> float:
    ctx = tag_runs.context(inst, trigger="manual")
    from tessera.tagmodels.purchases import cutoff, end_of_today

    excluded = "(" + ", ".join(f"'{s}'" for s in EXCLUDED_STATUSES) + ")"
    t = time.perf_counter()
    cur.execute(BASELINE.replace("$excluded", excluded),
                {"today": ctx.eval.today, "start": cutoff(ctx, 365), "end": end_of_today(ctx)}).fetchall()  # fmt: skip
    return time.perf_counter() - t


# --- timing ---------------------------------------------------------------------------------------
def timed_models(spent: dict[str, float]) -> None:
    """Wrap each model's compute so that its time is recorded apart from the swap."""
    for name, spec in list(models().items()):

        def wrap(fn: Callable[..., Any], name: str = name) -> Callable[..., Any]:
            def inner(*a: Any) -> Any:
                t = time.perf_counter()
                try:
                    return fn(*a)
                finally:
                    spent[name] = spent.get(name, 0.0) + time.perf_counter() - t

            return inner

        MODELS[name] = dataclasses.replace(spec, compute=wrap(spec.compute))


def run(
    inst: Instance, tags: list[Tag], spent: dict[str, float], *, incremental: bool
) -> tuple[float, list[RunResult]]:
    spent.clear()
    t = time.perf_counter()
    results = tag_runs.run_tags(inst, tags, incremental=incremental)
    wall = time.perf_counter() - t
    bad = [r.error for r in results if r.status != "succeeded"]
    assert not bad, bad
    return wall, results


def report(label: str, wall: float, spent: dict[str, float], results: list[RunResult]) -> None:
    compute = sum(spent.values())
    print(f"{label}: {wall:.2f} s end to end (run_tags)")
    for name in ("rfm", "lifecycle"):
        d = next(r.details for r in results if r.tag_key.startswith(f"bench_{name}"))
        state = ", ".join(f"{k} {v}" for k, v in d.items() if k in ("purchases", "activity", "purchases_seconds",
                                                                      "activity_seconds", "events_folded",
                                                                      "orders_folded"))  # fmt: skip
        print(f"  {name:<10} compute {spent.get(name, 0):6.2f} s   ({state})")
    print(f"  {'swap':<10} values  {wall - compute:6.2f} s   (diff, profile_tags, history, run records)")
    for r in results:
        print(f"    {r.tag_key:<18} {r.profiles:>11,} profiles  +{r.added:,} -{r.removed:,}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", type=int, default=10_000_000)
    ap.add_argument("--events", type=int, default=100_000_000)
    ap.add_argument("--reuse", type=Path, help="a data dir to reuse (built there first when missing)")
    ap.add_argument("--memory-limit", default="12GB")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = args.reuse or Path(tmp) / "data"
        settings = load_settings(store={"duckdb_memory_limit": args.memory_limit, "duckdb_threads": args.threads})
        clock = FrozenClock(NOW.replace(tzinfo=UTC))
        inst = Instance(root, settings=settings, clock=clock)
        cur = inst.analytic.cursor()
        have = cur.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'bench_models_meta'").fetchall()[0][
            0
        ]
        if have:
            row = cur.execute("SELECT profiles, events, orders, observations FROM bench_models_meta").fetchall()[0]
            print(f"reusing {root}: {row[0]:,} profiles, {row[1]:,} events, {row[2]:,} orders")
        else:
            t = time.perf_counter()
            build(cur, args.profiles, args.events)
            print(f"built {args.profiles:,} profiles and {args.events:,} events in {time.perf_counter() - t:.0f} s")
        n, m, o, obs = cur.execute("SELECT profiles, events, orders, observations FROM bench_models_meta").fetchall()[0]
        meta = {"profiles": n, "events": m, "orders": o, "observations": obs}
        oc = cur.execute(
            "SELECT count(*) FROM events WHERE event_id = (SELECT event_id FROM event_names WHERE name = 'Order Completed')"
        ).fetchall()[0][0]
        print(f"{m:,} events ({oc:,} Order Completed), {o:,} orders, {obs:,} observations; "
              f"DuckDB threads {args.threads}, memory limit {args.memory_limit}")  # fmt: skip

        bodies = [
            ("bench_rfm_group", "rfm", {"output": "group"}), ("bench_rfm_score", "rfm", {"output": "score"}),
            ("bench_lifecycle", "lifecycle", {}),
        ]  # fmt: skip
        tags = []
        with inst.operational.session() as s:
            for key, model, params in bodies:
                try:
                    tags.append(tag_catalogue.get_tag(session=s, key=key))
                except tag_catalogue.CatalogueError:
                    body = {"key": key, "name": key, "name_en": key, "category": "value", "kind": "model",
                            "model": {"name": model, "params": params}}  # fmt: skip
                    tags.append(tag_catalogue.create_tag(session=s, body=body, now=clock.now()))
        # start from no values and no model state (a reused store keeps the last run's)
        with inst.analytic.transaction(cur):
            cur.execute("DELETE FROM profile_tags WHERE list_contains($k, tag_key)", {"k": list(KEYS)})
            tag_values.forget_bitmaps(cur, list(KEYS))
            cur.execute("DELETE FROM tag_model_state")
        spent: dict[str, float] = {}
        timed_models(spent)

        wall, results = run(inst, tags, spent, incremental=False)
        report("(a) full run, RFM (group + score) and lifecycle from the events and orders", wall, spent, results)
        full_rfm = spent["rfm"]
        full_wall = wall

        undo = add_day(cur, meta)
        clock.advance(timedelta(days=1))
        print(f"\nadded one day: {undo['events']:,} events, {undo['orders']:,} orders, 1,000 orders refunded")
        wall, results = run(inst, tags, spent, incremental=True)
        report("(b) incremental run one day later", wall, spent, results)
        incr_wall = wall

        base = baseline(cur, inst)
        differ = cur.execute(
            """SELECT count(*) FROM (
                (SELECT profile_idx, grp FROM bench_baseline
                 EXCEPT SELECT profile_idx, value FROM profile_tags WHERE tag_key = 'bench_rfm_group')
                UNION ALL
                (SELECT profile_idx, value FROM profile_tags WHERE tag_key = 'bench_rfm_group'
                 EXCEPT SELECT profile_idx, grp FROM bench_baseline))"""
        ).fetchall()[0][0]
        groups = cur.execute("SELECT grp, count(*) FROM bench_baseline GROUP BY grp ORDER BY 2 DESC").fetchall()
        print(f"\n(c) baseline: hand-written DuckDB SQL for the same RFM groups: {base:.2f} s; "
              f"{sum(g[1] for g in groups):,} buyers, groups differing from the model's: {differ:,}")  # fmt: skip
        print("    " + ", ".join(f"{g} {c:,}" for g, c in groups))
        print(f"    model RFM compute, full (state rebuilt): {full_rfm:.2f} s = {full_rfm / base:.2f}x the baseline; "
              f"incremental: {spent['rfm']:.2f} s = {spent['rfm'] / base:.2f}x")  # fmt: skip
        stages = cur.execute(
            "SELECT value, count(*) FROM profile_tags WHERE tag_key = 'bench_lifecycle' GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall()
        print("    lifecycle: " + ", ".join(f"{v} {c:,}" for v, c in stages))

        remove_day(cur, undo, meta)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"\npeak RSS {peak:,.0f} MiB")
        print(f"SUMMARY full RFM + lifecycle {full_wall:.2f} s (target <= 15 s: {'met' if full_wall <= 15 else 'missed'}); "
              f"daily incremental {incr_wall:.2f} s (target <= 5 s: {'met' if incr_wall <= 5 else 'missed'}); "
              f"baseline RFM SQL {base:.2f} s, model RFM full {full_rfm / base:.2f}x")  # fmt: skip
        assert differ == 0, differ
        cur.close()
        inst.close()


if __name__ == "__main__":
    main()
