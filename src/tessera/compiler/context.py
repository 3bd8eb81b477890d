"""What the condition compiler (条件编译器) needs besides the condition: the evaluation context and
the other audiences an ``in_audience`` leaf may name. Compiling never reads a store: a service
looks the audiences up and hands them over through an :class:`AudienceResolver`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from tessera.domain.conditions import Condition, EvalContext


@dataclass(frozen=True)
class AudienceRef:
    """What the resolver knows about another audience (群组): its kind and, if dynamic, its definition."""

    id: str
    kind: Literal["static", "dynamic", "imported"]
    definition: Condition | None = None


class AudienceResolver(Protocol):
    """Looks audiences up by id (None when there is no such audience)."""

    def get(self, audience_id: str) -> AudienceRef | None: ...


class NoAudiences:
    """A resolver that knows no audience: every ``in_audience`` leaf is refused."""

    def get(self, audience_id: str) -> AudienceRef | None:
        return None


@dataclass(frozen=True)
class AudienceMap:
    """A resolver over audiences held in memory (tests, previews, a service's prefetched list)."""

    audiences: Mapping[str, AudienceRef]

    @classmethod
    def of(cls, *refs: AudienceRef) -> AudienceMap:
        return cls({r.id: r for r in refs})

    def get(self, audience_id: str) -> AudienceRef | None:
        return self.audiences.get(audience_id)


@dataclass(frozen=True)
class CompileContext:
    """What a condition is compiled against: now and the time zone (``eval``) and the other audiences."""

    eval: EvalContext
    audiences: AudienceResolver = field(default_factory=NoAudiences)


class CompileError(ValueError):
    """A condition that cannot be compiled (unknown audience, cycle …); ``errors`` are (JSON path, message)."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in self.errors))
