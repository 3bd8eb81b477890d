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
    def transaction(self, cur: duckdb.DuckDBPyConnection | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write transaction; one writer at a time in this process.

        On a new cursor, or on ``cur`` when the caller's temp tables live on it (it stays open).
        """
        with self.write_lock:
            own = cur is None
            tx = self.cursor() if cur is None else cur
            tx.execute("BEGIN TRANSACTION")
            try:
                yield tx
            except BaseException:
                tx.execute("ROLLBACK")
                raise
            else:
                tx.execute("COMMIT")
            finally:
                if own:
                    tx.close()

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
