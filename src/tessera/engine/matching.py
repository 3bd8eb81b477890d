"""Does an event match an :class:`~tessera.domain.journeys.EventMatch`? (trigger and wait filters)

Filters follow the condition language's attribute semantics on one property (see
:mod:`tessera.domain.conditions`): numbers compare numbers or numeric strings, text operators
compare strings (case-sensitive), a missing property makes every test false except ``is_not_set``
and the negations ``neq`` / ``not_in``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from tessera.domain.conditions import PropertyFilter
from tessera.domain.journeys import EventMatch


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int | float):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, str):
        try:
            f = float(v.strip())
        except ValueError:
            return None
        return f if math.isfinite(f) else None
    return None


def _text(v: Any) -> str | None:
    if v is None or isinstance(v, dict | list):
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _numeric_operand(want: Any) -> bool:
    """``eq`` / ``in`` compare numbers when the condition's value is a number (or all are)."""
    items = want if isinstance(want, list) else [want]
    return bool(items) and all(isinstance(w, int | float) and not isinstance(w, bool) for w in items)


def _positive(f: PropertyFilter, v: Any) -> bool:
    op, want = f.op, f.value
    if op == "is_set":
        return v is not None
    if v is None:
        return False
    if op == "eq" and isinstance(want, bool):
        return v is want
    if op in ("gt", "gte", "lt", "lte", "between") or (op in ("eq", "in") and _numeric_operand(want)):
        x = _number(v)
        if x is None:
            return False
        if op in ("between", "in"):
            assert isinstance(want, list)
            nums = [_number(w) for w in want]
            if op == "in":
                return x in nums
            lo, hi = nums[0], nums[1]
            return lo is not None and hi is not None and lo <= x <= hi
        w = _number(want)
        if w is None:
            return False
        return {"gt": x > w, "gte": x >= w, "lt": x < w, "lte": x <= w, "eq": x == w}[op]
    s = _text(v)
    if s is None:
        return False
    if op == "eq":
        return s == want
    if op == "in":
        return isinstance(want, list) and s in [str(w) for w in want]
    if op == "contains":
        return isinstance(want, str) and want in s
    if op == "starts_with":
        return isinstance(want, str) and s.startswith(want)
    if op == "regex":
        return isinstance(want, str) and re.search(want, s) is not None
    return False


def filter_matches(f: PropertyFilter, properties: Mapping[str, Any]) -> bool:
    """One property filter on an event's properties."""
    v = properties.get(f.property)
    if f.op == "is_not_set":
        return v is None
    if f.op in ("neq", "not_in"):
        flipped = f.model_copy(update={"op": "eq" if f.op == "neq" else "in"})
        return not _positive(flipped, v)
    return _positive(f, v)


def event_matches(match: EventMatch, name: str, properties: Mapping[str, Any]) -> bool:
    """The event has ``match.name`` and passes every filter."""
    return name == match.name and all(filter_matches(f, properties) for f in match.where)
