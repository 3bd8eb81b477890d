"""Identity rules (OneID / ID-Mapping): identifier types, normalisation, the block-list, limits.

Pure: no I/O. The rules are data (pydantic), stored in the operational store and editable through
the API and the CLI; :func:`default_rules` gives the defaults of the Segment Unify model.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Literal

import phonenumbers
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

IdKind = Literal["id", "phone", "email"]

#: Separates identifiers inside an observation key; normalised values never contain it.
KEY_SEPARATOR = "\x1f"
_MAX_VALUE = 512


class IdentifierType(BaseModel):
    """One kind of identifier (标识类型): where it comes from, how it is normalised, how many a profile holds."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    label_zh: str = ""
    label_en: str = ""
    kind: IdKind = "id"
    #: How many identifiers of this type one profile may hold.
    limit: int = Field(default=5, ge=1, le=10_000)
    #: Only identifiers linked within this many days count towards the limit (None = ever).
    window_days: int | None = Field(default=None, ge=1)
    #: Trait keys (identify traits and ``context.traits``) that carry this identifier.
    trait_keys: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]] = Field(default_factory=list)
    #: Whether the value is case-insensitive (lower-cased when normalised).
    case_insensitive: bool = False

    @property
    def window(self) -> timedelta | None:
        return timedelta(days=self.window_days) if self.window_days else None


TraitMerge = Literal["latest", "first", "source_priority", "sum"]


class TraitPolicies(BaseModel):
    """How a profile's trait is chosen when its identifiers brought different values (合并策略).

    ``latest`` (by event time) is the default; ``first`` keeps the first seen; ``source_priority``
    takes the value from the highest source in ``source_priority`` (source names, highest first),
    the latest among equals; ``sum`` adds numeric values up (non-numbers are ignored).
    """

    model_config = ConfigDict(extra="forbid")

    default: TraitMerge = "latest"
    per_trait: dict[str, TraitMerge] = Field(default_factory=dict)
    source_priority: list[str] = Field(default_factory=list)

    def policy(self, trait: str) -> TraitMerge:
        return self.per_trait.get(trait, self.default)


class IdentityRules(BaseModel):
    """The rules of identity resolution. ``types`` is in priority order, highest first."""

    model_config = ConfigDict(extra="forbid")

    types: list[IdentifierType]
    #: Default region for phone numbers written without a country code.
    default_region: str = Field(default="CN", pattern=r"^[A-Z]{2}$")
    #: Junk values that never link (compared after normalisation, case-insensitively).
    blocked_values: list[str] = Field(default_factory=list)
    #: Regular expressions (Python syntax, full match) of junk values.
    blocked_patterns: list[str] = Field(default_factory=list)
    #: Limit of a type that appears only through ``context.externalIds`` (a custom type).
    custom_type_limit: int = Field(default=5, ge=1)
    #: How conflicting trait values of one profile are merged.
    traits: TraitPolicies = Field(default_factory=TraitPolicies)

    @field_validator("blocked_patterns")
    @classmethod
    def _patterns_compile(cls, patterns: list[str]) -> list[str]:
        for i, p in enumerate(patterns):
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"blocked_patterns[{i}]: not a regular expression: {exc}") from None
        return patterns

    @model_validator(mode="after")
    def _unique_types(self) -> IdentityRules:
        seen: set[str] = set()
        for t in self.types:
            if t.name in seen:
                raise ValueError(f"types: {t.name!r} appears twice")
            seen.add(t.name)
        return self

    # -- derived lookups (cached per instance) ---------------------------------------------
    def type_named(self, name: str) -> IdentifierType:
        for t in self.types:
            if t.name == name:
                return t
        return IdentifierType(name=name, limit=self.custom_type_limit)

    def rank(self, name: str) -> int:
        """Priority rank: 0 is the highest. Custom types rank after the configured ones."""
        return _ranks(self).get(name, len(self.types))

    def limit(self, name: str) -> int:
        return self.type_named(name).limit

    def window(self, name: str) -> timedelta | None:
        return self.type_named(name).window

    def __hash__(self) -> int:
        return id(self)


@lru_cache(maxsize=64)
def _ranks(rules: IdentityRules) -> dict[str, int]:
    return {t.name: i for i, t in enumerate(rules.types)}


def default_rules() -> IdentityRules:
    """The defaults: priority user_id > member_id > phone > email > WeChat > marketplaces > device > anonymous."""

    def t(name: str, zh: str, en: str, limit: int = 5, **kw: object) -> IdentifierType:
        return IdentifierType(name=name, label_zh=zh, label_en=en, limit=limit, **kw)  # type: ignore[arg-type]

    return IdentityRules(
        types=[
            t("user_id", "用户ID", "User ID", 1),
            t("member_id", "会员号", "Member ID", 1, trait_keys=["member_id", "memberId"]),
            t("phone", "手机号", "Phone", 3, kind="phone", trait_keys=["phone", "mobile"]),
            t("email", "邮箱", "Email", 3, kind="email", trait_keys=["email"]),
            t("wechat_unionid", "微信UnionID", "WeChat unionid", trait_keys=["wechat_unionid", "unionid"]),
            t("wechat_openid", "微信OpenID", "WeChat openid", trait_keys=["wechat_openid", "openid"]),
            t("tmall_id", "天猫ID", "Tmall buyer id", trait_keys=["tmall_id"]),
            t("jd_id", "京东ID", "JD buyer id", trait_keys=["jd_id"]),
            t("douyin_id", "抖音ID", "Douyin id", trait_keys=["douyin_id"]),
            t("device_id", "设备ID", "Device id", 5, case_insensitive=True),
            t("anonymous_id", "匿名ID", "Anonymous id", 5),
        ],
        blocked_values=[
            "null",
            "none",
            "nil",
            "undefined",
            "nan",
            "anonymous",
            "unknown",
            "n/a",
            "na",
            "-",
            "-1",
            "0",
            "test",
            "test@test.com",
            "test@example.com",
            "a@a.com",
            "noemail@noemail.com",
            "00000000-0000-0000-0000-000000000000",
        ],  # fmt: skip
        blocked_patterns=[r"[0\-]+", r"(.)\1{7,}"],
    )


class Rejected(ValueError):
    """A value that does not normalise (or is blocked): it is not linked; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _strip(value: str) -> str:
    # ASCII is its own NFKC form: skip the normalisation for the common case.
    value = value.strip() if value.isascii() else unicodedata.normalize("NFKC", value).strip()
    if not value:
        raise Rejected("empty")
    if len(value) > _MAX_VALUE:
        raise Rejected(f"longer than {_MAX_VALUE} characters")
    if _CONTROL.search(value):
        raise Rejected("contains control characters")
    return value


_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


_CN_MOBILE = re.compile(r"(?:\+?86|0086)?(1[3-9]\d{9})")
_PUNCT = str.maketrans("", "", " -()")


def normalise_phone(value: str, region: str) -> str:
    """E.164 (``+8613800138000``); raises :class:`Rejected` for what is not a valid number."""
    digits = value.translate(_PUNCT)
    mobile = _CN_MOBILE.fullmatch(digits) if (region == "CN" or digits.startswith(("+86", "0086"))) else None
    if mobile is not None:
        # A Chinese mobile number: valid or not by its first digits (phonenumbers' ranges, memoised).
        national = mobile.group(1)
        if not _cn_mobile_prefix_valid(national[:5]):
            raise Rejected("not a valid phone number")
        return "+86" + national
    return _parse_phone(value, region)


@lru_cache(maxsize=100_000)
def _cn_mobile_prefix_valid(prefix: str) -> bool:
    """Whether Chinese mobile numbers starting with these 5 digits are valid: phonenumbers' CN
    mobile ranges are decided by at most the first five digits (``1740[0-5]``), the rest is free."""
    return all(phonenumbers.is_valid_number(phonenumbers.parse(prefix + tail, "CN")) for tail in ("000000", "999999"))


def _parse_phone(value: str, region: str) -> str:
    try:
        number = phonenumbers.parse(value, region)
    except phonenumbers.NumberParseException as exc:
        raise Rejected(f"not a phone number: {exc}") from None
    if not phonenumbers.is_valid_number(number):
        raise Rejected("not a valid phone number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise(rules: IdentityRules, id_type: str, raw: object) -> str:
    """The canonical form of ``raw`` as an identifier of ``id_type``; raises :class:`Rejected`."""
    if raw is None:
        raise Rejected("empty")
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        raise Rejected(f"not a string but {type(raw).__name__}")
    value = _strip(str(raw))
    spec = rules.type_named(id_type)
    if spec.kind == "phone":
        value = normalise_phone(value, rules.default_region)
    elif spec.kind == "email":
        value = value.lower()
        if not _EMAIL.fullmatch(value):
            raise Rejected("not an email address")
    elif spec.case_insensitive:
        value = value.lower()
    if blocked(rules, value):
        raise Rejected("blocked value")
    return value


def blocked(rules: IdentityRules, value: str) -> bool:
    """Whether ``value`` (normalised) is on the block-list."""
    values, pattern = _block_list(rules)
    low = value.lower()
    return low in values or (pattern is not None and pattern.fullmatch(low) is not None)


@lru_cache(maxsize=64)
def _block_list(rules: IdentityRules) -> tuple[frozenset[str], re.Pattern[str] | None]:
    """The blocked values, and the patterns as one alternation (one match per value)."""
    pattern = "|".join(f"(?:{p})" for p in rules.blocked_patterns)
    return (
        frozenset(v.strip().lower() for v in rules.blocked_values),
        re.compile(pattern, re.IGNORECASE) if pattern else None,
    )


def observation_key(ids: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> str:
    """The canonical key of a set of identifiers seen together (sorted ``type:value``)."""
    return KEY_SEPARATOR.join(sorted({f"{t}:{v}" for t, v in ids}))


def parse_identifier(text: str) -> tuple[str, str]:
    """``TYPE:VALUE`` → (type, value); raises ValueError naming what is wrong."""
    id_type, sep, value = text.partition(":")
    if not sep or not id_type or not value:
        raise ValueError(f"{text!r}: write an identifier as TYPE:VALUE, e.g. phone:13800138000")
    return id_type.strip(), value


_TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def normalised_identifier(rules: IdentityRules, text: str) -> tuple[str, str]:
    """``TYPE:VALUE`` as a person writes it → (type, normalised value), e.g. for a lookup or an
    unmerge; raises ValueError with a message naming the problem."""
    id_type, raw = parse_identifier(text.strip())
    id_type = id_type.lower()
    if not _TYPE_NAME.match(id_type):
        known = ", ".join(t.name for t in rules.types)
        raise ValueError(f"{id_type!r} is not an identifier type; known types: {known}")
    try:
        return id_type, normalise(rules, id_type, raw)
    except Rejected as exc:
        raise ValueError(f"{id_type} {raw!r} is not usable: {exc.reason}") from None
