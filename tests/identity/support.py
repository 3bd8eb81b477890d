"""Helpers for the identity tests: a store in memory and a way to feed it messages like the loader does."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa

from tessera.domain.identity import IdentityRules
from tessera.services.identity import ROWS_TABLE, LinkStats, link
from tessera.services.identity_sources import event_candidates
from tessera.stores.analytic import migrate

NOW = datetime(2026, 11, 1)
_COLUMNS = ("message_id", "user_id", "anonymous_id", "device_id", "previous_id", "traits", "context")


def store() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    migrate(con)
    return con


def feed(con: duckdb.DuckDBPyConnection, messages: list[dict[str, Any]], rules: IdentityRules) -> LinkStats:
    """Link one batch of event-shaped messages (``ts`` = event time in seconds) as the loader does."""
    n = len(messages)
    table = pa.table(
        {
            "_row": pa.array(range(n), pa.int64()),
            "source_id": pa.array([m.get("source_id", 1) for m in messages], pa.int32()),
            "timestamp": pa.array([int(m["ts"] * 1_000_000) for m in messages], pa.int64()).cast(pa.timestamp("us")),
            **{c: pa.array([m.get(c) for m in messages], pa.string()) for c in _COLUMNS},
        }
    )
    con.register("_feed", table)
    try:
        stats = link(con, event_candidates("_feed", rules, present=table.column_names), rules=rules, now=NOW)
        con.execute(f"DROP TABLE {ROWS_TABLE}")
    finally:
        con.unregister("_feed")
    return stats


def partition(con: duckdb.DuckDBPyConnection) -> set[frozenset[str]]:
    """The profiles as sets of ``type:value`` (ids aside)."""
    rows = con.execute(
        "SELECT list(id_type || ':' || id_value) FROM profile_identifiers GROUP BY profile_idx"
    ).fetchall()
    return {frozenset(r[0]) for r in rows}


def profiles_by_id(con: duckdb.DuckDBPyConnection) -> dict[str, frozenset[str]]:
    rows = con.execute(
        "SELECT p.profile_id, list(i.id_type || ':' || i.id_value) FROM profile_identifiers i "
        "JOIN profiles p USING (profile_idx) GROUP BY p.profile_id"
    ).fetchall()
    return {r[0]: frozenset(r[1]) for r in rows}


def observation_owners(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """ids_key → profile_id: where each observation (and so its events) belongs."""
    rows = con.execute(
        "SELECT l.ids_key, p.profile_id FROM identity_links l JOIN profiles p USING (profile_idx)"
    ).fetchall()
    return dict(rows)
