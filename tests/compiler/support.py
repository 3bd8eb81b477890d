"""A small analytic store for the compiler's tests: five profiles, their events, orders, tags,
identifiers and one static audience, around a fixed now (1 March 2026, 12:00 in Shanghai)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tessera.compiler import AudienceMap, AudienceRef, CompileContext, compile_members
from tessera.domain.conditions import Condition, EvalContext, parse_condition
from tessera.stores.analytic import AnalyticStore

NOW = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)
NOW_UTC = NOW.replace(tzinfo=None)
EVIL = "x'); DROP TABLE profiles; -- \" $p1 :p1 {p1:String} \\ 上海"
STATIC = "静态-VIP"
DYNAMIC = "动态-上海"
AUDIENCES = AudienceMap.of(
    AudienceRef(STATIC, "static"),
    AudienceRef(
        DYNAMIC, "dynamic", parse_condition({"type": "attribute", "field": "city", "op": "eq", "value": "上海"})
    ),
)
CTX = CompileContext(EvalContext(now=NOW), audiences=AUDIENCES)
#: The tables a test checks are unharmed after running compiled SQL.
TABLES = ("profiles", "profile_attributes", "events", "event_names", "identity_links", "orders", "order_items",
          "products", "profile_tags", "profile_identifiers", "audience_members")  # fmt: skip


def ago(days: float = 0, hours: float = 0) -> datetime:
    return NOW_UTC - timedelta(days=days, hours=hours)


PROFILES: list[dict[str, Any]] = [
    {
        "idx": 1,
        "traits": {
            "city": "上海",
            "birthday": "1990-03-05",
            "member_level": "金卡",
            "points": 120,
            "vip": True,
            "score": "42",
            "a.b": "dot",
            "it's": "quote",
            "tags": ["a"],
        },
        "channels": ["官方App", "天猫"],
        "event_count": 5,
        "order_count": 2,
        "total_spend": Decimal("300.50"),
        "first_seen": datetime(2025, 1, 2),
        "last_order_at": ago(5),
    },
    {
        "idx": 2,
        # 28 Feb 20:00 in New York is 1 March 01:00 UTC
        "traits": {
            "city": "北京",
            "birthday": "1985-02-28T20:00:00-05:00",
            "points": "abc",
            "vip": False,
            "score": 7.5,
        },
        "channels": ["小程序"],
        "event_count": 2,
        "order_count": 1,
        "total_spend": Decimal("80.00"),
        "first_seen": datetime(2025, 6, 1),
    },
    {"idx": 3},  # no profile_attributes row yet
    {"idx": 4, "traits": {}, "channels": [], "event_count": 3, "order_count": 0, "total_spend": Decimal("0.00")},
    {
        "idx": 5,
        "traits": {"city": None, "points": "1e3", "birthday": "1992-02-29", "score": "NaN"},
        "channels": ["门店"],
    },
]
#: profile → its observations (identity_links.obs_idx); 99 belongs to no profile yet.
OBSERVATIONS = {1: (11, 12), 2: (21,), 3: (31,), 4: (41,), 5: (51,)}
ORPHAN = 99
EVENTS: list[tuple[int, str, datetime, dict[str, Any]]] = [
    (
        11,
        "下单",
        ago(1),
        {"revenue": Decimal("100.00"), "category": "女装", "properties": {"amount": 0.1, "sku": "A1"}},
    ),
    (12, "下单", ago(10), {"revenue": Decimal("200.50"), "properties": {"amount": 0.2, "sku": "B2"}}),
    (11, "浏览商品", ago(40), {"channel": "web"}),
    (21, "下单", ago(50), {"revenue": Decimal("10.00"), "properties": {"amount": "5"}}),
    (21, "浏览商品", ago(hours=2), {"properties": {"page": "首页"}}),
    (41, "浏览商品", ago(1), {}),
    (41, "浏览商品", ago(2), {}),
    (41, "浏览商品", ago(3), {"properties": {"page": None}}),
    (ORPHAN, "下单", ago(1), {"revenue": Decimal("1.00")}),
    (ORPHAN, "浏览商品", ago(1), {}),
]
PRODUCTS = [("p1", "女装"), ("p2", "男装"), ("p3", "鞋履")]
ORDERS: list[tuple[str, int, datetime, str, str | None, str | None, str | None, Sequence[str]]] = [
    # order_id, obs, ordered_at, total, status, channel, coupon, products
    ("o1", 11, ago(100), "50.00", "paid", "天猫", "NEW10", ["p1"]),
    ("o2", 12, ago(5), "250.50", "paid", "官方App", None, ["p2"]),
    ("o3", 11, ago(3), "999.00", "Cancelled", "官方App", None, ["p1"]),
    ("o4", 21, ago(20), "80.00", "PAID", "小程序", None, ["p1", "p3"]),
    ("o5", 41, ago(400), "30.00", None, "门店", None, ["p3"]),
    ("o6", ORPHAN, ago(1), "5.00", "paid", "天猫", None, ["p1"]),
]
TAGS = [(1, "会员等级", "金卡"), (1, "rfm_score", "95"), (1, "偏好品类", "女装"), (1, "偏好品类", "鞋履"),
        (2, "会员等级", "银卡"), (2, "rfm_score", "10"), (4, "rfm_score", "abc")]  # fmt: skip
IDENTIFIERS = [("phone", "13800138000", 1), ("email", "zw@example.com", 1), ("wechat_openid", "o-2", 2),
               ("phone", "13900139000", 4)]  # fmt: skip
MEMBERS = {STATIC: (1, 4)}


def _num(value: str) -> float | None:
    try:
        return float(value)
    except ValueError:
        return None


def fill(store: AnalyticStore) -> None:
    """Write the dataset above."""
    with store.transaction() as cur:
        for p in PROFILES:
            idx = p["idx"]
            cur.execute("INSERT INTO profiles (profile_idx, profile_id, created_at) VALUES (?, ?, ?)",
                        [idx, f"p_{idx}", datetime(2025, 1, idx)])  # fmt: skip
            if "traits" in p:
                cur.execute(
                    "INSERT INTO profile_attributes (profile_idx, traits, first_seen, channels, event_count, "
                    "order_count, total_spend, last_order_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [idx, json.dumps(p["traits"], ensure_ascii=False), p.get("first_seen"), p["channels"],
                     p.get("event_count"), p.get("order_count"), p.get("total_spend"), p.get("last_order_at"), NOW_UTC],
                )  # fmt: skip
        links = [(o, idx) for idx, obs in OBSERVATIONS.items() for o in obs] + [(ORPHAN, None)]
        for obs, idx in links:
            cur.execute("INSERT INTO identity_links VALUES (?, ?, ?, [], ?, 1, 'test', ?)",
                        [obs, obs, f"k{obs}", NOW_UTC, idx])  # fmt: skip
        names = sorted({e[1] for e in EVENTS})
        for i, name in enumerate(names):
            cur.execute("INSERT INTO event_names (event_id, name) VALUES (?, ?)", [i + 1, name])
        for n, (obs, name, t, cols) in enumerate(EVENTS):
            props = cols.get("properties")
            cur.execute(
                'INSERT INTO events (message_id, source_id, type, event_id, "timestamp", received_at, revenue, '
                "category, channel, properties, identity_idx) VALUES (?, 1, 'track', ?, ?, ?, ?, ?, ?, ?, ?)",
                [f"m{n}", names.index(name) + 1, t, t, cols.get("revenue"), cols.get("category"), cols.get("channel"),
                 None if props is None else json.dumps(props, ensure_ascii=False), obs],
            )  # fmt: skip
        cur.executemany("INSERT INTO products (product_id, category) VALUES (?, ?)", PRODUCTS)
        for order_id, obs, t, total, status, channel, coupon, items in ORDERS:
            cur.execute("INSERT INTO orders (order_id, ordered_at, total, status, channel, coupon_code, identity_idx) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?)", [order_id, t, Decimal(total), status, channel, coupon, obs])  # fmt: skip
            for line, product in enumerate(items):
                cur.execute("INSERT INTO order_items (order_id, line_no, product_id, quantity) VALUES (?, ?, ?, 1)",
                            [order_id, line + 1, product])  # fmt: skip
        for idx, key, value in TAGS:
            cur.execute("INSERT INTO profile_tags VALUES (?, ?, ?, ?, ?)", [idx, key, value, _num(value), NOW_UTC])
        cur.executemany(
            "INSERT INTO profile_identifiers (id_type, id_value, profile_idx) VALUES (?, ?, ?)", IDENTIFIERS
        )
        for audience, members in MEMBERS.items():
            for idx in members:
                cur.execute("INSERT INTO audience_members VALUES (?, ?, ?, ?)", [audience, idx, f"p_{idx}", NOW_UTC])


def open_store(path: Path, *, filled: bool = True) -> AnalyticStore:
    store = AnalyticStore(path / "analytic.duckdb", threads=1)
    if filled:
        fill(store)
    return store


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnalyticStore]:
    s = open_store(tmp_path_factory.mktemp("compiler"))
    yield s
    s.close()


def members(store: AnalyticStore, definition: dict[str, Any] | Condition, ctx: CompileContext = CTX) -> set[int]:
    """The profile_idx the compiled members query selects on the store."""
    cond = parse_condition(definition) if isinstance(definition, dict) else definition
    cur = store.cursor()
    try:
        return {int(r[0]) for r in compile_members(cond, ctx).execute(cur)}
    finally:
        cur.close()


def table_counts(store: AnalyticStore) -> dict[str, int]:
    cur = store.cursor()
    try:
        return {t: int(cur.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]) for t in TABLES}
    finally:
        cur.close()
