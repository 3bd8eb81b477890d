"""Rejected rows (拒绝行): which rows, why, on which line of the file, and the rejects CSV.

Row numbers are what the user sees in the file: CSV line numbers counting the header as line 1
(the first data row is line 2), JSON-lines line numbers, record numbers of a JSON array, row
numbers (from 1) of a Parquet file. When a CSV has quoted values spanning lines, blank lines or
lines the reader could not split, the lines are counted again in Python so the numbers stay exact
(this only happens when there are rejects to report).

The rejects file is CSV in UTF-8 *with* a byte-order mark (Excel then shows Chinese correctly):
``line, column, reason`` and then every column of the file as it was. A row with two bad values
appears twice, once per value.
"""

from __future__ import annotations

import codecs
import csv
import io
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
from sqlglot import exp

from tessera.importing.parsing import ROW, Check, col, display_of, lit, raw_class
from tessera.importing.reading import PreparedFile, RawRelation, open_bytes, scanning

_CHUNK = 1 << 20


@dataclass
class Rejects:
    rows: int
    first_error: str | None


def count_lines(path: Path) -> int:
    """Lines in a file (a last line without a newline counts)."""
    lines = 0
    last = b"\n"
    with open_bytes(path) as f:
        while chunk := f.read(_CHUNK):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (0 if last == b"\n" else 1)


def _csv_record_lines(cur: duckdb.DuckDBPyConnection, prepared: PreparedFile, skip_lines: set[int]) -> list[int]:
    """The line each data record of a CSV starts on, in the order DuckDB reads them."""
    sniffed = next(
        iter(
            cur.execute("SELECT Delimiter, Quote, Escape, SkipRows FROM sniff_csv(?)", [str(prepared.path)]).fetchall()
        ),
        None,
    )
    delimiter, quote, escape, skip_rows = sniffed if sniffed else (",", '"', "", 0)
    if prepared.file_format == "tsv":
        delimiter = "\t"
    quote = "" if quote in ("(empty)", None) else quote
    escape = "" if escape in ("(empty)", None) else escape
    lines: list[int] = []
    with io.TextIOWrapper(open_bytes(prepared.path), encoding="utf-8-sig", newline="") as f:
        for _ in range(int(skip_rows or 0)):
            f.readline()
        if quote:
            own_escape = escape if escape and escape != quote else None
            reader = csv.reader(
                f, delimiter=delimiter or ",", quotechar=quote, escapechar=own_escape,
                doublequote=own_escape is None, strict=False,
            )  # fmt: skip
        else:
            reader = csv.reader(f, delimiter=delimiter or ",", quoting=csv.QUOTE_NONE, strict=False)
        offset = int(skip_rows or 0)
        header_seen = False
        start = offset + 1
        for record in reader:
            if record and any(v.strip() for v in record) or len(record) > 1:
                if not header_seen:
                    header_seen = True
                elif start not in skip_lines:
                    lines.append(start)
            start = offset + reader.line_num + 1
    return lines


def _jsonl_record_lines(prepared: PreparedFile) -> list[int]:
    lines: list[int] = []
    with open_bytes(prepared.path) as f:
        for number, line in enumerate(f, start=1):
            if line.strip():
                lines.append(number)
    return lines


def _line_expression(cur: duckdb.DuckDBPyConnection, prepared: PreparedFile, raw: RawRelation) -> exp.Expr:
    """SQL for the user-visible line (or record/row) number of ``b._tessera_row``."""
    row = exp.column(ROW, table="b", quoted=True)
    fmt = prepared.file_format
    if fmt in ("parquet", "json"):
        return row + lit(1)
    header = 1 if fmt in ("csv", "tsv") else 0
    if not raw.structural and count_lines(prepared.path) == raw.rows + header:
        return row + lit(prepared.first_line)
    if fmt in ("csv", "tsv"):
        lines = _csv_record_lines(cur, prepared, {line for line, _, _ in raw.structural})
    else:
        lines = _jsonl_record_lines(prepared)
    if len(lines) != raw.rows:  # the reader and Python disagree: fall back to counting records
        return row + lit(prepared.first_line)
    table = pa.table({ROW: np.arange(len(lines), dtype=np.int64), "line": np.asarray(lines, dtype=np.int64)})
    cur.register("_imp_lines_arrow", table)
    cur.execute("CREATE OR REPLACE TEMP TABLE _imp_lines AS SELECT * FROM _imp_lines_arrow")
    cur.unregister("_imp_lines_arrow")
    return exp.Subquery(
        this=exp.select("line").from_("_imp_lines").where(exp.column(ROW, table="_imp_lines", quoted=True).eq(row))
    )


def _qualify(expr: exp.Expr, table: str) -> exp.Expr:
    def swap(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and not node.table:
            return exp.column(node.name, table=table, quoted=True)
        return node

    return expr.copy().transform(swap)


def build_rejects(
    cur: duckdb.DuckDBPyConnection,
    *,
    checks: list[Check],
    prepared: PreparedFile,
    raw: RawRelation,
) -> Rejects:
    """Find the rejected rows of ``_imp_parsed`` and lay them out in ``_imp_rejects``
    (line, check, column, reason, then the file's columns as text)."""
    bad_rows = next(iter(cur.execute("SELECT count(*) FROM _imp_parsed WHERE _bad").fetchall()), None)
    count = int(bad_rows[0]) if bad_rows else 0
    total = count + len(raw.structural)
    if total == 0:
        return Rejects(0, None)
    parts = []
    for number, check in enumerate(checks):
        cond = exp.and_(exp.column("_bad"), check.condition)
        row = exp.column("rowid").as_(ROW)
        parts.append(exp.select(row, lit(number).as_("_check")).from_("_imp_parsed").where(cond))
    if parts:
        union: exp.Query = parts[0]
        for part in parts[1:]:
            union = exp.union(union, part, distinct=False)
        cur.execute(exp.Create(this=exp.to_table("_imp_bad"), kind="TABLE", expression=union,
                               properties=exp.Properties(expressions=[exp.TemporaryProperty()]),
                               replace=True).sql("duckdb"))  # fmt: skip
    else:
        cur.execute("CREATE OR REPLACE TEMP TABLE _imp_bad (_tessera_row BIGINT, _check INTEGER)")

    line = _line_expression(cur, prepared, raw)
    check_no = exp.column("_check", table="b")
    label = exp.Case(ifs=[exp.If(this=check_no.eq(lit(i)), true=lit(c.column)) for i, c in enumerate(checks)])
    reason = exp.Case(
        ifs=[exp.If(this=check_no.eq(lit(i)), true=_qualify(c.reason, "r")) for i, c in enumerate(checks)]
    )
    originals = [
        display_of(exp.column(name, table="r", quoted=True), raw_class(raw.types[name])).as_(f"c{i}")
        for i, name in enumerate(raw.columns)
    ]
    # The file again, now with row numbers (rowid in file order), for the original values of bad rows.
    with scanning(prepared):
        cur.execute("CREATE OR REPLACE TEMP TABLE _imp_raw_rows AS SELECT * FROM _imp_raw")
    raw_row = exp.column("rowid", table="r")
    found = (
        exp.select(line.as_("line"), check_no.as_("_check"), label.as_("column"), reason.as_("reason"), *originals)
        .from_(exp.alias_(exp.to_table("_imp_bad"), "b"))
        .join(exp.alias_(exp.to_table("_imp_raw_rows"), "r"), on=exp.column(ROW, table="b", quoted=True).eq(raw_row))
    )
    query: exp.Query = found
    if raw.structural:
        cur.register(
            "_imp_structural_arrow",
            pa.table(
                {
                    "line": pa.array([s[0] for s in raw.structural], pa.int64()),
                    "column": pa.array([s[1] for s in raw.structural], pa.string()),
                    "reason": pa.array([s[2] for s in raw.structural], pa.string()),
                }
            ),
        )
        cur.execute("CREATE OR REPLACE TEMP TABLE _imp_structural AS SELECT * FROM _imp_structural_arrow")
        cur.unregister("_imp_structural_arrow")
        nulls = [exp.cast(exp.null(), exp.DataType.build("VARCHAR")).as_(f"c{i}") for i in range(len(raw.columns))]
        structural = exp.select(
            "line", lit(len(checks)).as_("_check"), exp.column("column", quoted=True), "reason", *nulls
        ).from_("_imp_structural")
        query = exp.union(found, structural, distinct=False)
    cur.execute(
        exp.Create(
            this=exp.to_table("_imp_rejects"),
            kind="TABLE",
            expression=exp.select("*").from_(query.subquery("_u")).order_by("line", "_check"),
            properties=exp.Properties(expressions=[exp.TemporaryProperty()]),
            replace=True,
        ).sql("duckdb")
    )
    first = next(
        iter(cur.execute('SELECT line, "column", reason FROM _imp_rejects ORDER BY line, _check LIMIT 1').fetchall()),
        None,
    )
    first_error = None
    if first is not None:
        where = f"{prepared.unit} {first[0]}"
        first_error = f"{where}, column {first[1]}: {first[2]}" if first[1] else f"{where}: {first[2]}"
    return Rejects(total, first_error)


def write_rejects_file(cur: duckdb.DuckDBPyConnection, *, path: Path, prepared: PreparedFile, raw: RawRelation) -> Path:
    """Write ``_imp_rejects`` to ``path`` as CSV (UTF-8 with BOM, for Excel)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    body = Path(tempfile.mkstemp(prefix=".rejects-", suffix=".csv", dir=path.parent)[1])
    try:
        columns = ["line", "column", "reason", *(f"c{i}" for i in range(len(raw.columns)))]
        query = exp.select(*(col(c) for c in columns)).from_("_imp_rejects").order_by("line", "_check")
        cur.sql(query.sql("duckdb")).write_csv(str(body), header=False)
        with open(path, "w", encoding="utf-8", newline="") as out:
            out.write(codecs.BOM_UTF8.decode("utf-8"))
            csv.writer(out).writerow([prepared.unit, "column", "reason", *raw.columns])
            out.flush()
            with open(body, encoding="utf-8", newline="") as src:
                shutil.copyfileobj(src, out, _CHUNK)
    finally:
        body.unlink(missing_ok=True)
    return path
