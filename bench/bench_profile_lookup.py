"""Profile lookup with timeline: p50 / p99 on a store of 1,000,000 profiles.

Builds a synthetic store in SQL (each profile: a user id, a phone and an anonymous id in two
observations; ~20 events and ~2 orders per profile), then times random lookups by phone:

* **lookup + timeline** — ``find_profile`` (phone normalised, unique index) + the profile's
  observations + the first timeline page of 50 events (the issue's target: p99 ≤ 50 ms);
* **full 360°** — ``profile_360``: also attributes (live), identities, orders, merge history;
* **baseline** — one hand-written SQL statement on the same engine returning the same 50 events
  (identifier → profile → observations → events joined in one query).

    .venv/bin/python bench/bench_profile_lookup.py [--profiles 1000000] [--events-per 20] [--lookups 300]
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from tessera.domain.identity import default_rules
from tessera.services import profile_view
from tessera.stores.analytic import migrate


def build(con: duckdb.DuckDBPyConnection, profiles: int, events_per: int) -> None:
    n = profiles
    con.execute("SET threads = 2")
    con.execute(
        f"""INSERT INTO profiles (profile_idx, profile_id, created_at, first_seen, last_seen, anchor_type, anchor_value,
                                   created_seen, created_key)
        SELECT i, 'p_' || substr(md5('anonymous_id:a' || i), 1, 20), now()::TIMESTAMP, TIMESTAMP '2024-01-01',
               TIMESTAMP '2024-01-01', 'anonymous_id', 'a' || i, TIMESTAMP '2024-01-01', 'anonymous_id:a' || i
        FROM range(1, {n + 1}) t(i)"""
    )
    con.execute(
        f"""INSERT INTO profile_identifiers
        SELECT t, v, i, 1, TIMESTAMP '2024-01-01', NULL, TIMESTAMP '2024-01-01' FROM (
            SELECT i, 'anonymous_id' AS t, 'a' || i AS v FROM range(1, {n + 1}) r(i)
            UNION ALL SELECT i, 'user_id', 'M' || lpad(i::VARCHAR, 8, '0') FROM range(1, {n + 1}) r(i)
            UNION ALL SELECT i, 'phone', '+86138' || lpad(i::VARCHAR, 8, '0') FROM range(1, {n + 1}) r(i))"""
    )
    con.execute(
        f"""INSERT INTO identity_links (obs_idx, key_hash, ids_key, ids, first_seen, source_id, origin, profile_idx)
        SELECT o, md5_number(k), k, [], TIMESTAMP '2024-01-01', 1, 'm', i FROM (
            SELECT 2 * i - 1 AS o, i, 'anonymous_id:a' || i AS k FROM range(1, {n + 1}) r(i)
            UNION ALL SELECT 2 * i, i, 'user_id:M' || i FROM range(1, {n + 1}) r(i))"""
    )
    con.execute(
        f"""INSERT INTO events (message_id, source_id, type, event_id, user_id, anonymous_id, "timestamp", received_at,
                                revenue, properties, identity_idx)
        SELECT 'e' || j, 1, 'track', 1 + j % 12, NULL, NULL,
               TIMESTAMP '2024-01-01' + to_seconds(j * 3), TIMESTAMP '2024-01-01' + to_seconds(j * 3),
               NULL, '{{"product_id":"SKU-' || (j % 997) || '"}}', 1 + (hash(j) % {2 * n})::BIGINT
        FROM range({n * events_per}) t(j)"""
    )
    con.execute("INSERT INTO event_names (name) SELECT 'Event ' || i FROM range(12) t(i)")
    con.execute(
        f"""INSERT INTO orders (order_id, customer_id, source_id, channel, status, ordered_at, total, currency,
                                identity_idx)
        SELECT 'o' || j, NULL, 1, 'app', 'paid', TIMESTAMP '2024-01-01' + to_seconds(j * 29),
               (19 + j % 997)::DECIMAL(18,2), 'CNY', 2 * (1 + hash(j) % {n})::BIGINT
        FROM range({n * 2}) t(j)"""
    )
    con.execute("CHECKPOINT")


def timed(fn: Callable[[int], object], picks: list[int]) -> tuple[float, float]:
    fn(picks[0])  # warm
    times = []
    for p in picks:
        t = time.perf_counter()
        fn(p)
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(len(times) * 0.99))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", type=int, default=1_000_000)
    ap.add_argument("--events-per", type=int, default=20)
    ap.add_argument("--lookups", type=int, default=300)
    args = ap.parse_args()
    rules = default_rules()
    with tempfile.TemporaryDirectory() as tmp:
        con = duckdb.connect(str(Path(tmp) / "lookup.duckdb"))
        migrate(con)
        t = time.perf_counter()
        build(con, args.profiles, args.events_per)
        print(f"built {args.profiles:,} profiles, {args.profiles * args.events_per:,} events, "
              f"{args.profiles * 2:,} orders in {time.perf_counter() - t:.1f} s")  # fmt: skip
        cur = con.cursor()
        picks = [random.Random(7).randrange(1, args.profiles + 1) for _ in range(args.lookups)]

        def phone(i: int) -> str:
            return f"phone:138 {i // 10000 % 10000:04d} {i % 10000:04d}"  # written the way people type it

        def lookup(i: int) -> object:
            ref = profile_view.find_profile(cur, rules=rules, identifier=phone(i))
            assert ref is not None
            obs = profile_view.observations(cur, profile_idx=ref.profile_idx)
            return profile_view.timeline(cur, obs=obs, source_names={1: "app"}, limit=50)

        def full(i: int) -> object:
            ref = profile_view.find_profile(cur, rules=rules, identifier=phone(i))
            assert ref is not None
            return profile_view.profile_360(cur, ref=ref, rules=rules, source_names={1: "app"})

        baseline_sql = """
            SELECT e.message_id, e.type, n.name, e."timestamp", e.source_id, e.channel, e.revenue, e.order_id,
                   e.product_id, e.properties
            FROM profile_identifiers i JOIN identity_links l ON l.profile_idx = i.profile_idx
            JOIN events e ON e.identity_idx = l.obs_idx LEFT JOIN event_names n USING (event_id)
            WHERE i.id_type = 'phone' AND i.id_value = ?
            ORDER BY e."timestamp" DESC, e.message_id DESC LIMIT 50"""

        def baseline(i: int) -> object:
            return cur.execute(baseline_sql, [f"+86138{i:08d}"]).fetchall()

        b50, b99 = timed(baseline, picks)
        l50, l99 = timed(lookup, picks)
        f50, f99 = timed(full, picks[: max(20, len(picks) // 3)])
        print(f"baseline (one hand-written SQL): p50 {b50:.1f} ms  p99 {b99:.1f} ms")
        print(f"lookup + timeline:               p50 {l50:.1f} ms  p99 {l99:.1f} ms  ({l99 / b99:.2f}x baseline p99)")
        print(f"full 360° view:                  p50 {f50:.1f} ms  p99 {f99:.1f} ms")
        verdict = "met" if l99 <= 50 else f"missed by {l99 - 50:.0f} ms"
        print(f"SUMMARY lookup+timeline p99 {l99:.1f} ms on {args.profiles:,} profiles (target ≤ 50 ms: {verdict})")
        con.close()


if __name__ == "__main__":
    main()
