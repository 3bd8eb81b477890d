"""Segment message normalisation (pure): types, ids, skew correction, merges, typed columns."""

from __future__ import annotations

import contextlib
import gzip
import json
import zlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.domain.messages import EVENT_COLUMNS, MessageError, normalise, parse_time, to_micros
from tessera.services.ingestion import Collector, RequestError, inflate, key_from_basic_auth
from tessera.services.sources import Source
from tessera.settings import IngestSettings

NOW = datetime(2026, 11, 11, 12, 0, tzinfo=UTC)
NOW_US = to_micros(NOW)


def row(msg: Any, **kw: Any) -> dict[str, Any]:
    return dict(zip(EVENT_COLUMNS, normalise(msg, source_id=7, received_us=NOW_US, **kw), strict=True))


def test_track_gets_typed_columns_and_json() -> None:
    r = row({
        "type": "track", "event": "Order Completed", "userId": "m1", "messageId": "x1",
        "properties": {"order_id": "O1", "total": "1,299.00", "currency": "CNY", "product_id": "SKU1", "颜色": "红"},
        "context": {"campaign": {"source": "douyin", "medium": "cpc", "name": "冬季上新"}, "ip": "1.1.1.1",
                    "device": {"id": "idfa-1"}},
    })  # fmt: skip
    assert r["revenue"] == 1299.0 and r["order_id"] == "O1" and r["currency"] == "CNY"
    assert (r["utm_source"], r["utm_medium"], r["utm_campaign"]) == ("douyin", "cpc", "冬季上新")
    assert r["device_id"] == "idfa-1" and r["ip"] == "1.1.1.1" and r["source_id"] == 7
    assert json.loads(r["properties"])["颜色"] == "红"
    assert r["timestamp"] == NOW_US  # no timestamp sent: receivedAt


def test_skew_correction_uses_segment_formula() -> None:
    client_now = NOW + timedelta(minutes=30)  # the device clock is 30 min fast
    happened = client_now - timedelta(seconds=5)
    r = row({"type": "track", "event": "E", "anonymousId": "a", "timestamp": happened.isoformat(),
             "sentAt": client_now.isoformat()})  # fmt: skip
    assert r["timestamp"] == NOW_US - 5_000_000
    assert r["original_timestamp"] == to_micros(happened)
    # without sentAt the client's timestamp is kept as is
    r = row({"type": "track", "event": "E", "anonymousId": "a", "timestamp": happened.isoformat()})
    assert r["timestamp"] == to_micros(happened)
    # the batch-level sentAt applies to every message
    r = row({"type": "track", "event": "E", "anonymousId": "a", "timestamp": happened.isoformat()},
            batch_sent_at=client_now.isoformat())  # fmt: skip
    assert r["timestamp"] == NOW_US - 5_000_000


def test_identify_merges_context_traits_and_batch_context() -> None:
    r = row({"type": "identify", "userId": "m1", "traits": {"name": "张伟"}, "context": {"traits": {"name": "x", "city": "成都"}}},
            batch_context={"library": {"name": "analytics-python"}}, batch_integrations={"All": False})  # fmt: skip
    assert json.loads(r["traits"]) == {"name": "张伟", "city": "成都"}
    ctx = json.loads(r["context"])
    assert ctx["library"]["name"] == "analytics-python" and ctx["integrations"] == {"All": False}


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        ({"type": "track", "event": "E"}, "userId"),
        ({"type": "purchase", "userId": "u"}, "type"),
        ({"type": "track", "userId": "u"}, "event"),
        ({"type": "track", "event": 3, "userId": "u"}, "event"),
        ({"type": "track", "event": "E", "userId": "u", "timestamp": "31/12/2026"}, "timestamp"),
        ({"type": "track", "event": "E", "userId": "u", "timestamp": True}, "timestamp"),
        ({"type": "track", "event": "E", "userId": ["u"]}, "userId"),
        ({"type": "track", "event": "E", "userId": "u", "properties": []}, "properties"),
        ({"type": "track", "event": "E", "userId": "u", "properties": {"revenue": "NaN?"}}, "properties.revenue"),
        ({"type": "group", "userId": "u"}, "groupId"),
        ({"type": "alias", "userId": "u"}, "previousId"),
        ({"type": "alias", "anonymousId": "a", "previousId": "p"}, "userId"),
        ({"type": "identify", "userId": "u", "context": {"traits": "x"}}, "context.traits"),
        ("not an object", "message"),
    ],
)
def test_invalid_messages_name_the_field(msg: Any, field: str) -> None:
    with pytest.raises(MessageError) as err:
        row(msg)
    assert err.value.field == field


def test_parse_time_accepts_iso_with_zones_and_epoch_millis() -> None:
    assert parse_time("2026-11-11T20:00:00+08:00", "t") == NOW_US
    assert parse_time("2026-11-11T12:00:00Z", "t") == NOW_US
    assert parse_time(NOW_US // 1000, "t") == NOW_US
    assert parse_time(None, "t") is None


@given(
    uid=st.text(min_size=1, max_size=50).filter(lambda s: s.strip() != ""),
    props=st.dictionaries(st.text(max_size=10), st.one_of(st.integers(), st.text(max_size=20), st.booleans(), st.none())),
)  # fmt: skip
def test_any_valid_track_round_trips_properties(uid: str, props: dict[str, Any]) -> None:
    r = row({"type": "track", "event": "E", "userId": uid, "properties": props})
    assert r["user_id"] == uid.strip()
    assert (json.loads(r["properties"]) if r["properties"] else {}) == props
    assert len(r) == len(EVENT_COLUMNS)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3)))  # fmt: skip
def test_arbitrary_json_never_crashes_normalise(value: Any) -> None:
    with contextlib.suppress(MessageError):
        row(value)


def test_inflate_limits_and_errors() -> None:
    data = b'{"batch": []}'
    assert inflate(gzip.compress(data), "gzip", 100) == data
    assert inflate(zlib.compress(data), "deflate", 100) == data
    with pytest.raises(RequestError) as e:
        inflate(gzip.compress(b"0" * 10_000), "gzip", 1000)
    assert e.value.status == 413
    with pytest.raises(RequestError) as e:
        inflate(gzip.compress(data)[:-6], "gzip", 100)
    assert e.value.status == 400
    with pytest.raises(RequestError) as e:
        inflate(data, "br", 100)
    assert e.value.status == 415


def test_basic_auth_key_parsing() -> None:
    import base64

    assert key_from_basic_auth("Basic " + base64.b64encode(b"wk_abc:").decode()) == "wk_abc"
    assert key_from_basic_auth("Bearer x") is None
    with pytest.raises(RequestError):
        key_from_basic_auth("Basic !!!")


def test_collector_counts_and_dead_letters() -> None:
    c = Collector(IngestSettings())
    src = Source(id=3, name="天猫旗舰店", kind="tmall", write_key="wk", created_at=NOW, disabled=False)
    body = json.dumps({"batch": [{"type": "track", "event": "E", "userId": "u"}, {"type": "track"}]}).encode()
    p = c.prepare(body, source=src, implied_type=None, received_us=NOW_US)
    assert p.accepted == 1 and len(p.errors) == 1 and p.errors[0]["index"] == 1
    assert c.counters["accepted"] == 1 and c.counters["rejected"] == 1
