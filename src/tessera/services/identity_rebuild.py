"""The full rebuild (`tessera identity rebuild`): every profile recomputed from the raw links.

1. Identifiers become integer nodes; each observation links its identifiers (a star from its
   smallest node); suppressed (unmerged) identifiers link to nothing.
2. Connected components in one vectorised pass (:class:`ComponentFinder`; scipy's csgraph here,
   SQL on a cluster engine later — the only step that must change).
3. A component within every limit *is* a profile — exactly what incremental linking gives, in
   any arrival order, because no intermediate profile can break a limit the whole does not.
   Its anchor is the top-priority identifier of its earliest observation.
4. Components over a limit (shared phones, shared devices …) are replayed observation by
   observation in event-time order through :class:`tessera.domain.unify.Graph`, the incremental
   resolver itself — so the result equals incremental linking in event-time order.

Profile ids and indexes are kept where the same anchor creates a profile again; every id that
disappears becomes a redirect to whichever profile now holds its anchor.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import duckdb
import numpy as np
import pyarrow as pa

from tessera.domain.identity import IdentityRules
from tessera.domain.unify import Graph, Identifier, Observation
from tessera.services import identity_graph
from tessera.services.identity import split_key
from tessera.stores.analytic_schema import PROFILE_IDENTIFIERS_DDL

_TS = pa.timestamp("us")


class ComponentFinder(Protocol):
    """Labels the connected components of an undirected graph given as edge arrays."""

    def __call__(self, n_nodes: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray: ...


def scipy_components(n_nodes: int, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n_nodes, n_nodes)).tocsr()
    _n, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64)


@dataclass
class RebuildReport:
    identifiers: int = 0
    observations: int = 0
    profiles: int = 0
    components_over_limit: int = 0
    replayed_observations: int = 0
    redirects_added: int = 0
    decisions: int = 0
    seconds: dict[str, float] = field(default_factory=dict)


def _rules_tables(cur: duckdb.DuckDBPyConnection, rules: IdentityRules) -> None:
    names = [t.name for t in rules.types]
    cur.register(
        "_rb_rules",
        pa.table({
            "id_type": pa.array(names, pa.string()),
            "lim": pa.array([t.limit for t in rules.types], pa.int64()),
            "rank": pa.array(list(range(len(names))), pa.int64()),
        }),
    )  # fmt: skip


def rebuild(
    cur: duckdb.DuckDBPyConnection,
    *,
    rules: IdentityRules,
    now: datetime,
    components: ComponentFinder = scipy_components,
) -> RebuildReport:
    """Recompute every profile from ``identity_links``; runs in the caller's transaction."""
    report = RebuildReport()
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        t = time.perf_counter()
        report.seconds[name] = round(t - clock, 3)
        clock = t

    _rules_tables(cur, rules)
    custom_rank = len(rules.types)
    # Observation members (suppressed identifiers only stand alone), then dense node numbers.
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE _rb_members AS
        WITH m AS (SELECT obs_idx, first_seen, ids_key, len(ids) AS n, unnest(ids, recursive := true) FROM identity_links)
        SELECT m.obs_idx, m.first_seen, m.ids_key, m.id_type, m.id_value FROM m
        WHERE m.n = 1 OR NOT EXISTS (SELECT 1 FROM identity_suppressions s
                                     WHERE s.id_type = m.id_type AND s.id_value = m.id_value)"""
    )
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE _rb_nodes AS
        SELECT id_type, id_value, (row_number() OVER () - 1)::BIGINT AS node
        FROM (SELECT DISTINCT id_type, id_value FROM _rb_members)"""
    )
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE _rb_obs_nodes AS
        SELECT m.obs_idx, m.first_seen, m.ids_key, n.node, m.id_type, m.id_value
        FROM _rb_members m JOIN _rb_nodes n USING (id_type, id_value)"""
    )
    cur.execute("DROP TABLE _rb_members")
    n_nodes = int(cur.execute("SELECT count(*) FROM _rb_nodes").fetchall()[0][0])
    report.identifiers = n_nodes
    report.observations = int(cur.execute("SELECT count(*) FROM identity_links").fetchall()[0][0])
    edges = cur.execute(
        """SELECT min(node) OVER (PARTITION BY obs_idx) AS a, node AS b FROM _rb_obs_nodes
        QUALIFY a <> b"""
    ).fetchnumpy()
    lap("prepare")
    labels = components(n_nodes, np.asarray(edges["a"], dtype=np.int64), np.asarray(edges["b"], dtype=np.int64))
    lap("components")
    cur.register("_rb_labels", pa.table({"node": pa.array(np.arange(n_nodes, dtype=np.int64)),
                                         "comp": pa.array(labels)}))  # fmt: skip
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE _rb_idcomp AS
        SELECT n.id_type, n.id_value, n.node, l.comp FROM _rb_nodes n JOIN _rb_labels l USING (node)"""
    )
    cur.unregister("_rb_labels")
    cur.execute(
        f"""CREATE OR REPLACE TEMP TABLE _rb_dirty AS
        SELECT DISTINCT comp FROM (
            SELECT c.comp, c.id_type, count(*) AS k, any_value(coalesce(r.lim, {rules.custom_type_limit})) AS lim
            FROM _rb_idcomp c LEFT JOIN _rb_rules r USING (id_type) GROUP BY c.comp, c.id_type)
        WHERE k > lim"""  # noqa: S608 - an integer from validated rules
    )
    report.components_over_limit = int(cur.execute("SELECT count(*) FROM _rb_dirty").fetchall()[0][0])
    lap("limits")
    # Clean components: the earliest observation's top-priority identifier anchors the profile.
    cur.execute(
        f"""CREATE OR REPLACE TEMP TABLE _rb_clean AS
        WITH oc AS (
            SELECT o.obs_idx, o.first_seen, o.ids_key, c.comp, o.id_type, o.id_value,
                   coalesce(r.rank, {custom_rank}) AS rank
            FROM _rb_obs_nodes o JOIN _rb_idcomp c USING (node) LEFT JOIN _rb_rules r ON r.id_type = o.id_type
            WHERE c.comp NOT IN (SELECT comp FROM _rb_dirty))
        SELECT comp, arg_min(id_type, (first_seen, ids_key, rank, id_type, id_value)) AS anchor_type,
               arg_min(id_value, (first_seen, ids_key, rank, id_type, id_value)) AS anchor_value,
               min(first_seen) AS created_seen,
               arg_min(ids_key, (first_seen, ids_key)) AS created_key
        FROM oc GROUP BY comp"""  # noqa: S608 - an integer
    )
    old = "SELECT profile_idx, profile_id, anchor_type, anchor_value FROM profiles"
    cur.execute(
        f"""CREATE OR REPLACE TEMP TABLE _rb_clean_p AS
        SELECT c.*, o.profile_idx AS old_idx, o.profile_id AS old_id
        FROM _rb_clean c LEFT JOIN ({old}) o USING (anchor_type, anchor_value)"""  # noqa: S608 - a constant
    )
    lap("anchors")
    # Components over a limit: replay through the incremental resolver.
    dirty_rows = cur.execute(
        """SELECT l.obs_idx, l.ids_key, epoch_us(l.first_seen), l.origin FROM identity_links l
        WHERE l.obs_idx IN (SELECT o.obs_idx FROM _rb_obs_nodes o JOIN _rb_idcomp c USING (node)
                            WHERE c.comp IN (SELECT comp FROM _rb_dirty))
        ORDER BY l.first_seen, l.ids_key"""
    ).fetchall()
    report.replayed_observations = len(dirty_rows)
    reuse = {(r[2], r[3]): (int(r[0]), str(r[1])) for r in cur.execute(old).fetchall()}
    clean_anchors = cur.execute("SELECT anchor_type, anchor_value FROM _rb_clean").fetchall()
    for a in clean_anchors:
        reuse.pop((a[0], a[1]), None)
    next_idx = _sequence_taker(cur)
    suppressed = {(r[0], r[1]) for r in cur.execute("SELECT id_type, id_value FROM identity_suppressions").fetchall()}
    graph = Graph(rules, new_idx=next_idx, reuse=reuse, suppressed=suppressed)
    resolved: dict[int, int | None] = {}
    for obs_idx, ids_key, seen, origin in dirty_rows:
        obs = Observation(key=ids_key, ids=split_key(ids_key), seen_at=int(seen), origin=origin)
        resolved[int(obs_idx)] = graph.resolve(obs)
    lap("replay")
    _write(cur, graph, resolved, next_idx=next_idx, now=now, report=report)
    lap("write")
    for name in ("_rb_nodes", "_rb_obs_nodes", "_rb_idcomp", "_rb_dirty", "_rb_clean", "_rb_clean_p"):
        cur.execute(f"DROP TABLE IF EXISTS {name}")
    cur.unregister("_rb_rules")
    identity_graph.write_log(cur, graph.log, now=now, run=f"rebuild:{now.isoformat()}")
    report.decisions = len(graph.log)
    cur.execute(
        "INSERT INTO identity_log (logged_at, action, reason, run) VALUES (?, 'rebuild', ?, ?)",
        [now, f"{report.profiles} profiles from {report.identifiers} identifiers", f"rebuild:{now.isoformat()}"],
    )
    return report


def _sequence_taker(cur: duckdb.DuckDBPyConnection) -> _Seq:
    return _Seq(cur)


class _Seq:
    def __init__(self, cur: duckdb.DuckDBPyConnection) -> None:
        self.cur = cur

    def __call__(self) -> int:
        return int(self.cur.execute("SELECT nextval('profile_idx_seq')").fetchall()[0][0])


def _write(
    cur: duckdb.DuckDBPyConnection,
    graph: Graph,
    resolved: dict[int, int | None],
    *,
    next_idx: _Seq,
    now: datetime,
    report: RebuildReport,
) -> None:
    # New indexes for clean profiles whose anchor had none (one sequence call for all).
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE _rb_clean_p2 AS
        SELECT comp, anchor_type, anchor_value, created_seen, created_key,
               coalesce(old_idx, nextval('profile_idx_seq'))::INTEGER AS profile_idx,
               coalesce(old_id, 'p_' || substr(md5(anchor_type || ':' || anchor_value), 1, 20)) AS profile_id
        FROM _rb_clean_p"""
    )
    dirty_profiles = list(graph.profiles.values())
    cur.register(
        "_rb_dirty_p",
        pa.table({
            "profile_idx": pa.array([p.idx for p in dirty_profiles], pa.int32()),
            "profile_id": pa.array([p.profile_id for p in dirty_profiles], pa.string()),
            "anchor_type": pa.array([p.anchor[0] for p in dirty_profiles], pa.string()),
            "anchor_value": pa.array([p.anchor[1] for p in dirty_profiles], pa.string()),
            "created_seen": pa.array([p.created[0] for p in dirty_profiles], pa.int64()).cast(_TS),
            "created_key": pa.array([p.created[1] for p in dirty_profiles], pa.string()),
        }),
    )  # fmt: skip
    members: list[tuple[Identifier, int, int]] = [
        (ident, p.idx, linked) for p in dirty_profiles for ident, linked in p.ids.items()
    ]
    cur.register(
        "_rb_dirty_ids",
        pa.table({
            "id_type": pa.array([m[0][0] for m in members], pa.string()),
            "id_value": pa.array([m[0][1] for m in members], pa.string()),
            "profile_idx": pa.array([m[1] for m in members], pa.int32()),
            "linked_at": pa.array([m[2] for m in members], pa.int64()).cast(_TS),
        }),
    )  # fmt: skip
    cur.register(
        "_rb_dirty_obs",
        pa.table({
            "obs_idx": pa.array(list(resolved), pa.int64()),
            "profile_idx": pa.array([graph.survivor_of(p) if p is not None else None for p in resolved.values()],
                                    pa.int32()),
        }),
    )  # fmt: skip
    try:
        # Ids that disappear: redirect them to whichever profile holds their anchor now.
        got = cur.execute(
            """INSERT INTO profile_redirects
            SELECT p.profile_id, p.anchor_type, p.anchor_value, ?, NULL FROM profiles p
            WHERE p.profile_id NOT IN (SELECT profile_id FROM _rb_clean_p2 UNION ALL SELECT profile_id FROM _rb_dirty_p)
            ON CONFLICT (profile_id) DO UPDATE SET anchor_type = excluded.anchor_type,
                anchor_value = excluded.anchor_value, merged_at = excluded.merged_at""",
            [now],
        ).fetchall()
        report.redirects_added = int(got[0][0]) if got else 0
        cur.execute("DELETE FROM profiles")
        cur.execute(
            """INSERT INTO profiles (profile_idx, profile_id, created_at, first_seen, last_seen, traits, anchor_type,
                                     anchor_value, created_seen, created_key)
            SELECT profile_idx, profile_id, ?, created_seen, created_seen, NULL, anchor_type, anchor_value,
                   created_seen, created_key FROM _rb_clean_p2
            UNION ALL
            SELECT profile_idx, profile_id, ?, created_seen, created_seen, NULL, anchor_type, anchor_value,
                   created_seen, created_key FROM _rb_dirty_p""",
            [now, now],
        )
        cur.execute("DELETE FROM profile_redirects WHERE profile_id IN (SELECT profile_id FROM profiles)")
        cur.execute("DELETE FROM profile_attributes WHERE profile_idx NOT IN (SELECT profile_idx FROM profiles)")
        # Identifiers: reload the table and build its unique index in bulk.
        # (A fresh table: an index built in the transaction would still see the deleted rows.)
        cur.execute("DROP TABLE profile_identifiers")
        cur.execute(PROFILE_IDENTIFIERS_DDL[0])
        cur.execute(
            """INSERT INTO profile_identifiers
            SELECT c.id_type, c.id_value, p.profile_idx, l.source_id, f.first_seen, NULL, f.first_seen
            FROM _rb_idcomp c JOIN _rb_clean_p2 p USING (comp)
            JOIN (SELECT id_type, id_value, min(first_seen) AS first_seen, arg_min(obs_idx, (first_seen, ids_key)) AS o
                  FROM _rb_obs_nodes GROUP BY id_type, id_value) f USING (id_type, id_value)
            JOIN identity_links l ON l.obs_idx = f.o
            UNION ALL
            SELECT d.id_type, d.id_value, d.profile_idx, NULL, d.linked_at, NULL, d.linked_at FROM _rb_dirty_ids d"""
        )
        cur.execute(PROFILE_IDENTIFIERS_DDL[1])
        cur.execute(
            """CREATE OR REPLACE TEMP TABLE _rb_obs_profile AS
            SELECT DISTINCT o.obs_idx, p.profile_idx FROM _rb_obs_nodes o JOIN _rb_idcomp c USING (node)
            JOIN _rb_clean_p2 p USING (comp)
            UNION ALL SELECT obs_idx, profile_idx FROM _rb_dirty_obs"""
        )
        cur.execute(
            """UPDATE identity_links SET profile_idx = m.profile_idx FROM _rb_obs_profile m
            WHERE identity_links.obs_idx = m.obs_idx AND identity_links.profile_idx IS DISTINCT FROM m.profile_idx"""
        )
        report.profiles = int(cur.execute("SELECT count(*) FROM profiles").fetchall()[0][0])
    finally:
        cur.unregister("_rb_dirty_p")
        cur.unregister("_rb_dirty_ids")
        cur.unregister("_rb_dirty_obs")
        cur.execute("DROP TABLE IF EXISTS _rb_clean_p2")
        cur.execute("DROP TABLE IF EXISTS _rb_obs_profile")
