"""Coupons (优惠券): the template a coupon is issued from, what it takes off an order, when a use is
refused, and the codes printed on them. Pure: no I/O, ``now`` is always given.

Kinds (券类型):

* ``fixed`` — 立减券: ``amount`` off (never more than the order);
* ``percent`` — 折扣券: ``percent`` off (``20`` = 20 % off, 八折), rounded half-up to the minor unit,
  at most ``cap`` when one is set;
* ``threshold`` — 满减券: ``amount`` off once the order reaches ``threshold`` ("满300减30");
* ``shipping`` — 免运费券: the order's shipping;
* ``gift`` — 赠品券: a gift item (``gift``), no money off.

Any kind may also set ``threshold`` as a minimum spend (满99包邮); ``threshold`` coupons need one.
Validity: fixed dates (``valid_from`` / ``valid_until``) and/or ``valid_days`` after issue (the earlier
end wins); a template with neither end issues coupons that never lapse.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tessera.domain.money import decimals, parse_amount, to_minor

KEY_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,63}$"
PREFIX_PATTERN = r"^[A-Z0-9-]{0,8}$"
#: a shared code (通用码) printed on a campaign poster, e.g. D11-300-30
PUBLIC_CODE_PATTERN = r"^[A-Z0-9][A-Z0-9_-]{2,39}$"
KINDS = ("fixed", "percent", "threshold", "shipping", "gift")
TEMPLATE_STATUSES = ("active", "paused", "archived")
#: coupon statuses: ``issued`` (usable until it lapses), ``redeemed``, ``expired``, ``void``
COUPON_STATUSES = ("issued", "redeemed", "expired", "void")

#: code alphabet: digits and capitals without the look-alikes 0 O 1 I L (31 symbols, ~4.95 bits each)
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
#: random symbols per code: 13 × log2(31) ≈ 64.4 bits
CODE_LENGTH = 13
_KIND_NAMES = {
    "fixed": ("立减券", "amount off"),
    "percent": ("折扣券", "percent off"),
    "threshold": ("满减券", "spend-and-save"),
    "shipping": ("免运费券", "free shipping"),
    "gift": ("赠品券", "gift"),
}
#: which money/percent fields each kind takes (others must be left out)
_KIND_FIELDS: dict[str, frozenset[str]] = {
    "fixed": frozenset({"amount", "threshold"}),
    "percent": frozenset({"percent", "cap", "threshold"}),
    "threshold": frozenset({"amount", "threshold"}),
    "shipping": frozenset({"threshold"}),
    "gift": frozenset({"gift", "threshold"}),
}
_REQUIRED: dict[str, tuple[str, ...]] = {
    "fixed": ("amount",),
    "percent": ("percent",),
    "threshold": ("amount", "threshold"),
    "shipping": (),
    "gift": ("gift",),
}
_OPTIONAL_TERMS = ("amount", "percent", "cap", "threshold", "gift")


def _decimal(value: Any) -> Decimal | None:
    if value is None:
        return None
    try:
        return parse_amount(value)
    except ValueError:
        raise ValueError(f"不是金额 / not an amount: {value!r}") from None


class CouponTemplate(BaseModel):
    """A coupon template (券模板): what a coupon takes off, for whom, where and how long."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=KEY_PATTERN, description="stable id: lower-case letters, digits, _ and -")
    name: str = Field(min_length=1, max_length=100, description="中文名, e.g. 生日券")
    name_en: str | None = Field(default=None, max_length=100)
    description: str | None = Field(default=None, max_length=2000)
    kind: Literal["fixed", "percent", "threshold", "shipping", "gift"]
    amount: Decimal | None = Field(default=None, description='money off (fixed, threshold), e.g. "30"')
    percent: Decimal | None = Field(default=None, description="percent off (percent): 20 = 20 % off (八折)")
    cap: Decimal | None = Field(default=None, description="largest discount of a percent coupon")
    threshold: Decimal | None = Field(default=None, description="minimum order amount (满 …)")
    gift: str | None = Field(default=None, max_length=200, description="the gift item (gift): text or SKU")
    currency: str = Field(default="CNY", description="ISO 4217, e.g. CNY")
    valid_from: datetime | None = Field(default=None, description="usable from (aware time)")
    valid_until: datetime | None = Field(default=None, description="usable until (exclusive, aware time)")
    valid_days: int | None = Field(default=None, ge=1, le=3660, description="usable N days after issue")
    stock: int | None = Field(default=None, ge=0, description="coupons that may be issued in all; null = unlimited")
    per_person: int | None = Field(default=1, ge=1, description="coupons per person; null = unlimited")
    channels: list[str] = Field(default_factory=list, max_length=50, description="where usable; empty = everywhere")
    code_prefix: str = Field(default="", pattern=PREFIX_PATTERN, description="e.g. BDAY-")
    campaign: str | None = Field(default=None, max_length=100, description="a label for reports")
    return_on_refund: bool = Field(
        default=False, description="退款退券: a refunded order gives its coupon back while it is still valid"
    )
    public_code: str | None = Field(
        default=None,
        pattern=PUBLIC_CODE_PATTERN,
        description="a shared code (通用码) anyone may use, e.g. D11-300-30: each use becomes that buyer's own "
        "coupon, within the per-person limit and the stock; null = one unique code per person (一人一码)",
    )
    status: Literal["active", "paused", "archived"] = "active"

    @field_validator("amount", "percent", "cap", "threshold", mode="before")
    @classmethod
    def _amounts(cls, v: Any) -> Decimal | None:
        return _decimal(v)

    @field_validator("public_code", mode="before")
    @classmethod
    def _public(cls, v: Any) -> Any:
        return v.strip().upper() if isinstance(v, str) else v

    @field_validator("currency", mode="before")
    @classmethod
    def _currency(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = v.strip().upper()
            if not re.fullmatch(r"[A-Z]{3}", v):
                raise ValueError(f"币种应为三位字母 / currency must be a 3-letter ISO code such as CNY: {v!r}")
        return v

    @field_validator("valid_from", "valid_until")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("请带时区 / give a time zone offset, e.g. 2026-06-01T00:00:00+08:00")
        return v

    @field_validator("channels")
    @classmethod
    def _channels(cls, v: list[str]) -> list[str]:
        out: list[str] = []
        for c in v:
            c = c.strip()
            if not c or len(c) > 50:
                raise ValueError(f"渠道名无效 / a channel is 1–50 characters: {c!r}")
            if c.lower() not in (o.lower() for o in out):
                out.append(c)
        return out

    @model_validator(mode="after")
    def _terms(self) -> CouponTemplate:
        kind = self.kind
        allowed = _KIND_FIELDS[kind]
        for name in _OPTIONAL_TERMS:
            if getattr(self, name) is not None and name not in allowed:
                raise ValueError(f"{name}: {_KIND_NAMES[kind][0]}不用 {name} / a {kind} coupon takes no {name} "
                                 f"(it takes {', '.join(sorted(allowed))})")  # fmt: skip
        for name in _REQUIRED[kind]:
            if getattr(self, name) is None:
                raise ValueError(f"{name}: {_KIND_NAMES[kind][0]}需要 {name} / a {kind} coupon needs {name}")
        places = decimals(self.currency)
        for name in ("amount", "cap", "threshold"):
            d: Decimal | None = getattr(self, name)
            if d is None:
                continue
            if d <= 0:
                raise ValueError(f"{name}: 须大于 0 / must be more than 0, got {d}")
            if d != d.quantize(Decimal(1).scaleb(-places)) or d >= Decimal(10) ** 12:
                raise ValueError(f"{name}: {self.currency} 最多 {places} 位小数 / {self.currency} amounts have at "
                                 f"most {places} decimals (and under 10^12), got {d}")  # fmt: skip
        if self.percent is not None and not (Decimal(0) < self.percent < Decimal(100)):
            raise ValueError(
                f"percent: 折扣比例须在 0 与 100 之间 / percent off must be between 0 and 100, got {self.percent}"
            )
        if self.percent is not None and self.percent != self.percent.quantize(Decimal("0.01")):
            raise ValueError(f"percent: 最多两位小数 / at most 2 decimals, got {self.percent}")
        if (
            kind == "threshold"
            and self.amount is not None
            and self.threshold is not None
            and self.amount > self.threshold
        ):
            raise ValueError(f"amount: 减免不能超过门槛 / the amount off ({self.amount}) exceeds the threshold "
                             f"({self.threshold})")  # fmt: skip
        if kind == "gift" and self.gift is not None and not self.gift.strip():
            raise ValueError("gift: 赠品不能为空 / name the gift item")
        if self.valid_from and self.valid_until and self.valid_until <= self.valid_from:
            raise ValueError("valid_until: 须晚于 valid_from / must be after valid_from")
        return self

    # -- derived ----------------------------------------------------------------------------------

    def minor(self, name: Literal["amount", "cap", "threshold"]) -> int | None:
        d: Decimal | None = getattr(self, name)
        return None if d is None else to_minor(d, self.currency)

    def validity(self, issued_at: datetime) -> tuple[datetime, datetime | None]:
        """(valid_from, valid_until) of a coupon issued at ``issued_at``: the earlier end wins."""
        start = max(issued_at, self.valid_from) if self.valid_from else issued_at
        ends = [e for e in (self.valid_until, issued_at + timedelta(days=self.valid_days) if self.valid_days else None)
                if e is not None]  # fmt: skip
        return start, min(ends) if ends else None

    def describe(self) -> str:
        """A one-line bilingual summary, e.g. ``满300减30 / 30 off orders of 300``."""
        cur = self.currency
        floor = f"满{self.threshold}" if self.threshold is not None else ""
        floor_en = f" on orders of {self.threshold} {cur}+" if self.threshold is not None else ""
        if self.kind in ("fixed", "threshold"):
            return f"{floor}减{self.amount} / {self.amount} {cur} off{floor_en}"
        if self.kind == "percent":
            assert self.percent is not None
            zhe = (Decimal(100) - self.percent) / Decimal(10)
            cap = f"，最多减{self.cap}" if self.cap is not None else ""
            cap_en = f" (at most {self.cap} {cur})" if self.cap is not None else ""
            return f"{floor}{'享' if floor else ''}{zhe.normalize():f}折{cap} / {self.percent.normalize():f}% off{floor_en}{cap_en}"
        if self.kind == "shipping":
            return f"{floor}包邮 / free shipping{floor_en}"
        return f"{floor}赠{self.gift} / gift: {self.gift}{floor_en}"


def kind_name(kind: str) -> str:
    zh, en = _KIND_NAMES[kind]
    return f"{zh} / {en}"


# --- what a coupon takes off ----------------------------------------------------------------------


def discount_minor(template: CouponTemplate, amount_minor: int, shipping_minor: int | None = None) -> int:
    """The money a coupon takes off an order of ``amount_minor`` (goods, before the coupon) with
    ``shipping_minor`` shipping, in minor units. Goods discounts never exceed the order; a free
    shipping coupon waives the shipping; a gift takes nothing off. Threshold not met → 0."""
    amount = max(amount_minor, 0)
    floor = template.minor("threshold")
    if floor is not None and amount < floor:
        return 0
    if template.kind in ("fixed", "threshold"):
        return min(template.minor("amount") or 0, amount)
    if template.kind == "percent":
        assert template.percent is not None
        off = int((Decimal(amount) * template.percent / Decimal(100)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        cap = template.minor("cap")
        return min(off, amount, cap if cap is not None else off)
    if template.kind == "shipping":
        return max(shipping_minor or 0, 0)
    return 0


# --- when a use is refused ------------------------------------------------------------------------


@dataclass(frozen=True)
class CouponState:
    """What a refusal needs to know of an issued coupon."""

    status: str
    profile_id: str
    valid_from: datetime
    valid_until: datetime | None


def refusal(
    coupon: CouponState,
    template: CouponTemplate,
    *,
    profile_id: str | None,
    channel: str | None,
    amount_minor: int,
    currency: str,
    now: datetime,
) -> tuple[str, str] | None:
    """Why the coupon cannot be used on this order — ``(reason, "中文 / English")`` — or None.

    Checked in this order: status (void, expired, already_redeemed), not_yet_valid, expired by
    date, not_owner (skipped when ``profile_id`` is None), wrong_channel, currency_mismatch,
    threshold_not_met."""
    if coupon.status == "void":
        return "void", "优惠券已作废 / the coupon was voided"
    if coupon.status == "expired":
        return "expired", "优惠券已过期 / the coupon has expired"
    if coupon.status == "redeemed":
        return "already_redeemed", "优惠券已使用 / the coupon has already been used"
    if now < coupon.valid_from:
        return "not_yet_valid", f"优惠券尚未生效 / the coupon is valid from {coupon.valid_from.isoformat()}"
    if coupon.valid_until is not None and now >= coupon.valid_until:
        return "expired", f"优惠券已过期 / the coupon expired at {coupon.valid_until.isoformat()}"
    if profile_id is not None and profile_id != coupon.profile_id:
        return "not_owner", "优惠券不属于该会员 / the coupon belongs to another member"
    if template.channels:
        allowed = {c.lower() for c in template.channels}
        if channel is None or channel.strip().lower() not in allowed:
            where = ", ".join(template.channels)
            return (
                "wrong_channel",
                f"该券仅限 {where} 使用 / usable only on {where}, not {channel or 'an unnamed channel'}",
            )
    if currency.strip().upper() != template.currency:
        return "currency_mismatch", f"币种不符 / the coupon is in {template.currency}, the order in {currency.upper()}"
    floor = template.minor("threshold")
    if floor is not None and amount_minor < floor:
        return "threshold_not_met", (f"未满 {template.threshold} {template.currency} / the order must reach "
                                     f"{template.threshold} {template.currency}")  # fmt: skip
    return None


# --- codes ------------------------------------------------------------------------------------------


def new_codes(n: int, prefix: str = "") -> list[str]:
    """``n`` distinct random codes ``prefix + 13 symbols`` from :data:`ALPHABET` (≈ 64 bits from
    :mod:`secrets` each). Bytes ≥ 248 are dropped so every symbol is equally likely."""
    import numpy as np

    if n <= 0:
        return []
    need = n * CODE_LENGTH
    parts: list[Any] = []
    have = 0
    while have < need:  # about 3 % of bytes are dropped: one draw nearly always suffices
        raw = np.frombuffer(secrets.token_bytes(int((need - have) * 1.04) + 64), dtype=np.uint8)
        got = raw[raw < 248] % np.uint8(len(ALPHABET))
        parts.append(got)
        have += got.size
    idx = np.concatenate(parts)[:need].reshape(n, CODE_LENGTH)
    # distinct when the first 12 symbols, read as a base-31 number (< 2^63), are distinct
    number = np.zeros(n, dtype=np.int64)
    for col in range(CODE_LENGTH - 1):
        number = number * len(ALPHABET) + idx[:, col]
    number.sort()
    if bool((number[1:] == number[:-1]).any()) and len(set(_render(idx, prefix))) < n:
        return new_codes(n, prefix)  # a repeat within the batch: astronomically rare, draw again
    return _render(idx, prefix)


def _render(idx: Any, prefix: str) -> list[str]:
    import numpy as np

    n = idx.shape[0]
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    lines = np.empty((n, len(head) + CODE_LENGTH + 1), dtype=np.uint8)
    lines[:, : len(head)] = head
    lines[:, len(head) : -1] = np.frombuffer(ALPHABET.encode(), dtype=np.uint8)[idx]
    lines[:, -1] = ord("\n")
    return lines.tobytes().decode("ascii").split("\n")[:-1]
