"""Hypothesis strategies: small worlds, and valid definitions that select someone in them.

Datasets are made around a ``now`` near the awkward days (New Year, 29 February, local midnights
in Shanghai and New York), with Chinese text, numbers, numeric strings, booleans, ISO dates and
datetimes, nulls, missing keys, keys with quotes, dots and spaces, and injection attempts.
Definitions draw their operands from the dataset's own values, so conditions select someone.
Every generated definition goes through :func:`parse_condition`.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Sequence
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from tessera.domain.conditions import COMPUTED_FIELDS, Condition, EvalContext, parse_condition
from tests.conditions.dataset import (
    Dataset,
    Event,
    Identifier,
    Order,
    OrderItem,
    Product,
    Profile,
    Tag,
    tag_value_num,
)
from tests.conditions.reference import Undefined, as_instant, as_number, as_text, event_property

Draw = Any  # hypothesis' draw function

TIMEZONES = ("Asia/Shanghai", "UTC", "America/New_York")
#: Clocks near the awkward days: New Year in Shanghai, 29 February (leap and not), DST in New York.
NOW_ANCHORS = (
    datetime(2026, 11, 23, 12, 0),
    datetime(2026, 12, 31, 17, 0),
    datetime(2028, 2, 28, 18, 30),
    datetime(2027, 2, 27, 23, 0),
    datetime(2026, 3, 8, 6, 45),
    datetime(2027, 1, 1, 3, 0),
)
INJECTION = "'; DROP TABLE events; --"
TEXTS = (
    "上海", "北京", "深圳", "金卡会员", "银卡", "普通会员", "Shanghai", "shanghai", INJECTION,
    "O'Brien", 'say "hi"', "50%_off", "a\\b", "", "true", "张伟", "li.na@example.com", "13800138000",
)  # fmt: skip
_ALPHABET = "abAB 上海北京会员卡%_'\".-@1"
TRAIT_KEYS = (
    "city", "member_level", "birthday", "points", "vip", "注册渠道", "last_visit", "score",
    "a.b", "it's", 'say "hi"', "first name", INJECTION, "channels", "event_count", "profile_id",
    "a/b", "~1", "", "$", "traits.x",
)  # fmt: skip
EVENT_NAMES = ("加入购物车", "下单", "浏览商品", "page_view", "Signed Up", 'it\'s "quoted"', INJECTION)
PROPERTY_KEYS = ("amount", "数量", "sku", "channel", "coupon", "a.b", "it's", "birthday", "note", "a/b", "~0")
CHANNELS = ("官方App", "小程序", "天猫", "京东", "门店", "web")
CURRENCIES = ("CNY", "USD", "cny")
PRODUCTS = (("p1", "女装"), ("p2", "男装"), ("p3", "鞋履"), ("p4", None), ("p5", "女装"), ("sku-'7", "美妆"))
STATUSES = ("paid", "PAID", "completed", "Cancelled", "CANCELLED", "cancelled", "refunded", "Refunded", None, None)
COUPONS = ("NEW10", "VIP20", "双11满减", "'; DROP TABLE orders; --")
TAG_KEYS = ("会员等级", "rfm_score", "偏好品类", "it's")
TAG_VALUES = ("高价值", "流失风险", "金卡", INJECTION, "10", "10.0", "2.5", "-1", "95", "007", "7", "1e2", "abc")
ID_TYPES = ("phone", "email", "wechat_openid", "tmall_id")
STATIC_AUDIENCE = "静态-VIP"


# --- values ------------------------------------------------------------------------------------


def _number(n: float) -> int | float:
    """JSON numbers as people write them: whole ones as integers."""
    return int(n) if float(n).is_integer() else n


def _iso_datetime(t: datetime, form: str) -> str:
    """An instant (naive UTC) written as ISO text in one of the forms people use."""
    match form:
        case "T":
            return t.strftime("%Y-%m-%dT%H:%M:%S")
        case "space":
            return t.strftime("%Y-%m-%d %H:%M:%S")
        case "Z":
            return t.strftime("%Y-%m-%dT%H:%M:%SZ")
        case "micro":
            return t.strftime("%Y-%m-%dT%H:%M:%S.%f")
        case "minutes":
            return t.strftime("%Y-%m-%dT%H:%M")
        case _:  # an offset: the same instant as local wall time there
            hours = int(form)
            local = t + timedelta(hours=hours)
            return local.strftime("%Y-%m-%dT%H:%M:%S") + f"{'+' if hours >= 0 else '-'}{abs(hours):02d}:00"


def instants(now: datetime) -> st.SearchStrategy[datetime]:
    """Times around now: whole hours and days back, the near future, local midnights, anything."""
    day0 = datetime.combine(now.date(), time())
    return st.one_of(
        st.integers(0, 72).map(lambda h: now - timedelta(hours=h)),
        st.integers(0, 400).map(lambda d: now - timedelta(days=d)),
        st.integers(1, 48).map(lambda h: now + timedelta(hours=h)),
        st.tuples(st.integers(-40, 40), st.sampled_from((0, 4, 5, 16)), st.sampled_from((0, -1))).map(
            lambda t: day0 + timedelta(days=t[0], hours=t[1], microseconds=t[2])
        ),
        st.integers(-400 * 86400, 30 * 86400).map(lambda s: now + timedelta(seconds=s)),
    )


def _birthdays(now: datetime) -> st.SearchStrategy[str]:
    """Dates whose month and day fall near today (any year), and the awkward ones."""

    def near(t: tuple[int, int]) -> str:
        d = now.date() + timedelta(days=t[0])
        try:
            return d.replace(year=t[1]).isoformat()
        except ValueError:  # 29 February in a common year
            return d.replace(year=1992).isoformat()

    return st.one_of(
        st.sampled_from(("1990-02-28", "1992-02-29", "1988-03-01", "1995-12-31", "2000-01-01", "1979-01-07")),
        st.tuples(st.one_of(st.sampled_from((-1, 0, 1, 2, 3, 7, 8)), st.integers(-3, 40)), st.integers(1960, 2010)).map(
            near
        ),
    )


def trait_value_kinds(now: datetime) -> dict[str, st.SearchStrategy[Any]]:
    """The kinds of value a trait can hold, by name.

    Numbers stay within what DECIMAL(38, 10) holds exactly: the compiler's aggregates read that
    (test_semantics.test_aggregates_read_every_finite_number pins the larger ones)."""
    numbers = st.one_of(st.integers(-1000, 100_000), st.integers(-2000, 2000).map(lambda n: _number(n / 4)))
    return {
        "text": st.one_of(st.sampled_from(TEXTS), st.text(_ALPHABET, max_size=8)),
        "number": numbers,
        "numeric text": st.one_of(st.sampled_from(("12", "-3.5", "1e3", "007", "0.5", "2.50")), numbers.map(str)),
        "not finite": st.sampled_from(("NaN", "inf", "-Infinity")),
        "bool": st.booleans(),
        "date": _birthdays(now),
        "datetime": st.tuples(instants(now), st.sampled_from(("T", "space", "Z", "micro", "minutes", "8", "-5"))).map(
            lambda t: _iso_datetime(*t)
        ),
        "bad date": st.sampled_from(("2026-02-30", "2026/01/02", "yesterday", "2026-13-01")),
        "null": st.none(),
        "list or object": st.sampled_from((["a", "上海"], {"k": 1})),
    }


#: How often a trait key mostly holds each kind (the rest of its values are of any kind).
_PRIMARY_KINDS = ("text", "text", "number", "numeric text", "bool", "date", "date", "datetime")


def _money(low: int, high: int) -> st.SearchStrategy[Decimal]:
    return st.integers(low, high).map(lambda n: Decimal(n) / 100)


# --- datasets ----------------------------------------------------------------------------------


_MONEY_OR_NONE = st.one_of(st.none(), _money(-5_000, 500_000))


def _typed_columns() -> list[dict[str, str | None]]:
    """Value sets for the typed text columns of an event (one draw picks a set: generation stays fast)."""
    rng = random.Random(20261123)
    pools: dict[str, Sequence[str | None]] = {
        "currency": (None, *CURRENCIES),
        "order_id": (None, "o1", "o2", INJECTION),
        "product_id": (None, *(p for p, _ in PRODUCTS)),
        "category": (None, *(c for _, c in PRODUCTS if c)),
        "channel": (None, *CHANNELS),
        "utm_source": (None, "wechat", "baidu", "douyin"),
        "utm_campaign": (None, *TEXTS),
    }
    combos = [dict.fromkeys(pools)]
    combos += [{k: rng.choice(v) for k, v in pools.items()} for _ in range(60)]
    return combos


_TYPED = st.sampled_from(_typed_columns())
_EVENT_TYPE = st.sampled_from(("track", "track", "track", "page", "screen"))
_CHANNEL = st.one_of(st.none(), st.sampled_from(CHANNELS))
_ITEM_PRODUCT = st.sampled_from([p for p, _ in PRODUCTS] + ["p-gone"])
_CHANNEL_LISTS = st.lists(st.sampled_from(CHANNELS), max_size=3, unique=True)
_TAG_VALUE_LISTS = st.lists(st.sampled_from(TAG_VALUES), max_size=2, unique=True)
_ID_TYPE_LISTS = st.lists(st.sampled_from(ID_TYPES), max_size=3, unique=True)
_STATUS = st.sampled_from(STATUSES)
_COUPON = st.one_of(st.none(), st.sampled_from(COUPONS))
_SPEND = _money(0, 200_000)
_TOTAL = _money(0, 300_000)


@st.composite
def datasets(draw: Draw, min_profiles: int = 5, max_profiles: int = 30, max_events: int = 40) -> Dataset:
    now = draw(st.sampled_from(NOW_ANCHORS)) + timedelta(minutes=draw(st.integers(-36 * 60, 36 * 60)))
    timezone = draw(st.sampled_from(TIMEZONES))
    when = instants(now)
    n = draw(st.integers(min_profiles, max_profiles))
    prefix = draw(st.sampled_from(("p", "用户-", "u'")))
    keys = draw(st.lists(st.sampled_from(TRAIT_KEYS), min_size=2, max_size=6, unique=True))
    kinds = trait_value_kinds(now)
    anything = st.one_of(*kinds.values())
    # Each key mostly holds one kind of value, as real traits do, with strays of every kind.
    primary = {k: kinds[draw(st.sampled_from(_PRIMARY_KINDS))] for k in keys}
    small, tiny = st.integers(0, 9), st.integers(0, 1)
    profiles: list[Profile] = []
    for i in range(n):
        idx = 3 * i + 1  # not dense: a row number is not a profile index
        p = Profile(idx=idx, profile_id=f"{prefix}{i}", created_at=draw(when), observations=1 + draw(tiny))
        p.attributes = draw(small) > 0
        if p.attributes:
            if draw(small) > 0:
                p.traits = {k: draw(primary[k] if draw(small) < 8 else anything) for k in keys if draw(small) < 7}
            p.first_seen, p.last_seen = sorted((draw(when), draw(when)))
            p.channels = draw(_CHANNEL_LISTS)
            p.event_count = draw(small)
            p.order_count = draw(small) % 4
            p.total_spend = draw(_SPEND)
            if p.order_count:
                p.first_order_at, p.last_order_at = sorted((draw(when), draw(when)))
        profiles.append(p)
    idxs = [p.idx for p in profiles]
    owner = st.one_of(st.sampled_from(idxs), st.sampled_from(idxs), st.sampled_from(idxs), st.none())
    names = st.sampled_from(draw(st.lists(st.sampled_from(EVENT_NAMES), min_size=2, max_size=4, unique=True)))
    prop_keys = draw(st.lists(st.sampled_from(PROPERTY_KEYS), min_size=1, max_size=4, unique=True))
    prop_values = {k: st.one_of(kinds[draw(st.sampled_from(_PRIMARY_KINDS))], anything) for k in prop_keys}
    properties = st.one_of(st.none(), st.fixed_dictionaries({}, optional=prop_values))
    events = [
        Event(
            profile_idx=draw(owner),
            name=draw(names),
            timestamp=draw(when),
            type=draw(_EVENT_TYPE),
            revenue=draw(_MONEY_OR_NONE),
            properties=draw(properties),
            **draw(_TYPED),
            observation=draw(tiny),
        )
        for _ in range(draw(st.integers(0, max_events)))
    ]
    products = [Product(p, c) for p, c in PRODUCTS]
    order_time = st.sampled_from(draw(st.lists(when, min_size=1, max_size=6)))  # shared times: ties
    order_numbers = draw(st.lists(st.integers(1, 999), min_size=2, max_size=25, unique=True))
    orders = [
        Order(
            order_id=f"o{num}",
            profile_idx=draw(owner),
            ordered_at=draw(order_time),
            total=draw(_TOTAL),
            status=draw(_STATUS),
            channel=draw(_CHANNEL),
            coupon_code=draw(_COUPON),
            items=[OrderItem(draw(_ITEM_PRODUCT), 1 + draw(tiny)) for _ in range(draw(small) % 4)],
            observation=draw(tiny),
        )
        for num in order_numbers
    ]
    tag_keys = draw(st.lists(st.sampled_from(TAG_KEYS), min_size=1, max_size=3, unique=True))
    tags = [
        Tag(idx, key, value, tag_value_num(value))
        for idx in idxs
        for key in tag_keys
        for value in draw(_TAG_VALUE_LISTS)
    ]
    identifiers = [Identifier(t, f"{t}-{idx}", idx) for idx in idxs for t in draw(_ID_TYPE_LISTS)]
    static = {idx for idx in idxs if draw(tiny)} | ({0} if draw(tiny) else set())  # 0: merged away
    return Dataset(
        now=now,
        timezone=timezone,
        profiles=profiles,
        events=events,
        products=products,
        orders=orders,
        tags=tags,
        identifiers=identifiers,
        audience_members={STATIC_AUDIENCE: static},
    )


# --- definitions -------------------------------------------------------------------------------

_REGEX_META = re.compile(r"([\\.^$|?*+()\[\]{}])")


def _regex_escape(text: str) -> str:
    """Escape the regex metacharacters only (RE2 and Python read the result the same way)."""
    return _REGEX_META.sub(r"\\\1", text)


def _readable(values: Sequence[Any], read: Any) -> list[Any]:
    out = []
    for v in values:
        try:
            r = read(v)
        except Undefined:  # not a candidate
            continue
        if r is not None:
            out.append(r)
    return out


@st.composite
def _number_test(draw: Draw, values: Sequence[Any]) -> dict[str, Any]:
    nums = [_number(x) for x in _readable(values, as_number)] + [0, 1, 100]
    pick = st.sampled_from(nums)
    op = draw(st.sampled_from(("eq", "neq", "in", "not_in", "gt", "gte", "lt", "lte", "between")))
    if op in ("in", "not_in"):
        return {"op": op, "value": draw(st.lists(pick, min_size=1, max_size=3))}
    if op == "between":
        return {"op": op, "value": sorted((draw(pick), draw(pick)))}
    return {"op": op, "value": draw(pick)}


@st.composite
def _text_test(draw: Draw, values: Sequence[Any]) -> dict[str, Any]:
    texts = [t for t in _readable(values, as_text) if isinstance(t, str)]
    pick = st.one_of(st.sampled_from(texts), st.sampled_from(TEXTS)) if texts else st.sampled_from(TEXTS)
    op = draw(st.sampled_from(("eq", "neq", "in", "not_in", "contains", "starts_with", "regex")))
    text = draw(pick)
    if op in ("in", "not_in"):
        return {"op": op, "value": draw(st.lists(pick, min_size=1, max_size=3))}
    if op == "contains":
        i = draw(st.integers(0, len(text)))
        return {"op": op, "value": text[i : draw(st.integers(i, len(text)))]}
    if op == "starts_with":
        return {"op": op, "value": text[: draw(st.integers(0, len(text)))]}
    if op == "regex":
        i = draw(st.integers(0, len(text)))
        part = _regex_escape(text[:i])
        rest = _regex_escape(text[i:])
        pattern = draw(
            st.sampled_from(
                (f"^{part}", f"{rest}$", f"(?i){part.upper()}", f"{part}|{rest}", "[0-9]+", "^[^@]+@", ".", "^$")
            )
        )
        return {"op": op, "value": pattern}
    return {"op": op, "value": text}


def _no_midnight(t: datetime) -> datetime:
    """A datetime at exactly midnight validates as a *date* (see test_semantics); keep datetimes datetimes."""
    return t + timedelta(microseconds=1) if t.time() == time() else t


def _instant_from(ds: Dataset, seen: Sequence[datetime]) -> st.SearchStrategy[datetime]:
    """Mostly exactly an instant in the data (comparison and window edges), else any time near now."""
    if not seen:
        return instants(ds.now)
    return st.one_of(st.sampled_from(seen), st.sampled_from(seen), instants(ds.now))


@st.composite
def _written(draw: Draw, ds: Dataset, t: datetime) -> str:
    """An instant as a condition operand (ISO text): as a local date, local wall time, UTC, an
    offset, or another zone's wall time."""
    form = draw(st.sampled_from(("date", "date", "local", "Z", "offset", "elsewhere")))
    local = t.replace(tzinfo=UTC).astimezone(ZoneInfo(ds.timezone)).replace(tzinfo=None)
    if form == "date":
        return (local + timedelta(days=draw(st.sampled_from((-1, 0, 0, 1))))).date().isoformat()
    if form == "local":
        return _no_midnight(local).isoformat()
    if form == "Z":
        return _no_midnight(t).isoformat() + "Z"
    if form == "offset":
        return _no_midnight(t + timedelta(hours=8)).isoformat() + "+08:00"
    return _no_midnight(t + timedelta(hours=draw(st.sampled_from((-5, -4, 0, 8))))).isoformat()


@st.composite
def _moment(draw: Draw, ds: Dataset, seen: Sequence[datetime]) -> str:
    return draw(_written(ds, draw(_instant_from(ds, seen))))


@st.composite
def _date_test(draw: Draw, values: Sequence[Any], ds: Dataset) -> dict[str, Any]:
    op = draw(st.sampled_from(("before", "after", "within_last", "in_next")))
    if op in ("before", "after"):
        seen = _readable(values, as_instant)
        return {"op": op, "value": draw(_moment(ds, seen))}
    now = ds.now
    seen = [t for t in _readable(values, as_instant) if abs(t - now) < timedelta(days=500)]
    near = [max(1, math.ceil(abs((now - t).total_seconds()) / 86400)) for t in seen]
    days = draw(st.one_of(st.sampled_from(near), st.integers(1, 400)) if near else st.integers(1, 400))
    return {"op": op, "days": days}


def _anniversary_test() -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.just({"op": "anniversary_this_month"}),
        st.sampled_from((1, 2, 3, 7, 10, 30, 60, 364, 365, 400)).map(
            lambda d: {"op": "anniversary_in_next", "days": d}
        ),
    )


_LIST_TEST = st.one_of(
    st.tuples(st.sampled_from(("eq", "neq", "contains")), st.sampled_from(CHANNELS)).map(
        lambda t: {"op": t[0], "value": t[1]}
    ),
    st.tuples(st.sampled_from(("in", "not_in")), st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=3)).map(
        lambda t: {"op": t[0], "value": t[1]}
    ),
)
_PRESENCE_TEST = st.sampled_from(({"op": "is_set"}, {"op": "is_not_set"}))
_BOOL_TEST = st.booleans().map(lambda b: {"op": "eq", "value": b})


@st.composite
def value_test(draw: Draw, values: Sequence[Any], ds: Dataset, families: Sequence[str]) -> dict[str, Any]:
    """An operator and operand for values like these, from one of the given families."""
    match draw(st.sampled_from(families)):
        case "number":
            return draw(_number_test(values))
        case "text":
            return draw(_text_test(values))
        case "bool":
            return draw(_BOOL_TEST)
        case "date":
            return draw(_date_test(values, ds))
        case "anniversary":
            return draw(_anniversary_test())
        case "presence":
            return draw(_PRESENCE_TEST)
        case "list":
            return draw(_LIST_TEST)
    raise AssertionError(families)


_FIELD_FAMILIES = {
    "profile_id": ("text", "presence"),
    "created_at": ("date", "anniversary", "presence"),
    "first_seen": ("date", "anniversary", "presence"),
    "last_seen": ("date", "presence"),
    "first_order_at": ("date", "anniversary", "presence"),
    "last_order_at": ("date", "presence"),
    "event_count": ("number", "text", "presence"),
    "order_count": ("number", "text", "presence"),
    "total_spend": ("number", "presence"),
    "channels": ("list", "presence"),
}
_ALL_FAMILIES = ("number", "text", "bool", "date", "anniversary", "presence")


def _families_for(values: Sequence[Any]) -> st.SearchStrategy[Sequence[str]]:
    """Operator families that fit one of these values (mostly), or any family."""

    def fitting(v: Any) -> Sequence[str]:
        if isinstance(v, bool):
            return ("bool", "text")
        if as_number(v) is not None:
            return ("number", "text")
        if as_instant(v) is not None:
            return ("date", "anniversary", "text")
        if isinstance(v, str):
            return ("text",)
        return _ALL_FAMILIES

    present = [v for v in values if v is not None]
    if not present:
        return st.just(_ALL_FAMILIES)
    return st.one_of(
        st.sampled_from(present).map(fitting), st.sampled_from(present).map(fitting), st.just(_ALL_FAMILIES)
    )


@st.composite
def attribute_leaves(draw: Draw, ds: Dataset) -> dict[str, Any]:
    keys = sorted({k for p in ds.profiles for k in (p.traits or {})}) + ["从未设置"]
    if draw(st.integers(0, 3)) == 0:
        field = draw(st.sampled_from(sorted(COMPUTED_FIELDS)))
        values = [getattr(p, field) for p in ds.profiles]
        families = _FIELD_FAMILIES[field]
    else:
        key = draw(st.sampled_from(keys))
        explicit = not key or key in COMPUTED_FIELDS or key.startswith("traits.") or draw(st.booleans())
        field = f"traits.{key}" if explicit else key
        values = [(p.traits or {}).get(key) for p in ds.profiles]
        families = draw(_families_for(values))
    return {"type": "attribute", "field": field, **draw(value_test(values, ds, families))}


@st.composite
def windows(draw: Draw, ds: Dataset, times: Sequence[datetime]) -> dict[str, Any]:
    """Every form: the last N hours or days, since, until, since and until (dates and datetimes)."""
    form = draw(st.sampled_from(("hours", "days", "since", "until", "both")))
    if form == "hours":
        near = [
            math.ceil((ds.now - t).total_seconds() / 3600)
            for t in times
            if timedelta(0) < ds.now - t < timedelta(days=30)
        ]
        return {
            "last": draw(st.one_of(st.integers(1, 96), *([st.sampled_from(near)] if near else []))),
            "unit": "hours",
        }
    if form == "days":
        out: dict[str, Any] = {"last": draw(st.integers(1, 400))}
        if draw(st.booleans()):
            out["unit"] = "days"
        return out
    if form == "since":
        return {"since": draw(_moment(ds, times))}
    if form == "until":
        return {"until": draw(_moment(ds, times))}
    since, until = draw(_instant_from(ds, times)), draw(_instant_from(ds, times))
    if draw(st.integers(0, 4)):  # mostly since <= until; now and then an empty window
        since, until = min(since, until), max(since, until)
    return {"since": draw(_written(ds, since)), "until": draw(_written(ds, until))}


def _edges(rows: Sequence[tuple[int | None, datetime]]) -> list[datetime]:
    """Times worth putting a window edge on: each profile's first and last, and the rest."""
    by_profile: dict[int | None, list[datetime]] = {}
    for idx, t in rows:
        by_profile.setdefault(idx, []).append(t)
    ends = [f(ts) for ts in by_profile.values() for f in (min, max)]
    return ends + ends + [t for _, t in rows]


def _property_values(ds: Dataset, name: str) -> list[Any]:
    return [event_property(e, name) for e in ds.events]


_TYPED_FAMILIES = {
    "revenue": ("number", "presence"),
    "currency": ("text", "presence"),
    "order_id": ("text", "presence"),
    "product_id": ("text", "presence"),
    "category": ("text", "presence"),
    "channel": ("text", "presence"),
    "utm_source": ("text", "presence"),
    "utm_campaign": ("text", "presence"),
    "utm_medium": ("presence",),
}


@st.composite
def event_leaves(draw: Draw, ds: Dataset) -> dict[str, Any]:
    names = ds.event_names() or ["加入购物车"]
    name = draw(st.one_of(st.sampled_from(names), st.sampled_from(names), st.just("从未发生")))
    prop_keys = sorted({k for e in ds.events for k in (e.properties or {})})
    leaf: dict[str, Any] = {"type": "event", "event": name}
    where = []
    for _ in range(draw(st.integers(0, 2) if draw(st.booleans()) else st.just(0))):
        if prop_keys and draw(st.booleans()):
            prop = draw(st.sampled_from(prop_keys))
            families: Sequence[str] = draw(_families_for(_property_values(ds, prop)))
        else:
            prop = draw(st.sampled_from(sorted(_TYPED_FAMILIES)))
            families = _TYPED_FAMILIES[prop]
        where.append({"property": prop, **draw(value_test(_property_values(ds, prop), ds, families))})
    if where:
        leaf["where"] = where
    times = _edges([(e.profile_idx, e.timestamp) for e in ds.events if e.name == name])
    measure = draw(st.sampled_from(("default", "count", "aggregate", "occurrence")))
    if measure == "occurrence" or draw(st.booleans()):
        leaf["window"] = draw(windows(ds, times))
    if measure == "count":
        leaf["count"] = {
            "op": draw(st.sampled_from(("eq", "neq", "gt", "gte", "lt", "lte"))),
            "value": draw(st.integers(0, 3)),
        }
    elif measure == "aggregate":
        prop = draw(st.sampled_from(["revenue", *prop_keys]))
        fn = draw(st.sampled_from(("sum", "avg", "min", "max")))
        nums = _readable(_property_values(ds, prop), as_number)
        sums: dict[int | None, Decimal] = {}
        for e in ds.events:
            num = as_number(event_property(e, prop))
            if e.name == name and num is not None:
                sums[e.profile_idx] = sums.get(e.profile_idx, Decimal(0)) + Decimal(repr(num))
        pool = [float(x) for x in nums] + [float(s) for s in sums.values()] + [0.0]
        ops = ("gt", "gte", "lt", "lte") if fn == "avg" else ("eq", "neq", "gt", "gte", "lt", "lte")
        leaf["aggregate"] = {
            "fn": fn,
            "property": prop,
            "op": draw(st.sampled_from(ops)),
            "value": draw(st.sampled_from(pool)),
        }
    elif measure == "occurrence":
        leaf["occurrence"] = draw(st.sampled_from(("first", "last")))
    return leaf


@st.composite
def order_leaves(draw: Draw, ds: Dataset) -> dict[str, Any]:
    leaf: dict[str, Any] = {"type": "order"}
    measure = draw(st.sampled_from(("count", "total")))
    if measure == "total" or draw(st.booleans()):
        leaf["measure"] = measure
    if draw(st.booleans()):
        leaf["purchase"] = draw(st.sampled_from(("any", "first", "repeat")))
    op = draw(st.sampled_from(("eq", "neq", "gt", "gte", "lt", "lte")))
    if measure == "count":
        value: float = draw(st.integers(0, 2))
    else:
        sums: dict[int | None, Decimal] = {}
        for o in ds.orders:
            sums[o.profile_idx] = sums.get(o.profile_idx, Decimal(0)) + o.total
        value = draw(st.sampled_from([0.0, *(float(o.total) for o in ds.orders), *(float(s) for s in sums.values())]))
    if op != "gte" or value != 1 or draw(st.booleans()):
        leaf["op"], leaf["value"] = op, value
    if draw(st.booleans()):
        leaf["window"] = draw(windows(ds, _edges([(o.profile_idx, o.ordered_at) for o in ds.orders])))
    products = [p.product_id for p in ds.products] + ["p-gone"]
    categories = sorted({p.category for p in ds.products if p.category})
    if draw(st.integers(0, 5)) == 0:
        leaf["products"] = draw(st.lists(st.sampled_from(products), min_size=1, max_size=3, unique=True))
    if draw(st.integers(0, 5)) == 0:
        leaf["categories"] = draw(st.lists(st.sampled_from(categories), min_size=1, max_size=2, unique=True))
    if draw(st.integers(0, 5)) == 0:
        leaf["channels"] = draw(st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=3, unique=True))
    if draw(st.integers(0, 6)) == 0:
        leaf["coupons"] = draw(st.lists(st.sampled_from(COUPONS), min_size=1, max_size=2, unique=True))
    if draw(st.integers(0, 5)) == 0:
        leaf["with_coupon"] = True if "coupons" in leaf else draw(st.booleans())
    return leaf


@st.composite
def tag_leaves(draw: Draw, ds: Dataset) -> dict[str, Any]:
    keys = sorted({t.key for t in ds.tags}) or list(TAG_KEYS)
    key = draw(st.one_of(st.sampled_from(keys), st.just("无此标签")))
    texts = sorted({t.value for t in ds.tags if t.key == key}) or list(TAG_VALUES)
    nums = sorted({_number(t.value_num) for t in ds.tags if t.value_num is not None}) or [1]
    any_value = st.one_of(st.sampled_from(texts), st.sampled_from(nums))
    op = draw(st.sampled_from(("has", "in", "all", "eq", "neq", "gt", "gte", "lt", "lte", "between")))
    leaf: dict[str, Any] = {"type": "tag", "tag": key}
    if op != "has" or draw(st.booleans()):
        leaf["op"] = op
    if op in ("in", "all"):
        leaf["values"] = draw(st.lists(any_value, min_size=1, max_size=3))
    elif op == "between":
        leaf["values"] = sorted((draw(st.sampled_from(nums)), draw(st.sampled_from(nums))))
    elif op in ("eq", "neq"):
        leaf["value"] = draw(any_value)
    elif op != "has":
        leaf["value"] = draw(st.sampled_from(nums))
    return leaf


@st.composite
def random_buckets(draw: Draw) -> dict[str, Any]:
    buckets = draw(st.sampled_from((2, 3, 10, 100)))
    low = draw(st.integers(0, buckets - 1))
    high = draw(st.integers(low + 1, buckets))
    leaf: dict[str, Any] = {
        "type": "random_bucket",
        "salt": draw(st.sampled_from(("实验A", "holdout", INJECTION))),
        "low": low,
        "high": high,
    }
    if buckets != 100 or draw(st.booleans()):
        leaf["buckets"] = buckets
    return leaf


def leaves(ds: Dataset, audiences: Sequence[str] = ()) -> st.SearchStrategy[dict[str, Any]]:
    attribute, event, order = attribute_leaves(ds), event_leaves(ds), order_leaves(ds)
    others: list[st.SearchStrategy[dict[str, Any]]] = [_has_identifier(), random_buckets()]
    if audiences:
        others.append(st.sampled_from(audiences).map(lambda a: {"type": "in_audience", "audience": a}))
    # The leaves with the most to get wrong come up most often.
    return st.one_of(
        attribute, attribute, attribute, event, event, event, order, order, tag_leaves(ds), st.one_of(*others)
    )


def profile_leaves(ds: Dataset, audiences: Sequence[str] = ()) -> st.SearchStrategy[dict[str, Any]]:
    """Leaves over the profile alone (no events or orders): what the fast count answers from memory."""
    others: list[st.SearchStrategy[dict[str, Any]]] = [tag_leaves(ds), random_buckets(), _has_identifier()]
    if audiences:
        others.append(st.sampled_from(audiences).map(lambda a: {"type": "in_audience", "audience": a}))
    attribute = attribute_leaves(ds)
    return st.one_of(attribute, attribute, *others)


def _has_identifier() -> st.SearchStrategy[dict[str, Any]]:
    return st.lists(st.sampled_from((*ID_TYPES, "douyin_id")), min_size=1, max_size=2, unique=True).map(
        lambda ts: {"type": "has_identifier", "id_types": ts}
    )


def definitions(
    ds: Dataset,
    audiences: Sequence[str] = (),
    depth: int = 3,
    leaf: st.SearchStrategy[dict[str, Any]] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """Definition JSON: leaves (any kind, or those of ``leaf``) under and/or/not, nested up to ``depth``."""
    leaf = leaf if leaf is not None else leaves(ds, audiences)
    if depth == 0:
        return leaf
    sub = definitions(ds, audiences, depth - 1, leaf)
    return st.one_of(
        leaf,
        leaf,
        st.lists(sub, min_size=1, max_size=3).map(lambda cs: {"type": "and", "children": cs}),
        st.lists(sub, min_size=1, max_size=3).map(lambda cs: {"type": "or", "children": cs}),
        sub.map(lambda c: {"type": "not", "child": c}),
    )


def conditions(
    ds: Dataset,
    audiences: Sequence[str] = (),
    depth: int = 3,
    leaf: st.SearchStrategy[dict[str, Any]] | None = None,
) -> st.SearchStrategy[Condition]:
    """Validated conditions (a strategy bug shows up as a ConditionError, not as a skipped example)."""
    return definitions(ds, audiences, depth, leaf).map(parse_condition)


@st.composite
def audience_definitions(draw: Draw, ds: Dataset) -> dict[str, Condition | None]:
    """The static audience, a dynamic one, and a dynamic one that refers to both."""
    first = draw(conditions(ds, (STATIC_AUDIENCE,), depth=1))
    second = draw(conditions(ds, (STATIC_AUDIENCE, "动态-A"), depth=1))
    return {STATIC_AUDIENCE: None, "动态-A": first, "动态-B": second}


def eval_context(ds: Dataset) -> EvalContext:
    """The clock and the workspace time zone the dataset is evaluated in."""
    return EvalContext(now=ds.now.replace(tzinfo=UTC), timezone=ds.timezone)
