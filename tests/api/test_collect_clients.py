"""Real Segment and RudderStack Python clients send to a real server; everything lands and reads back."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from rudderstack.analytics.client import Client as RudderClient
from segment.analytics.client import Client as SegmentClient

from tests.conftest import ServerProcess, make_source

pytestmark = pytest.mark.slow


def _events(server: ServerProcess, **params: Any) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    before = None
    while True:
        q = {**params, "limit": 1000, **({"before": before} if before else {})}
        r = server.admin("GET", "/v1/admin/events", params=q)
        assert r.status_code == 200, r.text
        page = r.json()
        out.extend(page["events"])
        before = page.get("next_before")
        if not before:
            return out


def _send_every_call_type(client: Any, uid: str) -> None:
    ctx = {
        "campaign": {"source": "wechat", "medium": "social", "name": "双11预热"},
        "traits": {"city": "杭州"},
        "ip": "10.1.2.3",
    }
    client.identify(
        uid,
        {"name": "王小明", "phone": "+8613800138000", "wechat_unionid": "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"},
        context=ctx,
    )
    client.track(uid, "Product Viewed", {"product_id": "SKU-001", "price": 899.0, "category": "冲锋衣"}, context=ctx)
    client.track(uid, "Order Completed", {"order_id": "O-1", "revenue": 1798.0, "currency": "CNY"})
    client.page(uid, "商品", "冲锋衣详情页", {"url": "https://shop.example.cn/p/1"})
    client.screen(uid, "App", "会员中心", {"tab": "points"})
    client.group(uid, "store-hz-01", {"name": "杭州西湖店"})
    client.alias("anon-" + uid, uid)


def _check_every_call_type(server: ServerProcess, uid: str, *, context_traits_merged: bool = True) -> None:
    server.flush()
    events = _events(server, user_id=uid)
    by_type = {e["type"]: e for e in events}
    assert set(by_type) == {"identify", "track", "page", "screen", "group", "alias"}
    ident = by_type["identify"]
    assert ident["traits"]["name"] == "王小明"
    if context_traits_merged:  # (rudder-sdk-python replaces context.traits with the traits itself)
        assert ident["traits"]["city"] == "杭州"  # context.traits merged into identify traits
    assert ident["context"]["campaign"]["name"] == "双11预热"
    orders = [e for e in events if e["event"] == "Order Completed"]
    assert orders and orders[0]["revenue"] == 1798.0 and orders[0]["order_id"] == "O-1"
    assert by_type["page"]["event"] == "冲锋衣详情页"
    assert by_type["screen"]["properties"]["tab"] == "points"
    viewed = [e for e in events if e["event"] == "Product Viewed"][0]
    assert viewed["product_id"] == "SKU-001"
    # the server stamps receivedAt; the stored timestamp is skew-corrected and close to now
    now = datetime.now(UTC)
    for e in events:
        assert abs(datetime.fromisoformat(e["timestamp"]) - now) < timedelta(minutes=5)


def test_segment_python_client_every_call_type(server: ServerProcess, write_key: str) -> None:
    client = SegmentClient(write_key, host=server.url, sync_mode=True, max_retries=0, gzip=True)
    uid = "m_" + uuid.uuid4().hex[:8]
    _send_every_call_type(client, uid)  # sync mode: each call is one request that must succeed
    _check_every_call_type(server, uid)


def test_rudder_python_client_every_call_type(server: ServerProcess, data_dir: Any) -> None:
    key = make_source(data_dir, "官网 Web", "web")
    client = RudderClient(key, host=server.url, sync_mode=True, max_retries=0, gzip=True)
    uid = "r_" + uuid.uuid4().hex[:8]
    _send_every_call_type(client, uid)  # sync mode: each call is one request that must succeed
    _check_every_call_type(server, uid, context_traits_merged=False)
    # attributed to the source of the write key
    sources = {s["name"]: s["id"] for s in server.admin("GET", "/v1/admin/sources").json()}
    assert {e["source_id"] for e in _events(server, user_id=uid)} == {sources["官网 Web"]}


def test_ten_thousand_events_from_both_clients_all_arrive(server: ServerProcess, write_key: str) -> None:
    errors: list[Any] = []
    seg = SegmentClient(write_key, host=server.url, gzip=True, max_retries=3, on_error=lambda e, b: errors.append(e),
                        upload_size=100, max_queue_size=20_000)  # fmt: skip
    rud = RudderClient(write_key, host=server.url, gzip=True, max_retries=3, on_error=lambda e, b: errors.append(e),
                       upload_size=100, max_queue_size=20_000)  # fmt: skip
    run = uuid.uuid4().hex[:6]
    for i in range(6000):
        seg.track(f"u{i % 700}", "Product Viewed", {"run": run, "i": i, "product_id": f"SKU{i % 50}"})
    for i in range(4000):
        rud.track(anonymous_id=f"dev{i % 300}", event="Product Added", properties={"run": run, "i": i})
    seg.flush()
    rud.flush()
    seg.shutdown()
    rud.shutdown()
    assert not errors
    server.flush()
    stats = server.admin("GET", "/v1/admin/stats").json()
    assert stats["totals"]["events"] == 10_000
    assert stats["totals"]["dead_letters"] == 0
    assert stats["totals"]["profiles"] == 700 + 300
