"""The points programme (积分规则) and the arithmetic of the ledger (积分流水) — pure, no I/O.

* :class:`PointsProgram` — how orders earn points (rates per currency, rounding, multipliers by
  channel / tier / campaign period / profile condition), bonus events (签到、评价、生日 …), how long
  points live, when members hear about expiring points, and what a refund does.
* :func:`points_for_order` — the points of one order and which multipliers applied.
* :func:`lots` — the open lots of a member's ledger, first in first out (先进先出): credits are lots
  with an expiry; an ``expire`` entry consumes exactly its lot; every other debit consumes the open
  lots that expire soonest first (ties by id), skipping lots already expired at the debit's time;
  a debit beyond the open lots leaves a deficit that later credits pay first. Always
  ``sum(open remaining) - deficit == sum(points) == balance``.
* :func:`bonus_key` — the idempotency key of a bonus grant: at most one per ``per`` period.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tessera.domain.conditions import ConditionError, json_path, parse_condition
from tessera.domain.money import decimals

#: the special bonus event granted on a member's birthday (by the daily job, not by an event)
BIRTHDAY = "birthday"
CREDIT_KINDS = ("earn", "adjust")
KINDS = ("earn", "spend", "expire", "adjust")
Scalar = str | int | float | bool


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Rate(_Model):
    """Points per whole unit of a currency (CNY 1 point per ¥1, USD 7 per $1)."""

    currency: str = Field(min_length=3, max_length=3)
    points_per_unit: Decimal = Field(ge=0, le=1_000_000)

    @field_validator("currency")
    @classmethod
    def _upper(cls, v: str) -> str:
        if not v.isalpha():
            raise ValueError("must be a 3-letter ISO 4217 code such as CNY")
        return v.upper()


def _aware(v: datetime | None) -> datetime | None:
    if v is not None and v.tzinfo is None:
        raise ValueError("give a time zone offset, e.g. 2026-11-11T00:00:00+08:00")
    return v.astimezone(UTC) if v is not None else None


class Multiplier(_Model):
    """A points multiplier (积分倍率): ``factor`` when the order's channel, the member's tier, the
    order time and the member's profile condition all fit (an empty filter fits everything)."""

    key: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=100)
    name_en: str = Field(default="", max_length=100)
    factor: Decimal = Field(gt=0, le=100)
    channels: list[str] = Field(default_factory=list, description="order channel in … (case-insensitive)")
    tiers: list[str] = Field(default_factory=list, description="member tier keys")
    start: datetime | None = None
    end: datetime | None = None
    condition: dict[str, Any] | None = Field(default=None, description="a profile condition (docs/audiences.md)")
    campaign: str | None = Field(default=None, max_length=100)

    _aware_times = field_validator("start", "end")(_aware)

    @model_validator(mode="after")
    def _period(self) -> Multiplier:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self

    def fits(self, channel: str | None, tier: str | None, at: datetime) -> bool:
        """Channel, tier and period fit (the profile condition is decided elsewhere)."""
        if self.channels and (channel or "").strip().lower() not in {c.strip().lower() for c in self.channels}:
            return False
        if self.tiers and tier not in self.tiers:
            return False
        if self.start is not None and at < self.start:
            return False
        return not (self.end is not None and at >= self.end)


class Bonus(_Model):
    """Points for an event (签到 Checked In, 评价 Review Submitted …, or ``birthday``), at most once per
    ``per`` period per member; ``where`` keeps only events whose properties equal the given values."""

    key: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    name: str = Field(min_length=1, max_length=100)
    name_en: str = Field(default="", max_length=100)
    event: str = Field(min_length=1, max_length=100)
    points: int = Field(gt=0, le=10_000_000)
    per: Literal["event", "day", "week", "month", "year", "once"] = "event"
    where: dict[str, Scalar] = Field(default_factory=dict)

    def matches(self, properties: Mapping[str, Any]) -> bool:
        return all(properties.get(k) == v for k, v in self.where.items())


class PointsProgram(_Model):
    """The points programme (积分规则), stored as JSON in ``loyalty_config`` (name ``points``)."""

    enabled: bool = True
    rates: list[Rate] = Field(default_factory=lambda: [Rate(currency="CNY", points_per_unit=Decimal(1))])
    rounding: Literal["floor", "half_up"] = "floor"
    lifetime_days: int | None = Field(default=365, ge=1, le=36_500, description="null: points never expire")
    notice_days: int = Field(default=30, ge=0, le=3650, description="Points Expiring this many days ahead")
    multipliers: list[Multiplier] = Field(default_factory=list)
    stack: Literal["multiply", "max"] = "multiply"
    bonuses: list[Bonus] = Field(default_factory=list)
    order_events: list[str] = Field(default_factory=lambda: ["Order Completed"], min_length=1)
    refund_events: list[str] = Field(default_factory=lambda: ["Order Refunded"])
    clawback: bool = True

    @model_validator(mode="after")
    def _unique(self) -> PointsProgram:
        for what, keys in (("rates", [r.currency for r in self.rates]), ("multipliers", [m.key for m in self.multipliers]),
                           ("bonuses", [b.key for b in self.bonuses])):  # fmt: skip
            seen: set[str] = set()
            for k in keys:
                if k in seen:
                    raise ValueError(f"{what}: {k!r} appears twice")
                seen.add(k)
        if set(self.order_events) & set(self.refund_events):
            raise ValueError("an event cannot be both an order event and a refund event")
        return self

    def rate(self, currency: str) -> Decimal | None:
        cur = currency.upper()
        return next((r.points_per_unit for r in self.rates if r.currency == cur), None)

    def expiry(self, at: datetime) -> datetime | None:
        """When points credited at ``at`` expire (None: never)."""
        return at + timedelta(days=self.lifetime_days) if self.lifetime_days is not None else None

    @property
    def bonus_events(self) -> set[str]:
        return {b.event for b in self.bonuses if b.event != BIRTHDAY}


class ProgramError(ValueError):
    """A programme that does not validate; ``errors`` are (field path, message) pairs."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in self.errors))


def parse_program(data: Any) -> PointsProgram:
    """Validate a programme (parsed JSON); every problem is named by its path
    (``multipliers[0].factor: must be <= 100``, ``multipliers[1].condition.value: is required``)."""
    if not isinstance(data, Mapping):
        raise ProgramError([("", "must be a JSON object")])
    try:
        prog = PointsProgram.model_validate(data)
    except ValidationError as e:
        errors: dict[str, str] = {}
        for err in e.errors(include_url=False):
            msg = str(err["msg"]).removeprefix("Value error, ")
            errors.setdefault(json_path(err["loc"]), msg)
        raise ProgramError(list(errors.items())) from None
    problems: list[tuple[str, str]] = []
    for i, m in enumerate(prog.multipliers):
        if m.condition is not None:
            try:
                parse_condition(m.condition)
            except ConditionError as e:
                problems += [(f"multipliers[{i}].condition" + (f".{p}" if p else ""), msg) for p, msg in e.errors]
    if problems:
        raise ProgramError(problems)
    return prog


# --- earning ---------------------------------------------------------------------------------------------


def points_for_order(
    program: PointsProgram,
    amount_minor: int,
    currency: str,
    channel: str | None,
    at: datetime,
    tier: str | None,
    tier_factor: Decimal,
    matched_multipliers: Iterable[str],
) -> tuple[int, list[str]]:
    """The points of an order and what decided them: the keys of the multipliers applied, ``tier``
    when the tier benefit multiplied, or ``no_rate:<CUR>`` (then 0 points).

    ``matched_multipliers``: keys of multipliers whose profile condition holds for the buyer (the
    caller compiles conditions); multipliers without a condition need only channel, tier and period.
    Points = amount in units × rate × (product, or the largest, of the fitting multipliers) × tier
    factor, rounded by ``program.rounding``; never negative.
    """
    rate = program.rate(currency)
    if rate is None:
        return 0, [f"no_rate:{currency.upper()}"]
    matched = set(matched_multipliers)
    applied = [m for m in program.multipliers
               if m.fits(channel, tier, at) and (m.condition is None or m.key in matched)]  # fmt: skip
    factor = Decimal(1)
    if applied:
        factors = [m.factor for m in applied]
        if program.stack == "max":
            best = max(factors)
            applied = [next(m for m in applied if m.factor == best)]
            factor = best
        else:
            for f in factors:
                factor *= f
    reasons = [m.key for m in applied]
    if tier_factor != 1:
        factor *= tier_factor
        reasons.append("tier")
    units = Decimal(max(amount_minor, 0)).scaleb(-decimals(currency))
    raw = units * rate * factor
    rounding = ROUND_FLOOR if program.rounding == "floor" else ROUND_HALF_UP
    return max(int(raw.quantize(Decimal(1), rounding=rounding)), 0), reasons


def bonus_key(bonus: Bonus, profile_id: str, message_id: str, at: datetime, timezone: str = "Asia/Shanghai") -> str:
    """The ledger key of a bonus grant: one per event, or one per local day / ISO week / month / year,
    or once ever, per member."""
    base = f"bonus:{bonus.key}:{profile_id}"
    if bonus.per == "event":
        return f"bonus:{bonus.key}:{message_id}"
    if bonus.per == "once":
        return base
    local = at.astimezone(ZoneInfo(timezone))
    if bonus.per == "day":
        return f"{base}:{local.date().isoformat()}"
    if bonus.per == "week":
        y, w, _ = local.isocalendar()
        return f"{base}:{y}-W{w:02d}"
    if bonus.per == "month":
        return f"{base}:{local.year}-{local.month:02d}"
    return f"{base}:{local.year}"


# --- lots (FIFO) ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LedgerItem:
    """What :func:`lots` needs of a ledger entry (in ledger order: by id)."""

    id: int
    kind: str
    points: int
    at: datetime
    expires_at: datetime | None = None
    lot_id: int | None = None


@dataclass
class Lot:
    """A credit (积分批次) and what is left of it."""

    id: int
    points: int
    remaining: int
    earned_at: datetime
    expires_at: datetime | None


@dataclass
class Lots:
    """The open lots (remaining > 0, soonest expiry first) and the unpaid deficit."""

    open: list[Lot] = field(default_factory=list)
    deficit: int = 0

    @property
    def total(self) -> int:
        """sum(open remaining) − deficit: the balance."""
        return sum(lot.remaining for lot in self.open) - self.deficit

    def due(self, now: datetime) -> list[Lot]:
        """Open lots whose expiry has come (``expires_at <= now``): the expiry job expires them."""
        return [lot for lot in self.open if lot.expires_at is not None and lot.expires_at <= now]

    def expiring(self, now: datetime, until: datetime) -> list[Lot]:
        return [lot for lot in self.open if lot.expires_at is not None and now < lot.expires_at <= until]


_FAR = datetime.max.replace(tzinfo=UTC)


def _fifo(lot: Lot) -> tuple[datetime, int]:
    return (lot.expires_at or _FAR, lot.id)


def lots(entries: Iterable[LedgerItem], now: datetime) -> Lots:
    """The open lots of one member's ledger ``entries`` (any order; processed by id). ``now`` is
    when the answer is asked for (:meth:`Lots.due` compares against it; lots are never dropped here,
    so the identity with the balance always holds)."""
    live: dict[int, Lot] = {}
    deficit = 0

    def consume(amount: int, at: datetime) -> None:
        nonlocal deficit
        for lot in sorted(live.values(), key=_fifo):
            if amount <= 0:
                break
            if lot.remaining <= 0 or (lot.expires_at is not None and lot.expires_at <= at):
                continue
            take = min(lot.remaining, amount)
            lot.remaining -= take
            amount -= take
        deficit += amount

    for e in sorted(entries, key=lambda x: x.id):
        if e.points > 0:
            pay = min(deficit, e.points)
            deficit -= pay
            live[e.id] = Lot(e.id, e.points, e.points - pay, e.at, e.expires_at)
        elif e.points < 0:
            amount = -e.points
            if e.kind == "expire" and e.lot_id is not None and e.lot_id in live:
                lot = live[e.lot_id]
                take = min(lot.remaining, amount)
                lot.remaining -= take
                amount -= take
            consume(amount, e.at)
    return Lots(sorted((lot for lot in live.values() if lot.remaining > 0), key=_fifo), deficit)
