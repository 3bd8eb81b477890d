"""File import: rows/s for 1M orders and 1M events, from Parquet and from CSV.

Each run imports into a fresh data dir through ``import_file`` (read → type and check every value →
de-duplicate → store in one transaction with its ``import_runs`` row; events also link profiles).
Baselines, in this same process and on the same file: DuckDB's own bulk load into a fresh database
with the same settings — ``CREATE TABLE t AS SELECT * FROM read_parquet(…)`` / ``read_csv(…)`` —
which neither checks, nor converts, nor de-duplicates; and a bare ``INSERT INTO orders/events
SELECT … FROM read_parquet(…)`` into Tessera's own table (its primary key, its 20-28 columns), the
floor for storing. A second import of the same file (everything a duplicate) is timed too. Best of
``--repeat`` runs each.

    .venv/bin/python bench/bench_import.py [--rows 1000000] [--kinds orders,events] [--repeat 2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb

from tessera.services.imports import import_file
from tessera.stores.analytic import AnalyticStore

NOW = datetime(2026, 1, 15, tzinfo=UTC)

ORDERS = """
SELECT 'T' || lpad(i::VARCHAR, 9, '0') AS order_id,
       'c' || (i % 200000)::VARCHAR AS customer_id,
       ['tmall', 'jd', 'app', 'store'][1 + i % 4] AS channel,
       ['paid', 'shipped', 'refunded'][1 + i % 3] AS status,
       TIMESTAMP '2025-01-01' + to_seconds(i * 17) AS ordered_at,
       round(19 + (i % 9973) * 1.37, 2)::DECIMAL(18, 2) AS total,
       'CNY' AS currency,
       ['', '尽快发货', '礼盒包装'][1 + i % 3] AS buyer_note
FROM range({rows}) t(i)
"""
EVENTS = """
SELECT 'm' || lpad(i::VARCHAR, 10, '0') AS message_id, 'track' AS type,
       ['Product Viewed', 'Product Added', 'Order Completed', 'Coupon Claimed'][1 + i % 4] AS event,
       'u' || (i % 100000)::VARCHAR AS user_id,
       TIMESTAMP '2025-01-01' + to_seconds(i * 3) AS timestamp,
       CASE WHEN i % 4 = 2 THEN round((i % 9973) * 1.37, 2)::DECIMAL(18, 2) END AS revenue,
       'SKU' || (i % 5000)::VARCHAR AS product_id,
       ['app', 'web', 'miniprogram'][1 + i % 3] AS platform
FROM range({rows}) t(i)
"""
QUERIES = {"orders": ORDERS, "events": EVENTS}


def make_files(folder: Path, kind: str, rows: int) -> dict[str, Path]:
    con = duckdb.connect()
    con.execute(f"CREATE TABLE t AS {QUERIES[kind].format(rows=int(rows))}")
    out = {"parquet": folder / f"{kind}.parquet", "csv": folder / f"{kind}.csv"}
    con.execute(f"COPY t TO '{out['parquet']}' (FORMAT parquet)")
    con.execute(f"COPY t TO '{out['csv']}' (HEADER)")
    con.close()
    return out


def best(repeat: int, run: Callable[[Path], float]) -> float:
    times = []
    for _ in range(repeat):
        folder = Path(tempfile.mkdtemp(prefix="bench-import-"))
        try:
            times.append(run(folder))
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return min(times)


def baseline(path: Path, fmt: str) -> Callable[[Path], float]:
    def run(folder: Path) -> float:
        # The analytic store's own settings (it checkpoints at 256 MB, not at every big commit).
        con = duckdb.connect(str(folder / "baseline.duckdb"), config={"checkpoint_threshold": "256MB"})
        reader = "read_parquet" if fmt == "parquet" else "read_csv"
        start = time.perf_counter()
        con.execute(f"CREATE TABLE t AS SELECT * FROM {reader}(?)", [str(path)])
        elapsed = time.perf_counter() - start
        con.close()
        return elapsed

    return run


FLOOR_INSERTS = {
    "orders": "INSERT INTO orders (order_id, customer_id, channel, status, ordered_at, total, currency) "
    "SELECT order_id, customer_id, channel, status, ordered_at, total, currency FROM {reader}(?)",
    "events": "INSERT INTO events (message_id, source_id, type, user_id, timestamp, received_at, revenue, product_id) "
    "SELECT message_id, 0, type::message_type, user_id, timestamp, now()::TIMESTAMP, revenue, product_id FROM {reader}(?)",
}


def table_floor(path: Path, fmt: str, kind: str) -> Callable[[Path], float]:
    """The same file INSERTed straight into Tessera's own table (its key, its width), in one transaction:
    the storage cost an importer cannot go below, without any checking."""

    def run(folder: Path) -> float:
        store = AnalyticStore(folder / "analytics.duckdb")
        try:
            sql = FLOOR_INSERTS[kind].format(reader="read_parquet" if fmt == "parquet" else "read_csv")
            start = time.perf_counter()
            with store.transaction() as cur:
                cur.execute(sql, [str(path)])
            return time.perf_counter() - start
        finally:
            store.close()

    return run


def ours(path: Path, kind: str, *, twice: bool = False) -> Callable[[Path], float]:
    def run(folder: Path) -> float:
        store = AnalyticStore(folder / "analytics.duckdb")
        try:
            kw = {"store": store, "kind": kind, "path": path, "now": NOW, "rejects_dir": folder / "rejects"}
            report = import_file(**kw)  # type: ignore[arg-type]
            assert report.rows_stored == report.rows_read, report
            if not twice:
                return report.seconds
            again = import_file(**kw)  # type: ignore[arg-type]
            assert again.rows_stored == 0 and again.rows_duplicate == again.rows_read, again
            return again.seconds
        finally:
            store.close()

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--kinds", default="orders,events")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-import-files-"))
    try:
        for kind in args.kinds.split(","):
            files = make_files(work, kind, args.rows)
            sizes = ", ".join(f"{fmt} {p.stat().st_size / 1e6:.0f} MB" for fmt, p in files.items())
            print(f"{kind}: {args.rows:,} rows ({sizes})")
            for fmt, path in files.items():
                base = best(args.repeat, baseline(path, fmt))
                floor = best(args.repeat, table_floor(path, fmt, kind))
                first = best(args.repeat, ours(path, kind))
                again = best(args.repeat, ours(path, kind, twice=True))
                n = args.rows
                print(
                    f"  {fmt:8} {n / first:>11,.0f} rows/s ({first:.2f} s): {base / first:.2f}x DuckDB bulk load "
                    f"({n / base:,.0f} rows/s), {floor / first:.2f}x a bare INSERT into the {kind} table "
                    f"({n / floor:,.0f} rows/s); re-import, all duplicates: {n / again:,.0f} rows/s ({again:.2f} s)"
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
