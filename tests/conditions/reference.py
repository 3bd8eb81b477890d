"""The reference evaluator: the condition language's module text, read literally, in plain Python.

Nothing here is clever or fast. Each leaf is decided for one profile at a time from the
:class:`~tests.conditions.dataset.Dataset`, sentence by sentence of the docstring of
:mod:`tessera.domain.conditions`; the property tests check that the SQL compiler selects exactly
the same profiles. Combinations the text leaves undefined raise :class:`Undefined` (the
strategies never generate them; if one slips through, the test says so instead of guessing).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from tessera.domain.conditions import (
    COMPUTED_FIELDS,
    EVENT_COLUMNS,
    EXCLUDED_ORDER_STATUSES,
    AggregateTest,
    And,
    AttributeLeaf,
    Condition,
    CountTest,
    EvalContext,
    EventLeaf,
    HasIdentifierLeaf,
    InAudienceLeaf,
    Not,
    Or,
    OrderLeaf,
    RandomBucketLeaf,
    TagLeaf,
    Window,
    _ValueTest,
    anniversary_matches,
)
from tests.conditions.dataset import Dataset, Event, Order, Profile, Tag

#: Audience id → its definition (a dynamic audience, inlined) or None (static: stored members).
Audiences = Mapping[str, Condition | None]


class Undefined(Exception):
    """The module text does not say what this combination means (a strategy should not make it)."""


# --- reading values ----------------------------------------------------------------------------

_AGGREGATE_STEP = Decimal("1e-10")
_NUMBER_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DATE_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}:\d{2})?")


def as_number(v: Any) -> float | None:
    """ "A JSON number, or a string that reads as a finite number" (booleans are not numbers)."""
    if isinstance(v, bool) or v is None:
        return None
    readable = isinstance(v, int | float | Decimal) or (isinstance(v, str) and _NUMBER_TEXT.fullmatch(v))
    if not readable:
        return None
    num = float(v)
    return num if math.isfinite(num) else None


def as_text(v: Any) -> str | None:
    """ "A JSON string as is, another scalar as its JSON text"; null, arrays and objects are not text."""
    if v is None or isinstance(v, list | dict):
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool | int):
        return json.dumps(v)
    if isinstance(v, float):
        if not math.isfinite(v) or v == int(v):
            raise Undefined(f"the JSON text of the number {v!r}")
        return json.dumps(v)
    raise Undefined(f"text of a {type(v).__name__} column")


def as_instant(v: Any) -> datetime | None:
    """ "A computed timestamp, or a trait string that reads as an ISO date or datetime", naive UTC.

    A date-only value is midnight UTC; a datetime with an offset is converted to UTC, one without is UTC.
    """
    if isinstance(v, datetime):
        return v
    if not isinstance(v, str):
        return None
    try:
        if _DATE_TEXT.fullmatch(v):
            return datetime.combine(date.fromisoformat(v), datetime.min.time())
        if _DATETIME_TEXT.fullmatch(v):
            parsed = datetime.fromisoformat(v.replace("Z", "+00:00"))
            if parsed.tzinfo is not None:
                parsed = parsed.astimezone(UTC).replace(tzinfo=None)
            return parsed
    except ValueError:  # 2026-02-30 and friends
        return None
    return None


def compare(left: float, op: str, right: float) -> bool:
    match op:
        case "eq":
            return left == right
        case "neq":
            return left != right
        case "gt":
            return left > right
        case "gte":
            return left >= right
        case "lt":
            return left < right
        case "lte":
            return left <= right
    raise AssertionError(op)


# --- the value test shared by attributes and event property filters ---------------------------------

_NEGATED = {"neq": "eq", "not_in": "in", "is_not_set": "is_set"}


def value_holds(test: _ValueTest, v: Any, ctx: EvalContext, *, is_list: bool = False) -> bool:
    """Whether a value (None = missing or null) passes an operator; every answer is true or false."""
    if test.op in _NEGATED:
        return not value_holds(test.model_copy(update={"op": _NEGATED[test.op]}), v, ctx, is_list=is_list)
    if test.op == "is_set":
        return v is not None
    if is_list:
        return _list_holds(test, v)
    match test.kind:
        case "number":
            return _number_holds(test, as_number(v))
        case "text":
            if isinstance(v, datetime | Decimal):
                raise Undefined(f"text comparison {test.op} on a {type(v).__name__} column")
            return _text_holds(test, as_text(v))
        case "bool":
            return isinstance(v, bool) and v is test.value
        case "date":
            return _date_holds(test, as_instant(v), ctx)
        case "anniversary":
            instant = as_instant(v)
            if instant is None:
                return False
            span = ctx.anniversary_span(test.days)
            return anniversary_matches(instant.month, instant.day, span)
    raise AssertionError(test.kind)


def _number_holds(test: _ValueTest, num: float | None) -> bool:
    if num is None:
        return False
    v = test.value
    match test.op:
        case "in":
            assert isinstance(v, list)
            return any(num == float(x) for x in v)
        case "between":
            assert isinstance(v, list)
            low, high = v
            return float(low) <= num <= float(high)
        case op:
            assert isinstance(v, int | float)
            return compare(num, op, float(v))


def _text_holds(test: _ValueTest, text: str | None) -> bool:
    if text is None:
        return False
    v = test.value
    match test.op:
        case "eq":
            return text == v
        case "in":
            assert isinstance(v, list)
            return text in v
        case "contains":
            assert isinstance(v, str)
            return v in text
        case "starts_with":
            assert isinstance(v, str)
            return text.startswith(v)
        case "regex":
            assert isinstance(v, str)
            return re.search(v, text, re.ASCII) is not None  # RE2: \\w \\d \\b are ASCII
    raise Undefined(f"text comparison {test.op}")


def _list_holds(test: _ValueTest, items: list[str] | None) -> bool:
    """List attributes (channels): eq/contains = has the element, in = has any of."""
    if test.op not in ("eq", "contains", "in") or test.kind != "text":
        raise Undefined(f"{test.op} {test.value!r} on a list attribute")
    if items is None:
        return False
    if test.op == "in":
        assert isinstance(test.value, list)
        return any(x in items for x in test.value)
    return test.value in items


def _date_holds(test: _ValueTest, instant: datetime | None, ctx: EvalContext) -> bool:
    if instant is None:
        return False
    v, now = test.value, ctx.now_utc
    match test.op:
        case "before":
            assert isinstance(v, date)
            return instant < ctx.to_utc(v)
        case "after":
            if isinstance(v, datetime):
                return instant > ctx.to_utc(v)
            assert isinstance(v, date)
            return instant >= ctx.to_utc(v, end_of_day=True)
        case "within_last":
            assert test.days is not None
            return now - timedelta(days=test.days) <= instant <= now
        case "in_next":
            assert test.days is not None
            return now <= instant <= now + timedelta(days=test.days)
    raise AssertionError(test.op)


# --- leaves ----------------------------------------------------------------------------------


def attribute_value(leaf: AttributeLeaf, profile: Profile) -> Any:
    """The value an attribute leaf reads (None = missing or null)."""
    key = leaf.trait_key
    if key is not None:
        return (profile.traits or {}).get(key)
    if leaf.field in ("profile_id", "created_at"):  # the profiles row
        return getattr(profile, leaf.field)
    return getattr(profile, leaf.field) if profile.attributes else None


def attribute_holds(leaf: AttributeLeaf, profile: Profile, ctx: EvalContext) -> bool:
    value = attribute_value(leaf, profile)
    kind = COMPUTED_FIELDS.get(leaf.field) if leaf.trait_key is None else None
    if kind == "timestamp" and leaf.kind in ("number", "text", "bool"):
        raise Undefined(f"{leaf.op} {leaf.value!r} on the timestamp {leaf.field}")
    if kind in ("number", "text") and leaf.kind in ("date", "anniversary"):
        raise Undefined(f"{leaf.op} on the {kind} column {leaf.field}")
    return value_holds(leaf, value, ctx, is_list=kind == "list")


def event_property(event: Event, name: str) -> Any:
    """Typed columns for the names in EVENT_COLUMNS, ``properties`` for everything else."""
    if name in EVENT_COLUMNS:
        return getattr(event, name)
    return (event.properties or {}).get(name)


def in_window(t: datetime, window: Window | None, ctx: EvalContext) -> bool:
    if window is None:
        return True
    start, end = window.bounds(ctx)
    return (start is None or start <= t) and (end is None or t < end)


def event_holds(leaf: EventLeaf, dataset: Dataset, profile: Profile, ctx: EvalContext) -> bool:
    for f in leaf.where:
        if f.property == "revenue" and f.kind == "text":
            raise Undefined("text comparison on the revenue column")
    such = [
        e
        for e in dataset.events
        if e.profile_idx == profile.idx
        and e.name == leaf.event
        and all(value_holds(f, event_property(e, f.property), ctx) for f in leaf.where)
    ]
    inside = [e for e in such if in_window(e.timestamp, leaf.window, ctx)]
    measure = leaf.measure
    if isinstance(measure, CountTest):
        return compare(len(inside), measure.op, measure.value)
    if isinstance(measure, AggregateTest):
        nums = [as_number(event_property(e, measure.property)) for e in inside]
        # "read as DECIMAL(38, 10)": rounded (half away from zero) to 10 places; 10^28 or more is skipped.
        values = [
            Decimal(repr(n)).quantize(_AGGREGATE_STEP, rounding=ROUND_HALF_UP)
            for n in nums
            if n is not None and abs(n) < 1e28
        ]
        if measure.fn == "sum":
            result: Decimal | None = sum(values, Decimal(0))
        elif not values:
            result = None  # unknown, hence false
        elif measure.fn == "avg":
            result = sum(values, Decimal(0)) / len(values)
        else:
            result = min(values) if measure.fn == "min" else max(values)
        return result is not None and compare(float(result), measure.op, measure.value)
    if not such:
        return False
    times = [e.timestamp for e in such]
    ever = min(times) if measure == "first" else max(times)
    return in_window(ever, leaf.window, ctx)


def _category(dataset: Dataset, product_id: str) -> str | None:
    return next((p.category for p in dataset.products if p.product_id == product_id), None)


def order_qualifies(leaf: OrderLeaf, order: Order, dataset: Dataset) -> bool:
    """Status not cancelled/refunded (any case), and every given filter."""
    if order.status is not None and order.status.lower() in EXCLUDED_ORDER_STATUSES:
        return False
    if leaf.products is not None and not any(it.product_id in leaf.products for it in order.items):
        return False
    if leaf.categories is not None and not any(
        _category(dataset, it.product_id) in leaf.categories for it in order.items
    ):
        return False
    if leaf.channels is not None and order.channel not in leaf.channels:
        return False
    if leaf.coupons is not None and order.coupon_code not in leaf.coupons:
        return False
    if leaf.with_coupon is True and order.coupon_code is None:
        return False
    return not (leaf.with_coupon is False and order.coupon_code is not None)


def order_holds(leaf: OrderLeaf, dataset: Dataset, profile: Profile, ctx: EvalContext) -> bool:
    qualifying = sorted(
        (o for o in dataset.orders if o.profile_idx == profile.idx and order_qualifies(leaf, o, dataset)),
        key=lambda o: (o.ordered_at, o.order_id),
    )
    if leaf.purchase == "first":
        qualifying = qualifying[:1]
    elif leaf.purchase == "repeat":
        qualifying = qualifying[1:]
    inside = [o for o in qualifying if in_window(o.ordered_at, leaf.window, ctx)]
    measured = len(inside) if leaf.measure == "count" else float(sum((o.total for o in inside), Decimal(0)))
    return compare(measured, leaf.op, leaf.value)


def _tag_equals(tag: Tag, x: Any) -> bool:
    """Text values compare as text, numbers with the numeric value."""
    if isinstance(x, bool):
        raise Undefined("a boolean among a tag's values")
    if isinstance(x, int | float):
        return tag.value_num is not None and tag.value_num == float(x)
    return tag.value == x


def tag_holds(leaf: TagLeaf, dataset: Dataset, profile: Profile) -> bool:
    rows = [t for t in dataset.tags if t.profile_idx == profile.idx and t.key == leaf.tag]
    match leaf.op:
        case "has":
            return bool(rows)
        case "in":
            assert leaf.values is not None
            return any(_tag_equals(t, x) for t in rows for x in leaf.values)
        case "all":
            assert leaf.values is not None
            return all(any(_tag_equals(t, x) for t in rows) for x in leaf.values)
        case "eq":
            return any(_tag_equals(t, leaf.value) for t in rows)
        case "neq":
            return not any(_tag_equals(t, leaf.value) for t in rows)
        case "between":
            assert leaf.values is not None
            low, high = (float(x) for x in leaf.values)
            return any(t.value_num is not None and low <= t.value_num <= high for t in rows)
        case op:
            assert isinstance(leaf.value, int | float)
            return any(t.value_num is not None and compare(t.value_num, op, float(leaf.value)) for t in rows)


def bucket(profile_id: str, salt: str, buckets: int) -> int:
    return int(hashlib.md5(f"{profile_id}:{salt}".encode()).hexdigest()[:8], 16) % buckets


# --- the tree --------------------------------------------------------------------------------


def evaluate(cond: Condition, dataset: Dataset, ctx: EvalContext, audiences: Audiences | None = None) -> set[int]:
    """The profile indexes the condition selects."""
    return _Evaluator(dataset, ctx, audiences or {}).members(cond, ())


class _Evaluator:
    def __init__(self, dataset: Dataset, ctx: EvalContext, audiences: Audiences) -> None:
        self.dataset, self.ctx, self.audiences = dataset, ctx, audiences

    def members(self, node: Condition, seen: tuple[str, ...]) -> set[int]:
        everyone = self.dataset.everyone
        if isinstance(node, And):
            out = set(everyone)
            for child in node.children:
                out &= self.members(child, seen)
            return out
        if isinstance(node, Or):
            out = set()
            for child in node.children:
                out |= self.members(child, seen)
            return out
        if isinstance(node, Not):
            return everyone - self.members(node.child, seen)
        if isinstance(node, InAudienceLeaf):
            if node.audience in seen:
                raise ValueError(f"audience cycle through {node.audience}")
            definition = self.audiences[node.audience]
            if definition is None:
                return self.dataset.audience_members.get(node.audience, set()) & everyone
            return self.members(definition, (*seen, node.audience))
        holds = self._leaf(node)
        return {p.idx for p in self.dataset.profiles if holds(p)}

    def _leaf(self, node: Condition) -> Callable[[Profile], bool]:
        ds, ctx = self.dataset, self.ctx
        if isinstance(node, AttributeLeaf):
            return lambda p: attribute_holds(node, p, ctx)
        if isinstance(node, EventLeaf):
            return lambda p: event_holds(node, ds, p, ctx)
        if isinstance(node, OrderLeaf):
            return lambda p: order_holds(node, ds, p, ctx)
        if isinstance(node, TagLeaf):
            return lambda p: tag_holds(node, ds, p)
        if isinstance(node, HasIdentifierLeaf):
            return lambda p: any(i.profile_idx == p.idx and i.id_type in node.id_types for i in ds.identifiers)
        if isinstance(node, RandomBucketLeaf):
            return lambda p: node.low <= bucket(p.profile_id, node.salt, node.buckets) < node.high
        raise AssertionError(node)
