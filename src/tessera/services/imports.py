"""File import (文件导入): one CSV / JSON-lines / Parquet file into the analytic store, all or nothing.

``import_file`` reads the file into DuckDB, types every field in one vectorised query, rejects the
rows that cannot be parsed (with line, column and reason), and — when no more than ``max_rejects``
rows were rejected — stores the rest in **one transaction together with its ``import_runs``
row**. Re-importing a file stores nothing twice. The pieces live in :mod:`tessera.importing`.
"""

from __future__ import annotations

import hashlib
import secrets
import tempfile
import time
import zoneinfo
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
from sqlglot import exp

from tessera.domain.identity import IdentityRules, default_rules
from tessera.importing import parsing, reading, rejects, storing
from tessera.importing.kinds import KINDS, find_kind
from tessera.importing.mapping import ColumnPlan, MissingColumns, resolve
from tessera.importing.report import ImportFailed, ImportReport, ImportUsageError
from tessera.stores.analytic import AnalyticStore

__all__ = ["ImportFailed", "ImportReport", "ImportUsageError", "import_file", "KINDS"]

Progress = Callable[[str, int], None]


class _TooManyRejects(Exception):
    pass


def new_import_id(now: datetime) -> str:
    return f"imp_{now.astimezone(UTC):%Y%m%d_%H%M%S}_{secrets.token_hex(3)}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


def _naive_utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(tzinfo=None) if dt.tzinfo else dt


def _check_timezone(name: str) -> str:
    if name.upper() == "UTC":
        return "UTC"
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ImportUsageError("timezone", f"unknown time zone {name!r} (e.g. Asia/Shanghai, UTC)") from None
    return name


def _set_timezone(cur: duckdb.DuckDBPyConnection, name: str) -> None:
    # The name is checked against the tz database and enters as a literal SQLGlot quotes.
    cur.execute(f"SET TimeZone = {exp.Literal.string(name).sql('duckdb')}")


def import_file(
    *,
    store: AnalyticStore,
    kind: str,
    path: Path,
    mapping: Mapping[str, str | None] | None = None,
    defaults: Mapping[str, Any] | None = None,
    file_format: str | None = None,
    encoding: str = "utf-8",
    source_id: int | None = None,
    max_rejects: int = 0,
    rejects_path: Path | None = None,
    rejects_dir: Path | None = None,
    progress: Progress | None = None,
    now: datetime,
    timezone: str = "UTC",
    file_name: str | None = None,
    work_dir: Path | None = None,
    rules: IdentityRules | None = None,
) -> ImportReport:
    """Import one file of ``kind`` (customers, orders, order-items, products, reviews, events).

    ``mapping`` maps file columns to fields (``None`` drops a column), ``defaults`` fills fields the
    file lacks or leaves empty, ``timezone`` is the zone of times written without an offset.
    Rejected rows go to ``rejects_path`` (default ``<rejects_dir or data dir/rejects>/<import id>.csv``).
    ``file_name`` is the name to report when ``path`` is a temporary copy (an HTTP upload).
    Raises :class:`ImportUsageError` for a wrong request and :class:`ImportFailed` for a file that
    cannot be stored; then nothing of the file is stored.
    """
    started = time.perf_counter()
    id_rules = rules or default_rules()
    spec = find_kind(kind)
    if spec is None:
        raise ImportUsageError("kind", f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    if max_rejects < 0:
        raise ImportUsageError("max_rejects", "must be 0 or more")
    tz = _check_timezone(timezone)
    path = Path(path)
    report_name = file_name or path.name
    notify: Progress = progress or (lambda _stage, _rows: None)
    import_id = new_import_id(now)
    report = ImportReport(
        import_id=import_id,
        kind=spec.name,
        file_name=report_name,
        file_format=reading.detect_format(Path(report_name) if file_name else path, file_format),
    )
    notify("reading", 0)
    try:
        prepared = reading.prepare(path, file_format=report.file_format, encoding=encoding, work_dir=work_dir)
    except reading.FileProblem as exc:
        raise _failed(store, report, str(exc), started, now, source_id) from None
    if file_name:
        prepared.original = Path(file_name)
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="import-sha256")
    sha: Future[str] = hasher.submit(_sha256, path)
    target = rejects_path
    if target is None:
        in_memory = store.path == ":memory:"
        folder = rejects_dir or (Path(tempfile.gettempdir()) if in_memory else Path(store.path).parent / "rejects")
        target = folder / f"{import_id}.csv"
    cur = store.cursor()
    try:
        # Reading and checking touch only this cursor's temp tables: no write lock needed yet.
        raw = reading.open_raw(cur, prepared)
        report.file_format = prepared.file_format
        plan = resolve(spec, raw.columns, mapping, defaults)
        parsed = _parse(cur, plan, raw, prepared, tz=tz, now=now)
        reading.after_scan(cur, prepared, raw, _count_parsed(cur))
        report.rows_read = raw.rows + len(raw.structural)
        notify("validating", report.rows_read)
        found = rejects.build_rejects(cur, checks=parsed.checks, prepared=prepared, raw=raw)
        report.rows_rejected, report.first_error = found.rows, found.first_error
        if found.rows:
            report.rejects_path = rejects.write_rejects_file(cur, path=target, prepared=prepared, raw=raw)
        if found.rows > max_rejects:
            raise _TooManyRejects()
        notify("storing", report.rows_read - report.rows_rejected)
        with store.transaction(cur):
            if spec.name == "events":
                counts = storing.store_events(
                    cur, fields=parsed.fields, source_id=source_id or 0, rules=id_rules, now=_naive_utc(now)
                )
            else:
                counts = storing.store_entities(
                    cur,
                    kind=spec,
                    fields=parsed.fields,
                    import_id=import_id,
                    source_id=source_id,
                    now=_naive_utc(now),
                    numbered=parsed.numbered,
                    rules=id_rules,
                )
            report.rows_stored, report.rows_updated = counts.stored, counts.updated
            report.rows_duplicate = counts.duplicate
            storing.record_run(
                cur,
                import_id=import_id,
                kind=spec.name,
                file_name=report_name,
                file_sha256=sha.result(),
                file_format=report.file_format,
                source_id=source_id,
                started_at=_naive_utc(now),
                finished_at=_naive_utc(now) + timedelta(seconds=time.perf_counter() - started),
                rows_read=report.rows_read,
                rows_stored=report.rows_stored,
                rows_updated=report.rows_updated,
                rows_duplicate=report.rows_duplicate,
                rows_rejected=report.rows_rejected,
                status="ok",
                rejects_path=str(report.rejects_path) if report.rejects_path else None,
            )
    except _TooManyRejects:
        allowed = f"more than --max-rejects {max_rejects}" if max_rejects else "--max-rejects is 0"
        message = (
            f"{report.rows_rejected:,} row(s) of {report_name} rejected ({allowed}); nothing was stored. "
            f"First: {report.first_error}. Every reason: {report.rejects_path}"
        )
        raise _failed(store, report, message, started, now, source_id, sha) from None
    except (reading.FileProblem, MissingColumns) as exc:
        raise _failed(store, report, str(exc), started, now, source_id, sha) from None
    finally:
        cur.close()
        prepared.cleanup()
        hasher.shutdown(wait=True)
    report.seconds = time.perf_counter() - started
    notify("done", report.rows_stored)
    return report


def _count_parsed(cur: duckdb.DuckDBPyConnection) -> int:
    return int(cur.execute("SELECT count(*) FROM _imp_parsed").fetchall()[0][0])


def _parse(
    cur: duckdb.DuckDBPyConnection,
    plan: ColumnPlan,
    raw: reading.RawRelation,
    prepared: reading.PreparedFile,
    *,
    tz: str,
    now: datetime,
) -> parsing.ParsePlan:
    """Create the temp table ``_imp_parsed``: every field typed, ``_bad`` set on rows a check rejects.

    Defaults are checked first: one that cannot be parsed is a usage error, not a reject per row.

    (A view re-parses for every statement that reads it, which measured slower; and times without
    an offset are read in the session zone, which only holds while this statement runs.)
    """
    parsed = parsing.build_parse(
        plan,
        raw.types,
        local_tz=tz != "UTC",
        now_literal=parsing.cast(parsing.lit(_naive_utc(now).isoformat(sep=" ")), "TIMESTAMP"),
    )
    create = exp.Create(
        this=exp.to_table("_imp_parsed"),
        kind="TABLE",
        expression=parsed.select,
        properties=exp.Properties(expressions=[exp.TemporaryProperty()]),
        replace=True,
    )
    if tz != "UTC":
        _set_timezone(cur, tz)
    try:
        for name, value in plan.defaults.items():
            ftype = plan.kind.by_name[name].type
            check = parsing.parse_field(ftype, parsing.lit(str(value).strip()), "text", local_tz=tz != "UTC")
            if cur.execute(exp.select(check.is_(exp.null())).sql("duckdb")).fetchall()[0][0]:
                noun = parsing.TYPE_NOUNS[ftype]
                raise ImportUsageError("defaults", f"the default of {name!r}: cannot parse {value!r} as {noun}")
        with reading.scanning(prepared):  # the file is read here, in the same pass that types it
            cur.execute(create.sql("duckdb"))
    finally:
        if tz != "UTC":
            _set_timezone(cur, "UTC")
    return parsed


def _failed(
    store: AnalyticStore,
    report: ImportReport,
    message: str,
    started: float,
    now: datetime,
    source_id: int | None,
    sha: Future[str] | None = None,
) -> ImportFailed:
    """Record the failed run (in its own transaction: no rows of the file) and build the error."""
    report.status = "failed"
    report.rows_stored = report.rows_updated = report.rows_duplicate = 0
    report.first_error = report.first_error or message
    report.seconds = time.perf_counter() - started
    try:
        with store.transaction() as cur:
            storing.record_run(
                cur,
                import_id=report.import_id,
                kind=report.kind,
                file_name=report.file_name,
                file_sha256=sha.result() if sha is not None else "",
                file_format=report.file_format,
                source_id=source_id,
                started_at=_naive_utc(now),
                finished_at=_naive_utc(now) + timedelta(seconds=report.seconds),
                rows_read=report.rows_read,
                rows_stored=0,
                rows_updated=0,
                rows_duplicate=0,
                rows_rejected=report.rows_rejected,
                status="failed",
                rejects_path=str(report.rejects_path) if report.rejects_path else None,
                error=message[:2000],
            )
    except duckdb.Error:  # the failure itself is what the caller needs to hear about
        pass
    return ImportFailed(message, report)
