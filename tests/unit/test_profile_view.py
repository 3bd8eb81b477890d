"""The 360° view on a small store built here: lookup, identities, orders, timeline paging, history, search."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pytest

from tessera.domain.identity import default_rules
from tessera.services import profile_view as pv
from tessera.stores.analytic import migrate

RULES = default_rules()
SOURCES = {1: "官方App", 2: "天猫旗舰店"}
T0 = datetime(2025, 3, 1, 8, 0)
A_IDS = [  # (type, value, source_id, first_seen, last_seen) of profile 1 (王小明)
    ("user_id", "u1", 1, T0, T0 + timedelta(hours=5)),
    ("phone", "+8613800138000", 1, T0, None),
    ("email", "wang@example.cn", 2, T0 + timedelta(hours=1), T0 + timedelta(hours=2)),
    ("anonymous_id", "anon-1", 1, T0, None),
    ("wechat_unionid", "o6_bmjrPTlm6_2sgVt7hMZOPfL2M", 1, T0, T0),
    ("member_id", "M-0001", 2, T0, T0),
]
B_IDS = [("user_id", "u2", 2, T0, T0), ("phone", "+8613912345678", 2, T0, T0)]
#: obs_idx → (profile_idx, identifiers seen together)
LINKS = {
    1: (1, [("user_id", "u1"), ("phone", "+8613800138000")]),
    2: (1, [("anonymous_id", "anon-1")]),
    3: (1, [("email", "wang@example.cn"), ("wechat_unionid", "o6_bmjrPTlm6_2sgVt7hMZOPfL2M"), ("member_id", "M-0001")]),
    4: (2, [("user_id", "u2"), ("phone", "+8613912345678")]),
}
#: (message_id, obs_idx, source_id, type, name, minutes after T0) — two share a timestamp on purpose.
EVENTS = [
    ("m1", 2, 1, "page", "首页", 0),
    ("m2", 2, 1, "track", "Product Viewed", 10),
    ("m3", 1, 1, "identify", None, 20),
    ("m4", 1, 1, "track", "Product Viewed", 30),
    ("m5", 1, 1, "track", "Product Added", 30),
    ("m6", 3, 2, "track", "Order Completed", 40),
    ("m7", 1, 1, "track", "Product Viewed", 50),
    ("b1", 4, 2, "track", "Product Viewed", 45),
    ("b2", 4, 2, "track", "Order Completed", 55),
]


def _insert(con: duckdb.DuckDBPyConnection) -> None:
    for idx, pid, anchor in ((1, "p_a", ("user_id", "u1")), (2, "p_b", ("user_id", "u2"))):
        con.execute(
            "INSERT INTO profiles VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, 'k')",
            [idx, pid, T0, T0, T0 + timedelta(hours=idx), anchor[0], anchor[1], T0],
        )
    for idx, held in ((1, A_IDS), (2, B_IDS)):
        for t, v, src, first, last in held:
            con.execute(
                "INSERT INTO profile_identifiers VALUES (?, ?, ?, ?, ?, ?, ?)", [t, v, idx, src, first, last, T0]
            )
    for obs, (idx, seen) in LINKS.items():
        con.execute(
            "INSERT INTO identity_links VALUES (?, ?, ?, ?, ?, 1, 'collect', ?)",
            [obs, obs, f"k{obs}", [{"id_type": t, "id_value": v} for t, v in seen], T0, idx],
        )
    for mid, obs, src, typ, name, minutes in EVENTS:
        event_id = None
        if name is not None:
            con.execute("INSERT INTO event_names (name) VALUES (?) ON CONFLICT DO NOTHING", [name])
            event_id = con.execute("SELECT event_id FROM event_names WHERE name = ?", [name]).fetchall()[0][0]
        ts = T0 + timedelta(minutes=minutes)
        revenue = Decimal("1798.00") if name == "Order Completed" else None
        con.execute(
            """INSERT INTO events (message_id, source_id, type, event_id, "timestamp", received_at, revenue, channel,
                                   properties, identity_idx) VALUES (?, ?, ?, ?, ?, ?, ?, 'app', ?, ?)""",
            [mid, src, typ, event_id, ts, ts, revenue, json.dumps({"i": mid, "城市": "杭州"}), obs],
        )
    for oid, obs, minutes, total, items in (
        ("O-1", 1, 10, "899.00", [1]),
        ("O-2", 3, 40, "1798.00", [2, 1]),
        ("O-3", 2, 70, "59.90", []),
        ("O-B", 4, 60, "100.00", [5]),
    ):
        con.execute(
            """INSERT INTO orders (order_id, source_id, channel, status, ordered_at, total, currency, identity_idx)
               VALUES (?, 2, 'tmall', 'paid', ?, ?, 'CNY', ?)""",
            [oid, T0 + timedelta(minutes=minutes), Decimal(total), obs],
        )
        for line, qty in enumerate(items, 1):
            con.execute("INSERT INTO order_items VALUES (?, ?, 'SKU-1', ?, 1, 1, NULL, NULL)", [oid, line, qty])
    con.execute("INSERT INTO customers (customer_id, name, identity_idx) VALUES ('C1', '王小明', 1), ('C2', NULL, 4)")
    con.execute("INSERT INTO profile_attributes (profile_idx, traits, updated_at) VALUES (2, ?, ?)",
                [json.dumps({"name": "Li Lei 李雷"}), T0])  # fmt: skip
    con.execute(
        """INSERT INTO profile_redirects VALUES
           ('p_old', 'email', 'wang@example.cn', ?, 'p_a'),
           ('p_gone', 'phone', '+8613700000000', ?, 'p_b')""",
        [T0, T0],
    )
    for action, pid, others, reason in (
        ("drop", "p_old", [], "limit: one user_id"),
        ("merge", "p_a", ["p_old"], "email:wang@example.cn links both"),
        ("merge", "p_x", ["p_y"], "unrelated"),
        ("merge", "p_z", ["p_old", "p_q"], "p_old was involved"),
        ("split", "p_b", [], "unmerged by hand"),
    ):
        con.execute(
            """INSERT INTO identity_log (logged_at, event_time, action, profile_id, other_ids, reason, origin, run)
               VALUES (?, ?, ?, ?, ?, ?, 'collect', 'r1')""",
            [T0, T0, action, pid, others, reason],
        )


@pytest.fixture(scope="module")
def cur() -> Iterator[duckdb.DuckDBPyConnection]:
    """One store for the module: the view only reads (the injection tests check that nothing changed)."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    migrate(con)
    _insert(con)
    yield con
    con.close()


def _find(cur: duckdb.DuckDBPyConnection, **kw: Any) -> pv.ProfileRef | None:
    return pv.find_profile(cur, rules=RULES, **kw)


def _obs(cur: duckdb.DuckDBPyConnection, pid: str) -> list[int]:
    ref = _find(cur, profile_id=pid)
    assert ref is not None
    return pv.observations(cur, profile_idx=ref.profile_idx)


# -- lookup --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "identifier",
    [
        "user_id:u1",
        "phone:138 0013 8000",
        "phone:+86 138-0013-8000",
        "phone:+8613800138000",
        "PHONE:13800138000",
        "email:Wang@Example.CN",
        "anonymous_id:anon-1",
        "wechat_unionid:o6_bmjrPTlm6_2sgVt7hMZOPfL2M",
        "member_id:M-0001",
        " user_id:u1 ",
    ],
)
def test_lookup_by_every_identifier_type(cur: duckdb.DuckDBPyConnection, identifier: str) -> None:
    assert _find(cur, identifier=identifier) == pv.ProfileRef(profile_idx=1, profile_id="p_a")


def test_lookup_by_profile_id_and_redirected_ids(cur: duckdb.DuckDBPyConnection) -> None:
    assert _find(cur, profile_id="p_b") == pv.ProfileRef(profile_idx=2, profile_id="p_b")
    # merged away: the anchor (email) is held by p_a now
    assert _find(cur, profile_id="p_old") == pv.ProfileRef(profile_idx=1, profile_id="p_a", redirected_from="p_old")
    # nobody holds the anchor any more: merged_into answers
    assert _find(cur, profile_id="p_gone") == pv.ProfileRef(profile_idx=2, profile_id="p_b", redirected_from="p_gone")


def test_unknown_identifier_or_id_finds_nothing(cur: duckdb.DuckDBPyConnection) -> None:
    assert _find(cur, identifier="user_id:nobody") is None
    assert _find(cur, identifier="phone:13900000000") is None
    assert _find(cur, identifier="custom_crm:42") is None  # a custom type (context.externalIds) is a fine question
    assert _find(cur, profile_id="p_nobody") is None


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"identifier": "13800138000"}, "TYPE:VALUE"),
        ({"identifier": "phone:"}, "TYPE:VALUE"),
        ({"identifier": ":u1"}, "TYPE:VALUE"),
        ({"identifier": "phone:not a phone"}, "phone number"),
        ({"identifier": "phone:123"}, "phone number"),
        ({"identifier": "email:no-at-sign"}, "not an email"),
        ({"identifier": "email:test@test.com"}, "blocked"),
        ({"identifier": "user_id:undefined"}, "blocked"),
        ({"identifier": "Bad Type!:x"}, "not an identifier type"),
        ({}, "either"),
        ({"identifier": "user_id:u1", "profile_id": "p_a"}, "either"),
    ],
)
def test_malformed_identifier_names_the_problem(
    cur: duckdb.DuckDBPyConnection, kw: dict[str, str], needle: str
) -> None:
    with pytest.raises(pv.ProfileViewError, match=needle) as info:
        _find(cur, **kw)
    assert info.value.field == "identifier"
    assert isinstance(info.value, ValueError)


# -- sections ------------------------------------------------------------------------------------


def test_identities_in_priority_order_with_sources_and_live_last_seen(cur: duckdb.DuckDBPyConnection) -> None:
    ids = pv.identities(cur, profile_idx=1, rules=RULES, source_names=SOURCES)
    assert [i.type for i in ids] == ["user_id", "member_id", "phone", "email", "wechat_unionid", "anonymous_id"]
    by = {i.type: i for i in ids}
    assert by["phone"].value == "+8613800138000" and by["phone"].label_zh == "手机号"
    assert by["email"].source == "天猫旗舰店" and by["user_id"].source == "官方App"
    assert by["user_id"].last_seen == datetime(2025, 3, 1, 13, 0, tzinfo=UTC)  # stored
    # not stored: the latest event of the observations carrying it (obs 1: m7 at +50 min, obs 2: m2 at +10)
    assert by["phone"].last_seen == datetime(2025, 3, 1, 8, 50, tzinfo=UTC)
    assert by["anonymous_id"].last_seen == datetime(2025, 3, 1, 8, 10, tzinfo=UTC)
    assert all(i.first_seen is not None and i.first_seen.tzinfo is UTC for i in ids)


def test_orders_latest_first_with_item_counts(cur: duckdb.DuckDBPyConnection) -> None:
    got = pv.orders(cur, obs=_obs(cur, "p_a"), source_names=SOURCES)
    assert [(o.order_id, o.item_count, o.quantity) for o in got] == [("O-3", 0, 0), ("O-2", 2, 3), ("O-1", 1, 1)]
    assert got[1].total == Decimal("1798.00") and got[1].source == "天猫旗舰店" and got[1].currency == "CNY"
    assert [o.order_id for o in pv.orders(cur, obs=_obs(cur, "p_a"), source_names=SOURCES, limit=1)] == ["O-3"]
    assert pv.orders(cur, obs=[], source_names=SOURCES) == []


def _all_pages(cur: duckdb.DuckDBPyConnection, limit: int, **kw: Any) -> list[list[str]]:
    pages, before = [], None
    while True:
        page = pv.timeline(cur, obs=_obs(cur, "p_a"), source_names=SOURCES, limit=limit, before=before, **kw)
        pages.append([e.message_id for e in page.events])
        if page.next_before is None:
            return pages
        before = page.next_before


def test_timeline_pages_newest_first_through_ties(cur: duckdb.DuckDBPyConnection) -> None:
    assert _all_pages(cur, 3) == [["m7", "m6", "m5"], ["m4", "m3", "m2"], ["m1"]]
    assert _all_pages(cur, 2) == [["m7", "m6"], ["m5", "m4"], ["m3", "m2"], ["m1"]]  # m5/m4 share a timestamp
    assert _all_pages(cur, 7) == [["m7", "m6", "m5", "m4", "m3", "m2", "m1"]]  # exactly full: no empty next page
    first = pv.timeline(cur, obs=_obs(cur, "p_a"), source_names=SOURCES, limit=1).events[0]
    assert first.event == "Product Viewed" and first.type == "track" and first.source == "官方App"
    assert first.properties == {"i": "m7", "城市": "杭州"} and first.timestamp.tzinfo is UTC
    assert pv.timeline(cur, obs=_obs(cur, "p_a"), source_names=SOURCES, limit=2, before=None).events[1].revenue == 1798


def test_timeline_filters_by_event_name_and_time(cur: duckdb.DuckDBPyConnection) -> None:
    assert _all_pages(cur, 1, events=["Product Viewed"]) == [["m7"], ["m4"], ["m2"]]
    assert _all_pages(cur, 10, events=["首页", "Order Completed"]) == [["m6", "m1"]]
    since, until = T0.replace(tzinfo=UTC) + timedelta(minutes=20), T0 + timedelta(minutes=40)
    assert _all_pages(cur, 10, since=since, until=until) == [["m5", "m4", "m3"]]
    # an aware time in another zone means the same instant
    shanghai = (T0 + timedelta(minutes=30)).replace(tzinfo=UTC).astimezone(ZoneInfo("Asia/Shanghai"))
    page = pv.timeline(cur, obs=_obs(cur, "p_a"), source_names=SOURCES, before=shanghai)
    assert [e.message_id for e in page.events] == ["m3", "m2", "m1"]
    assert _all_pages(cur, 10, events=["Nothing"]) == [[]]


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"before": "yesterday"}, "before"),
        ({"before": "12|"}, "before"),
        ({"before": "9" * 40 + "|m"}, "before"),
        ({"limit": 0}, "limit"),
        ({"limit": 1001}, "limit"),
    ],
)
def test_timeline_rejects_bad_cursor_and_limits(cur: duckdb.DuckDBPyConnection, kw: dict[str, Any], field: str) -> None:
    with pytest.raises(pv.ProfileViewError) as info:
        pv.timeline(cur, obs=[1], source_names=SOURCES, **kw)
    assert info.value.field == field


def test_merge_history_covers_merged_away_ids(cur: duckdb.DuckDBPyConnection) -> None:
    ids = pv.identities(cur, profile_idx=1, rules=RULES, source_names=SOURCES)
    got = pv.merge_history(cur, profile_id="p_a", identities=ids)
    assert [(e.action, e.profile_id, e.other_ids) for e in got] == [
        ("merge", "p_z", ["p_old", "p_q"]),
        ("merge", "p_a", ["p_old"]),
        ("drop", "p_old", []),
    ]
    assert got[0].seq > got[1].seq and got[1].logged_at.tzinfo is UTC and got[1].run == "r1"
    b = pv.merge_history(
        cur, profile_id="p_b", identities=pv.identities(cur, profile_idx=2, rules=RULES, source_names={})
    )
    assert [e.action for e in b] == ["split"]


# -- search --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected", "matched"),
    [
        ("0013", ["p_a"], ["phone"]),
        ("138 0013", ["p_a"], ["phone"]),
        ("+86139", ["p_b"], ["phone"]),
        ("86 1", ["p_b", "p_a"], ["phone"]),  # most recently seen first
        ("EXAMPLE.cn", ["p_a"], ["email"]),
        ("wang@", ["p_a"], ["email"]),
        ("王小", ["p_a"], ["name"]),
        ("li lei", ["p_b"], ["name"]),
        ("李雷", ["p_b"], ["name"]),
        ("p_b", ["p_b"], ["profile_id"]),
        ("nobody", [], []),
    ],
)
def test_search_by_partial_phone_email_name(
    cur: duckdb.DuckDBPyConnection, q: str, expected: list[str], matched: list[str]
) -> None:
    hits = pv.search_profiles(cur, q=q)
    assert [h.profile_id for h in hits] == expected
    if hits:
        assert hits[0].matched == matched


def test_search_hits_carry_contact_details_and_respect_the_limit(cur: duckdb.DuckDBPyConnection) -> None:
    (a,) = pv.search_profiles(cur, q="王小明", rules=RULES)
    assert a.name == "王小明" and a.phones == ["+8613800138000"] and a.emails == ["wang@example.cn"]
    assert a.last_seen == datetime(2025, 3, 1, 9, 0, tzinfo=UTC)
    assert pv.search_profiles(cur, q="李雷")[0].name == "Li Lei 李雷"  # attributes' name wins over customers'
    assert len(pv.search_profiles(cur, q="86 1", limit=1)) == 1
    for q in ("x", " ", " a "):
        with pytest.raises(pv.ProfileViewError, match="at least 2") as info:
            pv.search_profiles(cur, q=q)
        assert info.value.field == "q"


# -- user values never become SQL ------------------------------------------------------------------

ATTACKS = [
    "x' OR '1'='1",
    "u1'; DROP TABLE profiles; --",
    '"); DELETE FROM events; --',
    "%%",
    "_%",
    "\\' OR 1=1 --",
    "p_a' UNION SELECT 1, 'p_b' --",
]


@pytest.mark.parametrize("attack", ATTACKS)
def test_injection_attempts_are_harmless(cur: duckdb.DuckDBPyConnection, attack: str) -> None:
    before = cur.execute("SELECT (SELECT count(*) FROM profiles), (SELECT count(*) FROM events)").fetchall()
    assert _find(cur, identifier=f"user_id:{attack}") is None
    assert _find(cur, profile_id=attack) is None
    assert pv.search_profiles(cur, q=attack) == []
    page = pv.timeline(cur, obs=_obs(cur, "p_a"), source_names=SOURCES, events=[attack, f"Product Viewed{attack}"])
    assert page.events == []
    with pytest.raises(pv.ProfileViewError):
        pv.timeline(cur, obs=[1], source_names=SOURCES, before=attack)
    after = cur.execute("SELECT (SELECT count(*) FROM profiles), (SELECT count(*) FROM events)").fetchall()
    assert before == after == [(2, len(EVENTS))]


def test_a_cursor_carrying_sql_only_pages(cur: duckdb.DuckDBPyConnection) -> None:
    page = pv.timeline(cur, obs=_obs(cur, "p_a"), source_names=SOURCES, before="9999999999999999|z' OR 1=1 --")
    assert [e.message_id for e in page.events][:2] == ["m7", "m6"]


# -- the whole view ------------------------------------------------------------------------------


def test_profile_360_has_every_section(cur: duckdb.DuckDBPyConnection) -> None:
    ref = _find(cur, profile_id="p_old")
    assert ref is not None
    view = pv.profile_360(cur, ref=ref, rules=RULES, source_names=SOURCES, timeline_limit=2, orders_limit=2)
    assert view.profile.profile_id == "p_a" and view.redirected_from == "p_old"
    assert view.profile.anchor_type == "user_id" and view.profile.created_at.tzinfo is UTC
    assert [e.message_id for e in view.timeline.events] == ["m7", "m6"] and view.timeline.next_before
    assert [o.order_id for o in view.orders] == ["O-3", "O-2"]
    assert len(view.identities) == len(A_IDS) and len(view.merge_history) == 3
    assert view.consents == [] and view.tags == [] and view.audiences == []
    assert view.attributes.event_count == 7 and view.attributes.order_count == 3
    body = json.loads(view.model_dump_json())
    assert set(body) >= {"profile", "attributes", "identities", "consents", "tags", "audiences", "orders",
                         "timeline", "merge_history"}  # fmt: skip
