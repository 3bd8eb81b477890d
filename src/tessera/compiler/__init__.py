"""The condition compiler (条件编译器): a condition → SQL, per dialect, without touching a store.

Phases, each its own module and testable alone: :mod:`resolve` (inline dynamic audiences, refuse
unknown ones and cycles) → :mod:`lower` (leaf → SQLGlot predicate; :mod:`values` for attribute
and property tests, :mod:`behaviour` for events and orders) → :mod:`rewrite` (flatten, fold) →
:mod:`render` (dialect syntax and placeholders only). :mod:`explain` reports on one profile.
User values enter only as placeholders (:class:`Params`) or literals SQLGlot quotes.
"""

from tessera.compiler.context import (
    AudienceMap,
    AudienceRef,
    AudienceResolver,
    CompileContext,
    CompileError,
    NoAudiences,
)
from tessera.compiler.explain import compile_explain
from tessera.compiler.query import DIALECTS, Params, Query
from tessera.compiler.resolve import resolve
from tessera.compiler.statements import compile_count, compile_members, compile_predicate

__all__ = [
    "DIALECTS",
    "AudienceMap",
    "AudienceRef",
    "AudienceResolver",
    "CompileContext",
    "CompileError",
    "NoAudiences",
    "Params",
    "Query",
    "compile_count",
    "compile_explain",
    "compile_members",
    "compile_predicate",
    "resolve",
]
