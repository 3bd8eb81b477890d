"""Helpers shared by the file-import tests (no tests here): writing real files, counting rows."""

from __future__ import annotations

import atexit
import csv
import json
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from tessera.services.imports import ImportReport, import_file
from tessera.stores.analytic import AnalyticStore
from tessera.stores.analytic_schema import COUNTED_TABLES

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
FORMATS = ("csv", "jsonl", "parquet")


_TEMPLATE: Path | None = None


def _template() -> Path:
    """An empty, migrated analytic store, made once per test session (copying it beats migrating)."""
    global _TEMPLATE
    if _TEMPLATE is None:
        folder = Path(tempfile.mkdtemp(prefix="tessera-import-template-"))
        atexit.register(shutil.rmtree, folder, True)
        AnalyticStore(folder / "analytics.duckdb").close()
        _TEMPLATE = folder / "analytics.duckdb"
    return _TEMPLATE


def new_store(folder: Path) -> AnalyticStore:
    """A fresh analytic store in ``folder`` (as ``analytics.duckdb``, where a data dir keeps it)."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(_template(), folder / "analytics.duckdb")
    return AnalyticStore(folder / "analytics.duckdb")


def new_data_dir(folder: Path) -> Path:
    """A data dir whose analytic store is already migrated."""
    new_store(folder).close()
    return folder


def columns_of(records: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in records:
        for k in r:
            seen.setdefault(k, None)
    return list(seen)


def write_csv(path: Path, records: list[dict[str, Any]], *, encoding: str = "utf-8", bom: bool = False) -> Path:
    names = columns_of(records)
    with open(path, "w", encoding="utf-8-sig" if bom else encoding, newline="") as f:
        w = csv.writer(f)
        w.writerow(names)
        for r in records:
            w.writerow(["" if r.get(n) is None else r.get(n) for n in names])
    return path


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def write_parquet(path: Path, records: list[dict[str, Any]]) -> Path:
    names = columns_of(records)
    pq.write_table(pa.Table.from_pylist([{n: r.get(n) for n in names} for r in records]), path)
    return path


def write(folder: Path, stem: str, fmt: str, records: list[dict[str, Any]]) -> Path:
    path = folder / f"{stem}.{fmt}"
    return {"csv": write_csv, "jsonl": write_jsonl, "parquet": write_parquet}[fmt](path, records)


def counts(store: AnalyticStore) -> dict[str, int]:
    cur = store.cursor()
    try:
        out = {}
        for table in (*COUNTED_TABLES, "event_names", "profile_identifiers", "import_runs"):
            out[table] = int(cur.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
        return out
    finally:
        cur.close()


def rows(store: AnalyticStore, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    cur = store.cursor()
    try:
        return cur.execute(sql, params or []).fetchall()
    finally:
        cur.close()


def run(store: AnalyticStore, kind: str, path: Path, **kw: Any) -> ImportReport:
    """``import_file`` with the tests' clock and a rejects folder beside the file."""
    return import_file(store=store, kind=kind, path=path, now=NOW, rejects_dir=path.parent / "rejects", **kw)
