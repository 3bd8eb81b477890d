"""Message templates (消息模板): bilingual Jinja2 text rendered in a sandbox, per person.

A :class:`MessageTemplate` holds ``subject`` and ``body`` per locale (``zh`` 中文 and/or ``en``;
a plain string means ``{"zh": text}``) and ``data``: structured extras whose string values are
templates too (WeChat template fields, a webhook JSON payload), rendered recursively.

**Variables** (:func:`variables_for` builds them; templates see exactly these names):

==============  ===================================================================================
``profile``     the person's traits plus ``id``, ``name``, ``phone``, ``email`` (empty traits are
                left out, so ``{{ profile.nickname | default("朋友") }}`` works)
``tags``        tag key → value (``{{ tags.rfm_segment }}``)
``coupon``      the coupon issued by the journey: ``code``, ``template``, ``valid_until`` (or empty)
``event``       the triggering event's properties, plus ``event`` (its name) and ``timestamp``
``journey``     ``id``, ``name``, ``version`` of the journey sending the message
(extras)        anything the caller adds, e.g. ``unsubscribe_url`` — never one of the names above
==============  ===================================================================================

**Filters** besides Jinja's own (``default``, ``upper``, ``round`` …):

* ``money`` — ``{{ 1234 | money }}`` → ``¥1,234.00``; ``{{ 9.5 | money("USD") }}`` → ``$9.50``
  (CNY, USD, HKD, EUR, GBP, JPY …; another code is written before the number);
* ``date`` — a date, datetime or ISO string with a strftime pattern: ``{{ coupon.expires_at |
  date("%Y年%m月%d日") }}``; the default pattern is ``%Y-%m-%d``;
* ``mask_phone`` — ``{{ profile.phone | mask_phone }}``: ``+8613812345678`` → ``138****5678``.

**Rules.** :func:`render` picks the locale: the profile's language (``en-US`` → ``en``) if the
template has that text, else ``zh``, else what there is. An undefined name renders as an empty
string — marketing copy must not crash on a missing trait — and is listed in
:attr:`Rendered.missing` (``profile.nickname``) so a preview can warn. ``html=True`` autoescapes
the body (email HTML); the subject and data are never escaped. Templates run in Jinja's
immutable sandbox: no ``_private`` / dunder attributes (``{{ ''.__class__ }}`` is an error, not
an empty string), no unsafe calls, no mutating the variables, ``range`` capped, and huge
``**`` / string repetition refused. Errors — in :func:`check_template` (syntax) and in
:func:`render` (sandbox refusals, type errors) — carry the field (``body.en``,
``data.first.value``) and, when known, ``line N:``.
"""

from __future__ import annotations

import contextlib
import re
import types
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
import phonenumbers
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import missing as _jinja_missing
from pydantic import BaseModel, ConfigDict, Field, field_validator

#: The locales a template may carry text for.
LOCALES = ("zh", "en")
#: The variable names :func:`variables_for` defines (extras may not reuse them).
VARIABLES = ("profile", "tags", "coupon", "event", "journey")
#: The largest string or list a ``*`` may build, and the largest exponent of ``**``.
MAX_REPEAT = 100_000
MAX_EXPONENT = 1_000

_CURRENCIES: dict[str, tuple[str, int]] = {
    "CNY": ("¥", 2),
    "RMB": ("¥", 2),
    "USD": ("$", 2),
    "HKD": ("HK$", 2),
    "MOP": ("MOP$", 2),
    "TWD": ("NT$", 2),
    "SGD": ("S$", 2),
    "EUR": ("€", 2),
    "GBP": ("£", 2),
    "JPY": ("JP¥", 0),
    "KRW": ("₩", 0),
}


class TemplateError(ValueError):
    """A template that cannot compile or render; ``field`` names the text (``body.en`` …)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# -- the model ------------------------------------------------------------------------------------------


class MessageTemplate(BaseModel):
    """Subject and body per locale (``zh`` / ``en``) plus templated ``data`` (see the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    subject: dict[str, str] | None = None
    body: dict[str, str]
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("subject", "body", mode="before")
    @classmethod
    def _plain_text_is_chinese(cls, value: Any) -> Any:
        return {"zh": value} if isinstance(value, str) else value

    @field_validator("subject", "body")
    @classmethod
    def _known_locales(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        unknown = sorted(set(value) - set(LOCALES))
        if unknown:
            raise ValueError(f"unknown locale {unknown[0]!r}; use {' or '.join(LOCALES)}")
        return value or None

    @field_validator("body")
    @classmethod
    def _some_body(cls, value: dict[str, str] | None) -> dict[str, str]:
        if not value:
            raise ValueError("needs text for at least one locale (zh or en)")
        return value


@dataclass(frozen=True)
class Rendered:
    """A template rendered for one person: texts in ``locale``; ``missing`` = undefined names used."""

    subject: str | None
    body: str
    data: dict[str, Any]
    locale: str
    missing: list[str] = field(default_factory=list)


# -- the sandbox ------------------------------------------------------------------------------------------


@dataclass
class _Track:
    owners: dict[int, str]
    names: dict[str, None] = field(default_factory=dict)


_tracking: ContextVar[_Track | None] = ContextVar("tessera_template_tracking", default=None)


class _RecordingUndefined(jinja2.ChainableUndefined):
    """Renders as ``""`` (and chains: ``{{ a.b.c }}``), noting the name for :attr:`Rendered.missing`.

    An *unsafe* attribute (``__class__``, ``_private``) is not quietly empty: the sandbox's
    undefined for it raises :class:`SecurityError` at once.
    """

    __slots__ = ()

    def __init__(
        self,
        hint: str | None = None,
        obj: Any = _jinja_missing,
        name: str | None = None,
        exc: type[jinja2.TemplateRuntimeError] = jinja2.UndefinedError,
    ) -> None:
        if exc is SecurityError:
            raise SecurityError(hint or f"access to {name!r} is not allowed")
        super().__init__(hint, obj, name, exc)

    def _note(self) -> None:
        track = _tracking.get()
        name = self._undefined_name
        if track is None or name is None:
            return
        owner = None if self._undefined_obj is _jinja_missing else track.owners.get(id(self._undefined_obj))
        track.names[f"{owner}.{name}" if owner else name] = None

    def __str__(self) -> str:
        self._note()
        return ""

    def __iter__(self) -> Iterator[Any]:
        self._note()
        return iter(())


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**" and isinstance(right, int | float) and abs(right) > MAX_EXPONENT:
            raise SecurityError(f"exponent {right} is larger than {MAX_EXPONENT}")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and len(seq) * times > MAX_REPEAT:
                    raise SecurityError(f"repetition would build more than {MAX_REPEAT} items")
        return super().call_binop(context, operator, left, right)


def _finalize(value: Any) -> Any:
    return "" if value is None else value


def _undefined_text(value: Any) -> bool:
    """Whether a filter got nothing (undefined or None); an undefined one is noted as missing."""
    if isinstance(value, jinja2.Undefined):
        str(value)
        return True
    return value is None


def money(value: Any, currency: str = "CNY") -> str:
    """``1234`` → ``¥1,234.00``; ``money(9.5, "USD")`` → ``$9.50`` (half-up rounding)."""
    if _undefined_text(value) or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal | str):
        raise TypeError(f"money needs a number, not {type(value).__name__}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"money needs a number, not {value!r}") from None
    if not amount.is_finite():
        raise ValueError(f"money needs a finite number, not {value!r}")
    code = str(currency).strip().upper()
    symbol, places = _CURRENCIES.get(code, (f"{code} ", 2))
    rounded = amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    sign = "-" if rounded < 0 else ""
    return f"{sign}{symbol}{abs(rounded):,.{places}f}"


def format_date(value: Any, pattern: str = "%Y-%m-%d", tz: str | None = None) -> str:
    """A date, datetime, ISO-8601 string or Unix timestamp written with a strftime ``pattern``; a
    time with an offset is first converted to ``tz`` (the person's time zone in messages)."""
    if _undefined_text(value) or value == "":
        return ""
    when: date
    if isinstance(value, date):
        when = value
    elif isinstance(value, str):
        text = value.strip()
        try:
            when = (
                datetime.fromisoformat(text)
                if ("T" in text or " " in text or ":" in text)
                else date.fromisoformat(text)
            )
        except ValueError:
            raise ValueError(f"date needs an ISO date or time, not {value!r}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        when = datetime.fromtimestamp(value, UTC)
    else:
        raise TypeError(f"date needs a date or time, not {type(value).__name__}")
    if tz and isinstance(when, datetime) and when.tzinfo is not None:
        with contextlib.suppress(ValueError, KeyError):  # an unknown zone name: keep the time as given
            when = when.astimezone(ZoneInfo(tz))
    return when.strftime(str(pattern))


@jinja2.pass_context
def _date_filter(ctx: Context, value: Any, pattern: str = "%Y-%m-%d", tz: str | None = None) -> str:
    """``{{ event.booked_at | date('%H:%M') }}``: in the person's time zone (the ``timezone`` variable)."""
    zone = tz or ctx.get("timezone")
    return format_date(value, pattern, zone if isinstance(zone, str) else None)


def mask_phone(value: Any) -> str:
    """``+8613812345678`` → ``138****5678``: the national number with all but 3 + 4 digits hidden."""
    if _undefined_text(value):
        return ""
    text = str(value).strip()
    digits = re.sub(r"\D", "", text)
    try:
        number = phonenumbers.parse(text, None if text.startswith("+") else "CN")
        digits = str(number.national_number)
    except phonenumbers.NumberParseException:
        pass
    if len(digits) >= 8:
        return f"{digits[:3]}****{digits[-4:]}"
    if len(digits) > 4:
        return "*" * (len(digits) - 4) + digits[-4:]
    return "****" if digits else ""


def _environment(html: bool) -> _Sandbox:
    env = _Sandbox(undefined=_RecordingUndefined, finalize=_finalize, autoescape=html, auto_reload=False)
    env.filters.update(money=money, date=_date_filter, mask_phone=mask_phone)
    return env


_TEXT_ENV = _environment(html=False)
_HTML_ENV = _environment(html=True)


@lru_cache(maxsize=4096)
def _compile(source: str, html: bool) -> jinja2.Template:
    return (_HTML_ENV if html else _TEXT_ENV).from_string(source)


def _template_line(tb: types.TracebackType | None) -> int | None:
    """The template line a rendering error came from (Jinja rewrites frames to ``<template>``)."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _compiled(path: str, source: str, html: bool) -> jinja2.Template:
    try:
        return _compile(source, html)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(path, f"line {exc.lineno}: {exc.message}") from None


def _render_text(path: str, source: str, variables: Mapping[str, Any], html: bool = False) -> str:
    template = _compiled(path, source, html)
    try:
        return template.render(variables)
    except Exception as exc:  # the template is user code: anything it raises is its error
        line = _template_line(exc.__traceback__)
        where = f"line {line}: " if line else ""
        what = f"not allowed: {exc}" if isinstance(exc, SecurityError) else (str(exc) or type(exc).__name__)
        if isinstance(exc, TypeError | ValueError | ArithmeticError | LookupError | AttributeError):
            what = f"{type(exc).__name__}: {what}"
        raise TemplateError(path, where + what) from None


def _render_data(path: str, value: Any, variables: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        return _render_text(path, value, variables)
    if isinstance(value, Mapping):
        return {k: _render_data(f"{path}.{k}", v, variables) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_render_data(f"{path}[{i}]", v, variables) for i, v in enumerate(value)]
    return value


def _strings(path: str, value: Any) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(f"{path}.{k}", v)
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from _strings(f"{path}[{i}]", v)


# -- the API ------------------------------------------------------------------------------------------------


def check_template(t: MessageTemplate) -> list[tuple[str, str]]:
    """Every text of ``t`` that does not compile, as ``(field, "line N: problem")``; empty = fine.

    Catches syntax errors and unknown filters or tests; what depends on the data (a type error, an
    unsafe attribute) shows only when rendering.
    """
    texts: list[tuple[str, str]] = []
    for part, by_locale in (("subject", t.subject or {}), ("body", t.body)):
        texts.extend((f"{part}.{loc}", text) for loc, text in by_locale.items())
    texts.extend(_strings("data", t.data))
    problems: list[tuple[str, str]] = []
    for path, source in texts:
        try:
            _compiled(path, source, False)
        except TemplateError as exc:
            problems.append((exc.field, exc.message))
    return problems


def choose_locale(available: Mapping[str, str], locale: str | None) -> str:
    """The locale to use from ``available``: the language of ``locale`` (``zh-CN`` → ``zh``) if
    present, else ``zh``, else the first there is."""
    if locale:
        language = re.split(r"[-_]", locale.strip(), maxsplit=1)[0].lower()
        if language in available:
            return language
    if "zh" in available:
        return "zh"
    return next(iter(available))


def _owners(variables: Mapping[str, Any]) -> dict[int, str]:
    """Mappings among the variables (three levels deep) by id → their dotted name, so an undefined
    key is reported as ``profile.nickname`` rather than ``nickname``."""
    owners: dict[int, str] = {}

    def walk(prefix: str, value: Any, depth: int) -> None:
        if isinstance(value, Mapping) and id(value) not in owners:
            owners[id(value)] = prefix
            if depth < 3:
                for k, v in value.items():
                    if isinstance(k, str):
                        walk(f"{prefix}.{k}", v, depth + 1)

    for name, value in variables.items():
        walk(name, value, 1)
    return owners


def render(t: MessageTemplate, *, locale: str | None, variables: Mapping[str, Any], html: bool = False) -> Rendered:
    """Render ``t`` for one person (see the module docstring for locale choice and escaping).

    Raises :class:`TemplateError` for a text that does not compile or fails while rendering.
    """
    chosen = choose_locale(t.body, locale)
    track = _Track(_owners(variables))
    token = _tracking.set(track)
    try:
        body = _render_text(f"body.{chosen}", t.body[chosen], variables, html)
        subject = None
        if t.subject:
            at = choose_locale(t.subject, chosen)
            subject = _render_text(f"subject.{at}", t.subject[at], variables).strip()
        data = {k: _render_data(f"data.{k}", v, variables) for k, v in t.data.items()}
    finally:
        _tracking.reset(token)
    return Rendered(subject=subject, body=body, data=data, locale=chosen, missing=list(track.names))


def variables_for(
    *,
    profile: Mapping[str, Any],
    tags: Mapping[str, Any],
    coupon: Mapping[str, Any] | None,
    event: Mapping[str, Any] | None,
    journey: Mapping[str, Any] | None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The variables a template sees (the table in the module docstring).

    ``profile``: either the traits themselves or ``{"traits": {...}, "id", "name", "phone",
    "email"}`` (``profile_id`` is accepted for ``id``); the four named fields win over traits of
    the same name and empty (None) values are left out. ``coupon`` / ``event`` / ``journey``:
    None gives an empty object. ``extra`` may not reuse a documented name (:class:`ValueError`).
    """
    nested = profile.get("traits")
    traits: Mapping[str, Any] = nested if isinstance(nested, Mapping) else profile
    person: dict[str, Any] = {k: v for k, v in traits.items() if k != "traits"}
    for name in ("id", "name", "phone", "email"):
        value = profile.get(name)
        if value is None and name == "id":
            value = profile.get("profile_id")
        if value is not None:
            person[name] = value
    person = {k: v for k, v in person.items() if v is not None}
    out: dict[str, Any] = {
        "profile": person,
        "tags": dict(tags),
        "coupon": dict(coupon or {}),
        "event": dict(event or {}),
        "journey": dict(journey or {}),
    }
    for name, value in (extra or {}).items():
        if name in out:
            raise ValueError(f"extra variable {name!r} would hide the documented one")
        out[name] = value
    return out


__all__ = [
    "LOCALES",
    "VARIABLES",
    "MessageTemplate",
    "Rendered",
    "TemplateError",
    "check_template",
    "choose_locale",
    "format_date",
    "mask_phone",
    "money",
    "render",
    "variables_for",
]
