"""The analytic store: one DuckDB file in the data dir (a cluster engine at scale, later)."""

from __future__ import annotations

import threading
import weakref
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
        # Per-table generations (see :meth:`changed`); _tx: this thread's open transactions.
        self._generations: dict[str, int] = {}
        self._generations_lock = threading.Lock()
        self._tx = threading.local()
        _STORES.add(self)
        migrate(self._con)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor for this thread (DuckDB cursors are cheap and share the database)."""
        cur = self._con.cursor()
        cur.execute("SET TimeZone = 'UTC'")
        _OWNERS[cur] = self
        return cur

    def changed(self, *tables: str) -> None:
        """Say that ``tables`` were written: in-memory copies of them (``ProfileColumns``) reload.

        Called inside :meth:`transaction`, the tables move again when it ends, so that a copy read
        between the write and the commit (still the old rows) is not kept as current.
        """
        with self._generations_lock:
            for table in tables:
                self._generations[table] = self._generations.get(table, 0) + 1
        pending: set[str] | None = getattr(self._tx, "pending", None)
        if pending is not None:
            pending.update(tables)

    def generation(self, table: str) -> int:
        """How many times ``table`` was reported changed in this process (0 at first)."""
        return self._generations.get(table, 0)

    @contextmanager
    def transaction(self, cur: duckdb.DuckDBPyConnection | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write transaction; one writer at a time in this process.

        On a new cursor, or on ``cur`` when the caller's temp tables live on it (it stays open).
        """
        with self.write_lock:
            own = cur is None
            tx = self.cursor() if cur is None else cur
            outer = getattr(self._tx, "pending", None) is None
            if outer:
                self._tx.pending = set()
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
                if outer:
                    written, self._tx.pending = self._tx.pending, None
                    self.changed(*written)

    def close(self) -> None:
        self._con.close()


#: Live stores, and which store handed out a cursor (for :func:`changed`).
_STORES: weakref.WeakSet[AnalyticStore] = weakref.WeakSet()
_OWNERS: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, AnalyticStore] = weakref.WeakKeyDictionary()


def changed(cur: duckdb.DuckDBPyConnection, *tables: str) -> None:
    """:meth:`AnalyticStore.changed` for code that holds only a cursor (services take one).

    A cursor no store handed out moves the tables of every store in the process: too many reloads
    are only slower, a missed one would be wrong."""
    owner = _OWNERS.get(cur)
    for store in [owner] if owner is not None else list(_STORES):
        store.changed(*tables)


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
