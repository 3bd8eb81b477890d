"""The analytic store: one DuckDB file in the data dir (a cluster engine at scale, later)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from tessera.stores.analytic_schema import SCHEMA_VERSIONS


class AnalyticStore:
    """Owns the DuckDB connection of one process; hands out cursors, serialises writers.

    DuckDB lets one process open a file for writing; a second process cannot open it at all while
    the first holds it, so a CLI command talks to a running server instead (see ``DataDir``).
    """

    def __init__(self, path: Path | str, *, threads: int = 0, memory_limit: str = "") -> None:
        self.path = str(path)
        # Checkpoint (compress into the main file) less often than DuckDB's 16 MB default: at
        # ingestion rates each load would otherwise pay for one. A clean close still checkpoints.
        config: dict[str, Any] = {"checkpoint_threshold": "256MB"}
        if threads:
            config["threads"] = threads
        if memory_limit:
            config["memory_limit"] = memory_limit
        self._con = duckdb.connect(self.path, config=config)
        self._con.execute("SET TimeZone = 'UTC'")
        self.write_lock = threading.RLock()
        migrate(self._con)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for this thread (DuckDB cursors are cheap and share the database)."""
        cur = self._con.cursor()
        cur.execute("SET TimeZone = 'UTC'")
        return cur

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write transaction; one writer at a time in this process."""
        with self.write_lock:
            cur = self.cursor()
            cur.execute("BEGIN TRANSACTION")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            else:
                cur.execute("COMMIT")
            finally:
                cur.close()

    def close(self) -> None:
        self._con.close()


def migrate(con: duckdb.DuckDBPyConnection) -> int:
    """Apply schema versions not yet applied; returns the current version."""
    con.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TIMESTAMP)")
    row = con.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
    current = int(row[0]) if row else 0
    for version, statements in SCHEMA_VERSIONS:
        if version <= current:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            for stmt in statements:
                con.execute(stmt)
            con.execute(
                "INSERT INTO schema_migrations VALUES (?, ?)",
                [version, datetime.now(UTC).replace(tzinfo=None)],
            )
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        current = version
    return current
