"""Signed webhooks against a real HTTP server: signatures verify, retries keep the id, waits are right.

The receiver is a ``ThreadingHTTPServer`` on a free loopback port that checks every request with
:func:`verify` and answers from a script. Sleeps are injected (and move the frozen clock), so no
test waits for a backoff.
"""

from __future__ import annotations

import contextlib
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from tessera.channels.webhook import (
    DeliveryResult,
    WebhookSender,
    WebhookVerificationError,
    json_body,
    new_secret,
    sign,
    signature_header,
    verify,
)
from tessera.clock import FrozenClock
from tests.conftest import free_port

T0 = datetime(2026, 11, 11, 0, 0, tzinfo=UTC)
PAYLOAD: dict[str, Any] = {
    "type": "audience.members",
    "audience": {"name": "高价值会员"},
    "members": [
        {
            "profile_id": "p_1",
            "city": "上海",
            "total_spend": Decimal("1288.50"),
            "last_seen": T0,
            "first_seen": datetime(2025, 1, 2, 3, 4, 5),
        }
    ],  # naive, as DuckDB returns TIMESTAMP: UTC
}


# -- a receiver --------------------------------------------------------------------------------------


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    hang: bool = False  # hold the answer until the test ends: the client times out


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes
    payload: Any
    error: str | None


class Receiver:
    """What the test's HTTP server knows: its secrets, its clock, the script of answers, what it saw."""

    def __init__(self, secrets: list[str], clock: FrozenClock) -> None:
        self.secrets = secrets
        self.clock = clock
        self.script: list[Reply] = []
        self.seen: list[Seen] = []
        self.release = threading.Event()
        self.lock = threading.Lock()

    def next_reply(self) -> Reply:
        with self.lock:
            return self.script.pop(0) if self.script else Reply()

    @property
    def ids(self) -> list[str]:
        return [s.headers["webhook-id"] for s in self.seen]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                payload, error = verify(receiver.secrets, headers, body, now=receiver.clock.now()), None
            except WebhookVerificationError as exc:
                payload, error = None, str(exc)
            with receiver.lock:
                receiver.seen.append(Seen(self.path, headers, body, payload, error))
            reply = receiver.next_reply() if error is None else Reply(401, body=error.encode())
            if reply.hang:
                receiver.release.wait(5)
            self.send_response(reply.status)
            for k, v in {"content-length": str(len(reply.body)), **reply.headers}.items():
                self.send_header(k, v)
            self.end_headers()
            with contextlib.suppress(OSError):  # the client may have given up waiting
                self.wfile.write(reply.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest.fixture
def receiver(secret: str, clock: FrozenClock) -> Iterator[Receiver]:
    r = Receiver([secret], clock)
    yield r
    r.release.set()


@pytest.fixture
def url(receiver: Receiver) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hooks/tessera"
    receiver.release.set()
    server.shutdown()
    server.server_close()


class Sleeps(list[float]):
    """An injected sleep: records each wait and moves the clock by it."""

    def __init__(self, clock: FrozenClock) -> None:
        super().__init__()
        self.clock = clock

    def __call__(self, seconds: float) -> None:
        self.append(seconds)
        self.clock.advance(timedelta(seconds=seconds))


class Fixed(random.Random):
    """A 'random' source that always picks the same point of the interval (0 = low, 1 = high)."""

    def __init__(self, at: float) -> None:
        super().__init__(0)
        self.at = at

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.at


@pytest.fixture
def sleeps(clock: FrozenClock) -> Sleeps:
    return Sleeps(clock)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5) as c:
        yield c


def sender(client: httpx.Client, clock: FrozenClock, sleeps: Sleeps, **kw: Any) -> WebhookSender:
    kw.setdefault("rng", Fixed(1.0))
    return WebhookSender(client, clock, sleeps, **kw)


# -- signing and verifying --------------------------------------------------------------------------


def test_signature_matches_the_standard_webhooks_test_vector() -> None:
    # The example published with the Standard Webhooks reference libraries.
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected
    headers = {"Webhook-Id": "msg_p5jXN8AQM9LWM0D4loKWxJek", "Webhook-Timestamp": "1614265330",
               "Webhook-Signature": expected}  # fmt: skip
    now = datetime.fromtimestamp(1614265330 + 299, UTC)
    assert verify(secret, headers, body, now=now) == {"test": 2432232314}


def _signed(secret: str, body: bytes, ts: int, msg_id: str = "msg_1") -> dict[str, str]:
    return {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": sign(secret, msg_id, ts, body)}


def test_verify_refuses_what_was_not_signed_by_us_or_is_stale(secret: str) -> None:
    body = json_body(PAYLOAD)
    ts = int(T0.timestamp())
    headers = _signed(secret, body, ts)
    assert verify(secret, headers, body, now=T0)["audience"]["name"] == "高价值会员"

    cases: list[tuple[str, dict[str, str], bytes, datetime, str]] = [
        ("wrong secret", _signed(new_secret(), body, ts), body, T0, "no matching v1 signature"),
        ("changed body", headers, body.replace("上海".encode(), "北京".encode()), T0, "no matching v1 signature"),
        ("changed id", {**headers, "webhook-id": "msg_2"}, body, T0, "no matching v1 signature"),
        ("changed time", {**headers, "webhook-timestamp": str(ts + 1)}, body, T0, "no matching v1 signature"),
        ("replayed late", headers, body, T0 + timedelta(seconds=301), "too old"),
        ("from the future", headers, body, T0 - timedelta(seconds=301), "future"),
        ("no signature", {k: v for k, v in headers.items() if k != "webhook-signature"}, body, T0, "webhook-signature"),
        ("no id", {k: v for k, v in headers.items() if k != "webhook-id"}, body, T0, "missing header webhook-id"),
        ("bad time", {**headers, "webhook-timestamp": "soon"}, body, T0, "whole seconds"),
        ("other scheme", {**headers, "webhook-signature": "v1a," + headers["webhook-signature"][3:]}, body, T0,
         "no matching"),
    ]  # fmt: skip
    for what, hdrs, b, now, message in cases:
        with pytest.raises(WebhookVerificationError, match=message):
            verify(secret, hdrs, b, now=now)
        assert what  # (named for the reader of a failure)
    # Inside the tolerance either way is fine, and a custom tolerance applies.
    assert verify(secret, headers, body, now=T0 + timedelta(seconds=300)) is not None
    # Without a clock, the system's time: a request signed just now passes, this old one does not.
    fresh = int(datetime.now(UTC).timestamp())
    assert verify(secret, _signed(secret, body, fresh), body) is not None
    with pytest.raises(WebhookVerificationError, match="too old|future"):
        verify(secret, headers, body)  # (T0 is a fixed date, days away from any real now)
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(secret, headers, body, now=T0 + timedelta(seconds=61), tolerance=60)


def test_verify_accepts_any_of_several_signatures_and_secrets() -> None:
    old, new = new_secret(), new_secret()
    body = b'{"a":1}'
    ts = int(T0.timestamp())
    both = {
        "webhook-id": "m",
        "webhook-timestamp": str(ts),
        "webhook-signature": signature_header([old, new], "m", ts, body),
    }
    assert len(both["webhook-signature"].split(" ")) == 2
    assert verify(old, both, body, now=T0) == {"a": 1}  # a receiver not yet rotated
    assert verify(new, both, body, now=T0) == {"a": 1}  # a receiver already rotated
    only_old = _signed(old, body, ts, "m")
    assert verify([new, old], only_old, body, now=T0) == {"a": 1}  # a receiver accepting both
    with pytest.raises(WebhookVerificationError):
        verify([new], only_old, body, now=T0)


def test_secrets_are_whsec_base64_and_bad_ones_are_refused() -> None:
    a, b = new_secret(), new_secret()
    assert a != b and a.startswith("whsec_") and len(a) == len("whsec_") + 32
    for bad, message in (("abc", "starts with"), ("whsec_***", "base64"), ("whsec_", "key bytes")):
        with pytest.raises(ValueError, match=message):
            sign(bad, "m", 1, b"{}")


# -- sending ---------------------------------------------------------------------------------------------


def test_delivers_a_signed_json_post(url: str, receiver: Receiver, client: httpx.Client, clock: FrozenClock,
                                     sleeps: Sleeps) -> None:  # fmt: skip
    result = sender(client, clock, sleeps).send(url, receiver.secrets[0], PAYLOAD, msg_id="push_1_1")
    assert result == DeliveryResult(delivered=True, attempts=1, status=200, error=None, dead=False)
    [seen] = receiver.seen
    assert seen.error is None and seen.path == "/hooks/tessera"
    assert seen.headers["content-type"] == "application/json"
    assert seen.headers["webhook-id"] == "push_1_1"
    assert seen.headers["webhook-timestamp"] == str(int(T0.timestamp()))
    assert seen.headers["webhook-signature"].startswith("v1,")
    member = seen.payload["members"][0]
    assert member["city"] == "上海" and member["total_spend"] == "1288.50"  # money stays an exact string
    assert member["last_seen"] == "2026-11-11T00:00:00+00:00"
    assert member["first_seen"] == "2025-01-02T03:04:05+00:00"
    assert sleeps == []


def test_retries_5xx_with_the_same_id_and_growing_backoff(url: str, receiver: Receiver, client: httpx.Client,
                                                          clock: FrozenClock, sleeps: Sleeps) -> None:  # fmt: skip
    receiver.script = [Reply(500), Reply(502), Reply(503), Reply(200)]
    s = sender(client, clock, sleeps, base_delay=2, max_delay=60)
    result = s.send(url, receiver.secrets[0], PAYLOAD, msg_id="msg_same")
    assert result.delivered and result.attempts == 4 and result.status == 200 and not result.dead
    assert sleeps == [2.0, 4.0, 8.0]  # the jitter's upper bound doubles each time
    assert receiver.ids == ["msg_same"] * 4  # the receiver de-duplicates on it
    assert all(seen.error is None for seen in receiver.seen)
    # Each attempt is signed afresh at its own time (still inside the receiver's tolerance).
    stamps = [int(seen.headers["webhook-timestamp"]) for seen in receiver.seen]
    t = int(T0.timestamp())
    assert stamps == [t, t + 2, t + 6, t + 14]
    assert len({seen.body for seen in receiver.seen}) == 1  # the same bytes every time


def test_backoff_is_full_jitter_capped_and_reproducible_with_a_seed(clock: FrozenClock) -> None:
    def delays(seed: int) -> list[float]:
        s = WebhookSender(None, clock, lambda _: None, base_delay=1, max_delay=30, rng=random.Random(seed))
        try:
            return [s.delay(n) for n in range(1, 11)]
        finally:
            s.close()

    first = delays(7)
    assert first == delays(7) and first != delays(8)
    for n, d in enumerate(first, start=1):
        assert 0 <= d <= min(30, 2 ** (n - 1))
    # Over many draws the spread fills the whole interval (full jitter, not a fixed step).
    s = WebhookSender(None, clock, lambda _: None, base_delay=1, max_delay=30, rng=random.Random(1))
    draws = [s.delay(4) for _ in range(500)]
    s.close()
    assert min(draws) < 1 and max(draws) > 7 and max(draws) <= 8


def test_429_retry_after_seconds_is_honoured(url: str, receiver: Receiver, client: httpx.Client,
                                             clock: FrozenClock, sleeps: Sleeps) -> None:  # fmt: skip
    receiver.script = [Reply(429, {"Retry-After": "7"}), Reply(200)]
    result = sender(client, clock, sleeps, base_delay=1, rng=Fixed(0.0)).send(
        url, receiver.secrets[0], PAYLOAD, msg_id="m429"
    )
    assert result.delivered and result.attempts == 2
    assert sleeps == [7.0]


def test_retry_after_as_an_http_date_and_capped_by_max_delay(url: str, receiver: Receiver, client: httpx.Client,
                                                             clock: FrozenClock, sleeps: Sleeps) -> None:  # fmt: skip
    later = format_datetime(T0 + timedelta(seconds=30), usegmt=True)  # e.g. "Wed, 11 Nov 2026 00:00:30 GMT"
    receiver.script = [Reply(503, {"Retry-After": later}), Reply(429, {"Retry-After": "3600"}), Reply(200)]
    result = sender(client, clock, sleeps, base_delay=1, max_delay=120, rng=Fixed(0.0)).send(
        url, receiver.secrets[0], PAYLOAD, msg_id="mdate"
    )
    assert result.delivered and result.attempts == 3
    assert sleeps == [30.0, 120.0]


def test_408_is_retried_and_other_4xx_are_final(url: str, receiver: Receiver, client: httpx.Client,
                                                clock: FrozenClock, sleeps: Sleeps) -> None:  # fmt: skip
    receiver.script = [Reply(408), Reply(400, body="members[0].phone: 格式错误".encode())]
    result = sender(client, clock, sleeps).send(url, receiver.secrets[0], PAYLOAD, msg_id="m400")
    assert not result.delivered and result.dead and result.attempts == 2 and result.status == 400
    assert result.error == "HTTP 400: members[0].phone: 格式错误"
    assert len(sleeps) == 1  # after the 408 only
    receiver.script = [Reply(302, {"Location": "https://elsewhere.example/x"})]
    moved = sender(client, clock, sleeps).send(url, receiver.secrets[0], PAYLOAD, msg_id="m302")
    assert moved.dead and moved.attempts == 1 and moved.status == 302
    assert moved.error is not None and "https://elsewhere.example/x" in moved.error


def test_gives_up_after_max_attempts(url: str, receiver: Receiver, client: httpx.Client, clock: FrozenClock,
                                     sleeps: Sleeps) -> None:  # fmt: skip
    receiver.script = [Reply(500, body=b"db down")] * 5
    result = sender(client, clock, sleeps, max_attempts=3, base_delay=1).send(
        url, receiver.secrets[0], PAYLOAD, msg_id="mdead"
    )
    assert result == DeliveryResult(delivered=False, attempts=3, status=500, error="HTTP 500: db down", dead=True)
    assert sleeps == [1.0, 2.0] and receiver.ids == ["mdead"] * 3


def test_connection_refused_is_retried_then_dead(client: httpx.Client, clock: FrozenClock, sleeps: Sleeps,
                                                 secret: str) -> None:  # fmt: skip
    nobody = f"http://127.0.0.1:{free_port()}/hook"
    result = sender(client, clock, sleeps, max_attempts=3, base_delay=0.5).send(nobody, secret, PAYLOAD, msg_id="m")
    assert not result.delivered and result.dead and result.attempts == 3 and result.status is None
    assert result.error is not None and result.error.startswith("connection failed")
    assert sleeps == [0.5, 1.0]


def test_a_timeout_is_retried_with_the_same_id(url: str, receiver: Receiver, clock: FrozenClock,
                                               sleeps: Sleeps) -> None:  # fmt: skip
    receiver.script = [Reply(hang=True), Reply(200)]
    with httpx.Client(timeout=0.3) as quick:
        result = sender(quick, clock, sleeps).send(url, receiver.secrets[0], PAYLOAD, msg_id="mslow")
    assert result.delivered and result.attempts == 2 and len(sleeps) == 1
    assert receiver.ids == ["mslow", "mslow"]  # the slow first request did arrive: hence the shared id


def test_signing_with_two_secrets_during_rotation(url: str, receiver: Receiver, client: httpx.Client,
                                                  clock: FrozenClock, sleeps: Sleeps) -> None:  # fmt: skip
    old = receiver.secrets[0]
    new = new_secret()
    receiver.secrets = [new]  # the receiver switched first; we still sign with both
    result = sender(client, clock, sleeps).send(url, [old, new], PAYLOAD, msg_id="mrot")
    assert result.delivered
    assert receiver.seen[-1].error is None and len(receiver.seen[-1].headers["webhook-signature"].split(" ")) == 2
    receiver.secrets = [new_secret()]  # a receiver with an unrelated secret refuses (401 is final)
    refused = sender(client, clock, sleeps).send(url, [old, new], PAYLOAD, msg_id="mrot2")
    assert refused.dead and refused.status == 401 and receiver.seen[-1].error is not None


def test_own_client_and_argument_checks(clock: FrozenClock, secret: str) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        WebhookSender(None, clock, max_attempts=0)
    with WebhookSender(None, clock, lambda _: None, max_attempts=1, timeout=1) as own:
        for bad_id in ("has space", "", "批次1", "a\nb"):
            with pytest.raises(ValueError, match="msg_id"):
                own.send("http://127.0.0.1:9/x", secret, {}, msg_id=bad_id)
        result = own.send(f"http://127.0.0.1:{free_port()}/x", secret, {}, msg_id="m")
    assert result.dead and result.attempts == 1
    sleeps: list[float] = []
    with WebhookSender(None, clock, sleeps.append, max_attempts=5) as own:
        bad = own.send("ftp://crm.example.com/x", secret, {}, msg_id="m")
    assert bad.dead and bad.attempts == 1 and sleeps == [] and (bad.error or "").startswith("invalid URL")
