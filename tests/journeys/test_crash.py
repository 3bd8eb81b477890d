"""Durable execution: ``kill -9`` the real server in the middle of a campaign and start it again.

Nobody is skipped and nobody gets two messages: every message carries its idempotency key as the
provider's ``message_id`` (the provider, in its own process, keeps the unique ones), the journey
state and the outbox are committed together, and rows caught ``sending`` go again under the same
key after the restart."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tessera.api.server import send_batches
from tests.conftest import ServerProcess, make_source
from tests.fakes.sms_provider import read_record

N = 1200
ENV = {
    "TESSERA_JOURNEYS_QUIET_HOURS": "",
    "TESSERA_JOURNEYS_CAP_SMS": "",
    "TESSERA_JOURNEYS_RATE_PER_SECOND": "150",  # slow enough that the kill lands mid-run
    "TESSERA_JOURNEYS_DISPATCH_BATCH": "50",
    "TESSERA_JOURNEYS_WORKER_INTERVAL_SECONDS": "0.05",
}


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    record = tmp_path / "sms.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "tests.fakes.sms_provider", "--api-key", "k", "--record", str(record)],
                            stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2])  # fmt: skip
    assert proc.stdout is not None
    url = json.loads(proc.stdout.readline())["url"]
    try:
        yield url, record
    finally:
        proc.terminate()
        proc.wait(30)
        proc.stdout.close()


def wait_for(check: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_mid_campaign_neither_skips_nor_sends_twice(tmp_path: Path, provider: tuple[str, Path]) -> None:
    url, record = provider
    data = tmp_path / "data"
    data.mkdir()
    key = make_source(data)
    server = ServerProcess(data, env=ENV).start()
    try:
        people = [{"type": "identify", "userId": f"m{i}", "messageId": f"id-{i}",
                   "traits": {"name": f"会员{i}", "phone": f"+86139{i:08d}"}} for i in range(N)]  # fmt: skip
        assert send_batches(server.url, key, people) == N
        server.flush()
        r = server.admin("POST", "/v1/admin/channels", json={"name": "sms", "kind": "sms",
                                                            "config": {"url": url, "from": "TESSERA", "api_key": "k"}})  # fmt: skip
        assert r.status_code == 201, r.text
        r = server.admin("POST", "/v1/admin/audiences", json={
            "name": "全部会员", "kind": "static", "definition": {"type": "has_identifier", "id_types": ["phone"]}})  # fmt: skip
        assert r.status_code in (200, 201), r.text
        audience = r.json()["id"]
        r = server.admin("POST", "/v1/admin/journeys/campaigns", json={
            "name": "双十二预热", "audience_id": audience, "channel": "sms",
            "template": {"body": {"zh": "{{ profile.name }}，双十二预热开始！"}}})  # fmt: skip
        assert r.status_code == 201, r.text
        wait_for(lambda: len(read_record(record)) >= N // 4, 120, "a quarter of the messages")
        server.kill9()
        before = len(read_record(record))
        assert before < N, "the campaign finished before the kill; slow it down"
        server = ServerProcess(data, env=ENV).start()
        wait_for(lambda: len(read_record(record)) >= N, 180, "every message after the restart")
        time.sleep(0.5)  # nothing more may arrive: give a straggler the chance to show up
        got = read_record(record)
        per_phone = Counter(m["to"] for m in got)
        assert len(got) == N and len(per_phone) == N and set(per_phone.values()) == {1}
        assert all(m["body"].endswith("，双十二预热开始！") and m["body"].startswith("会员") for m in got)
        report = server.admin("GET", f"/v1/admin/journeys/{r.json()['id']}/messages", params={"limit": 1000})
        assert report.status_code == 200
        health = httpx.get(server.url + "/healthz", timeout=10).json()
        assert health["journey_worker_error"] is None
    finally:
        server.stop()
