"""Phase 3, rewrite (改写): tidy the boolean structure of a lowered predicate.

Nested ``AND``/``OR`` become one flat list each, ``NOT NOT x`` is ``x``, constants fold (a count
that everyone or no one passes lowers to TRUE/FALSE), repeated operands are dropped, and
parentheses are put back only where precedence needs them. Leaves (subqueries, comparisons) are
left as they are; every leaf is two-valued, which is what makes these rewrites safe.
"""

from __future__ import annotations

from sqlglot import exp


def rewrite(pred: exp.Expr) -> exp.Expr:
    """The predicate, flattened and folded."""
    return _simplify(pred.copy())


def _is_bool(node: exp.Expr, value: bool) -> bool:
    return isinstance(node, exp.Boolean) and node.this is value


def _unparen(node: exp.Expr) -> exp.Expr:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def _operands(node: exp.Expr, kind: type[exp.Connector]) -> list[exp.Expr]:
    """The operands of a chain of ``kind`` (through parentheses)."""
    node = _unparen(node)
    if isinstance(node, kind):
        return _operands(node.this, kind) + _operands(node.expression, kind)
    return [node]


def _simplify(node: exp.Expr) -> exp.Expr:
    node = _unparen(node)
    if isinstance(node, exp.Not):
        inner = _simplify(node.this)
        if isinstance(inner, exp.Not):
            return _unparen(inner.this)
        if isinstance(inner, exp.Boolean):
            return exp.Boolean(this=not inner.this)
        return exp.not_(inner, copy=False)
    if isinstance(node, exp.And | exp.Or):
        kind = type(node)
        unit, absorbing = kind is exp.And, kind is exp.Or  # TRUE AND x = x; TRUE OR x = TRUE
        out: list[exp.Expr] = []
        seen: set[str] = set()
        for operand in _operands(node, kind):
            simple = _simplify(operand)
            for part in _operands(simple, kind):
                if _is_bool(part, absorbing):
                    return exp.Boolean(this=absorbing)
                if _is_bool(part, unit):
                    continue
                key = part.sql()
                if key not in seen:
                    seen.add(key)
                    out.append(part)
        if not out:
            return exp.Boolean(this=unit)
        if len(out) == 1:
            return out[0]
        return exp.and_(*out, copy=False) if kind is exp.And else exp.or_(*out, copy=False)
    return node
