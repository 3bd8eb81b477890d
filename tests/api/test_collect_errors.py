"""Bad input gets a clear status and body; the server stays up and stores nothing wrong."""

from __future__ import annotations

import gzip
import json
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess, make_source

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, str]]:
    d = tmp_path_factory.mktemp("errors") / "data"
    d.mkdir()
    key = make_source(d, "微信小程序", "wechat_miniprogram")
    proc = ServerProcess(d).start()
    yield proc, key
    proc.stop()


def post(srv: tuple[ServerProcess, str], path: str, body: Any, *, key: str | None = "", gz: bool = False,
         headers: dict[str, str] | None = None) -> httpx.Response:  # fmt: skip
    server, write_key = srv
    raw = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    h = {"Content-Type": "application/json", **(headers or {})}
    if gz:
        raw = gzip.compress(raw)
        h["Content-Encoding"] = "gzip"
    auth = None if key is None else ((key or write_key), "")
    r = httpx.post(server.url + path, content=raw, headers=h, auth=auth, timeout=30)
    assert server.alive(), "the server must stay up"
    return r


def msg(**kw: Any) -> dict[str, Any]:
    return {"type": "track", "event": "Product Viewed", "userId": "u1", "messageId": uuid.uuid4().hex, **kw}


def test_missing_or_unknown_write_key_is_401(srv: tuple[ServerProcess, str]) -> None:
    r = post(srv, "/v1/batch", {"batch": [msg()]}, key=None)
    assert r.status_code == 401 and r.json()["error"] == "unauthorized" and "write key" in r.json()["message"]
    r = post(srv, "/v1/batch", {"batch": [msg()]}, key="wk_not_a_key")
    assert r.status_code == 401
    r = post(srv, "/v1/track", msg(), key="wk_not_a_key")
    assert r.status_code == 401


def test_write_key_in_body_is_accepted(srv: tuple[ServerProcess, str]) -> None:
    r = post(srv, "/v1/batch", {"batch": [msg()], "writeKey": srv[1]}, key=None)
    assert r.status_code == 200 and r.json()["accepted"] == 1


def test_invalid_json_is_400(srv: tuple[ServerProcess, str]) -> None:
    r = post(srv, "/v1/batch", b'{"batch": [', key="")
    assert r.status_code == 400 and r.json()["error"] == "invalid_json"
    r = post(srv, "/v1/track", b"{not json", key="")
    assert r.status_code == 400
    r = post(srv, "/v1/batch", {"batch": "nope"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_batch"
    r = post(srv, "/v1/batch", b"\x1f\x8b garbage", headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_gzip"


def test_unsupported_encoding_is_415(srv: tuple[ServerProcess, str]) -> None:
    r = post(srv, "/v1/batch", {"batch": [msg()]}, headers={"Content-Encoding": "br"})
    assert r.status_code == 415 and "gzip" in r.json()["message"]


def test_too_large_message_and_batch_are_413(srv: tuple[ServerProcess, str]) -> None:
    big = msg(properties={"blob": "x" * 33_000})
    r = post(srv, "/v1/track", big)
    assert r.status_code == 413 and "32,768" in r.json()["message"]
    # a batch of 20 messages of 30 KB: each fine, together over 500 KB after decompression
    batch = {"batch": [msg(properties={"blob": "y" * 30_000}) for _ in range(20)]}
    r = post(srv, "/v1/batch", batch, gz=True)
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    r = post(srv, "/v1/batch", {"batch": [msg() for _ in range(2501)]}, gz=True)
    assert r.status_code == 413 and "2,500" in r.json()["message"]


def test_gzip_bomb_is_refused_without_inflating_it(srv: tuple[ServerProcess, str]) -> None:
    bomb = gzip.compress(b'{"batch": [' + b" " * 200_000_000 + b"]}", compresslevel=9)
    assert len(bomb) < 400_000
    t0 = time.monotonic()
    r = post(srv, "/v1/batch", bomb, headers={"Content-Encoding": "gzip"})
    assert r.status_code == 413 and "inflates" in r.json()["message"]
    assert time.monotonic() - t0 < 2


def test_bad_messages_go_to_dead_letters_and_do_not_sink_the_batch(srv: tuple[ServerProcess, str]) -> None:
    server, _ = srv
    good = [msg(userId="dl-good-1"), msg(userId="dl-good-2", type="identify", traits={"name": "李雷"})]
    bad = [
        {"type": "track", "event": "X", "messageId": "dl-no-id"},  # no userId nor anonymousId
        msg(type="teleport", messageId="dl-type"),
        msg(timestamp="yesterday-ish", messageId="dl-ts"),
        msg(properties="not an object", messageId="dl-props"),
        msg(event=42, messageId="dl-event"),
        msg(properties={"revenue": "lots"}, messageId="dl-revenue"),
        "a string, not a message",
    ]
    r = post(srv, "/v1/batch", {"batch": good[:1] + bad + good[1:]})
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 2 and body["rejected"] == len(bad)
    fields = {e["messageId"]: e["field"] for e in body["errors"] if e["messageId"]}
    assert fields == {
        "dl-no-id": "userId", "dl-type": "type", "dl-ts": "timestamp", "dl-props": "properties",
        "dl-event": "event", "dl-revenue": "properties.revenue",
    }  # fmt: skip
    server.flush()
    dead = server.admin("GET", "/v1/admin/dead-letters", params={"limit": 100}).json()
    reasons = {d["message_id"]: d["reason"] for d in dead if d["message_id"]}
    assert "userId or an anonymousId" in reasons["dl-no-id"]
    assert "teleport" in reasons["dl-type"]
    ev = server.admin("GET", "/v1/admin/events", params={"user_id": "dl-good-2"}).json()["events"]
    assert ev[0]["traits"] == {"name": "李雷"}


def test_resent_message_ids_are_stored_once(srv: tuple[ServerProcess, str]) -> None:
    server, _ = srv
    batch = {"batch": [msg(userId="dup-user", messageId=f"dup-{i}") for i in range(50)]}
    for _ in range(3):
        assert post(srv, "/v1/batch", batch, gz=True).status_code == 200
    server.flush()
    got = server.admin("GET", "/v1/admin/events", params={"user_id": "dup-user", "limit": 1000}).json()["events"]
    assert len(got) == 50


def test_batch_context_merge_and_clock_skew_correction(srv: tuple[ServerProcess, str]) -> None:
    server, _ = srv
    now = datetime.now(UTC)
    # the client's clock runs one hour fast: it says sentAt = now+1h, and the event happened 10 s before that
    client_sent = now + timedelta(hours=1)
    m = msg(userId="skew-user", timestamp=(client_sent - timedelta(seconds=10)).isoformat(), integrations={"All": True})
    body = {
        "batch": [m, msg(userId="skew-user", messageId="ctx-2", context={"ip": "1.2.3.4"})],
        "sentAt": client_sent.isoformat(),
        "context": {"library": {"name": "analytics-python"}, "campaign": {"source": "tmall", "name": "618"}},
        "integrations": {"Mixpanel": False},
    }
    assert post(srv, "/v1/batch", body).status_code == 200
    server.flush()
    events = server.admin("GET", "/v1/admin/events", params={"user_id": "skew-user"}).json()["events"]
    by_id = {e["message_id"]: e for e in events}
    ts = datetime.fromisoformat(by_id[m["messageId"]]["timestamp"])
    received = datetime.fromisoformat(by_id[m["messageId"]]["received_at"])
    assert abs((received - ts).total_seconds() - 10) < 0.01  # timestamp = receivedAt − (sentAt − originalTimestamp)
    merged = by_id["ctx-2"]["context"]
    assert merged["ip"] == "1.2.3.4" and merged["library"]["name"] == "analytics-python"
    assert merged["campaign"]["name"] == "618" and merged["integrations"] == {"Mixpanel": False}
    assert by_id[m["messageId"]]["context"]["integrations"] == {"All": True}


def test_saturated_write_path_answers_429_with_retry_after(tmp_path: Path) -> None:
    d = tmp_path / "data"
    d.mkdir()
    key = make_source(d)
    env = {"TESSERA_INGEST_MAX_BACKLOG_BYTES": "1", "TESSERA_INGEST_LOAD_INTERVAL_MS": "600000"}
    server = ServerProcess(d, env=env).start()
    try:
        srv = (server, key)
        assert post(srv, "/v1/batch", {"batch": [msg()]}).status_code == 200
        time.sleep(0.7)  # the backlog gauge refreshes twice a second
        r = post(srv, "/v1/batch", {"batch": [msg()]})
        assert r.status_code == 429 and r.headers["Retry-After"] == "2"
        assert r.json()["error"] == "saturated"
        server.flush()  # the loader catches up; nothing acknowledged was lost
        assert server.admin("GET", "/v1/admin/stats").json()["totals"]["events"] == 1
    finally:
        server.stop()
