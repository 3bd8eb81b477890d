"""The demo brand end to end: generate → import → live messages → serve, timed per stage.

Target: 100,000 people generated, loaded and served in ≤ 60 s on a 2-core machine.
Baselines, in this same process, on the same files:

* generation vs. copying the generated Parquet files with DuckDB (``COPY (SELECT * FROM
  read_parquet(...)) TO ...``): the cost of just writing those rows, without making them up;
* import vs. a bare DuckDB bulk load (``CREATE TABLE AS SELECT * FROM read_parquet(...)``): no
  typing, no checks, no rejects, no de-duplication, no profiles.

    .venv/bin/python bench/bench_demo.py [--users 100000] [--seed 42] [--live 2000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx

ROOT = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_start(data_dir: Path) -> float:
    """Seconds from starting ``tessera serve`` on the loaded data dir until /healthz answers."""
    port = free_port()
    env = {**os.environ, "TESSERA_LOG_LEVEL": "warning"}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tessera.cli.main", "serve", "--data-dir", str(data_dir), "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return time.perf_counter() - started
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError("tessera serve exited early")
            time.sleep(0.05)
        raise RuntimeError("tessera serve did not answer within 120 s")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--live", type=int, default=2_000)
    parser.add_argument("--keep", action="store_true", help="keep the data dir and print its path")
    args = parser.parse_args()

    from tessera.demo import load
    from tessera.demo.generate import generate
    from tessera.demo.live import live_messages
    from tessera.runtime import Instance

    work = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    data_dir = work / "data"
    stages: dict[str, float] = {}
    try:
        instance = Instance(data_dir)
        now = datetime.now(UTC)
        t = time.perf_counter()
        files = generate(users=args.users, seed=args.seed, out_dir=data_dir / load.FILES_DIR, now=now)
        stages["generate"] = time.perf_counter() - t

        t = time.perf_counter()
        sources = load.ensure_sources(instance, now)
        reports = load.import_files(instance, files, sources, now=now)
        stages["import"] = time.perf_counter() - t

        t = time.perf_counter()
        messages = live_messages(users=args.users, seed=args.seed, now=now, count=args.live)
        accepted = load.send_live_in_process(instance, messages, sources[load.LIVE_SOURCE])
        stages["live"] = time.perf_counter() - t
        instance.close()

        stages["serve start"] = serve_start(data_dir)
        total = sum(stages.values())

        # Baselines on the same files, same process.
        parquet = sorted(p for p in files.out_dir.iterdir() if p.suffix == ".parquet" and p.name != "truth.parquet")
        con = duckdb.connect(str(work / "baseline.duckdb"))
        t = time.perf_counter()
        for p in parquet:
            con.execute(f"COPY (SELECT * FROM read_parquet('{p}')) TO '{work / ('copy_' + p.name)}' (FORMAT parquet)")
        copy_seconds = time.perf_counter() - t
        t = time.perf_counter()
        for i, p in enumerate(parquet):
            con.execute(f"CREATE TABLE t{i} AS SELECT * FROM read_parquet('{p}')")
        ctas_seconds = time.perf_counter() - t
        con.close()
    finally:
        if args.keep:
            print(f"data dir kept: {data_dir}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    c = files.counts
    rows = sum(r.rows_stored for r in reports)
    print(f"demo brand: {args.users:,} people, seed {args.seed} — {c['customers']:,} members, {c['orders']:,} orders, "
          f"{c['order_items']:,} lines, {c['reviews']:,} reviews, {c['events']:,} events; {accepted:,} live messages")  # fmt: skip
    print(f"{'stage':<14}{'seconds':>9}")
    for name, seconds in stages.items():
        print(f"{name:<14}{seconds:>9.1f}")
    print(
        f"{'total':<14}{total:>9.1f}   target ≤ {TARGET_SECONDS:.0f} s: {'met' if total <= TARGET_SECONDS else 'MISSED'}"
    )
    print(f"import: {rows:,} rows stored, {rows / stages['import']:,.0f} rows/s; "
          f"events {c['events'] / max(sum(r.seconds for r in reports if r.kind == 'events'), 1e-9):,.0f} rows/s")  # fmt: skip
    print(f"baseline DuckDB COPY of the same Parquet files: {copy_seconds:.1f} s → generate / copy = "
          f"{stages['generate'] / copy_seconds:.1f}×")  # fmt: skip
    print(f"baseline DuckDB CREATE TABLE AS read_parquet: {ctas_seconds:.1f} s → import / bare load = "
          f"{stages['import'] / ctas_seconds:.1f}×")  # fmt: skip


if __name__ == "__main__":
    main()
