"""Coupons (优惠券) at scale: one coupon each to a 1,000,000-person audience.

Setup (not timed): a fresh data dir whose analytic store holds ``--people`` synthetic profiles and a
static audience of all of them (inserted into DuckDB directly), and a coupon template (满300减30,
30 days, no stock limit, one per person).

Timed: ``services.coupons.bulk_issue`` on the default SQLite operational store — reading the
audience's current members from DuckDB, then one transaction that locks the template, looks for
replayed keys, counts what each person holds, draws the codes, inserts the coupons and queues a
``Coupon Issued`` event per coupon (``--no-events`` leaves the events out). Target: ≤ 60 s.

Baseline, same process: a hand-written ``sqlite3`` executemany INSERT of the same rows (codes,
keys, profile ids, times) into a fresh table with the coupons table's unique and plain indexes.

    .venv/bin/python bench/bench_coupons.py [--people 1000000] [--no-events] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
from sqlalchemy import func, select

from tessera.domain.coupons import new_codes
from tessera.runtime import Instance
from tessera.services import coupon_issue, coupons
from tessera.stores.models import AudienceRow, CouponRow, LoyaltyEventRow

NOW = datetime(2026, 5, 1, 2, tzinfo=UTC)
BENCH_DIR = Path("/tmp/tessera-bench-coupons")
TARGET_S = 60.0


def build(root: Path, people: int) -> tuple[Instance, str]:
    inst = Instance(root)
    ids = pa.array([f"p_{i:012x}" for i in range(people)], pa.string())
    idx = pa.array(range(1, people + 1), pa.int32())
    naive = NOW.replace(tzinfo=None)
    profiles = pa.table({"profile_idx": idx, "profile_id": ids})
    with inst.analytic.transaction() as cur:
        cur.register("_bench_profiles", profiles)
        cur.execute("INSERT INTO profiles (profile_idx, profile_id, created_at) SELECT profile_idx, profile_id, ? "
                    "FROM _bench_profiles", [naive])  # fmt: skip
        cur.execute("INSERT INTO audience_members SELECT 'bench-all', profile_idx, profile_id, ? FROM _bench_profiles",
                    [naive])  # fmt: skip
        cur.unregister("_bench_profiles")
    inst.analytic.changed("audience_members")
    with inst.operational.session() as s:
        s.add(AudienceRow(id="bench-all", name="全部会员 (bench)", kind="static", definition=None, status="active",
                          version=1, created_at=NOW, updated_at=NOW, refreshed_at=NOW, member_count=people))  # fmt: skip
    coupons.create_template(inst, {"key": "bench", "name": "满300减30", "kind": "threshold", "amount": "30",
                                   "threshold": "300", "valid_days": 30, "code_prefix": "B-", "campaign": "bench"})  # fmt: skip
    return inst, "bench-all"


def baseline(path: Path, people: int) -> float:
    """The floor: sqlite3 executemany of the same rows into a table with the same indexes."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.execute(
        "CREATE TABLE coupons (id INTEGER PRIMARY KEY, code TEXT NOT NULL UNIQUE, key TEXT NOT NULL UNIQUE, "
        "template TEXT NOT NULL, profile_id TEXT NOT NULL, status TEXT NOT NULL, issued_at TEXT NOT NULL, "
        "valid_from TEXT NOT NULL, valid_until TEXT, source TEXT NOT NULL, source_ref TEXT, campaign TEXT)"
    )
    con.execute("CREATE INDEX ix_owner ON coupons (profile_id, template)")
    con.execute("CREATE INDEX ix_template ON coupons (template, status)")
    con.execute("CREATE INDEX ix_expiry ON coupons (status, valid_until)")
    issued, until = "2026-05-01 02:00:00.000000", "2026-05-31 02:00:00.000000"
    started = time.perf_counter()
    codes = new_codes(people, "B-")
    rows = [(code, f"spring:p_{i:012x}", "bench", f"p_{i:012x}", "issued", issued, issued, until, "bulk", "bench-all",
             "bench") for i, code in enumerate(codes)]  # fmt: skip
    with con:
        con.executemany(
            "INSERT INTO coupons (code, key, template, profile_id, status, issued_at, valid_from, valid_until, source, "
            "source_ref, campaign) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
    took = time.perf_counter() - started
    con.close()
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=1_000_000)
    ap.add_argument("--no-events", action="store_true", help="issue without Coupon Issued events")
    ap.add_argument("--keep", action="store_true", help="keep the run directory")
    args = ap.parse_args()
    run = BENCH_DIR / f"run-{os.getpid()}"
    shutil.rmtree(run, ignore_errors=True)
    run.mkdir(parents=True)
    try:
        print(f"load average before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} "
              f"({os.cpu_count()} cores)")  # fmt: skip
        t0 = time.perf_counter()
        inst, audience = build(run / "data", args.people)
        print(f"setup: {args.people:,} profiles and a static audience in {time.perf_counter() - t0:.1f} s")

        started = time.perf_counter()
        people = coupon_issue.audience_profiles(inst, audience)
        read_s = time.perf_counter() - started
        got = coupon_issue.issue_profiles(inst, "bench", people, "spring", NOW, source="bulk", source_ref=audience,
                                     emit_events=not args.no_events)  # fmt: skip
        took = time.perf_counter() - started
        with inst.operational.session() as s:
            stored = s.scalar(select(func.count()).select_from(CouponRow))
            events = s.scalar(select(func.count()).select_from(LoyaltyEventRow))
            distinct = s.scalar(select(func.count(func.distinct(CouponRow.profile_id))))
        assert got["issued"] == stored == distinct == args.people, (got, stored, distinct)
        assert events == (0 if args.no_events else args.people)
        print(f"bulk issue: {args.people:,} coupons{'' if args.no_events else ' + events'} in {took:.1f} s "
              f"(reading the audience {read_s:.1f} s) = {args.people / took:,.0f} coupons/s; target ≤ {TARGET_S:.0f} s: "
              f"{'met' if took <= TARGET_S else 'MISSED'}")  # fmt: skip

        started = time.perf_counter()
        again = coupon_issue.issue_profiles(inst, "bench", people, "spring", NOW, source="bulk", source_ref=audience,
                                       emit_events=not args.no_events)  # fmt: skip
        replay_s = time.perf_counter() - started
        assert again["replayed"] == args.people and again["issued"] == 0
        print(f"replay (same key, nothing new): {replay_s:.1f} s")
        inst.close()

        base = baseline(run / "baseline.sqlite", args.people)
        print(f"baseline: sqlite3 executemany of the same {args.people:,} rows (same indexes) in {base:.1f} s")
        print(f"ratio: bulk issue / baseline = {took / base:.2f}x")
        print(f"load average after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(run, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
