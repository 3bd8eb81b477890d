"""The condition language (条件): who an audience, a rule tag or a journey branch selects.

A condition is a JSON tree of ``and`` / ``or`` / ``not`` nodes over typed leaves. It is data: this
module validates it (errors name the JSON path, ``children[2].window.last: must be > 0``) and
says what it means; :mod:`tessera.compiler` turns it into SQL and nothing here touches a store.

Semantics (the compiler, the in-memory columns and the tests' reference evaluator all follow
this text; a property test checks they agree):

* Every leaf is **true or false for every profile**, never unknown: a missing or unconvertible
  value makes a comparison false. ``not`` is plain negation, so ``neq`` is ``not eq`` and
  ``not_in`` is ``not in`` (a profile without the attribute *is* "not in Shanghai").
* Times: stored timestamps are UTC. Dates and naive datetimes written in a condition are in the
  workspace time zone (:class:`EvalContext.timezone`, default Asia/Shanghai); ``now`` comes from
  the injected clock. A window's ``until`` is exclusive; a date-only ``until`` means the end of
  that day (``{"since": "2026-01-01", "until": "2026-01-31"}`` is all of January).

**attribute** — ``field`` is a computed column of the profile (:data:`COMPUTED_FIELDS`) or a
trait (``city``, ``birthday``, ``member_level`` … or explicitly ``traits.<key>``). How the value
is read depends on the operator and the type of ``value``:

* number comparisons (``gt gte lt lte between``, and ``eq neq in not_in`` with numbers): a JSON
  number, or a string that reads as a finite number;
* text comparisons (``eq neq in not_in`` with strings, ``contains starts_with regex``): a JSON
  string as is, another scalar as its JSON text (JSON null is missing; objects and lists are
  never text); case-sensitive (use ``(?i)`` in a regex); ``regex`` searches (matches anywhere) with
  RE2 semantics — ``\\w \\d \\b`` are ASCII, so match Chinese with a class such as ``[一-龥]`` —
  and must avoid look-around and back-references; ``between`` is inclusive;
* ``eq`` with ``true``/``false``: a JSON boolean;
* dates (``before after within_last in_next``): a computed timestamp, or a trait string that
  reads as an ISO date or datetime (a date-only value is midnight UTC, a datetime with an offset
  is converted to UTC, one without is UTC); ``before D`` is ``v < D`` and ``after D`` is
  ``v >= D + 1 day`` when D is a date (its whole day excluded; D's midnight is local time) and
  ``v > D`` when D is a datetime; ``within_last N`` is ``now - N days <= v <= now``,
  ``in_next N`` is ``now <= v <= now + N days``;
* anniversaries (``anniversary_this_month``, ``anniversary_in_next N``): the month and day of a
  date, against the workspace's local today: the same month, or the (month, day) of one of the
  days today … today + N (29 February counts between 28 February and 1 March);
* list attributes (``channels``): ``eq``/``contains`` = has the element, ``in`` = has any of;
* ``is_set``: present and not null; ``is_not_set`` is its negation.

**tag** — the profile's current values of a tag (``profile_tags``), or with ``on`` (a date) the
values it held at the end of that local day (from the history, ``tag_changes``: "had tag X on
date D"). ``has``: any value; ``in``: any of ``values``; ``all``: every one of ``values``; ``eq``:
some value equals ``value`` (text, or number for numbers); ``neq`` = not ``eq``; ``gt gte lt lte
between``: some numeric value satisfies it.

**event** — events named ``event`` whose properties pass every ``where`` filter (attribute
semantics on one property; ``revenue currency order_id product_id category channel utm_*`` read
the typed columns, everything else ``properties``), inside ``window`` (none = all time). Then one
of: ``count`` (default: at least once; a count that zero satisfies, like ``eq 0`` — "did not do",
also holds for profiles with no such event), ``aggregate`` (values read as DECIMAL(38, 10) —
rounded to 10 decimal places, 10^28 or more skipped, so sums of amounts are exact; ``sum`` of no
values is 0; ``avg min max`` of no values are unknown, hence false; null or non-numeric properties
are skipped), or ``occurrence``
(``first``/``last``: the profile's first or last such event *ever* falls inside the window).

**order** — the profile's qualifying orders: status not cancelled/refunded, and matching every
given filter (a missing status qualifies; an item with one of ``products``; an item whose product's category is one of
``categories``; ``channels``; ``coupons`` or ``with_coupon``). ``purchase``: ``first`` keeps
only the profile's first qualifying order (earliest ``ordered_at``, then smallest ``order_id``),
``repeat`` all but that one. Then those inside ``window`` are measured: ``count`` or ``total``
(sum of order totals; 0 for none) against ``op``/``value`` (default ``count >= 1``); zero-
satisfying comparisons hold for profiles without orders.

**in_audience** — a member of another audience (cycles are refused). **has_identifier** — holds
an identifier of one of ``id_types`` (reachable by phone, email, WeChat …). **random_bucket** —
``bucket = int(md5(profile_id + ":" + salt)[:8], 16) % buckets`` and ``low <= bucket < high``:
deterministic per profile and salt, for holdouts and splits.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import suppress
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

#: Computed profile columns an attribute leaf can read (``profile_attributes`` / ``profiles``).
COMPUTED_FIELDS: dict[str, str] = {
    "profile_id": "text",
    "created_at": "timestamp",
    "first_seen": "timestamp",
    "last_seen": "timestamp",
    "first_order_at": "timestamp",
    "last_order_at": "timestamp",
    "event_count": "number",
    "order_count": "number",
    "total_spend": "number",
    "channels": "list",
}
#: Event properties held in typed columns of ``events`` (the rest are read from ``properties``).
EVENT_COLUMNS: dict[str, str] = {
    "revenue": "number",
    "currency": "text",
    "order_id": "text",
    "product_id": "text",
    "category": "text",
    "channel": "text",
    "utm_source": "text",
    "utm_medium": "text",
    "utm_campaign": "text",
    "utm_term": "text",
    "utm_content": "text",
}
#: Order statuses (case-insensitive) that never count.
EXCLUDED_ORDER_STATUSES = ("cancelled", "refunded")
MAX_LEAVES = 200
MAX_DEPTH = 24

Scalar = str | int | float | bool
Comparison = Literal["eq", "neq", "gt", "gte", "lt", "lte"]
ValueOp = Literal[
    "eq", "neq", "in", "not_in", "gt", "gte", "lt", "lte", "between",
    "contains", "starts_with", "regex", "is_set", "is_not_set",
]  # fmt: skip
DateOp = Literal["before", "after", "within_last", "in_next", "anniversary_this_month", "anniversary_in_next"]
_NUMBER_OPS = {"gt", "gte", "lt", "lte", "between"}
_TEXT_OPS = {"contains", "starts_with", "regex"}
_LIST_OPS = {"in", "not_in"}
_NO_VALUE_OPS = {"is_set", "is_not_set", "anniversary_this_month"}
_DAYS_OPS = {"within_last", "in_next", "anniversary_in_next"}
_UNSUPPORTED_REGEX = re.compile(r"\(\?[=!<]|\\[1-9]|\(\?P=")


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


class _ValueTest(_Node):
    """An operator and its operand(s), shared by attribute leaves and property filters."""

    op: Literal[
        "eq",
        "neq",
        "in",
        "not_in",
        "gt",
        "gte",
        "lt",
        "lte",
        "between",
        "contains",
        "starts_with",
        "regex",
        "is_set",
        "is_not_set",
        "before",
        "after",
        "within_last",
        "in_next",
        "anniversary_this_month",
        "anniversary_in_next",
    ]  # fmt: skip  (ValueOp | DateOp as one list, so an unknown operator gets one message naming them all)
    value: Scalar | list[Scalar] | datetime | date | None = None
    days: int | None = Field(default=None, gt=0, le=36600)

    @model_validator(mode="before")
    @classmethod
    def _read_dates(cls, data: Any) -> Any:
        """``before``/``after`` take ISO text: a date (local midnight) or a datetime."""
        if isinstance(data, dict) and data.get("op") in ("before", "after") and isinstance(data.get("value"), str):
            text = data["value"]
            try:
                value: date = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
            except ValueError:
                raise ValueError(f"{data['op']} needs an ISO date or datetime, not {text!r}") from None
            data = {**data, "value": value}
        return data

    @model_validator(mode="after")
    def _operands(self) -> _ValueTest:
        op, v = self.op, self.value
        if op in _DAYS_OPS:
            if self.days is None:
                raise ValueError(f"{op} needs days")
            if v is not None:
                raise ValueError(f"{op} takes days, not value")
            return self
        if self.days is not None:
            raise ValueError(f"days only goes with {', '.join(sorted(_DAYS_OPS))}")
        if op in _NO_VALUE_OPS:
            if v is not None:
                raise ValueError(f"{op} takes no value")
        elif op in _LIST_OPS:
            if not isinstance(v, list) or not v:
                raise ValueError(f"{op} needs a non-empty list of values")
            if len(v) > 10_000:
                raise ValueError("at most 10000 values")
            if not (all(isinstance(x, str) for x in v) or all(_is_number(x) for x in v)):
                raise ValueError(f"{op} needs values that are all text or all numbers")
        elif op == "between":
            if not (isinstance(v, list) and len(v) == 2 and all(_is_number(x) for x in v)):
                raise ValueError("between needs [low, high] numbers")
            if v[0] > v[1]:  # type: ignore[operator]
                raise ValueError("between needs low <= high")
        elif op in ("before", "after"):
            if not isinstance(v, date):
                raise ValueError(f"{op} needs a date or datetime value")
        elif v is None or isinstance(v, list | date):
            raise ValueError(f"{op} needs a single value")
        elif op in _NUMBER_OPS and not _is_number(v):
            raise ValueError(f"{op} needs a number")
        elif op in _TEXT_OPS and not isinstance(v, str):
            raise ValueError(f"{op} needs text")
        elif op == "neq" and isinstance(v, bool):
            raise ValueError("compare booleans with eq")
        if op == "regex":
            assert isinstance(v, str)
            if _UNSUPPORTED_REGEX.search(v):
                raise ValueError("regex: look-around and back-references are not supported")
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"regex: {e}") from None
        return self

    @property
    def kind(self) -> Literal["number", "text", "bool", "date", "anniversary", "presence"]:
        """How the operand is compared (see the module text)."""
        op, v = self.op, self.value
        if op in ("is_set", "is_not_set"):
            return "presence"
        if op in ("anniversary_this_month", "anniversary_in_next"):
            return "anniversary"
        if op in ("before", "after", "within_last", "in_next"):
            return "date"
        if op in _NUMBER_OPS or _is_number(v) or (isinstance(v, list) and v and _is_number(v[0])):
            return "number"
        if isinstance(v, bool):
            return "bool"
        return "text"


class AttributeLeaf(_ValueTest):
    """An attribute of the profile (用户属性): a computed column or a trait."""

    type: Literal["attribute"]
    field: str = Field(min_length=1, max_length=200)

    @property
    def trait_key(self) -> str | None:
        """The trait key read, or None for a computed column."""
        if self.field.startswith("traits."):
            return self.field[len("traits.") :]
        return None if self.field in COMPUTED_FIELDS else self.field


class PropertyFilter(_ValueTest):
    """A filter on one property of an event."""

    property: str = Field(min_length=1, max_length=200)


class Window(_Node):
    """When: the last N hours/days before now, or from ``since`` until ``until`` (exclusive)."""

    last: int | None = Field(default=None, gt=0, le=36600 * 24)
    unit: Literal["hours", "days"] = "days"
    since: datetime | date | None = None
    until: datetime | date | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_times(cls, data: Any) -> Any:
        """ISO text: ``2026-01-31`` is a date, anything longer a datetime (midnight stays a datetime)."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name in ("since", "until"):
            text = out.get(name)
            if isinstance(text, str):
                with suppress(ValueError):  # else the field's own validation names the problem
                    out[name] = date.fromisoformat(text) if len(text) == 10 else datetime.fromisoformat(text)
        return out

    @model_validator(mode="after")
    def _shape(self) -> Window:
        if self.last is not None and (self.since is not None or self.until is not None):
            raise ValueError("give either last or since/until, not both")
        if self.last is None and self.since is None and self.until is None:
            raise ValueError("give last, or since and/or until")
        return self

    def bounds(self, ctx: EvalContext) -> tuple[datetime | None, datetime | None]:
        """[start, end) in naive UTC; None = open."""
        if self.last is not None:
            span = timedelta(hours=self.last) if self.unit == "hours" else timedelta(days=self.last)
            now = ctx.now_utc
            return now - span, now + timedelta(microseconds=1)
        start = ctx.to_utc(self.since) if self.since is not None else None
        end = ctx.to_utc(self.until, end_of_day=True) if self.until is not None else None
        return start, end


class CountTest(_Node):
    op: Comparison = "gte"
    value: int = Field(default=1, ge=0)


class AggregateTest(_Node):
    fn: Literal["sum", "avg", "min", "max"]
    property: str = Field(min_length=1, max_length=200)
    op: Comparison
    value: float


class EventLeaf(_Node):
    """Behaviour (行为): did an event, how often, how much, first or last time, in a window."""

    type: Literal["event"]
    event: str = Field(min_length=1, max_length=200)
    where: list[PropertyFilter] = Field(default_factory=list, max_length=50)
    window: Window | None = None
    count: CountTest | None = None
    aggregate: AggregateTest | None = None
    occurrence: Literal["first", "last"] | None = None

    @model_validator(mode="after")
    def _one_measure(self) -> EventLeaf:
        given = [n for n in ("count", "aggregate", "occurrence") if getattr(self, n) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of count, aggregate, occurrence (got {', '.join(given)})")
        if self.occurrence is not None and self.window is None:
            raise ValueError("occurrence needs a window")
        return self

    @property
    def measure(self) -> CountTest | AggregateTest | Literal["first", "last"]:
        return self.occurrence or self.aggregate or self.count or CountTest()


class OrderLeaf(_Node):
    """Purchases (订单): count or total of qualifying orders in a window; first or repeat purchase."""

    type: Literal["order"]
    measure: Literal["count", "total"] = "count"
    op: Comparison = "gte"
    value: float = Field(default=1, ge=0)
    window: Window | None = None
    purchase: Literal["any", "first", "repeat"] = "any"
    products: list[str] | None = Field(default=None, min_length=1, max_length=10_000)
    categories: list[str] | None = Field(default=None, min_length=1, max_length=10_000)
    channels: list[str] | None = Field(default=None, min_length=1, max_length=10_000)
    coupons: list[str] | None = Field(default=None, min_length=1, max_length=10_000)
    with_coupon: bool | None = None

    @model_validator(mode="after")
    def _coupon(self) -> OrderLeaf:
        if self.coupons is not None and self.with_coupon is False:
            raise ValueError("coupons and with_coupon=false contradict each other")
        return self


class TagLeaf(_Node):
    """A tag's current values (标签)."""

    type: Literal["tag"]
    tag: str = Field(min_length=1, max_length=200)
    op: Literal["has", "in", "all", "eq", "neq", "gt", "gte", "lt", "lte", "between"] = "has"
    value: Scalar | None = None
    values: list[Scalar] | None = Field(default=None, min_length=1, max_length=10_000)
    on: date | None = Field(default=None, description="the values held at the end of this day (history)")

    def cutoff(self, ctx: EvalContext) -> datetime | None:
        """The instant "on" means: the start of the next local day, UTC (None: now)."""
        if self.on is None:
            return None
        local = datetime.combine(self.on + timedelta(days=1), time(), ctx.zone)
        return local.astimezone(UTC)

    @model_validator(mode="after")
    def _operands(self) -> TagLeaf:
        op = self.op
        if op == "has":
            if self.value is not None or self.values is not None:
                raise ValueError("has takes no value")
        elif op in ("in", "all"):
            if self.values is None or self.value is not None:
                raise ValueError(f"{op} needs values (a list)")
            if any(isinstance(x, bool) for x in self.values):
                raise ValueError("tag values are text or numbers")
        elif op == "between":
            vs = self.values
            if vs is None or len(vs) != 2 or not all(_is_number(x) for x in vs) or vs[0] > vs[1]:  # type: ignore[operator]
                raise ValueError("between needs values [low, high] numbers, low <= high")
        else:
            if self.value is None or self.values is not None:
                raise ValueError(f"{op} needs a single value")
            if op in _NUMBER_OPS and not _is_number(self.value):
                raise ValueError(f"{op} needs a number")
            if isinstance(self.value, bool):
                raise ValueError("tag values are text or numbers")
        return self


class InAudienceLeaf(_Node):
    """A member of another audience (群组)."""

    type: Literal["in_audience"]
    audience: str = Field(min_length=1, max_length=100)


class HasIdentifierLeaf(_Node):
    """Reachable: holds an identifier of one of these types (phone, email, wechat_openid …)."""

    type: Literal["has_identifier"]
    id_types: list[str] = Field(min_length=1, max_length=50)


class RandomBucketLeaf(_Node):
    """A deterministic slice of everyone, for holdouts and splits: low <= bucket < high."""

    type: Literal["random_bucket"]
    salt: str = Field(min_length=1, max_length=200)
    buckets: int = Field(default=100, ge=2, le=1_000_000)
    low: int = Field(ge=0)
    high: int = Field(gt=0)

    @model_validator(mode="after")
    def _range(self) -> RandomBucketLeaf:
        if not self.low < self.high <= self.buckets:
            raise ValueError("needs 0 <= low < high <= buckets")
        return self


class And(_Node):
    type: Literal["and"]
    children: list[Condition] = Field(min_length=1, max_length=MAX_LEAVES)


class Or(_Node):
    type: Literal["or"]
    children: list[Condition] = Field(min_length=1, max_length=MAX_LEAVES)


class Not(_Node):
    type: Literal["not"]
    child: Condition


Leaf = AttributeLeaf | TagLeaf | EventLeaf | OrderLeaf | InAudienceLeaf | HasIdentifierLeaf | RandomBucketLeaf
Condition = Annotated[
    And
    | Or
    | Not
    | AttributeLeaf
    | TagLeaf
    | EventLeaf
    | OrderLeaf
    | InAudienceLeaf
    | HasIdentifierLeaf
    | RandomBucketLeaf,
    Field(discriminator="type"),
]
LEAF_TYPES = ("attribute", "tag", "event", "order", "in_audience", "has_identifier", "random_bucket")
NODE_TYPES = ("and", "or", "not", *LEAF_TYPES)
And.model_rebuild()
Or.model_rebuild()
Not.model_rebuild()
_ADAPTER: TypeAdapter[Any] = TypeAdapter(Condition)


class ConditionError(ValueError):
    """A definition that does not validate; ``errors`` are (JSON path, message) pairs."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in self.errors))


_MESSAGES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "missing": "is required",
    "extra_forbidden": "is not a known field",
    "too_short": "must have at least {min_length} item(s)",
    "too_long": "must have at most {max_length} item(s)",
    "union_tag_invalid": "type must be one of " + ", ".join(NODE_TYPES),
    "union_tag_not_found": "needs a type (one of " + ", ".join(NODE_TYPES) + ")",
}


#: Location parts pydantic adds for union members and validators (never a field of ours).
_PYDANTIC_PART = re.compile(
    r"(str|int|float|bool|date|datetime|none|decimal|(list|literal|function-\w+|union|tagged-union|nullable)\[.*\])"
)


def json_path(loc: Sequence[int | str]) -> str:
    """``('children', 2, 'event', 'window', 'last')`` → ``children[2].window.last``.

    Pydantic puts the tag of a discriminated union in the location; it is not part of the JSON.
    """
    out = ""
    prev: int | str | None = None
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif (
            part in NODE_TYPES
            and (prev is None or isinstance(prev, int) or prev == "child")
            or _PYDANTIC_PART.fullmatch(part)
        ):
            pass
        else:
            out += f".{part}" if out else part
        prev = part
    return out


def _message(err: Any) -> str:
    template = _MESSAGES.get(err["type"])
    if template is not None:
        try:
            return template.format(**(err.get("ctx") or {}))
        except (KeyError, IndexError):
            pass
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def parse_condition(data: Any) -> Condition:
    """Validate a definition (parsed JSON) into a condition tree, or raise :class:`ConditionError`."""
    try:
        node = _ADAPTER.validate_python(data)
    except ValidationError as e:
        errors: dict[str, str] = {}
        for err in e.errors(include_url=False):
            errors.setdefault(json_path(err["loc"]), _message(err))  # a union reports each member: keep one
        raise ConditionError(list(errors.items())) from None
    problems = list(_limits(node))
    if problems:
        raise ConditionError(problems)
    return node


def condition_json(node: Condition) -> dict[str, Any]:
    """The definition as JSON-ready data (dates as ISO text, defaults left out)."""
    return node.model_dump(mode="json", exclude_none=True, exclude_defaults=False)


def _limits(node: Condition) -> Iterator[tuple[str, str]]:
    leaves = 0
    for path, depth, n in walk(node):
        if depth > MAX_DEPTH:
            yield path, f"nested deeper than {MAX_DEPTH}"
            return
        if n.type in LEAF_TYPES:
            leaves += 1
    if leaves > MAX_LEAVES:
        yield "", f"more than {MAX_LEAVES} conditions"


def walk(node: Condition, path: str = "", depth: int = 0) -> Iterator[tuple[str, int, Condition]]:
    """Every node with its JSON path and depth, parents first."""
    yield path, depth, node
    if isinstance(node, And | Or):
        for i, child in enumerate(node.children):
            yield from walk(child, f"{path}.children[{i}]" if path else f"children[{i}]", depth + 1)
    elif isinstance(node, Not):
        yield from walk(node.child, f"{path}.child" if path else "child", depth + 1)


def leaves(node: Condition) -> list[tuple[str, Leaf]]:
    """The leaves with their JSON paths, in document order (what explain reports on)."""
    return [(p, n) for p, _, n in walk(node) if n.type in LEAF_TYPES]  # type: ignore[misc]


def audience_refs(node: Condition) -> set[str]:
    """The audiences an ``in_audience`` leaf names."""
    return {n.audience for _, n in leaves(node) if isinstance(n, InAudienceLeaf)}


class EvalContext(BaseModel):
    """What a condition is evaluated against: now (from the clock) and the workspace time zone."""

    model_config = ConfigDict(frozen=True)

    now: datetime
    timezone: str = "Asia/Shanghai"

    @model_validator(mode="after")
    def _aware(self) -> EvalContext:
        if self.now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        ZoneInfo(self.timezone)
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def now_utc(self) -> datetime:
        """Now as naive UTC (how the stores keep time)."""
        return self.now.astimezone(UTC).replace(tzinfo=None)

    @property
    def today(self) -> date:
        """The workspace's local date."""
        return self.now.astimezone(self.zone).date()

    def to_utc(self, value: date | datetime, *, end_of_day: bool = False) -> datetime:
        """A condition's date or datetime as naive UTC; a date is local midnight (or the next one)."""
        if not isinstance(value, datetime):
            day = value + timedelta(days=1) if end_of_day else value
            value = datetime.combine(day, time())
        if value.tzinfo is None:
            value = value.replace(tzinfo=self.zone)
        return value.astimezone(UTC).replace(tzinfo=None)

    def anniversary_span(self, days: int | None) -> tuple[int, int] | None:
        """(first, last) month*100+day for today … today+days; first > last wraps the year.

        None means every date (a span of a year or more)."""
        today = self.today
        if days is None:  # this month
            return today.month * 100 + 1, today.month * 100 + 31
        if days >= 365:
            return None
        end = today + timedelta(days=days)
        return today.month * 100 + today.day, end.month * 100 + end.day


def anniversary_matches(month: int, day: int, span: tuple[int, int] | None) -> bool:
    """Whether (month, day) falls in a span from :meth:`EvalContext.anniversary_span`."""
    if span is None:
        return True
    key, (first, last) = month * 100 + day, span
    return first <= key <= last if first <= last else key >= first or key <= last
