"""Order accrual (订单积分) at scale: ``--orders`` (1,000,000) ``Order Completed`` events of
``--profiles`` (200,000) members through :func:`tessera.services.loyalty_orders.process_orders` on the
default SQLite operational store. Target: ≤ 60 s.

Setup (not timed): a fresh data dir whose DuckDB holds the profiles, one observation each
(``identity_links``) and the events (order id, revenue ¥30–¥1,230, channel 天猫 / 小程序 / 门店),
inserted directly in DuckDB as the tag benchmarks do.

Timed: ``process_orders`` until caught up (batches of ``--limit``): each batch reads its orders with
one DuckDB query, computes points in Python and writes ``loyalty_orders``, the ledger and the
accounts with executemany in one SQLite transaction.

Baseline (same process, same data): the hand-written floor — one DuckDB SELECT of the same orders
and an ``executemany`` INSERT of one ledger row per order into a fresh SQLite table (no accounts,
no order records, no idempotency checks).

    .venv/bin/python bench/bench_points.py [--orders 1000000] [--profiles 200000] [--limit 200000] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

from tessera.clock import FrozenClock
from tessera.runtime import Instance
from tessera.services.loyalty_orders import process_orders
from tessera.settings import load_settings

NOW = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)
ROOT = Path("/tmp/tessera-bench-points")


def build(inst: Instance, profiles: int, orders: int) -> None:
    cur = inst.analytic.cursor()
    start = NOW.replace(tzinfo=None)
    cur.execute(
        """INSERT INTO profiles (profile_idx, profile_id, created_at, first_seen, anchor_type, anchor_value, created_key)
        SELECT i, 'p_' || substr(md5('user_id:u' || i), 1, 20), $t, $t, 'user_id', 'u' || i, 'user_id:u' || i
        FROM range(1, $n + 1) r(i)""",
        {"n": profiles, "t": start},
    )
    cur.execute(
        """INSERT INTO identity_links (obs_idx, key_hash, ids_key, ids, first_seen, source_id, origin, profile_idx)
        SELECT i, CAST(i AS UHUGEINT), 'k' || i, [], $t, 1, 'bench', i FROM range(1, $n + 1) r(i)""",
        {"n": profiles, "t": start},
    )
    cur.execute("INSERT INTO event_names (name) VALUES ('Order Completed')")
    cur.execute(
        """INSERT INTO events (message_id, source_id, type, event_id, "timestamp", received_at, revenue, currency,
                               order_id, channel, identity_idx)
        SELECT 'm' || i, 1, 'track', (SELECT event_id FROM event_names WHERE name = 'Order Completed'),
               $t - to_seconds(CAST(hash(i, 1) % (300 * 86400) AS BIGINT)), $t,
               CAST(30 + (hash(i, 2) % 120000) / 100.0 AS DECIMAL(18, 2)), 'CNY', 'o' || i,
               CASE hash(i, 3) % 3 WHEN 0 THEN '天猫' WHEN 1 THEN 'miniprogram' ELSE '门店' END,
               1 + hash(i, 4) % $n
        FROM range($m) r(i)""",
        {"n": profiles, "m": orders, "t": start},
    )
    cur.execute("CHECKPOINT")
    cur.close()


def baseline(inst: Instance, work: Path) -> float:
    """One DuckDB SELECT of the orders + one executemany INSERT of a ledger row per order (SQLite)."""
    path = work / "baseline.sqlite"
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute(
        """CREATE TABLE ledger (id INTEGER PRIMARY KEY, key VARCHAR(200) NOT NULL UNIQUE, profile_id VARCHAR(64) NOT NULL,
        points BIGINT NOT NULL, occurred_at DATETIME NOT NULL)"""
    )
    started = time.perf_counter()
    cur = inst.analytic.cursor()
    rows = cur.execute(
        """SELECT 'order:' || e.order_id, p.profile_id, CAST(floor(e.revenue) AS BIGINT),
                  strftime(e."timestamp", '%Y-%m-%d %H:%M:%S.%f')
        FROM events e JOIN identity_links l ON l.obs_idx = e.identity_idx JOIN profiles p ON p.profile_idx = l.profile_idx"""
    ).fetchall()
    cur.close()
    with con:
        con.executemany("INSERT INTO ledger (key, profile_id, points, occurred_at) VALUES (?, ?, ?, ?)", rows)
    took = time.perf_counter() - started
    con.close()
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--orders", type=int, default=1_000_000)
    ap.add_argument("--profiles", type=int, default=200_000)
    ap.add_argument(
        "--limit", type=int, default=load_settings().loyalty.batch_size, help="orders per batch (default: the setting)"
    )
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    work = ROOT / f"run-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        settings = load_settings(data=work / "data")
        inst = Instance(work / "data", settings=settings, clock=FrozenClock(NOW))
        t0 = time.perf_counter()
        build(inst, args.profiles, args.orders)
        _ = inst.operational
        print(
            f"setup: {args.orders:,} orders of {args.profiles:,} profiles in DuckDB ({time.perf_counter() - t0:.1f} s)"
        )
        base = baseline(inst, work)
        print(f"baseline (DuckDB SELECT + SQLite executemany of one ledger row per order): {base:.1f} s")
        load = os.getloadavg()
        started = time.perf_counter()
        got = process_orders(inst, NOW, limit=args.limit)
        took = time.perf_counter() - started
        load_after = os.getloadavg()
        with inst.operational.session() as s:
            from sqlalchemy import func, select

            from tessera.stores.models import LoyaltyOrderRow, PointsAccountRow, PointsEntryRow

            n_orders = s.scalar(select(func.count()).select_from(LoyaltyOrderRow))
            n_entries = s.scalar(select(func.count()).select_from(PointsEntryRow))
            total = s.scalar(select(func.sum(PointsEntryRow.points)))
            accounts = s.scalar(select(func.sum(PointsAccountRow.balance)))
        assert n_orders == args.orders and n_entries == args.orders and total == accounts, (n_orders, n_entries)
        print(f"process_orders: {args.orders:,} orders in {took:.1f} s ({args.orders / took:,.0f} orders/s, "
              f"{got.batches} batches, {got.points:,} points) — target ≤ 60 s: {'met' if took <= 60 else 'MISSED'}")  # fmt: skip
        print(f"ratio to baseline: {took / base:.2f}×; phases (s): {got.timings}")
        print(f"load average before {load[0]:.2f}, after {load_after[0]:.2f} (cores: {os.cpu_count()})")
        again = process_orders(inst, NOW, limit=args.limit)
        print(f"re-run: {again.orders_new} new orders, {again.seconds:.2f} s")
        inst.close()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
