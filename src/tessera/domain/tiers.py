"""Member tiers (会员等级): the programme and the pure rule that moves a member between levels.

A :class:`TierProgram` orders its levels lowest first (普通会员 → 银卡 → 金卡 → 黑钻). The first level
has threshold 0 and is everyone's default. A member's *metric* over a rolling window — spend (minor
units of the programme's currency) or points earned — decides the level:

* **upgrade** whenever the metric reaches a higher level's ``threshold`` (straight to the highest
  reached, skipping levels);
* **downgrade** only at a scheduled review, when the metric is below the current level's ``keep``
  (保级门槛, default = threshold) and ``min_stay_days`` have passed since reaching it: one level at a
  time (``downgrade: one``) or straight to the level the metric reaches (``all``); never below the
  first level.

:func:`decide` is that rule; it does no I/O. Thresholds are written as decimal amounts (``5000`` =
¥5,000.00) for spend and whole points for points; :meth:`TierProgram.units` turns them into the
metric's integer units.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tessera.domain.money import decimals, from_minor, to_minor

KEY_PATTERN = r"^[a-z0-9_]{1,64}$"
Direction = Literal["up", "down"]

_SYMBOLS = {"CNY": "¥", "USD": "$", "EUR": "€", "GBP": "£", "JPY": "JP¥", "HKD": "HK$"}


class TierProgramError(ValueError):
    """A programme that does not validate; ``errors`` are (JSON path, message) pairs."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in self.errors))


class Perk(BaseModel):
    """A benefit in words (权益说明), shown to members."""

    model_config = ConfigDict(extra="forbid")
    zh: str = Field(min_length=1, max_length=200)
    en: str = Field(default="", max_length=200)


class Benefits(BaseModel):
    """What a level gives (等级权益)."""

    model_config = ConfigDict(extra="forbid")
    points_multiplier: Decimal = Field(
        default=Decimal(1), ge=1, le=100, description="points earned × this (积分倍率), e.g. 1.5"
    )
    free_shipping: bool = Field(default=False, description="包邮")
    birthday_coupon: str | None = Field(
        default=None, pattern=KEY_PATTERN, description="coupon template key granted on the birthday (生日券)"
    )
    perks: list[Perk] = Field(default_factory=list, max_length=50)


class Level(BaseModel):
    """One level (等级) of the programme."""

    model_config = ConfigDict(extra="forbid")
    key: str = Field(pattern=KEY_PATTERN, description="stable key, e.g. gold")
    name: str = Field(min_length=1, max_length=50, description="Chinese name, e.g. 金卡")
    name_en: str = Field(default="", max_length=50, description="English name, e.g. Gold")
    threshold: Decimal = Field(ge=0, description="reach it → upgrade (amount for spend, points for points)")
    keep: Decimal | None = Field(
        default=None, ge=0, description="below it at a review → downgrade (default: threshold)"
    )
    benefits: Benefits = Field(default_factory=Benefits)

    @property
    def keep_or_threshold(self) -> Decimal:
        return self.threshold if self.keep is None else self.keep


class TierProgram(BaseModel):
    """The tier programme (会员等级方案), stored versioned as loyalty_config ``tiers``."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool = True
    metric: Literal["spend", "points"] = Field(
        default="spend", description="spend: completed orders' amounts; points: points earned"
    )
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$", description="the currency of spend thresholds")
    window_days: int = Field(default=365, ge=1, le=3660, description="rolling window of the metric")
    levels: list[Level] = Field(min_length=1, max_length=50, description="lowest first; the first has threshold 0")
    review: str = Field(default="0 3 * * *", description="cron of the scheduled review (workspace time zone)")
    min_stay_days: int = Field(default=0, ge=0, le=3660, description="no downgrade within N days of reaching a tier")
    downgrade: Literal["one", "all"] = Field(default="one", description="one level per review, or all the way")

    @field_validator("review")
    @classmethod
    def _cron(cls, v: str) -> str:
        if not croniter.is_valid(v):
            raise ValueError(f"not a cron expression: {v!r} (e.g. '0 3 * * *')")
        return v

    @model_validator(mode="after")
    def _levels(self) -> TierProgram:
        problems: list[tuple[str, str]] = []
        seen: dict[str, int] = {}
        for i, lv in enumerate(self.levels):
            if lv.key in seen:
                problems.append((f"levels[{i}].key", f"duplicates levels[{seen[lv.key]}].key ({lv.key})"))
            seen.setdefault(lv.key, i)
            if self.metric == "points":
                for name, value in (("threshold", lv.threshold), ("keep", lv.keep)):
                    if value is not None and value != value.to_integral_value():
                        problems.append((f"levels[{i}].{name}", f"points are whole numbers, not {value}"))
            elif lv.threshold != lv.threshold.quantize(Decimal(1).scaleb(-decimals(self.currency))):
                problems.append(
                    (f"levels[{i}].threshold", f"{lv.threshold} has more decimals than {self.currency} allows")
                )
            if lv.keep is not None and lv.keep > lv.threshold:
                problems.append((f"levels[{i}].keep", f"keep {lv.keep} must not exceed threshold {lv.threshold}"))
            if i == 0 and lv.threshold != 0:
                problems.append(("levels[0].threshold", "the first level is everyone's default: its threshold is 0"))
            if i > 0 and lv.threshold <= self.levels[i - 1].threshold:
                problems.append(
                    (f"levels[{i}].threshold",
                     f"thresholds rise strictly: {lv.threshold} ≤ levels[{i - 1}].threshold {self.levels[i - 1].threshold}")
                )  # fmt: skip
        if problems:
            raise TierProgramError(problems)
        return self

    # --- helpers ------------------------------------------------------------------------------------

    @property
    def first(self) -> Level:
        return self.levels[0]

    def index(self, key: str) -> int | None:
        return next((i for i, lv in enumerate(self.levels) if lv.key == key), None)

    def level(self, key: str) -> Level | None:
        i = self.index(key)
        return None if i is None else self.levels[i]

    def units(self, amount: Decimal) -> int:
        """A threshold in the metric's integer units (minor units for spend, points for points)."""
        return to_minor(amount, self.currency) if self.metric == "spend" else int(amount)

    def reached(self, metric: int) -> int:
        """The index of the highest level whose threshold ``metric`` reaches (0 at least)."""
        best = 0
        for i, lv in enumerate(self.levels):
            if metric >= self.units(lv.threshold):
                best = i
        return best

    def text(self, units: int) -> str:
        """``¥5,200.00`` for spend, ``12,000`` for points."""
        if self.metric == "points":
            return f"{units:,}"
        symbol = _SYMBOLS.get(self.currency, self.currency + " ")
        return f"{symbol}{from_minor(units, self.currency):,f}"


def decide(
    program: TierProgram, current_key: str, since: datetime, metric: int, now: datetime, *, scheduled: bool
) -> tuple[str, Direction] | None:
    """The level ``(key, direction)`` a member on ``current_key`` since ``since`` moves to, or None.

    Upgrades whenever ``metric`` reaches a higher threshold (to the highest reached); downgrades
    only when ``scheduled``, ``metric`` is below the current level's keep and the minimum stay is
    over. A ``current_key`` the programme no longer has moves to the level the metric reaches.
    """
    cur = program.index(current_key)
    reached = program.reached(metric)
    if cur is None:
        return program.levels[reached].key, ("up" if reached > 0 else "down")
    if reached > cur:
        return program.levels[reached].key, "up"
    if not scheduled or cur == 0:
        return None
    if metric >= program.units(program.levels[cur].keep_or_threshold):
        return None
    if now < since + timedelta(days=program.min_stay_days):
        return None
    target = cur - 1 if program.downgrade == "one" else reached
    target = max(0, min(target, cur - 1))
    return program.levels[target].key, "down"


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _message(err: Any) -> str:
    return str(err["msg"]).removeprefix("Value error, ")


def parse_program(data: Any) -> TierProgram:
    """Validate a programme (parsed JSON), or raise :class:`TierProgramError` naming every problem."""
    try:
        return TierProgram.model_validate(data)
    except TierProgramError:
        raise
    except ValidationError as e:
        errors: dict[str, str] = {}
        for err in e.errors(include_url=False):
            nested = (err.get("ctx") or {}).get("error")
            if isinstance(nested, TierProgramError):
                for p, m in nested.errors:
                    errors.setdefault(p, m)
                continue
            errors.setdefault(_path(err["loc"]), _message(err))
        raise TierProgramError(list(errors.items())) from None


__all__ = ["Benefits", "Direction", "Level", "Perk", "TierProgram", "TierProgramError", "decide", "parse_program"]
