"""A compiled query: a SQLGlot tree whose user values are named placeholders, plus their values.

Compiling never touches a database; :meth:`Query.render` prints the tree for a dialect (syntax
only — every decision is made before) and :meth:`Query.execute` runs it on DuckDB. Queries built
with one :class:`Params` can be nested in each other without their placeholder names clashing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
from sqlglot import exp

#: Dialects we render and keep golden snapshots for.
DIALECTS = ("duckdb", "spark", "clickhouse")


@dataclass
class Params:
    """Named values for placeholders (``$p1`` in DuckDB, ``:p1`` in Spark, ``{p1:Type}`` in ClickHouse)."""

    values: dict[str, Any] = field(default_factory=dict)
    prefix: str = "p"

    def add(self, value: Any) -> exp.Placeholder:
        """A placeholder carrying ``value``; the only way a user value enters a query."""
        name = f"{self.prefix}{len(self.values) + 1}"
        self.values[name] = value
        return exp.Placeholder(this=name)


@dataclass(frozen=True)
class Query:
    """A query tree and the values of its placeholders."""

    tree: exp.Query
    params: dict[str, Any]

    def render(self, dialect: str = "duckdb") -> str:
        from tessera.compiler.render import render  # here: render imports this module (DIALECTS)

        return render(self.tree, dialect=dialect, params=self.params)

    def execute(self, cur: duckdb.DuckDBPyConnection) -> list[tuple[Any, ...]]:
        """Run on DuckDB and fetch every row."""
        return run(cur, self.tree, self.params)

    def used_params(self) -> dict[str, Any]:
        """The values of the placeholders that occur in the tree (DuckDB refuses unused ones)."""
        return used_params(self.tree, self.params)

    def columns(self) -> list[str]:
        """The names of the selected columns."""
        return [s.alias_or_name for s in self.tree.selects]


def used_params(tree: exp.Expr, params: dict[str, Any]) -> dict[str, Any]:
    names = {p.name for p in tree.find_all(exp.Placeholder)}
    return {k: v for k, v in params.items() if k in names}


def run(cur: duckdb.DuckDBPyConnection, tree: exp.Expr, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Render any statement built around compiled queries (CREATE … AS, INSERT, DELETE) for DuckDB
    and run it with the placeholder values it uses."""
    from tessera.compiler.render import render

    return cur.execute(render(tree, dialect="duckdb", params=params), used_params(tree, params)).fetchall()

    def columns(self) -> Sequence[str]:
        """The names of the columns the query returns."""
        return [s.alias_or_name for s in self.tree.selects]
