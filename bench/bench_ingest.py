"""Durable /v1/batch ingestion: events/s and p99 latency per 100-event batch.

The server runs in its own process (`tessera serve` on a fresh data dir); this process sends
gzip'd 100-event batches over loopback from several concurrent connections, like real clients.
Baseline, in this same process: the obvious durable way — parse each batch and INSERT it into
DuckDB with a commit per request (what a server without a log would have to do before a 200).
The loader links every message's identifiers (OneID) as it stores them; ``--ids`` picks the
identity mix (see ``identity_of``).

    .venv/bin/python bench/bench_ingest.py [--events 300000] [--concurrency 16] [--ids people|shared]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gzip
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def identity_of(k: int, ids: str) -> tuple[str | None, str]:
    """(userId, anonymousId) of the k-th event.

    ``people`` (default): 50,000 members, each on one or two devices of their own, a third of the
    events sent before signing in (anonymous only) — what OneID sees from real clients.
    ``shared``: the Foundation step's ids, member k % 50,000 on device k % 80,000 — every device
    shared by five members and every member on eight devices, so that nearly every message is a
    new conflicting identity (a stress test of linking, not a realistic stream).
    """
    if ids == "shared":
        return f"member-{k % 50_000}", f"anon-{k % 80_000}"
    member = (k * 7919) % 50_000
    device = f"anon-{member}-{(k // 50_000) % 2}"
    return (None if k % 3 == 0 else f"member-{member}"), device


def make_batches(n_events: int, size: int = 100, ids: str = "people") -> list[bytes]:
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    batches = []
    for b in range(n_events // size):
        msgs = []
        for i in range(size):
            k = b * size + i
            user_id, anonymous_id = identity_of(k, ids)
            msgs.append(
                {
                    "type": "track",
                    "event": ("Product Viewed", "Product Added", "Order Completed")[k % 3],
                    "userId": user_id,
                    "anonymousId": anonymous_id,
                    "messageId": str(uuid.uuid4()),
                    "timestamp": now,
                    "properties": {"product_id": f"SKU{k % 500}", "price": 299.0, "revenue": 299.0, "城市": "杭州"},
                    "context": {"library": {"name": "analytics-python", "version": "2.4.0"}, "ip": "10.0.0.1"},
                    "integrations": {},
                }
            )
        batches.append(json.dumps({"batch": msgs, "sentAt": now}).encode())
    return batches


async def send_all(url: str, key: str, bodies: list[bytes], concurrency: int) -> tuple[float, list[float]]:
    """Send every body as a prebuilt HTTP/1.1 request over keep-alive connections (a light client)."""
    host, port = url.removeprefix("http://").split(":")
    auth = base64.b64encode(f"{key}:".encode()).decode()
    requests: asyncio.Queue[bytes] = asyncio.Queue()
    for b in bodies:
        gz = gzip.compress(b, 1)
        head = (
            f"POST /v1/batch HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Type: application/json\r\nContent-Encoding: gzip\r\nContent-Length: {len(gz)}\r\n\r\n"
        )
        requests.put_nowait(head.encode() + gz)
    latencies: list[float] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while True:
                try:
                    req = requests.get_nowait()
                except asyncio.QueueEmpty:
                    return
                t0 = time.perf_counter()
                writer.write(req)
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                body = await reader.readexactly(length)
                latencies.append(time.perf_counter() - t0)
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(f"{head[:40]!r} {body[:200]!r}")
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - t0, latencies


def baseline(bodies: list[bytes], path: Path) -> float:
    """Parse each batch and insert it into DuckDB with a commit per request."""
    con = duckdb.connect(str(path))
    con.execute(
        "CREATE TABLE ev (message_id VARCHAR, event VARCHAR, user_id VARCHAR, anonymous_id VARCHAR, "
        "ts TIMESTAMP, properties JSON)"
    )
    t0 = time.perf_counter()
    for body in bodies:
        rows = [
            (m["messageId"], m["event"], m["userId"], m["anonymousId"], m["timestamp"], json.dumps(m["properties"]))
            for m in json.loads(body)["batch"]
        ]
        con.executemany("INSERT INTO ev VALUES (?, ?, ?, ?, ?, ?)", rows)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=300_000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--ids", choices=["people", "shared"], default="people", help="identity mix (see identity_of)")
    ap.add_argument("--baseline-events", type=int, default=20_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tessera-bench-ingest-"))
    data = tmp / "data"
    exe = [sys.executable, "-m", "tessera.cli.main"]
    env = {**os.environ, "TESSERA_DATA": str(data)}
    key = json.loads(
        subprocess.check_output([*exe, "source", "create", "bench", "--kind", "server", "--json"], env=env)
    )["write_key"]
    port = free_port()
    server = subprocess.Popen([*exe, "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        bodies = make_batches(args.events, ids=args.ids)
        asyncio.run(send_all(url, key, bodies[:50], 4))  # warm up
        cpu0 = time.process_time()
        elapsed, lat = asyncio.run(send_all(url, key, bodies, args.concurrency))
        client_cpu = (time.process_time() - cpu0) / elapsed
        lat.sort()
        p50 = lat[len(lat) // 2] * 1000
        p99 = lat[int(len(lat) * 0.99)] * 1000
        eps = len(bodies) * 100 / elapsed
        token = json.loads((data / "server.json").read_text())["admin_token"]
        t0 = time.perf_counter()
        httpx.post(f"{url}/v1/admin/flush", headers={"Authorization": f"Bearer {token}"}, timeout=600)
        drain = time.perf_counter() - t0
        stats = httpx.get(f"{url}/v1/admin/stats", headers={"Authorization": f"Bearer {token}"}).json()
    finally:
        server.terminate()
        server.wait(60)
    stored = stats["totals"]["events"]
    base_bodies = bodies[: args.baseline_events // 100]
    base_s = baseline(base_bodies, tmp / "baseline.duckdb")
    base_eps = len(base_bodies) * 100 / base_s
    print(f"durable /v1/batch ingestion: {eps:,.0f} events/s over {len(bodies):,} batches of 100 "
          f"({args.concurrency} connections); p50 {p50:.1f} ms, p99 {p99:.1f} ms per batch")  # fmt: skip
    print(f"the sending process used {client_cpu:.0%} of a core while sending (of this machine's {os.cpu_count()})")
    print(f"loader drained the rest in {drain:.2f} s; stored {stored:,} distinct events of {len(bodies) * 100:,}")
    print(f"baseline (parse + DuckDB INSERT, commit per batch, in-process): {base_eps:,.0f} events/s")
    print(f"ratio ours / baseline: {eps / base_eps:.1f}x")
    print(f"targets: >= 50,000 events/s -> {'met' if eps >= 50_000 else 'MISSED'}; "
          f"p99 <= 50 ms -> {'met' if p99 <= 50 else 'MISSED'}")  # fmt: skip


if __name__ == "__main__":
    main()
