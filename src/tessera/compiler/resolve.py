"""Phase 1, resolve (解析引用): inline the definitions of dynamic audiences an ``in_audience`` leaf names.

A dynamic audience is re-evaluated each time it is used, so its definition replaces the leaf
(recursively); static and imported audiences stay membership reads of ``audience_members``.
Unknown audiences and cycles, including one back to the audience being saved (``own_id``), are
refused with the JSON path of the leaf in the condition given.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tessera.compiler.context import CompileContext, CompileError
from tessera.domain.conditions import MAX_LEAVES, And, Condition, InAudienceLeaf, Not, Or

#: How many leaves a condition may have once the audiences it names are inlined.
MAX_INLINED_LEAVES = MAX_LEAVES * 10


@dataclass
class _Walk:
    ctx: CompileContext
    errors: list[tuple[str, str]] = field(default_factory=list)
    own: bool = False
    leaves: int = 0


def resolve(cond: Condition, ctx: CompileContext, *, own_id: str | None = None) -> Condition:
    """The condition with every dynamic ``in_audience`` leaf replaced by its (resolved) definition.

    Raises :class:`CompileError` naming each leaf that points at an unknown audience or a cycle.
    """
    walk = _Walk(ctx, own=own_id is not None)
    out = _node(cond, walk, path="", chain=(own_id,) if own_id else (), top=True)
    if walk.leaves > MAX_INLINED_LEAVES and not walk.errors:
        walk.errors.append(("", f"more than {MAX_INLINED_LEAVES} conditions once the audiences used are included"))
    if walk.errors:
        raise CompileError(walk.errors)
    return out


def inline_audience(leaf: InAudienceLeaf, ctx: CompileContext) -> Condition:
    """What one ``in_audience`` leaf means: the dynamic audience's resolved definition, or the leaf itself."""
    return resolve(leaf, ctx)


def _join(path: str, part: str) -> str:
    return f"{path}.{part}" if path else part


def _node(node: Condition, walk: _Walk, *, path: str, chain: tuple[str, ...], top: bool) -> Condition:
    if walk.leaves > MAX_INLINED_LEAVES:
        return node
    if isinstance(node, And | Or):
        kids = [
            _node(c, walk, path=_join(path, f"children[{i}]") if top else path, chain=chain, top=top)
            for i, c in enumerate(node.children)
        ]
        return node.model_copy(update={"children": kids})
    if isinstance(node, Not):
        return node.model_copy(
            update={"child": _node(node.child, walk, path=_join(path, "child") if top else path, chain=chain, top=top)}
        )
    if not isinstance(node, InAudienceLeaf):
        walk.leaves += 1
        return node
    return _audience(node, walk, path=path, chain=chain, top=top)


def _audience(leaf: InAudienceLeaf, walk: _Walk, *, path: str, chain: tuple[str, ...], top: bool) -> Condition:
    trail = chain[1:] if walk.own else chain
    # Errors deeper inside another audience's definition are reported at the leaf the user wrote.
    where = _join(path, "audience") if top else path
    via = "" if top else f"in audience {' → '.join(repr(a) for a in trail)}: "
    ref = walk.ctx.audiences.get(leaf.audience)
    if ref is None:
        walk.errors.append((where, f"{via}unknown audience {leaf.audience!r}"))
        return leaf
    if leaf.audience in chain:
        cycle = [*chain[chain.index(leaf.audience) :], leaf.audience]
        walk.errors.append((where, f"audience cycle: {' → '.join(cycle)}"))
        return leaf
    if ref.kind != "dynamic":
        walk.leaves += 1
        return leaf
    if ref.definition is None:
        walk.errors.append((where, f"{via}dynamic audience {leaf.audience!r} has no definition"))
        return leaf
    return _node(ref.definition, walk, path=where, chain=(*chain, leaf.audience), top=False)
