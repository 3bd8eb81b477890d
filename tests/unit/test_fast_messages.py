"""The msgspec fast path and the general path produce the same row for every message it takes."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.domain.fast_messages import try_fast
from tessera.domain.messages import EVENT_COLUMNS, MessageError, normalise

RECEIVED = 1_794_398_400_000_000
JSON_COLS = {"properties", "traits", "context"}

texts = st.one_of(st.none(), st.text(max_size=8), st.sampled_from(["", " ", "冲锋衣", "x" * 1030]))
numbers = st.one_of(st.none(), st.integers(-10, 10**6), st.floats(allow_nan=True, allow_infinity=True), st.booleans(),
                    st.sampled_from(["12.5", "1,299", "lots"]))  # fmt: skip
times = st.one_of(
    st.none(),
    st.sampled_from(["2026-11-11T12:00:00Z", "2026-11-11T20:00:00.123456+08:00", "2026-11-11 12:00:00",
                     "2026-11-11T12:00:00", "1960-01-01T00:00:00Z", "2026-13-01T00:00:00Z", "soon", ""]),
    st.integers(-5, 1_800_000_000_000),
)  # fmt: skip
objects = st.one_of(
    st.none(), st.just({}), st.just([]), st.just("str"), st.dictionaries(st.text(max_size=4), texts, max_size=3)
)


@st.composite
def messages(draw: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"type": draw(st.sampled_from(["track", "page", "screen", "identify", "bogus"]))}
    for key, strat in [
        ("event", st.one_of(texts, st.integers())), ("name", texts), ("category", texts),
        ("userId", st.one_of(texts, st.integers(0, 99))), ("anonymousId", texts), ("messageId", texts),
        ("timestamp", times), ("originalTimestamp", times), ("sentAt", times), ("channel", texts),
        ("integrations", objects), ("traits", objects),
    ]:  # fmt: skip
        if draw(st.booleans()):
            m[key] = draw(strat)
    if draw(st.booleans()):
        m["properties"] = draw(st.one_of(objects, st.fixed_dictionaries({}, optional={
            "revenue": numbers, "total": numbers, "currency": texts, "order_id": st.one_of(texts, st.integers()),
            "product_id": texts, "category": texts, "颜色": texts})))  # fmt: skip
    if draw(st.booleans()):
        m["context"] = draw(st.one_of(objects, st.fixed_dictionaries({}, optional={
            "ip": texts, "channel": texts, "device": st.one_of(objects, st.fixed_dictionaries({"id": texts})),
            "campaign": st.one_of(objects, st.fixed_dictionaries({}, optional={"source": texts, "name": texts})),
        })))  # fmt: skip
    return m


def _comparable(row: tuple[Any, ...]) -> dict[str, Any]:
    out = dict(zip(EVENT_COLUMNS, row, strict=True))
    for col in JSON_COLS:
        if out[col] is not None:
            out[col] = json.loads(out[col])
    return out


@settings(max_examples=600, deadline=None)
@given(messages(), st.one_of(st.none(), st.just(1_794_398_397_000_000)))
def test_fast_path_agrees_with_the_general_path(msg: dict[str, Any], batch_sent_us: int | None) -> None:
    msg.setdefault("messageId", "fixed-id")
    if not isinstance(msg["messageId"], str) or not msg["messageId"].strip():
        msg["messageId"] = "fixed-id"
    raw = json.dumps(msg, ensure_ascii=False).encode()
    fast = try_fast(raw, source_id=5, received_us=RECEIVED, batch_sent_us=batch_sent_us)
    if fast is None:
        return  # the general path decides (and owns every error message)
    sent = None if batch_sent_us is None else "2026-11-11T11:59:57+00:00"
    try:
        slow = normalise(json.loads(raw), source_id=5, received_us=RECEIVED, batch_sent_at=sent)
    except MessageError as exc:
        raise AssertionError(f"the fast path accepted a message the general path rejects: {exc}") from None
    assert _comparable(fast) == _comparable(slow)


def test_common_segment_messages_take_the_fast_path() -> None:
    msg = {
        "type": "track", "event": "Product Viewed", "userId": "m1", "anonymousId": "a1", "messageId": "id1",
        "timestamp": "2026-11-11T12:00:00.000+00:00", "properties": {"product_id": "SKU1", "price": 299.0},
        "context": {"library": {"name": "analytics-python", "version": "2.4.0"}, "ip": "10.0.0.1"},
        "integrations": {},
    }  # fmt: skip
    row = try_fast(json.dumps(msg).encode(), source_id=1, received_us=RECEIVED, batch_sent_us=None)
    assert row is not None and row[EVENT_COLUMNS.index("product_id")] == "SKU1"
