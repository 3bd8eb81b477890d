"""Profile attributes: the trait merge policies and the computed basics, in bulk and live."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache
from typing import Any

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera.domain.identity import IdentityRules, TraitMerge, TraitPolicies, default_rules
from tessera.services.profile_attributes import (
    ProfileAttributes,
    compute_one,
    read_attributes,
    refresh_attributes,
)
from tessera.stores.analytic import migrate

T0 = datetime(2025, 3, 1, 8, 0)
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
NAMES = {1: "官方App", 2: "CRM", 3: "微信小程序"}
EVIL = "x'); DROP TABLE events; --\\ \"é"


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def rules(
    default: TraitMerge = "latest", per_trait: Mapping[str, TraitMerge] | None = None, priority: Any = ()
) -> IdentityRules:
    policies = TraitPolicies(default=default, per_trait=dict(per_trait or {}), source_priority=list(priority))
    return default_rules().model_copy(update={"traits": policies})


class Store:
    """A small analytic store filled row by row: profiles own observations, rows point at them."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self._n = 0

    def _id(self, prefix: str) -> str:
        self._n += 1
        return f"{prefix}{self._n}"

    def profile(self, profile_idx: int, *obs_idxs: int) -> None:
        self.con.execute(
            "INSERT INTO profiles (profile_idx, profile_id, created_at) VALUES (?, ?, ?)",
            [profile_idx, f"p_{profile_idx}", T0],
        ).fetchall()
        for obs in obs_idxs:
            self.con.execute(
                "INSERT INTO identity_links VALUES (?, ?, ?, [], ?, NULL, 'test', ?)",
                [obs, obs, f"k{obs}", T0, profile_idx],
            ).fetchall()

    def event(
        self, obs: int | None, t: datetime, traits: Any = None, *, source: int = 1, type: str = "identify"
    ) -> None:
        self.con.execute(
            'INSERT INTO events (message_id, source_id, type, "timestamp", received_at, traits, identity_idx) '
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [self._id("m"), source, type, t, t, None if traits is None else json.dumps(traits), obs],
        ).fetchall()

    def order(
        self,
        obs: int | None,
        t: datetime,
        total: str,
        *,
        status: str | None = "paid",
        source: int | None = None,
        channel: str | None = None,
    ) -> None:
        self.con.execute(
            "INSERT INTO orders (order_id, source_id, channel, status, ordered_at, total, identity_idx) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            [self._id("o"), source, channel, status, t, Decimal(total), obs],
        ).fetchall()

    def customer(
        self,
        obs: int,
        *,
        source: int | None = None,
        updated_at: datetime | None = None,
        attributes: Any = None,
        **columns: Any,
    ) -> None:
        names = ["customer_id", "source_id", "updated_at", "attributes", "identity_idx", *columns]
        values = [self._id("c"), source, updated_at, None if attributes is None else json.dumps(attributes), obs]
        self.con.execute(
            f"INSERT INTO customers ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
            [*values, *columns.values()],
        ).fetchall()

    def one(
        self, profile_idx: int = 1, r: IdentityRules | None = None, names: Mapping[int, str] = NAMES
    ) -> ProfileAttributes:
        return compute_one(self.con, profile_idx=profile_idx, rules=r or rules(), source_names=names)

    def traits(self, profile_idx: int = 1, r: IdentityRules | None = None) -> dict[str, Any]:
        return self.one(profile_idx, r).traits


def new_connection() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'").fetchall()
    migrate(con)
    return con


@pytest.fixture
def store() -> Iterator[Store]:
    con = new_connection()
    try:
        yield Store(con)
    finally:
        con.close()


# -- policies ----------------------------------------------------------------------------------
def test_conflicting_types_follow_the_policy_and_never_raise(store: Store) -> None:
    store.profile(1, 10, 11)
    store.event(10, at(1), {"age": "30"})
    store.event(11, at(2), {"age": 30})
    store.event(10, at(3), {"age": "abc"})
    assert store.traits()["age"] == "abc"
    assert store.traits(r=rules("first"))["age"] == "30"
    assert store.traits(r=rules(per_trait={"age": "sum"}))["age"] == 60
    assert store.traits(r=rules(per_trait={"age": "source_priority"}))["age"] == "abc"


def test_latest_takes_the_greatest_event_time_not_the_insertion_order(store: Store) -> None:
    store.profile(1, 10)
    store.event(10, at(5), {"city": "上海", "level": "gold"})
    store.event(10, at(1), {"city": "北京"})
    store.event(10, at(3), {"level": "silver"})
    assert store.traits() == {"city": "上海", "level": "gold"}
    assert store.traits(r=rules("first")) == {"city": "北京", "level": "silver"}
    assert store.traits(r=rules(per_trait={"city": "first"})) == {"city": "北京", "level": "gold"}


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_ties_on_time_are_broken_by_the_value_whatever_the_row_order(store: Store, order: tuple[str, str]) -> None:
    store.profile(1, 10)
    for value in order:
        store.event(10, at(1), {"tier": value})
    assert store.traits()["tier"] == "b"
    assert store.traits(r=rules("first"))["tier"] == "b"


def test_null_values_are_ignored(store: Store) -> None:
    store.profile(1, 10)
    store.event(10, at(1), {"email": "li@example.com", "nick": None})
    store.event(10, at(2), {"email": None})
    store.customer(10, updated_at=at(3), attributes={"email": None}, name=None)
    assert store.traits() == {"email": "li@example.com"}


def test_top_level_keys_only_nested_values_stay_json(store: Store) -> None:
    store.profile(1, 10)
    store.event(10, at(1), {"address": {"city": "杭州", "lines": ["西湖区", 1]}, "tags": ["a", "b"]})
    store.event(10, at(2), {"address": {"city": "上海"}})
    assert store.traits() == {"address": {"city": "上海"}, "tags": ["a", "b"]}


def test_only_identify_traits_objects_count(store: Store) -> None:
    store.profile(1, 10)
    store.event(10, at(1), {"plan": "free"})
    store.event(10, at(2), {"plan": "pro"}, type="track")
    store.event(10, at(3), ["not", "an", "object"])
    store.event(10, at(4), "a string")
    assert store.traits() == {"plan": "free"}


def test_source_priority_ranks_sources_by_name_unknown_last_then_latest(store: Store) -> None:
    store.profile(1, 10)
    store.event(10, at(1), {"name": "李雷 (CRM old)"}, source=2)
    store.event(10, at(2), {"name": "李雷 (CRM new)"}, source=2)
    store.event(10, at(3), {"name": "Li Lei (app)"}, source=1)
    store.event(10, at(4), {"name": "unknown source"}, source=9)
    store.event(10, at(5), {"name": "mini program"}, source=3)
    r = rules(per_trait={"name": "source_priority"}, priority=["CRM", "官方App"])
    assert store.traits(r=r)["name"] == "李雷 (CRM new)"
    # Without the CRM, the app ranks next; sources not in the list come after, latest first.
    r = rules(per_trait={"name": "source_priority"}, priority=["官方App", "nobody"])
    assert store.traits(r=r)["name"] == "Li Lei (app)"
    r = rules(per_trait={"name": "source_priority"}, priority=["nobody"])
    assert store.traits(r=r)["name"] == "mini program"


def test_sum_adds_numbers_and_numeric_strings_and_ignores_the_rest(store: Store) -> None:
    store.profile(1, 10)
    for value in (10, "5", 2.5, "abc", True, None, {"n": 1}, [1], "", "nan", "inf", " 7 "):
        store.event(10, at(1), {"points": value, "whole": 1 if value == 10 else "x"})
    store.event(10, at(1), {"junk": "abc"})
    r = rules("sum")
    traits = store.traits(r=r)
    assert traits == {"points": 24.5, "whole": 1}
    assert isinstance(traits["whole"], int)
    store.event(10, at(2), {"points": 0.5})
    assert store.traits(r=r)["points"] == 25 and isinstance(store.traits(r=r)["points"], int)


def test_a_sum_that_overflows_is_left_out(store: Store) -> None:
    store.profile(1, 10)
    store.event(10, at(1), {"big": 1e308, "n": 1})
    store.event(10, at(2), {"big": 1e308, "n": 2})
    assert store.traits(r=rules("sum")) == {"n": 3}


# -- customers ---------------------------------------------------------------------------------
def test_customer_columns_and_attributes_are_traits_at_their_update_time(store: Store) -> None:
    store.profile(1, 10, 11)
    store.customer(
        10,
        source=2,
        updated_at=at(2),
        attributes={"vip": True, "city": "苏州"},
        name="韩梅梅",
        birthday="1990-05-04",
        points=120,
        registered_at=at(-100),
        wechat_openid="o_123",  # identifiers are not traits
    )
    store.event(11, at(1), {"name": "Meimei", "city": "上海"})
    assert store.traits() == {
        "name": "韩梅梅",
        "city": "苏州",
        "vip": True,
        "birthday": "1990-05-04",
        "points": 120,
        "registered_at": str(at(-100)),
    }
    assert store.traits(r=rules("first"))["name"] == "Meimei"


def test_a_customer_without_a_time_uses_registered_at_and_else_loses(store: Store) -> None:
    store.profile(1, 10, 11, 12)
    store.customer(10, registered_at=at(5), gender="女")
    store.customer(11, gender="男", city="广州")
    store.event(12, at(1), {"gender": "unknown", "city": "深圳"})
    assert store.traits() == {"gender": "女", "city": "深圳", "registered_at": str(at(5))}
    # No time loses under ``first`` too.
    assert store.traits(r=rules("first"))["city"] == "深圳"


# -- basics ------------------------------------------------------------------------------------
def test_basics(store: Store) -> None:
    store.profile(1, 10, 11)
    store.profile(2, 20)
    store.event(10, at(2), {"a": 1}, source=1)
    store.event(11, at(3), type="track", source=3)
    store.event(10, at(4), type="page", source=9)  # a source without a name
    store.event(None, at(-50), {"a": 2})  # not linked to anyone
    store.event(20, at(-40), {"a": 3}, source=2)  # someone else
    store.order(10, at(-1), "100.50", status="paid", source=2, channel="tmall")
    store.order(11, at(1), "20.00", status="CANCELLED", channel="jd")
    store.order(11, at(6), "30.25", status="Refunded")
    store.order(10, at(5), "9.99", status=None, channel="tmall")
    got = store.one()
    assert got == ProfileAttributes(
        traits={"a": 1},
        first_seen=at(-1).replace(tzinfo=UTC),
        last_seen=at(6).replace(tzinfo=UTC),
        channels=sorted(["CRM", "jd", "tmall", "官方App", "微信小程序"]),
        event_count=3,
        order_count=4,
        total_spend=Decimal("110.49"),
        first_order_at=at(-1).replace(tzinfo=UTC),
        last_order_at=at(6).replace(tzinfo=UTC),
    )
    assert store.one(2).event_count == 1 and store.one(2).channels == ["CRM"]


def test_a_profile_with_nothing_has_empty_attributes(store: Store) -> None:
    store.profile(1)
    assert store.one() == ProfileAttributes()


def test_first_and_last_seen_without_orders_or_without_events(store: Store) -> None:
    store.profile(1, 10)
    store.profile(2, 20)
    store.event(10, at(1))
    store.event(10, at(2))
    store.order(20, at(7), "1.00")
    assert (store.one(1).first_seen, store.one(1).last_seen) == (at(1).replace(tzinfo=UTC), at(2).replace(tzinfo=UTC))
    assert store.one(2).first_seen == store.one(2).last_seen == at(7).replace(tzinfo=UTC)
    assert store.one(1).first_order_at is None and store.one(1).total_spend == Decimal("0.00")


def test_compute_one_of_a_missing_profile(store: Store) -> None:
    with pytest.raises(LookupError):
        store.one(42)


# -- refresh -----------------------------------------------------------------------------------
def _fill(store: Store) -> None:
    store.profile(1, 10, 11)
    store.profile(2, 20)
    store.profile(3)
    store.event(10, at(1), {"name": "A", "points": 3}, source=1)
    store.event(11, at(2), {"name": "B", "points": "4"}, source=2)
    store.event(20, at(3), {"name": "C"}, source=3)
    store.customer(11, source=2, updated_at=at(0), city="成都", attributes={"points": 5})
    store.order(10, at(4), "88.00", source=2, channel="offline")
    store.order(20, at(5), "12.00", status="cancelled")


def test_refresh_all_writes_every_profile_and_drops_stale_rows(store: Store) -> None:
    _fill(store)
    store.con.execute(
        "INSERT INTO profile_attributes (profile_idx, traits, updated_at) VALUES (99, '{}', ?)", [T0]
    ).fetchall()
    r = rules(per_trait={"points": "sum"})
    assert refresh_attributes(store.con, rules=r, source_names=NAMES, now=NOW) == 3
    assert store.con.execute("SELECT profile_idx, updated_at FROM profile_attributes ORDER BY 1").fetchall() == [
        (1, NOW.replace(tzinfo=None)),
        (2, NOW.replace(tzinfo=None)),
        (3, NOW.replace(tzinfo=None)),
    ]
    for idx in (1, 2, 3):
        assert read_attributes(store.con, profile_idx=idx) == compute_one(
            store.con, profile_idx=idx, rules=r, source_names=NAMES
        )
    one = read_attributes(store.con, profile_idx=1)
    assert one is not None and one.traits == {"name": "B", "points": 12, "city": "成都"}
    assert one.channels == ["CRM", "offline", "官方App"] and one.total_spend == Decimal("88.00")
    assert read_attributes(store.con, profile_idx=99) is None


def test_refresh_a_subset_leaves_the_others_and_deletes_vanished_profiles(store: Store) -> None:
    _fill(store)
    r = rules()
    assert refresh_attributes(store.con, rules=r, source_names=NAMES, now=NOW - timedelta(days=1)) == 3
    store.event(20, at(9), {"name": "D"})
    store.event(10, at(9), {"name": "E"})
    store.con.execute("DELETE FROM profiles WHERE profile_idx = 3").fetchall()
    assert refresh_attributes(store.con, rules=r, source_names=NAMES, profile_idxs=[2, 3, 3, 77], now=NOW) == 1
    rows = store.con.execute("SELECT profile_idx, updated_at, traits->>'name' FROM profile_attributes ORDER BY 1")
    assert rows.fetchall() == [
        (1, (NOW - timedelta(days=1)).replace(tzinfo=None), "B"),  # not listed: unchanged
        (2, NOW.replace(tzinfo=None), "D"),
    ]
    assert refresh_attributes(store.con, rules=r, source_names=NAMES, profile_idxs=[], now=NOW) == 0
    assert store.con.execute("SELECT count(*) FROM profile_attributes").fetchall() == [(2,)]


def test_refresh_runs_in_the_callers_transaction(store: Store) -> None:
    _fill(store)
    store.con.execute("BEGIN TRANSACTION").fetchall()
    assert refresh_attributes(store.con, rules=rules(), source_names=NAMES, now=NOW) == 3
    store.con.execute("ROLLBACK").fetchall()
    assert store.con.execute("SELECT count(*) FROM profile_attributes").fetchall() == [(0,)]


# -- user values never become SQL --------------------------------------------------------------
def test_trait_and_source_names_cannot_inject_sql(store: Store) -> None:
    store.profile(1, 10)
    store.event(10, at(1), {EVIL: "old", "n": 1}, source=1)
    store.event(10, at(2), {EVIL: "new", "n": 2}, source=2)
    names = {1: EVIL, 2: "other'); DELETE FROM profiles; --"}
    r = rules(per_trait={EVIL: "first", "n": "source_priority"}, priority=[EVIL])
    got = compute_one(store.con, profile_idx=1, rules=r, source_names=names)
    assert got.traits == {EVIL: "old", "n": 1}
    assert got.channels == sorted(names.values())
    assert refresh_attributes(store.con, rules=r, source_names=names, profile_idxs=[1], now=NOW) == 1
    assert read_attributes(store.con, profile_idx=1) == got
    assert store.con.execute("SELECT count(*) FROM events").fetchall() == [(2,)]
    assert store.con.execute("SELECT count(*) FROM profiles").fetchall() == [(1,)]


# -- the policies, against a plain Python implementation --------------------------------------
KEYS = ["age", "city", "points", EVIL]
NUMERIC_STRINGS = ["30", "-2.5", " 7 ", "1e3", ".5", "3.", "+4", "abc", "", "nan", "inf", "0x10", "1,5", "一"]
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.integers(min_value=-4000, max_value=4000).map(lambda n: n / 4),
    st.sampled_from(NUMERIC_STRINGS),
    st.text(alphabet="ab\"\\/ 上海'", max_size=4),
    st.dictionaries(st.sampled_from(["x", "y"]), st.integers(0, 3), max_size=2),
)
TIMES = st.sampled_from([at(0), at(1), at(2)])
ROWS = st.lists(
    st.tuples(
        st.sampled_from(["event", "customer"]),
        st.one_of(st.none(), TIMES),
        st.sampled_from([1, 2, 3, 9, None]),
        st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=4),
    ),
    max_size=8,
)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def model(rows: list[tuple[datetime | None, int | None, dict[str, Any]]], r: IdentityRules) -> dict[str, Any]:
    """The merge policies, written plainly."""
    priority = r.traits.source_priority

    def rank(source: int | None) -> int:
        name = NAMES.get(source) if source is not None else None
        return priority.index(name) if name in priority else len(priority)

    seen: dict[str, list[tuple[datetime | None, int | None, Any]]] = {}
    for t, source, traits in rows:
        for key, value in traits.items():
            if value is not None:
                seen.setdefault(key, []).append((t, source, value))
    out: dict[str, Any] = {}
    for key, values in seen.items():
        policy = r.traits.policy(key)
        if policy == "sum":
            numbers = [n for _, _, v in values if (n := _as_number(v)) is not None]
            if numbers:
                total = sum(numbers)
                out[key] = int(total) if total == math.trunc(total) and abs(total) < 2**53 else total
            continue

        def order(item: tuple[datetime | None, int | None, Any], policy: str = policy) -> tuple[int, int, int, str]:
            t, source, value = item
            micros = 0 if t is None else int(t.replace(tzinfo=UTC).timestamp() * 1_000_000)
            return (
                -rank(source) if policy == "source_priority" else 0,
                0 if t is None else 1,
                -micros if policy == "first" else micros,
                json.dumps(value, ensure_ascii=False, separators=(",", ":")),
            )

        out[key] = max(values, key=order)[2]
    return out


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and math.isclose(a, b, rel_tol=1e-9)
    return bool(a == b) and type(a) is type(b)


@cache
def _shared() -> Store:
    return Store(new_connection())


def _rule_pool() -> list[IdentityRules]:
    """Rule sets that between them give every key every policy (few, so the compiled SQL is reused)."""
    policies: list[TraitMerge] = ["latest", "first", "source_priority", "sum"]
    priorities = [["CRM", "官方App"], ["微信小程序", "gone"]]
    return [
        rules(policies[(j + 1) % 4], {key: policies[(i + j) % 4] for i, key in enumerate(KEYS)}, priorities[j % 2])
        for j in range(8)
    ]


RULE_POOL = _rule_pool()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=ROWS, r=st.sampled_from(RULE_POOL))
def test_policies_match_a_python_implementation(
    rows: list[tuple[str, datetime | None, int | None, dict[str, Any]]], r: IdentityRules
) -> None:
    store = _shared()
    for table in ("events", "customers", "identity_links", "profiles", "profile_attributes"):
        store.con.execute(f"DELETE FROM {table}").fetchall()
    store.profile(1, *range(10, 10 + len(rows)))
    inputs = []
    for obs, (kind, t, source, traits) in enumerate(rows, start=10):
        if kind == "event":
            t = t or at(0)  # events always have a time
            store.event(obs, t, traits, source=source or 1)
            inputs.append((t, source or 1, traits))
        else:
            store.customer(obs, source=source, updated_at=t, attributes=traits)
            inputs.append((t, source, traits))
    got = compute_one(store.con, profile_idx=1, rules=r, source_names=NAMES).traits
    want = model(inputs, r)
    assert got.keys() == want.keys()
    assert all(_close(got[k], want[k]) for k in want), (got, want)
    assert refresh_attributes(store.con, rules=r, source_names=NAMES, now=NOW) == 1
    stored = read_attributes(store.con, profile_idx=1)
    assert stored is not None and stored.traits == got
