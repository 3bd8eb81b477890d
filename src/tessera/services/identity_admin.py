"""Operating OneID: unmerge an identifier, re-extract links from stored rows, read the logs.

``unmerge`` removes a wrong link: the identifier is *suppressed* (it links to nothing else from
now on, and rebuilds keep that), and the profile that held it is replayed from its observations
in event-time order — it splits back into the profiles the rules give without that link. Events
and orders follow, because they point at observations, not at profiles.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from tessera.domain.identity import IdentityRules, normalised_identifier
from tessera.domain.messages import to_micros
from tessera.domain.unify import Graph, LogEntry, Observation
from tessera.services import identity, identity_graph, identity_rebuild
from tessera.services.identity_sources import (
    CUSTOMER_ID_COLUMNS,
    ORDER_ID_COLUMNS,
    entity_candidates,
    event_candidates,
)
from tessera.services.profile_attributes import refresh_attributes
from tessera.stores import analytic


class IdentityError(ValueError):
    """A request that cannot be honoured; ``field`` names what is wrong, ``status`` the HTTP status."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message
        self.status = status


@dataclass
class UnmergeReport:
    identifier: str
    profile_id: str
    profiles: list[str] = field(default_factory=list)
    observations: int = 0


def unmerge(
    cur: duckdb.DuckDBPyConnection,
    *,
    rules: IdentityRules,
    identifier: str,
    reason: str | None,
    origin: str,
    now: datetime,
) -> UnmergeReport:
    """Unlink ``identifier`` (``TYPE:VALUE``) from everything and split its profile back."""
    try:
        ident = normalised_identifier(rules, identifier)
    except ValueError as exc:
        raise IdentityError("identifier", str(exc)) from None
    got = cur.execute(
        "SELECT p.profile_idx, p.profile_id FROM profile_identifiers i JOIN profiles p USING (profile_idx) "
        "WHERE i.id_type = ? AND i.id_value = ?",
        list(ident),
    ).fetchall()
    if not got:
        raise IdentityError("identifier", f"no profile holds {ident[0]}:{ident[1]}", status=404)
    idx, pid = int(got[0][0]), str(got[0][1])
    cur.execute(
        "INSERT INTO identity_suppressions VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [ident[0], ident[1], reason, now, origin],
    )
    rows = cur.execute(
        "SELECT obs_idx, ids_key, epoch_us(first_seen), origin FROM identity_links WHERE profile_idx = ? "
        "ORDER BY first_seen, ids_key",
        [idx],
    ).fetchall()
    observations = [
        (int(r[0]), Observation(key=r[1], ids=identity.split_key(r[1]), seen_at=int(r[2]), origin=r[3])) for r in rows
    ]
    anchor = cur.execute("SELECT anchor_type, anchor_value FROM profiles WHERE profile_idx = ?", [idx]).fetchall()[0]
    # The profile goes; its observations are replayed as if new (the part with its anchor keeps its id).
    cur.execute("DELETE FROM profile_identifiers WHERE profile_idx = ?", [idx])
    cur.execute("DELETE FROM profiles WHERE profile_idx = ?", [idx])
    provisional = identity.ProvisionalIdx()
    graph = Graph(rules, new_idx=provisional, reuse={(anchor[0], anchor[1]): (idx, pid)})
    loaded = identity_graph.Loaded()
    identity_graph.load_for(cur, graph, {i for _, o in observations for i in o.ids}, loaded)
    resolved = [(obs_idx, graph.resolve(o)) for obs_idx, o in observations]
    real = provisional.settle(cur)
    graph.renumber(real)
    resolved = [(obs_idx, real(p) if p is not None else None) for obs_idx, p in resolved]
    identity_graph.write_changes(cur, graph, loaded, id_sources={}, now=now)
    cur.register(
        "_um_obs",
        pa.table({
            "obs_idx": pa.array([r[0] for r in resolved], pa.int64()),
            "profile_idx": pa.array([graph.survivor_of(r[1]) if r[1] is not None else None for r in resolved],
                                    pa.int32()),
        }),
    )  # fmt: skip
    try:
        cur.execute(
            "UPDATE identity_links SET profile_idx = m.profile_idx FROM _um_obs m WHERE identity_links.obs_idx = m.obs_idx"
        )
    finally:
        cur.unregister("_um_obs")
    parts = sorted({graph.profiles[graph.survivor_of(r[1])].profile_id for r in resolved if r[1] is not None})
    if pid not in parts:  # the anchor itself was unmerged and never stands alone: keep the id resolvable
        cur.execute(
            "INSERT INTO profile_redirects VALUES (?, ?, ?, ?, NULL) ON CONFLICT (profile_id) DO UPDATE SET "
            "anchor_type = excluded.anchor_type, anchor_value = excluded.anchor_value, merged_at = excluded.merged_at",
            [pid, anchor[0], anchor[1], now],
        )
    entry = LogEntry(
        "unmerge", pid, tuple(p for p in parts if p != pid), ident, reason or "unmerged by hand", origin, to_micros(now)
    )
    identity_graph.write_log(cur, [*graph.log, entry], now=now, run="unmerge")
    analytic.changed(cur, "profiles", "profile_identifiers")
    return UnmergeReport(identifier=f"{ident[0]}:{ident[1]}", profile_id=pid, profiles=parts, observations=len(rows))


def reextract(cur: duckdb.DuckDBPyConnection, *, rules: IdentityRules, now: datetime, chunk: int = 2_000_000) -> int:
    """Re-derive every observation from stored events, customers and orders (after a rules change of
    trait keys, normalisation or block-list, or an upgrade); the caller runs :func:`rebuild` next."""
    for table in ("identity_links", "profile_identifiers", "profiles", "identifier_rejections", "profile_attributes"):
        cur.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
    norm = identity.Normaliser(rules)
    total = 0
    present = [r[0] for r in cur.execute("SELECT column_name FROM (DESCRIBE events)").fetchall()]
    n_events = int(cur.execute("SELECT coalesce(max(rowid) + 1, 0) FROM events").fetchall()[0][0])
    for start in range(0, n_events, chunk):
        rowid = exp.column("rowid")
        part = (
            exp.select(rowid.as_("_row"), exp.Star())
            .from_("events")
            .where(exp.and_(rowid >= exp.Literal.number(start), rowid < exp.Literal.number(start + chunk)))
        )
        cur.execute(f"CREATE OR REPLACE TEMP VIEW _rx_events AS {part.sql('duckdb')}")
        total += _relink(cur, event_candidates("_rx_events", rules, present=present), "events", rules, now, norm)
    for table, columns, time_col in (("customers", CUSTOMER_ID_COLUMNS, "registered_at"),
                                     ("orders", ORDER_ID_COLUMNS, "ordered_at")):  # fmt: skip
        cur.execute(f"CREATE OR REPLACE TEMP VIEW _rx_rows AS SELECT rowid AS _row, * FROM {table}")  # noqa: S608
        cand = entity_candidates(
            "_rx_rows",
            columns=columns,
            present=list(columns),
            row_key=exp.column("_row"),
            seen_at=exp.func(
                "coalesce", exp.column(time_col), exp.cast(exp.Literal.string(now.isoformat()), "TIMESTAMP")
            ),
            source_id=exp.column("source_id"),
            origin=exp.column("import_id"),
        )
        total += _relink(cur, cand, table, rules, now, norm)
    cur.execute("DROP VIEW IF EXISTS _rx_events")
    cur.execute("DROP VIEW IF EXISTS _rx_rows")
    return total


def _relink(
    cur: duckdb.DuckDBPyConnection,
    candidates: exp.Query,
    table: str,
    rules: IdentityRules,
    now: datetime,
    norm: identity.Normaliser,
) -> int:
    stats = identity.link(cur, candidates, rules=rules, now=now, normaliser=norm, resolve=False)
    cur.execute(
        f"UPDATE {table} SET identity_idx = m.obs_idx FROM {identity.ROWS_TABLE} m "  # noqa: S608 - fixed names
        f"WHERE {table}.rowid = m.row_key"
    )
    cur.execute(f"DROP TABLE {identity.ROWS_TABLE}")
    return stats.rows


def rebuild_all(
    cur: duckdb.DuckDBPyConnection,
    *,
    rules: IdentityRules,
    now: datetime,
    reextract_links: bool = False,
    source_names: Mapping[int, str] | None = None,
) -> identity_rebuild.RebuildReport:
    """Rebuild (after re-extracting, when asked); then refresh every profile's stored attributes
    when ``source_names`` is given (events may now belong to other profiles)."""
    if reextract_links:
        reextract(cur, rules=rules, now=now)
    report = identity_rebuild.rebuild(cur, rules=rules, now=now)
    if source_names is not None:
        started = time.perf_counter()
        refresh_attributes(cur, rules=rules, source_names=source_names, now=now)
        report.seconds["attributes"] = round(time.perf_counter() - started, 3)
    return report


def recent_log(
    cur: duckdb.DuckDBPyConnection, *, action: str | None = None, limit: int = 50, before: int | None = None
) -> list[dict[str, Any]]:
    """The newest entries of the merge log (``before`` = a ``seq`` cursor)."""
    q = exp.select(
        "seq", "logged_at", "event_time", "action", "profile_id", "other_ids", "id_type", "id_value", "reason",
        "origin", "run",
    ).from_("identity_log")  # fmt: skip
    if action:
        q = q.where(exp.column("action").eq(exp.Literal.string(action)))
    if before is not None:
        q = q.where(exp.column("seq") < exp.Literal.number(int(before)), append=True)
    q = q.order_by(exp.Ordered(this=exp.column("seq"), desc=True)).limit(max(1, min(int(limit), 1000)))
    cols = ["seq", "logged_at", "event_time", "action", "profile_id", "other_ids", "id_type", "id_value", "reason",
            "origin", "run"]  # fmt: skip
    return [dict(zip(cols, r, strict=True)) for r in cur.execute(q.sql("duckdb")).fetchall()]


def rejections(cur: duckdb.DuckDBPyConnection, *, limit: int = 50) -> list[dict[str, Any]]:
    """Values that failed normalisation or are blocked, most frequent first."""
    cols = ["id_type", "raw_value", "reason", "first_seen", "last_seen", "seen_count", "origin"]
    rows = cur.execute(
        "SELECT id_type, raw_value, reason, first_seen, last_seen, seen_count, origin FROM identifier_rejections "
        "ORDER BY seen_count DESC, id_type, raw_value LIMIT ?",
        [max(1, min(int(limit), 1000))],
    ).fetchall()
    return [dict(zip(cols, r, strict=True)) for r in rows]
