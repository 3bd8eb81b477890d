"""Dialect-neutral functions of the lowered tree (中间表示): what is meant, not how a dialect spells it.

Lowering builds standard SQLGlot nodes wherever every dialect agrees and these where they do
not (JSON reading, ISO text to a time, list membership, the random bucket); :mod:`render` replaces
each with the dialect's syntax. A JSON key is a string literal (quoted by SQLGlot, never pasted).
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlglot import exp


class Neutral(exp.Expression, exp.Func):
    """A function :mod:`tessera.compiler.render` spells per dialect."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True}


class JsonRaw(Neutral):
    """The JSON value under ``key`` of the JSON document ``this`` (JSON; NULL when absent)."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True, "key": True}


class JsonText(Neutral):
    """The value under ``key`` as text: a string as is, another value as its JSON text.

    ``scalar`` = objects and arrays read as NULL (the attribute text reading); without it their JSON
    text comes back too (cheaper, for readings that then parse the text anyway)."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True, "key": True, "scalar": False}


class JsonBool(Neutral):
    """The JSON boolean under ``key`` (NULL for anything else)."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True, "key": True}


class JsonPresent(Neutral):
    """``key`` is present in the document and not JSON null."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True, "key": True}


class TextNumber(Neutral):
    """Text that reads as a finite number (:data:`NUMBER_TEXT`), as DOUBLE (NULL otherwise).

    ``exact``: as DECIMAL(38, 10) instead, for sums of amounts written in decimal (0.1 + 0.2 = 0.3);
    numbers beyond its range read as NULL."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True, "exact": False}


class TextTime(Neutral):
    """ISO date or datetime text as a UTC timestamp: a date is midnight UTC, an offset is converted,
    none means UTC (NULL for anything else, or a day that does not exist)."""


#: Text that reads as a number: optional sign, digits with an optional fraction, optional exponent.
NUMBER_TEXT = r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?"
#: ISO text of a date, or a date and time without an offset (both read as UTC).
LOCAL_TIME_TEXT = r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?)?"
#: ISO text of a date and time with an offset (converted to UTC).
OFFSET_TIME_TEXT = r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})"


class MonthDay(Neutral):
    """``month * 100 + day`` of a timestamp (the key anniversaries compare)."""


class InValues(Neutral):
    """``this`` is one of the values of the list placeholder ``expression``."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True, "expression": True}


class ListHasAny(Neutral):
    """The list ``this`` has an element in common with the list ``expression``."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True, "expression": True}


class ListSome(Neutral):
    """Some element ``x`` of the list ``this`` satisfies ``expression`` (which reads the column ``x``)."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True, "expression": True}


class Bucket(Neutral):
    """``int(md5(this)[:8], 16) % expression``: the random bucket of a text."""

    arg_types: ClassVar[dict[str, Any]] = {"this": True, "expression": True}


class ToJson(Neutral):
    """A SQL value as JSON text (VARCHAR)."""


class JsonList(Neutral):
    """Aggregate: the distinct values of ``this`` in a group, sorted, as a JSON array text."""


#: The lambda variable a :class:`ListSome` condition reads.
ELEMENT = "x"


def element() -> exp.Column:
    """The current element inside a :class:`ListSome` condition."""
    return exp.column(ELEMENT)


def not_null(value: exp.Expr) -> exp.Expr:
    """``value IS NOT NULL`` as written (``NOT value IS NULL`` makes DuckDB misjudge a join's sides)."""
    return exp.Is(this=value, expression=exp.Not(this=exp.Null()))


def json_key(node: exp.Expr) -> str:
    """The key of a JSON node (a string literal)."""
    key = node.args["key"]
    assert isinstance(key, exp.Literal) and key.is_string
    return str(key.this)
