"""What a user notices: the condition language's meaning on a tiny, fixed world.

Each example runs through the reference evaluator and, when it is there, through the compiled
SQL on a real store; both must select exactly the people named.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.domain.conditions import EvalContext, Window, anniversary_matches, parse_condition
from tessera.stores.analytic import AnalyticStore
from tests.conditions.dataset import Dataset, Event, Identifier, Order, OrderItem, Product, Profile, Tag, write
from tests.conditions.harness import compiled_members, compiler_available
from tests.conditions.reference import Audiences, evaluate

# Shanghai: Tuesday 29 December 2026, 10:00.
NOW = datetime(2026, 12, 29, 2, 0, tzinfo=UTC)
T = datetime  # naive UTC, as stored

PEOPLE = {1: "张伟", 2: "李娜", 3: "王芳", 4: "陈静", 5: "赵磊"}
WORLD = Dataset(
    now=NOW.replace(tzinfo=None),
    profiles=[
        Profile(
            1,
            "p-zhang",
            T(2025, 5, 1),
            traits={"city": "上海", "birthday": "1990-01-02", "vip": True, "points": "120"},
            channels=["官方App", "小程序"],
            event_count=3,
            order_count=3,
            total_spend=Decimal("500.00"),
        ),
        Profile(
            2,
            "p-li",
            T(2025, 6, 1),
            traits={"city": "北京", "birthday": "1992-02-29", "vip": "true", "points": 120},
            channels=[],
            event_count=0,
            order_count=1,
            total_spend=Decimal("0.00"),
        ),
        Profile(3, "p-wang", T(2026, 1, 10), traits={"birthday": "1985-12-31"}, channels=["天猫"], event_count=2),
        Profile(4, "p-chen", T(2026, 2, 1), traits={"city": None, "birthday": "not a date"}, channels=["门店"]),
        Profile(5, "p-zhao", T(2026, 12, 28), attributes=False),  # too new: no attributes computed yet
    ],  # fmt: skip
    events=[
        Event(1, "加入购物车", T(2026, 12, 20, 3), revenue=Decimal("199.00")),
        Event(1, "加入购物车", T(2026, 12, 27, 12), revenue=Decimal("99.50")),
        Event(4, "下单", T(2026, 1, 15)),
        Event(3, "浏览商品", T(2026, 12, 28)),
        # Points redeemed: a huge amount, and a tiny one written as text.
        Event(4, "兑换积分", T(2026, 12, 1), properties={"积分": 1e30}),
        Event(3, "兑换积分", T(2026, 12, 1), properties={"积分": "0.00000000001"}),
        # Check-ins around local midnights: Shanghai is UTC+8.
        Event(1, "签到", T(2026, 1, 31, 15, 59, 59)),  # 31 Jan 23:59:59 in Shanghai
        Event(3, "签到", T(2026, 1, 31, 16, 0, 0)),  # 1 Feb 00:00 in Shanghai
        Event(4, "签到", T(2025, 12, 31, 16, 0, 0)),  # 1 Jan 00:00 in Shanghai
    ],
    products=[Product("p1", "女装"), Product("p2", "鞋履")],
    orders=[
        Order("o-0", 1, T(2026, 1, 1), Decimal("50.00"), status="Cancelled", items=[OrderItem("p1")]),
        Order("o-1", 1, T(2026, 3, 1), Decimal("300.00"), status="paid", channel="天猫", items=[OrderItem("p1")]),
        Order("o-2", 1, T(2026, 6, 1), Decimal("200.00"), status="PAID", coupon_code="NEW10", items=[OrderItem("p2")]),
        Order("o-5", 2, T(2026, 5, 5), Decimal("999.00"), status="REFUNDED"),
        Order("o-7", 3, T(2026, 12, 1), Decimal("88.00"), status="completed", items=[OrderItem("p2")]),
    ],
    tags=[
        Tag(1, "偏好品类", "女装", None),
        Tag(1, "偏好品类", "鞋履", None),
        Tag(1, "rfm_score", "95", 95.0),
        Tag(2, "rfm_score", "40", 40.0),
    ],
    identifiers=[Identifier("phone", "+8613800138000", 1), Identifier("email", "li.na@example.com", 2)],
    audience_members={"静态-VIP": {2}},
)
AUDIENCES: Audiences = {
    "静态-VIP": None,
    "上海用户": parse_condition({"type": "attribute", "field": "city", "op": "eq", "value": "上海"}),
}


@pytest.fixture(scope="module")
def store() -> Iterator[AnalyticStore]:
    s = AnalyticStore(":memory:", threads=1)
    write(s, WORLD)
    yield s
    s.close()


def ctx(now: datetime = NOW, timezone: str = "Asia/Shanghai") -> EvalContext:
    return EvalContext(now=now, timezone=timezone)


def check(store: AnalyticStore, definition: dict[str, Any], *names: str, at: EvalContext | None = None) -> None:
    """The definition selects exactly these people, by the reference and by the compiled SQL."""
    at = at or ctx()
    cond = parse_condition(definition)
    expected = {i for i, n in PEOPLE.items() if n in names}
    assert set(names) <= set(PEOPLE.values()), names

    def who(members: set[int]) -> list[str]:
        return [PEOPLE[i] for i in sorted(members)]

    got = evaluate(cond, WORLD, at, AUDIENCES)
    assert got == expected, f"reference selects {who(got)}, the spec says {who(expected)}"
    if compiler_available():
        sql = compiled_members(store, cond, at, AUDIENCES)
        assert sql == expected, (
            f"COMPILER BUG: the SQL selects {who(sql)}, the spec says {who(expected)} for {definition}"
        )


EVERYONE = tuple(PEOPLE.values())


def everyone_but(*names: str) -> tuple[str, ...]:
    return tuple(n for n in EVERYONE if n not in names)


# --- two-valued leaves -------------------------------------------------------------------------


def test_neq_includes_profiles_without_the_attribute(store: AnalyticStore) -> None:
    check(store, {"type": "attribute", "field": "city", "op": "neq", "value": "上海"}, *everyone_but("张伟"))
    check(
        store, {"type": "attribute", "field": "city", "op": "not_in", "value": ["上海", "北京"]}, "王芳", "陈静", "赵磊"
    )


def test_a_null_trait_is_not_set(store: AnalyticStore) -> None:
    check(store, {"type": "attribute", "field": "city", "op": "is_set"}, "张伟", "李娜")
    check(store, {"type": "attribute", "field": "traits.city", "op": "is_not_set"}, "王芳", "陈静", "赵磊")


def test_numbers_read_numeric_text_and_text_reads_numbers(store: AnalyticStore) -> None:
    check(store, {"type": "attribute", "field": "points", "op": "eq", "value": 120}, "张伟", "李娜")
    check(store, {"type": "attribute", "field": "points", "op": "eq", "value": "120"}, "张伟", "李娜")
    check(store, {"type": "attribute", "field": "points", "op": "between", "value": [120, 120]}, "张伟", "李娜")
    check(store, {"type": "attribute", "field": "points", "op": "gt", "value": 120})


def test_true_is_a_json_boolean_not_the_text_true(store: AnalyticStore) -> None:
    check(store, {"type": "attribute", "field": "vip", "op": "eq", "value": True}, "张伟")
    check(store, {"type": "attribute", "field": "vip", "op": "eq", "value": "true"}, "张伟", "李娜")


def test_computed_columns_of_a_profile_without_attributes_are_missing(store: AnalyticStore) -> None:
    check(store, {"type": "attribute", "field": "event_count", "op": "eq", "value": 0}, "李娜")
    check(store, {"type": "attribute", "field": "event_count", "op": "is_not_set"}, "陈静", "赵磊")
    check(store, {"type": "attribute", "field": "created_at", "op": "within_last", "days": 2}, "赵磊")


def test_channels_is_a_list(store: AnalyticStore) -> None:
    check(store, {"type": "attribute", "field": "channels", "op": "eq", "value": "小程序"}, "张伟")
    check(store, {"type": "attribute", "field": "channels", "op": "in", "value": ["天猫", "门店"]}, "王芳", "陈静")
    check(store, {"type": "attribute", "field": "channels", "op": "not_in", "value": ["天猫"]}, *everyone_but("王芳"))


def test_regex_searches_and_is_case_sensitive_unless_asked(store: AnalyticStore) -> None:
    check(store, {"type": "attribute", "field": "profile_id", "op": "regex", "value": "an"}, "张伟", "王芳")
    check(store, {"type": "attribute", "field": "profile_id", "op": "regex", "value": "^P-Z"})
    check(store, {"type": "attribute", "field": "profile_id", "op": "regex", "value": "(?i)^P-Z"}, "张伟", "赵磊")


# --- behaviour -------------------------------------------------------------------------------------


def test_did_not_do_includes_profiles_with_no_events(store: AnalyticStore) -> None:
    did_not = {"type": "event", "event": "加入购物车", "count": {"op": "eq", "value": 0}}
    check(store, did_not, *everyone_but("张伟"))
    check(store, {**did_not, "window": {"last": 5}}, *everyone_but("张伟"))  # 27 Dec is within 5 days
    check(store, {**did_not, "window": {"last": 24, "unit": "hours"}}, *EVERYONE)


def test_sum_of_revenue_with_no_events_is_zero_but_avg_is_unknown(store: AnalyticStore) -> None:
    def revenue(fn: str, op: str, value: float) -> dict[str, Any]:
        return {
            "type": "event",
            "event": "加入购物车",
            "aggregate": {"fn": fn, "property": "revenue", "op": op, "value": value},
        }

    check(store, revenue("sum", "eq", 0), *everyone_but("张伟"))
    check(store, revenue("sum", "eq", 298.5), "张伟")
    check(store, revenue("avg", "gte", 0), "张伟")
    check(store, revenue("avg", "neq", 1), "张伟")  # no values: unknown, hence false, even for neq
    check(store, {"type": "not", "child": revenue("avg", "gte", 0)}, *everyone_but("张伟"))
    check(store, revenue("max", "eq", 199), "张伟")


def test_aggregates_read_numbers_as_ten_place_decimals(store: AnalyticStore) -> None:
    """``aggregate`` reads a property as DECIMAL(38, 10) (sums of amounts are exact: 0.1 + 0.2 = 0.3):
    10^28 or more is skipped, and digits past the 10th decimal place are rounded; a ``where`` filter
    on the same property reads it as a number, 1e30 included."""

    def points(fn: str, op: str, value: float) -> dict[str, Any]:
        return {
            "type": "event",
            "event": "兑换积分",
            "aggregate": {"fn": fn, "property": "积分", "op": op, "value": value},
        }

    check(
        store,
        {"type": "event", "event": "兑换积分", "where": [{"property": "积分", "op": "gt", "value": 1e29}]},
        "陈静",
    )
    check(store, points("sum", "gt", 1e29))  # 1e30 is skipped
    check(store, points("max", "gt", 0))  # 0.00000000001 is rounded to 0
    check(store, points("max", "eq", 0), "王芳")


def test_a_date_only_until_includes_that_whole_day(store: AnalyticStore) -> None:
    january = {"type": "event", "event": "签到", "window": {"since": "2026-01-01", "until": "2026-01-31"}}
    check(store, january, "张伟", "陈静")  # Shanghai midnights
    check(store, january, "张伟", "王芳", at=ctx(timezone="UTC"))


def test_until_a_datetime_is_exclusive(store: AnalyticStore) -> None:
    check(store, {"type": "event", "event": "签到", "window": {"until": "2026-01-31T23:59:59"}}, "陈静")
    check(store, {"type": "event", "event": "签到", "window": {"until": "2026-01-31T23:59:59.000001"}}, "张伟", "陈静")


def test_a_datetime_at_midnight_stays_a_datetime() -> None:
    """``until`` 2026-01-31T00:00:00Z is that instant — not the end of 31 January in Shanghai."""
    for text in ("2026-01-31T00:00:00Z", "2026-01-31T00:00:00+08:00", "2026-01-31T00:00:00"):
        until = Window.model_validate({"until": text}).until
        assert isinstance(until, datetime), (
            f"DOMAIN BUG (tessera.domain.conditions.Window): until {text!r} validates as the date {until!r}, "
            "so the window runs to the end of that day and the offset is lost "
            "(pydantic's left-to-right union tries date first and accepts a midnight datetime)"
        )


def test_before_and_after_a_date_exclude_the_whole_local_day(store: AnalyticStore) -> None:
    check(store, {"type": "attribute", "field": "created_at", "op": "after", "value": "2026-01-10"}, "陈静", "赵磊")
    check(store, {"type": "attribute", "field": "created_at", "op": "before", "value": "2026-01-10"}, "张伟", "李娜")
    # 10 Jan 00:00 UTC is 08:00 in Shanghai: after a datetime is strictly later.
    check(store, {"type": "attribute", "field": "created_at", "op": "after", "value": "2026-01-10T07:59:59"}, "王芳", "陈静", "赵磊")  # fmt: skip
    check(store, {"type": "attribute", "field": "created_at", "op": "after", "value": "2026-01-10T08:00:00"}, "陈静", "赵磊")  # fmt: skip


def test_first_occurrence_is_the_first_ever(store: AnalyticStore) -> None:
    cart = {"type": "event", "event": "加入购物车", "window": {"last": 5}}
    check(store, {**cart, "occurrence": "last"}, "张伟")
    check(store, {**cart, "occurrence": "first"})  # first added to cart on 20 Dec


# --- purchases -----------------------------------------------------------------------------------


def test_first_purchase_versus_repeat_purchase(store: AnalyticStore) -> None:
    march = {"since": "2026-02-01", "until": "2026-03-31"}
    # 张伟's cancelled January order does not count: his first purchase is 1 March.
    check(store, {"type": "order", "purchase": "first", "window": march}, "张伟")
    check(store, {"type": "order", "purchase": "repeat", "window": march})
    check(store, {"type": "order", "purchase": "repeat"}, "张伟")
    check(store, {"type": "order", "purchase": "first", "window": {"last": 60}}, "王芳")
    # The filters come first: his first order with a coupon is the June one.
    check(store, {"type": "order", "purchase": "first", "with_coupon": True, "window": {"since": "2026-05-01"}}, "张伟")


def test_no_qualifying_orders_is_zero(store: AnalyticStore) -> None:
    check(store, {"type": "order", "op": "eq", "value": 0}, "李娜", "陈静", "赵磊")
    check(store, {"type": "order", "measure": "total", "op": "lt", "value": 100}, *everyone_but("张伟"))
    check(store, {"type": "order", "measure": "total", "op": "eq", "value": 500}, "张伟")
    check(store, {"type": "order", "categories": ["鞋履"]}, "张伟", "王芳")


# --- anniversaries -------------------------------------------------------------------------------


def test_birthday_in_the_next_7_days_across_new_year(store: AnalyticStore) -> None:
    week = {"type": "attribute", "field": "birthday", "op": "anniversary_in_next", "days": 7}
    check(store, week, "张伟", "王芳")  # 29 Dec … 5 Jan: 31 Dec and 2 Jan


def test_29_february_counts_between_28_february_and_1_march(store: AnalyticStore) -> None:
    def soon(days: int) -> dict[str, Any]:
        return {"type": "attribute", "field": "birthday", "op": "anniversary_in_next", "days": days}

    common_year = ctx(datetime(2027, 2, 27, 4, 0, tzinfo=UTC))
    check(store, soon(1), at=common_year)  # 27–28 Feb
    check(store, soon(2), "李娜", at=common_year)  # 27 Feb – 1 Mar
    check(store, soon(1), "李娜", at=ctx(datetime(2028, 2, 28, 4, 0, tzinfo=UTC)))  # leap year: 28–29 Feb


def test_anniversaries_use_the_workspace_local_today(store: AnalyticStore) -> None:
    this_month = {"type": "attribute", "field": "birthday", "op": "anniversary_this_month"}
    new_years_eve = datetime(2026, 12, 31, 17, 0, tzinfo=UTC)  # already 1 January in Shanghai
    check(store, this_month, "张伟", at=ctx(new_years_eve))
    check(store, this_month, "王芳", at=ctx(new_years_eve, "UTC"))
    check(store, this_month, "王芳", at=ctx(new_years_eve, "America/New_York"))


def _literally(today: date, days: int, month: int, day: int) -> bool:
    """The module text: the (month, day) of one of today … today + N; 29 Feb between 28 Feb and 1 Mar."""
    span = [today + timedelta(days=k) for k in range(days + 1)]
    if any((d.month, d.day) == (month, day) for d in span):
        return True
    return (month, day) == (2, 29) and any(
        (d.month, d.day) == (2, 28) and (d + timedelta(days=1)) in span for d in span
    )


@settings(database=None)
@given(
    today=st.dates(date(2020, 1, 1), date(2032, 12, 31)),
    days=st.integers(1, 400),
    birthday=st.dates(date(1992, 1, 1), date(1992, 12, 31)),  # a leap year: every month and day
)
def test_anniversary_span_is_the_literal_list_of_days(today: date, days: int, birthday: date) -> None:
    now = datetime.combine(today, datetime.min.time()).replace(hour=12, tzinfo=UTC)
    span = EvalContext(now=now, timezone="UTC").anniversary_span(days)
    assert anniversary_matches(birthday.month, birthday.day, span) == _literally(
        today, days, birthday.month, birthday.day
    )


# --- windows, read literally ---------------------------------------------------------------------

ZONES = ("Asia/Shanghai", "UTC", "America/New_York")


def _literal_window(window: dict[str, Any], now: datetime, zone: str) -> tuple[datetime | None, datetime | None, bool]:
    """(start, end, end included) as the module text says, in aware UTC."""
    tz = ZoneInfo(zone)
    if "last" in window:
        span = timedelta(hours=window["last"]) if window.get("unit") == "hours" else timedelta(days=window["last"])
        return now - span, now, True  # the last N hours or days before now

    def instant(text: str, *, end: bool) -> datetime:
        if len(text) == 10:  # a date: local midnight; as an until, the end of that day
            day = date.fromisoformat(text) + timedelta(days=1 if end else 0)
            return datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
        t = datetime.fromisoformat(text)
        return (t if t.tzinfo else t.replace(tzinfo=tz)).astimezone(UTC)

    since, until = window.get("since"), window.get("until")
    return (
        instant(since, end=False) if since else None,
        instant(until, end=True) if until else None,
        False,  # until is exclusive
    )


@st.composite
def _windows(draw: st.DrawFn) -> tuple[dict[str, Any], datetime, str]:
    now = draw(st.datetimes(datetime(2026, 1, 1), datetime(2028, 12, 31), timezones=st.just(UTC)))
    zone = draw(st.sampled_from(ZONES))
    if draw(st.booleans()):
        window: dict[str, Any] = {"last": draw(st.integers(1, 800)), "unit": draw(st.sampled_from(("hours", "days")))}
        return window, now, zone

    def moment() -> str:
        t = now + timedelta(minutes=draw(st.integers(-400 * 1440, 400 * 1440)))
        if draw(st.booleans()):
            return t.date().isoformat()
        text = t.replace(tzinfo=None, second=1).isoformat()  # not midnight: see the test above
        return text + draw(st.sampled_from(("", "", "Z", "+08:00", "-05:00")))

    window = {k: moment() for k in draw(st.sampled_from((["since"], ["until"], ["since", "until"])))}
    return window, now, zone


@settings(database=None)
@given(case=_windows(), probe=st.integers(-3, 3))
def test_window_bounds_are_the_literal_text(case: tuple[dict[str, Any], datetime, str], probe: int) -> None:
    """:meth:`Window.bounds` (which the reference and the compiler share) against the text itself,
    at its edges and a microsecond either side."""
    window, now, zone = case
    start, end = Window.model_validate(window).bounds(EvalContext(now=now, timezone=zone))
    lit_start, lit_end, end_included = _literal_window(window, now, zone)
    for edge in (lit_start, lit_end):
        if edge is None:
            continue
        t = edge + timedelta(microseconds=probe)
        naive = t.astimezone(UTC).replace(tzinfo=None)
        inside = (start is None or start <= naive) and (end is None or naive < end)
        literal = (lit_start is None or lit_start <= t) and (
            lit_end is None or (t <= lit_end if end_included else t < lit_end)
        )
        assert inside == literal, (window, now, zone, t)


# --- tags, identifiers, audiences, buckets ---------------------------------------------------------


def test_tags(store: AnalyticStore) -> None:
    check(store, {"type": "tag", "tag": "偏好品类", "op": "all", "values": ["女装", "鞋履"]}, "张伟")
    check(store, {"type": "tag", "tag": "rfm_score", "op": "gte", "value": 90}, "张伟")
    check(store, {"type": "tag", "tag": "rfm_score", "op": "eq", "value": 40}, "李娜")
    check(store, {"type": "tag", "tag": "rfm_score", "op": "neq", "value": "95"}, *everyone_but("张伟"))
    check(store, {"type": "tag", "tag": "rfm_score"}, "张伟", "李娜")


def test_identifiers_and_audiences(store: AnalyticStore) -> None:
    check(store, {"type": "has_identifier", "id_types": ["phone", "wechat_openid"]}, "张伟")
    check(store, {"type": "in_audience", "audience": "静态-VIP"}, "李娜")
    check(store, {"type": "in_audience", "audience": "上海用户"}, "张伟")
    check(store, {"type": "not", "child": {"type": "in_audience", "audience": "静态-VIP"}}, *everyone_but("李娜"))


def test_random_bucket_is_md5_of_profile_id_and_salt(store: AnalyticStore) -> None:
    def bucket(profile_id: str) -> int:
        return int(hashlib.md5(f"{profile_id}:春季holdout".encode()).hexdigest()[:8], 16) % 10

    ids = {p.idx: p.profile_id for p in WORLD.profiles}
    low_half = [PEOPLE[i] for i, pid in ids.items() if bucket(pid) < 5]
    check(store, {"type": "random_bucket", "salt": "春季holdout", "buckets": 10, "low": 0, "high": 5}, *low_half)
    check(store, {"type": "random_bucket", "salt": "春季holdout", "buckets": 10, "low": 5, "high": 10}, *everyone_but(*low_half))  # fmt: skip
