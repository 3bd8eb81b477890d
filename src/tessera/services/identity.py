"""Incremental identity linking (OneID): applied to every batch the loader stores and every import.

:func:`link` takes a query of candidate identifiers (see :mod:`.identity_sources`) and

1. normalises the distinct raw values (E.164 phones, lower-case emails, block-list) — values that
   fail are counted in ``identifier_rejections`` with the reason, never linked;
2. groups each row's identifiers into an *observation* (the set seen together, keyed by
   ``ids_key``); observations seen before are looked up by hash and cost nothing more;
3. resolves each new observation with :class:`tessera.domain.unify.Graph` in event-time order,
   reading only the profiles it touches, and writes the changes and the decisions back;
4. leaves ``_identity_rows(row_key, obs_idx)`` for the caller to stamp ``identity_idx`` on its rows.

Everything runs inside the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa
from sqlglot import exp

from tessera.domain.identity import KEY_SEPARATOR, IdentityRules, Rejected, normalise
from tessera.domain.unify import Graph, Identifier, Observation
from tessera.services import identity_graph
from tessera.stores import analytic

ROWS_TABLE = "_identity_rows"
_CACHE_MAX = 500_000


@dataclass
class LinkStats:
    rows: int = 0
    observations: int = 0
    new_observations: int = 0
    profiles_created: int = 0
    merges: int = 0
    drops: int = 0
    rejected: int = 0


class Normaliser:
    """Normalises raw identifier values, remembering recent answers (rules are fixed per instance)."""

    def __init__(self, rules: IdentityRules) -> None:
        self.rules = rules
        self._cache: dict[tuple[str, str], tuple[str | None, str | None]] = {}

    def __call__(self, id_type: str, raw: str) -> tuple[str | None, str | None]:
        key = (id_type, raw)
        got = self._cache.get(key)
        if got is None:
            try:
                got = (normalise(self.rules, id_type, raw), None)
            except Rejected as exc:
                got = (None, exc.reason)
            except ValueError:  # a custom type name that is not a valid identifier type name
                got = (None, "not a valid identifier type name")
            if len(self._cache) >= _CACHE_MAX:
                self._cache.clear()
            self._cache[key] = got
        return got


def split_key(ids_key: str) -> tuple[Identifier, ...]:
    out = []
    for part in ids_key.split(KEY_SEPARATOR):
        t, _, v = part.partition(":")
        out.append((t, v))
    return tuple(out)


class ProvisionalIdx:
    """Profile indexes handed out while resolving: provisional (negative), then taken from the
    sequence in one statement (a ``nextval`` per profile costs about a millisecond)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self) -> int:
        self.n += 1
        return -self.n

    def settle(self, cur: duckdb.DuckDBPyConnection) -> Callable[[int], int]:
        taken: list[int] = []
        if self.n:
            got = cur.execute("SELECT nextval('profile_idx_seq') AS v FROM range(?)", [self.n]).fetchnumpy()
            taken = sorted(int(v) for v in got["v"])
        return lambda i: i if i >= 0 else taken[-i - 1]


def link(
    cur: duckdb.DuckDBPyConnection,
    candidates: exp.Query,
    *,
    rules: IdentityRules,
    now: datetime,
    normaliser: Normaliser | None = None,
    run: str = "incremental",
    resolve: bool = True,
) -> LinkStats:
    """Link the identifiers of a batch of rows; leaves ``_identity_rows(row_key, obs_idx)``.

    The candidates of one row share its ``seen_at``, ``source_id`` and ``origin``.

    ``resolve=False`` only records the new observations (profile left empty), for a rebuild to resolve.
    """
    norm = normaliser if normaliser is not None and normaliser.rules is rules else Normaliser(rules)
    stats = LinkStats()
    cur.execute(
        exp.Create(
            this=exp.to_table("_id_cand"), kind="TABLE", expression=candidates,
            properties=exp.Properties(expressions=[exp.TemporaryProperty()]), replace=True,
        ).sql("duckdb")
    )  # fmt: skip
    distinct = cur.execute("SELECT DISTINCT id_type, raw FROM _id_cand WHERE raw IS NOT NULL").fetchall()
    types, raws, values, reasons = [], [], [], []
    for id_type, raw in distinct:
        value, reason = norm(id_type, raw)
        types.append(id_type)
        raws.append(raw)
        values.append(value)
        reasons.append(reason)
    cur.register(
        "_id_norm",
        pa.table({"id_type": pa.array(types, pa.string()), "raw": pa.array(raws, pa.string()),
                  "id_value": pa.array(values, pa.string()), "reason": pa.array(reasons, pa.string())}),
    )  # fmt: skip
    try:
        if any(r is not None for r in reasons):
            stats.rejected = _record_rejections(cur)
        cur.execute(
            f"""CREATE OR REPLACE TEMP TABLE _id_rows AS
            SELECT row_key, seen_at, source_id, origin, ids_key, md5_number(ids_key) AS key_hash FROM (
                SELECT c.row_key, any_value(c.seen_at) AS seen_at, any_value(c.source_id) AS source_id,
                       any_value(c.origin) AS origin,
                       array_to_string(list_sort(list_distinct(list(n.id_type || ':' || n.id_value))),
                                       chr({ord(KEY_SEPARATOR)})) AS ids_key
                FROM _id_cand c JOIN _id_norm n ON n.id_type = c.id_type AND n.raw = c.raw
                WHERE n.id_value IS NOT NULL
                GROUP BY c.row_key)"""  # noqa: S608 - a constant
        )
    finally:
        cur.unregister("_id_norm")
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE _id_obs AS
        SELECT key_hash, any_value(ids_key) AS ids_key, min(seen_at) AS first_seen,
               arg_min(source_id, (seen_at, origin)) AS source_id, min_by(origin, (seen_at, origin)) AS origin,
               count(*) AS n_rows
        FROM _id_rows GROUP BY key_hash"""
    )
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE _id_known AS
        SELECT o.key_hash, l.obs_idx, l.first_seen AS stored_first, o.first_seen
        FROM _id_obs o JOIN identity_links l USING (key_hash)"""
    )
    cur.execute(
        """UPDATE identity_links SET first_seen = k.first_seen FROM _id_known k
        WHERE identity_links.obs_idx = k.obs_idx AND k.first_seen < k.stored_first"""
    )
    isolated = 0
    if resolve:
        isolated = _create_isolated(cur, rules=rules, now=now)
        stats.profiles_created += isolated
    novel = cur.execute(
        """SELECT o.key_hash, o.ids_key, epoch_us(o.first_seen), o.source_id, o.origin FROM _id_obs o
        ANTI JOIN _id_known k USING (key_hash) ORDER BY o.first_seen, o.ids_key"""
    ).fetchall()
    counts = cur.execute("SELECT count(*), coalesce(sum(n_rows), 0) FROM _id_obs").fetchall()[0]
    stats.observations, stats.rows = int(counts[0]), int(counts[1])
    stats.new_observations = len(novel) + isolated
    new_rows = _resolve(cur, novel, rules=rules, now=now, run=run, stats=stats, resolve=resolve) if novel else None
    known = "SELECT key_hash, obs_idx FROM _id_known"
    if new_rows is not None:
        cur.register("_id_new", new_rows)
        known += " UNION ALL SELECT key_hash::UHUGEINT, obs_idx FROM _id_new"
    try:
        cur.execute(
            f"CREATE OR REPLACE TEMP TABLE {ROWS_TABLE} AS "  # noqa: S608 - constants
            f"SELECT r.row_key, m.obs_idx FROM _id_rows r JOIN ({known}) m USING (key_hash)"
        )
    finally:
        if new_rows is not None:
            cur.unregister("_id_new")
    for name in ("_id_cand", "_id_rows", "_id_obs", "_id_known"):
        cur.execute(f"DROP TABLE IF EXISTS {name}")
    analytic.changed(cur, "profiles", "profile_identifiers") if stats.new_observations else None
    return stats


def _create_isolated(cur: duckdb.DuckDBPyConnection, *, rules: IdentityRules, now: datetime) -> int:
    """New profiles for new observations that touch nothing: none of their identifiers is stored,
    suppressed or in another new observation of the batch, and they are within every limit.

    Vectorised; exactly what :meth:`Graph.resolve` would do with them (a profile holding all their
    identifiers, anchored by the top-priority one), so only the rest goes through Python. Marks
    them known (``_id_known``) for the caller.
    """
    names = [t.name for t in rules.types]
    cur.register(
        "_id_rules",
        pa.table({"id_type": pa.array(names, pa.string()), "lim": pa.array([t.limit for t in rules.types], pa.int64()),
                  "rank": pa.array(range(len(names)), pa.int64())}),
    )  # fmt: skip
    try:
        cur.execute(
            """CREATE OR REPLACE TEMP TABLE _id_mem AS
            SELECT n.key_hash, split_part(x, ':', 1) AS id_type, x[length(split_part(x, ':', 1)) + 2:] AS id_value
            FROM (SELECT o.* FROM _id_obs o ANTI JOIN _id_known k USING (key_hash)) n,
                 unnest(string_split(n.ids_key, chr(31))) AS t(x)"""
        )
        cur.execute(
            f"""CREATE OR REPLACE TEMP TABLE _id_iso AS
            WITH bad AS (
                SELECT m.key_hash FROM _id_mem m JOIN profile_identifiers p USING (id_type, id_value)
                UNION SELECT m.key_hash FROM _id_mem m JOIN identity_suppressions s USING (id_type, id_value)
                UNION SELECT m.key_hash FROM _id_mem m
                      JOIN (SELECT id_type, id_value FROM _id_mem GROUP BY ALL HAVING count(*) > 1) USING (id_type, id_value)
                UNION SELECT key_hash FROM (SELECT key_hash, id_type, count(*) AS k FROM _id_mem GROUP BY ALL) c
                      LEFT JOIN _id_rules r USING (id_type) WHERE c.k > coalesce(r.lim, {int(rules.custom_type_limit)})),
            anchored AS (
                SELECT m.key_hash,
                       arg_min(m.id_type, (coalesce(r.rank, {len(names)}), m.id_type, m.id_value)) AS anchor_type,
                       arg_min(m.id_value, (coalesce(r.rank, {len(names)}), m.id_type, m.id_value)) AS anchor_value
                FROM _id_mem m LEFT JOIN _id_rules r USING (id_type)
                WHERE m.key_hash NOT IN (SELECT key_hash FROM bad) GROUP BY m.key_hash)
            SELECT a.*, 'p_' || substr(md5(a.anchor_type || ':' || a.anchor_value), 1, 20) AS profile_id
            FROM anchored a"""  # noqa: S608 - integers from validated rules
        )
        cur.execute(
            """CREATE OR REPLACE TEMP TABLE _id_iso2 AS
            SELECT i.*, o.ids_key, o.first_seen, o.source_id, o.origin,
                   nextval('profile_idx_seq')::INTEGER AS profile_idx, nextval('identity_link_seq') AS obs_idx
            FROM _id_iso i JOIN _id_obs o USING (key_hash)
            WHERE i.profile_id NOT IN (SELECT profile_id FROM profiles)"""
        )
        created = int(cur.execute("SELECT count(*) FROM _id_iso2").fetchall()[0][0])
        if created:
            cur.execute(
                """INSERT INTO profiles (profile_idx, profile_id, created_at, first_seen, last_seen, traits, anchor_type,
                                         anchor_value, created_seen, created_key)
                SELECT profile_idx, profile_id, ?, first_seen, first_seen, NULL, anchor_type, anchor_value, first_seen,
                       ids_key FROM _id_iso2""",
                [now],
            )
            cur.execute("DELETE FROM profile_redirects WHERE profile_id IN (SELECT profile_id FROM _id_iso2)")
            cur.execute(
                """INSERT INTO profile_identifiers (id_type, id_value, profile_idx, source_id, first_seen, last_seen,
                                                   linked_at)
                SELECT m.id_type, m.id_value, i.profile_idx, i.source_id, i.first_seen, NULL, i.first_seen
                FROM _id_iso2 i JOIN _id_mem m USING (key_hash)"""
            )
            _insert_links(cur, "_id_iso2")
            cur.execute(
                "INSERT INTO _id_known SELECT key_hash, obs_idx, first_seen AS stored_first, first_seen FROM _id_iso2"
            )
    finally:
        cur.unregister("_id_rules")
        for name in ("_id_mem", "_id_iso", "_id_iso2"):
            cur.execute(f"DROP TABLE IF EXISTS {name}")
    return created


def _insert_links(cur: duckdb.DuckDBPyConnection, relation: str) -> None:
    """Store new observations (``relation``: obs_idx, key_hash, ids_key, first_seen, source_id, origin,
    profile_idx); ``ids`` is the key split back into (type, value) pairs."""
    cur.execute(
        f"""INSERT INTO identity_links (obs_idx, key_hash, ids_key, ids, first_seen, source_id, origin, profile_idx)
        SELECT obs_idx, key_hash::UHUGEINT, ids_key,
               list_transform(string_split(ids_key, chr(31)), lambda x: {{'id_type': split_part(x, ':', 1),
                              'id_value': x[length(split_part(x, ':', 1)) + 2:]}}),
               first_seen, source_id, origin, profile_idx
        FROM {relation}"""  # noqa: S608 - a temp table name of this module
    )


def _record_rejections(cur: duckdb.DuckDBPyConnection) -> int:
    got = cur.execute(
        """INSERT INTO identifier_rejections
        SELECT c.id_type, c.raw, any_value(n.reason), min(c.seen_at), max(c.seen_at), count(*),
               min_by(c.origin, c.seen_at)
        FROM _id_cand c JOIN _id_norm n ON n.id_type = c.id_type AND n.raw = c.raw
        WHERE n.reason IS NOT NULL AND c.seen_at IS NOT NULL
        GROUP BY c.id_type, c.raw
        ON CONFLICT (id_type, raw_value) DO UPDATE SET
            first_seen = least(identifier_rejections.first_seen, excluded.first_seen),
            last_seen = greatest(identifier_rejections.last_seen, excluded.last_seen),
            seen_count = identifier_rejections.seen_count + excluded.seen_count,
            reason = excluded.reason"""
    ).fetchall()
    return int(got[0][0]) if got else 0


def _resolve(
    cur: duckdb.DuckDBPyConnection,
    novel: list[tuple[Any, ...]],
    *,
    rules: IdentityRules,
    now: datetime,
    run: str,
    stats: LinkStats,
    resolve: bool,
) -> pa.Table:
    """Resolve new observations in event-time order; write the graph's changes; returns the new links."""
    observations = []
    id_sources: dict[Identifier, int | None] = {}
    for _hash, ids_key, seen_us, source_id, origin in novel:
        ids = split_key(str(ids_key))
        observations.append(Observation(key=str(ids_key), ids=ids, seen_at=int(seen_us), origin=origin))
        for ident in ids:
            id_sources.setdefault(ident, source_id)
    provisional = ProvisionalIdx()
    graph = Graph(rules, new_idx=provisional)
    loaded = identity_graph.Loaded()
    resolved: list[int | None] = [None] * len(observations)
    if resolve:
        identity_graph.load_for(cur, graph, set(id_sources), loaded)
        resolved = [graph.resolve(o) for o in observations]
        real = provisional.settle(cur)
        graph.renumber(real)
        resolved = [real(p) if p is not None else None for p in resolved]
    first_obs = int(cur.execute("SELECT nextval('identity_link_seq')").fetchall()[0][0])
    if len(novel) > 1:  # reserve the rest of the range
        cur.execute("SELECT max(nextval('identity_link_seq')) FROM range(?)", [len(novel) - 1]).fetchall()
    obs_idx = list(range(first_obs, first_obs + len(novel)))
    table = pa.table(
        {
            "obs_idx": pa.array(obs_idx, pa.int64()),
            "key_hash": pa.array([str(r[0]) for r in novel], pa.string()),
            "ids_key": pa.array([o.key for o in observations], pa.string()),
            "first_seen": pa.array([o.seen_at for o in observations], pa.int64()).cast(pa.timestamp("us")),
            "source_id": pa.array([r[3] for r in novel], pa.int32()),
            "origin": pa.array([o.origin for o in observations], pa.string()),
            "profile_idx": pa.array([graph.survivor_of(p) if p is not None else None for p in resolved], pa.int32()),
        }
    )
    identity_graph.write_changes(cur, graph, loaded, id_sources=id_sources, now=now)
    cur.register("_id_links_new", table)
    try:
        _insert_links(cur, "_id_links_new")
    finally:
        cur.unregister("_id_links_new")
    identity_graph.write_log(cur, graph.log, now=now, run=run)
    stats.profiles_created += sum(1 for p in graph.profiles.values() if p.idx not in loaded.profiles)
    stats.merges += sum(1 for e in graph.log if e.action == "merge")
    stats.drops += sum(1 for e in graph.log if e.action == "drop")
    return pa.table({"key_hash": table.column("key_hash"), "obs_idx": table.column("obs_idx")}).cast(
        pa.schema([("key_hash", pa.string()), ("obs_idx", pa.int64())])
    )
