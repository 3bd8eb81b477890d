"""SMS (短信) against a real fake provider over HTTP: batching, phone checks, failures, receipts."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tessera.channels.base import Channel, Outbound, Receipt
from tessera.channels.sms import SmsChannel, check_phone, parse_receipts
from tessera.clock import FrozenClock
from tests.conftest import free_port
from tests.fakes.hook_receiver import HookReceiver
from tests.fakes.sms_provider import FakeSmsProvider, read_record

T0 = datetime(2026, 11, 11, 10, 0, tzinfo=UTC)
KEY = "sk-test-短信".encode().hex()  # any opaque string


def phone(i: int) -> str:
    return f"+86138{i:08d}"


def sms(i: int, to: str | None = None) -> Outbound:
    return Outbound(
        key=f"k{i:04d}", to=phone(i) if to is None else to, body=f"【天青茶社】您的验证码是{i:06d}，5分钟内有效。"
    )


@pytest.fixture
def provider() -> Iterator[FakeSmsProvider]:
    with FakeSmsProvider(KEY) as p:
        yield p


def channel(url: str, **config: Any) -> SmsChannel:
    return SmsChannel("短信", {"url": url, "from": "TIANQING", "api_key": KEY, **config}, clock=FrozenClock(T0))


def test_a_batch_of_250_goes_in_three_requests_and_arrives_once(provider: FakeSmsProvider) -> None:
    callback = "https://cdp.example.cn/v1/receipts/sms?token=t0k"
    with channel(provider.url, batch_size=100, callback_url=callback) as ch:
        c: Channel = ch
        assert (c.kind, c.max_batch) == ("sms", 1000)
        results = ch.send([sms(i) for i in range(250)])
    assert [r.key for r in results] == [f"k{i:04d}" for i in range(250)]
    assert all(r.accepted and r.status == 200 and r.provider_id for r in results)
    assert len({r.provider_id for r in results}) == 250
    requests = provider.requests
    assert [len(r.body["messages"]) for r in requests] == [100, 100, 50]
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in requests)
    got = provider.wait_for(250)
    assert [m["message_id"] for m in got] == [f"k{i:04d}" for i in range(250)] and provider.raw_count == 250
    first = got[0]
    assert first["to"] == "+8613800000000" and first["from"] == "TIANQING" and first["callback_url"] == callback
    assert first["body"] == "【天青茶社】您的验证码是000000，5分钟内有效。"


def test_batch_size_one_sends_single_objects(provider: FakeSmsProvider) -> None:
    with channel(provider.url, batch_size=1) as ch:
        results = ch.send([sms(1), sms(2), sms(3)])
    assert all(r.accepted and r.provider_id for r in results)
    bodies = [r.body for r in provider.requests]
    assert len(bodies) == 3 and all("messages" not in b and b["message_id"] for b in bodies)
    assert [b["message_id"] for b in bodies] == ["k0001", "k0002", "k0003"]


def test_numbers_that_are_not_e164_are_final_and_not_sent(provider: FakeSmsProvider) -> None:
    bad = ["13800138000", "+86 138 0013 8000", "+861380013800", "", "+86-13800138000", "+0123456789"]
    messages = [sms(i, to) for i, to in enumerate(bad)] + [sms(99, "+8613800138000")]
    messages.append(Outbound("empty", "+8613800138001", ""))
    with channel(provider.url) as ch:
        results = ch.send(messages)
    for to, r in zip(bad, results, strict=False):
        assert not r.accepted and not r.retryable and r.error is not None and repr(to) in r.error
    assert results[len(bad)].accepted
    assert results[-1].error == "the message body is empty"
    assert [m["to"] for m in provider.wait_for(1)] == ["+8613800138000"] and provider.raw_count == 1
    assert check_phone("+14155552671") is None and check_phone("+447911123456") is None


def test_a_message_the_provider_fails_is_final_and_the_rest_go(provider: FakeSmsProvider) -> None:
    provider.block(phone(2), "号码已退订 unsubscribed")
    with channel(provider.url) as ch:
        results = ch.send([sms(1), sms(2), sms(3)])
    assert [r.accepted for r in results] == [True, False, True]
    assert results[1].error == "provider: 号码已退订 unsubscribed" and not results[1].retryable
    assert len(provider.requests) == 1


def test_503_and_429_are_retryable_with_retry_after(provider: FakeSmsProvider) -> None:
    provider.fail_next(1, 503, retry_after=7)
    later = format_datetime(T0 + timedelta(seconds=30), usegmt=True)
    provider.fail_next(1, 429, retry_after=later)
    with channel(provider.url, batch_size=2) as ch:
        results = ch.send([sms(1), sms(2), sms(3), sms(4), sms(5)])
        assert [(r.accepted, r.retryable, r.status, r.retry_after) for r in results] == [
            (False, True, 503, 7.0), (False, True, 503, 7.0),
            (False, True, 429, 30.0), (False, True, 429, 30.0),
            (True, False, 200, None),
        ]  # fmt: skip
        assert provider.raw_count == 1  # nothing of the failed requests was taken
        again = ch.send([sms(1), sms(2), sms(3), sms(4)])
    assert all(r.accepted for r in again)
    assert len(provider.wait_for(5)) == 5


def test_400_and_a_wrong_api_key_are_final_for_the_whole_request(provider: FakeSmsProvider) -> None:
    provider.fail_next(1, 400)
    with channel(provider.url) as ch:
        results = ch.send([sms(1), sms(2)])
    assert all(not r.accepted and not r.retryable and r.status == 400 for r in results)
    assert (results[0].error or "").startswith("HTTP 400")
    with SmsChannel("x", {"url": provider.url, "from": "T", "api_key": "wrong"}, clock=FrozenClock(T0)) as wrong:
        refused = wrong.send([sms(3)])
    assert refused[0].status == 401 and not refused[0].retryable
    assert provider.messages == []


def test_repeats_are_deduplicated_by_the_provider(provider: FakeSmsProvider) -> None:
    batch = [sms(i) for i in range(10)]
    with channel(provider.url) as ch:
        first = ch.send(batch)
        second = ch.send(batch)  # e.g. the answer was lost and the dispatcher tried again
    assert all(r.accepted for r in first + second)
    assert [r.provider_id for r in first] == [r.provider_id for r in second]
    assert len(provider.messages) == 10 and provider.raw_count == 20


def test_an_unreachable_provider_is_retryable() -> None:
    with channel(f"http://127.0.0.1:{free_port()}/v1/sms") as ch:
        results = ch.send([sms(1), sms(2)])
    assert all(not r.accepted and r.retryable and (r.error or "").startswith("connection failed") for r in results)


@pytest.mark.parametrize("outcome", ["delivered", "undelivered"])
def test_receipts_posted_back_parse(outcome: str) -> None:
    with HookReceiver(None) as callback, FakeSmsProvider(KEY, receipts=outcome) as provider:
        url = callback.url + "?token=abc123"
        with channel(provider.url, callback_url=url) as ch:
            results = ch.send([sms(i) for i in range(5)])
        provider.wait_for_receipts(5)
        receipts: list[Receipt] = []
        for hit in callback.hits:
            assert hit.path == "/hooks?token=abc123"
            receipts.extend(parse_receipts(hit.payload))
    assert sorted(r.key for r in receipts) == [f"k{i:04d}" for i in range(5)]
    assert {r.status for r in receipts} == {outcome}
    ids = {r.key: r.provider_id for r in results}
    assert all(r.provider_id == ids[r.key] for r in receipts)
    assert all((r.error is not None) == (outcome == "undelivered") for r in receipts)


def test_parse_receipts_names_the_bad_item_and_field() -> None:
    assert parse_receipts({"message_id": "k1", "status": "delivered"}) == [Receipt("k1", "delivered")]
    assert parse_receipts([{"message_id": "k1", "status": "failed", "error": "空号", "provider_id": 42}]) == [
        Receipt("k1", "failed", "空号", "42")
    ]
    ok = {"message_id": "k", "status": "sent"}
    cases: list[tuple[Any, str]] = [
        ([ok, ok, {"message_id": "k3", "status": "read"}], r"^\[2\]\.status: must be one of queued, sent, delivered"),
        ([ok, {"status": "sent"}], r"^\[1\]\.message_id: "),
        ([ok, {"message_id": "k", "status": "sent", "error": 5}], r"^\[1\]\.error: "),
        ([ok, "k2"], r"^\[1\]: must be an object"),
        ({"message_id": "", "status": "sent"}, r"^message_id: "),
        ("delivered", r"object or a list"),
    ]
    for body, message in cases:
        with pytest.raises(ValueError, match=message):
            parse_receipts(body)


def test_the_provider_runs_as_its_own_process_and_records(tmp_path: Path) -> None:
    record = tmp_path / "sent.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.sms_provider", "--api-key", KEY, "--record", str(record)],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert proc.stdout is not None
        url = orjson.loads(proc.stdout.readline())["url"]
        with channel(url) as ch:
            assert all(r.accepted for r in ch.send([sms(1), sms(2), sms(1)]))
        assert [m["message_id"] for m in read_record(record)] == ["k0001", "k0002"]
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
        if proc.stdout is not None:
            proc.stdout.close()
