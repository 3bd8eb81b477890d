"""A 200 means the events are on disk: kill -9 right after loses nothing; a restart stores nothing twice."""

from __future__ import annotations

import gzip
import json
import threading
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from tests.conftest import ServerProcess

pytestmark = pytest.mark.slow


def _batch(n: int, size: int = 100) -> bytes:
    msgs = [
        {"type": "track", "event": "Checked In", "userId": f"member-{(n * size + i) % 997}",
         "messageId": f"b{n}-m{i}", "properties": {"积分": 5, "n": n}}
        for i in range(size)
    ]  # fmt: skip
    return gzip.compress(json.dumps({"batch": msgs}, ensure_ascii=False).encode())


def _stored_ids(data_dir: Path) -> list[str]:
    con = duckdb.connect(str(data_dir / "analytics.duckdb"), read_only=True)
    try:
        return [r[0] for r in con.execute("SELECT message_id FROM events").fetchall()]
    finally:
        con.close()


def test_kill_9_after_acknowledged_batches_loses_nothing_and_restart_stores_nothing_twice(
    data_dir: Path, write_key: str
) -> None:
    server = ServerProcess(data_dir).start()
    acked: list[int] = []
    lock = threading.Lock()
    enough = threading.Event()
    counter = iter(range(10_000))

    def sender() -> None:
        with httpx.Client(base_url=server.url, auth=(write_key, ""), timeout=10) as c:
            while True:
                with lock:
                    n = next(counter)
                try:
                    r = c.post("/v1/batch", content=_batch(n), headers={"Content-Encoding": "gzip"})
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 200:
                    with lock:
                        acked.append(n)
                        if len(acked) >= 200:
                            enough.set()

    threads = [threading.Thread(target=sender) for _ in range(4)]
    for t in threads:
        t.start()
    assert enough.wait(120), server.output()
    server.kill9()  # while the senders are still sending and the loader is loading
    for t in threads:
        t.join(30)
    with lock:
        acknowledged = {f"b{n}-m{i}" for n in acked for i in range(100)}
        attempted = next(counter)
    assert len(acknowledged) >= 20_000

    server = ServerProcess(data_dir).start()  # recovers the log before taking traffic
    try:
        server.flush()
        stats = server.admin("GET", "/v1/admin/stats").json()
        stored = stats["totals"]["events"]
        assert stored >= len(acknowledged)  # nothing acknowledged was lost
        # resend every batch (as clients retry the ones they never heard back about)
        with httpx.Client(base_url=server.url, auth=(write_key, ""), timeout=30) as c:
            for n in range(attempted):
                r = c.post("/v1/batch", content=_batch(n), headers={"Content-Encoding": "gzip"})
                assert r.status_code == 200
        server.flush()
        assert server.admin("GET", "/v1/admin/stats").json()["totals"]["events"] == attempted * 100
    finally:
        assert server.stop() == 0
    ids = _stored_ids(data_dir)
    assert len(ids) == len(set(ids)) == attempted * 100  # nothing twice
    assert acknowledged <= set(ids)


def test_graceful_stop_loads_everything_and_restart_is_clean(data_dir: Path, write_key: str) -> None:
    server = ServerProcess(data_dir).start()
    with httpx.Client(base_url=server.url, auth=(write_key, ""), timeout=10) as c:
        for n in range(30):
            assert c.post("/v1/batch", content=_batch(n), headers={"Content-Encoding": "gzip"}).status_code == 200
    assert server.stop() == 0
    assert not (data_dir / "server.json").exists()
    ids: list[Any] = _stored_ids(data_dir)
    assert len(ids) == len(set(ids)) == 3000
