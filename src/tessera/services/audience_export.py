"""Audience export (人群包导出): a projected member list written to a file, or read in batches.

:func:`export_members` streams a query (usually :func:`tessera.compiler.projection.project`)
through DuckDB's ``COPY … TO`` — rows never pass through Python, so millions of members take
seconds and little memory. CSV is UTF-8 with a header row (``bom=True`` adds the byte-order mark
Excel needs to read Chinese text); Parquet keeps the column types. The file appears complete or
not at all: it is written beside the target and renamed into place.

:func:`iter_batches` yields the same rows as dicts, for pushes that send them in signed batches.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import duckdb
from sqlglot import exp

from tessera.compiler.query import Query

ExportFormat = Literal["csv", "parquet"]
FORMATS: tuple[ExportFormat, ...] = ("csv", "parquet")
BOM = "\ufeff"
_PATH_PARAM = "export_path"
#: COPY options per format: constant text, nothing from the user.
_COPY_OPTIONS: dict[ExportFormat, str] = {
    "csv": "FORMAT csv, HEADER true, DELIMITER ',', QUOTE '\"'",  # DuckDB writes UTF-8
    "parquet": "FORMAT parquet, COMPRESSION zstd",
}


def _with_bom(tree: exp.Query) -> exp.Query:
    """``tree`` with U+FEFF in front of its first column's name: DuckDB writes the header first,
    so the file starts with the UTF-8 byte-order mark without a second pass over the data."""
    tree = tree.copy()
    first = tree.selects[0]
    name = BOM + first.alias_or_name
    renamed = exp.alias_(first.this if isinstance(first, exp.Alias) else first, exp.to_identifier(name, quoted=True))
    first.replace(renamed)
    return tree


def export_members(
    cur: duckdb.DuckDBPyConnection,
    query: Query,
    path: Path | str,
    fmt: ExportFormat = "csv",
    *,
    bom: bool = False,
) -> int:
    """Write the rows of ``query`` to ``path`` as ``fmt``; returns the number of rows.

    ``path`` is chosen by the server (it is bound as a parameter, never pasted into SQL). An
    existing file is replaced only once the new one is complete.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    if bom and fmt != "csv":
        raise ValueError("a byte-order mark only goes in a CSV file")
    if _PATH_PARAM in query.params:
        raise ValueError(f"the query already uses the parameter name {_PATH_PARAM!r}")
    target = Path(path)
    part = target.with_name(target.name + ".part")
    source = Query(tree=_with_bom(query.tree), params=query.params) if bom else query
    sql = "COPY (" + source.render("duckdb") + f") TO ${_PATH_PARAM} ({_COPY_OPTIONS[fmt]})"
    try:
        row = cur.execute(sql, {**source.used_params(), _PATH_PARAM: str(part)}).fetchone()
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return int(row[0]) if row else 0


def iter_batches(cur: duckdb.DuckDBPyConnection, query: Query, size: int = 1000) -> Iterator[list[dict[str, Any]]]:
    """The rows of ``query`` as dicts (column name → value), ``size`` at a time.

    The result stays open on ``cur`` between batches: give this a cursor of its own and run
    nothing else on it until the iterator is exhausted or closed.
    """
    if size < 1:
        raise ValueError("batch size must be at least 1")
    cur.execute(query.render("duckdb"), query.used_params())
    names = [d[0] for d in cur.description or ()]
    while rows := cur.fetchmany(size):
        yield [dict(zip(names, r, strict=True)) for r in rows]
