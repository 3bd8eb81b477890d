"""The full rebuild (`tessera identity rebuild`): every profile recomputed from the raw links.

1. Identifiers become integer nodes (a 64-bit hash, checked by a second one; numbered exactly if
   two ever clash); each observation links its identifiers (a star from one of them); suppressed
   (unmerged) identifiers link to nothing. SQL only unnests and hashes: everything after works on
   integer arrays (numpy) until the strings are joined back in for the write.
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
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import duckdb
import numpy as np
import pyarrow as pa

from tessera.domain.identity import IdentityRules
from tessera.domain.unify import Graph, Identifier, Observation
from tessera.services import identity_graph
from tessera.services.identity import ProvisionalIdx, split_key
from tessera.stores import analytic
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


def _members(*, exact: bool, suppressions: bool, links: str = "identity_links") -> str:
    """SQL of the member rows: each observation's identifiers (a suppressed one only where it stands
    alone) with the node key ``h``, a check hash ``h2``, the type's ``code`` and priority ``rank``."""
    key, join = ("x.k", "JOIN _rb_exact x USING (id_type, id_value)") if exact else ("hash(m.id_type, m.id_value)", "")
    where = (
        """WHERE m.n = 1 OR NOT EXISTS (SELECT 1 FROM identity_suppressions s
                                     WHERE s.id_type = m.id_type AND s.id_value = m.id_value)"""
        if suppressions
        else ""
    )
    return f"""SELECT m.obs_idx, m.source_id, m.ids_key, m.id_type, m.id_value, {key} AS h,
               hash(m.id_type || ':' || m.id_value) AS h2, t.code, t.rank
        FROM (SELECT obs_idx, source_id, ids_key, len(ids) AS n, unnest(ids, recursive := true) FROM {links}) m
        JOIN _rb_types t USING (id_type) {join} {where}"""  # noqa: S608 - fixed fragments


def _as_int64(column: np.ndarray) -> np.ndarray:
    """Node keys as int64 (DuckDB's UBIGINT hashes reinterpreted, not converted)."""
    arr = np.asarray(column)
    return arr.view(np.int64) if arr.dtype == np.uint64 else arr.astype(np.int64, copy=False)


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

    # Identifier types present: a dense code each, with its priority rank and its limit.
    present = sorted(
        str(r[0])
        for r in cur.execute(
            "SELECT DISTINCT id_type FROM (SELECT unnest(ids, recursive := true) FROM identity_links)"
        ).fetchall()
    )
    cur.register(
        "_rb_types",
        pa.table({
            "id_type": pa.array(present, pa.string()),
            "code": pa.array(range(len(present)), pa.int16()),
            "rank": pa.array([rules.rank(t) for t in present], pa.int16()),
        }),
    )  # fmt: skip
    limits = np.array([rules.limit(t) for t in present] or [1], dtype=np.int64)
    suppressions = bool(cur.execute("SELECT count(*) FROM identity_suppressions").fetchall()[0][0])
    try:
        return _rebuild(cur, rules=rules, now=now, components=components, report=report, lap=lap,
                        limits=limits, suppressions=suppressions)  # fmt: skip
    finally:
        analytic.changed(cur, "profiles", "profile_identifiers", "profile_attributes")
        cur.unregister("_rb_types")
        cur.execute("DROP TABLE IF EXISTS _rb_exact")


def _rebuild(
    cur: duckdb.DuckDBPyConnection,
    *,
    rules: IdentityRules,
    now: datetime,
    components: ComponentFinder,
    report: RebuildReport,
    lap: Callable[[str], None],
    limits: np.ndarray,
    suppressions: bool,
) -> RebuildReport:
    # 1. Observations in replay order (event time, then key): an observation's position is its rank.
    obs = cur.execute(
        "SELECT obs_idx, epoch_us(first_seen) AS fs FROM identity_links ORDER BY first_seen, ids_key"
    ).fetchnumpy()
    obs_idx = np.asarray(obs["obs_idx"], dtype=np.int64)
    obs_fs = np.asarray(obs["fs"], dtype=np.int64)
    del obs
    n_obs = report.observations = len(obs_idx)
    position = _positions(obs_idx)

    # Member rows as integers: (observation position, node).
    exact = False
    while True:
        sql = _members(exact=exact, suppressions=suppressions)
        cols = cur.execute(f"SELECT obs_idx, h, h2, code, rank FROM ({sql})").fetchnumpy()  # noqa: S608
        uh, m_node = np.unique(_as_int64(cols["h"]), return_inverse=True)
        m_node = m_node.astype(np.int64, copy=False)
        m_h2 = _as_int64(cols["h2"])
        node_h2 = np.empty(len(uh), dtype=np.int64)
        node_h2[m_node] = m_h2
        if exact or np.array_equal(node_h2[m_node], m_h2):
            break
        # Two identifiers share a 64-bit hash (~1 in 10^5 rebuilds of 10^7 identifiers): number exactly.
        cur.execute(
            """CREATE OR REPLACE TEMP TABLE _rb_exact AS
            SELECT id_type, id_value, row_number() OVER ()::BIGINT AS k
            FROM (SELECT DISTINCT id_type, id_value FROM (SELECT unnest(ids, recursive := true) FROM identity_links))"""
        )
        exact = True

    def members(links: str = "identity_links") -> str:
        return _members(exact=exact, suppressions=suppressions, links=links)

    m_pos = position(np.asarray(cols["obs_idx"], dtype=np.int64))
    m_code = np.asarray(cols["code"], dtype=np.int64)
    m_rank = np.asarray(cols["rank"], dtype=np.int16)
    del cols, m_h2, node_h2
    uh_sql = uh.view(np.uint64) if not exact else uh  # the keys as DuckDB has them
    n_nodes = report.identifiers = len(uh)
    # Edges: every member to one member of its observation (any spanning star gives the same components).
    rep = np.full(n_obs, -1, dtype=np.int64)
    rep[m_pos] = m_node
    keep = rep[m_pos] != m_node
    src, dst = rep[m_pos][keep], m_node[keep]
    lap("prepare")
    labels = components(n_nodes, src, dst) if n_nodes else np.zeros(0, dtype=np.int64)
    del keep, src, dst
    lap("components")

    # 2. Components over a limit: identifiers per (component, type), where a component is big enough.
    n_comp = int(labels.max()) + 1 if n_nodes else 0
    node_code = np.zeros(n_nodes, dtype=np.int64)
    node_code[m_node] = m_code
    cand = np.flatnonzero(np.bincount(labels, minlength=n_comp)[labels] > limits.min())
    pair, counts = np.unique(labels[cand] * len(limits) + node_code[cand], return_counts=True)
    dirty = np.zeros(n_comp, dtype=bool)
    dirty[pair[counts > limits[pair % len(limits)]] // len(limits)] = True
    report.components_over_limit = int(dirty.sum())
    obs_comp = np.append(labels, -1)[rep]  # -1: no identifier left (all suppressed)
    obs_dirty = np.append(dirty, False)[obs_comp]
    obs_clean = (obs_comp >= 0) & ~obs_dirty
    del node_code, cand, pair, counts, rep
    lap("limits")

    # 3. Clean components: the earliest observation's top-priority identifier (then by type, value) anchors.
    comp_first = np.full(n_comp, n_obs, dtype=np.int64)
    np.minimum.at(comp_first, obs_comp[obs_clean], np.flatnonzero(obs_clean))
    clean = np.flatnonzero(~dirty)
    win = comp_first[clean]
    is_win = np.zeros(n_obs, dtype=bool)
    is_win[win] = True
    wm = np.flatnonzero(is_win[m_pos])  # member rows of the winning observations
    best = np.full(n_obs, np.iinfo(np.int16).max, dtype=np.int16)
    np.minimum.at(best, m_pos[wm], m_rank[wm])
    top = wm[m_rank[wm] == best[m_pos[wm]]]
    n_top = np.bincount(m_pos[top], minlength=n_obs)
    anchor_node = np.full(n_obs, -1, dtype=np.int64)
    single = top[n_top[m_pos[top]] == 1]
    anchor_node[m_pos[single]] = m_node[single]
    tied = np.flatnonzero(n_top > 1)
    if len(tied):  # several identifiers of the top rank (two phones, two custom types …): by type, then value
        cur.register("_rb_tied", pa.table({"obs_idx": pa.array(obs_idx[tied])}))
        try:
            links = "(SELECT l.* FROM identity_links l SEMI JOIN _rb_tied USING (obs_idx))"
            got = cur.execute(
                f"""SELECT obs_idx, arg_min(h, (rank, id_type, id_value)) AS h
                FROM ({members(links)}) GROUP BY obs_idx"""  # noqa: S608 - fixed fragments
            ).fetchnumpy()
        finally:
            cur.unregister("_rb_tied")
        anchor_node[position(np.asarray(got["obs_idx"], dtype=np.int64))] = np.searchsorted(uh, _as_int64(got["h"]))
    del is_win, wm, best, top, n_top, single
    cur.register(
        "_rb_clean_a",
        pa.table({
            "comp": pa.array(clean),
            "h": pa.array(uh_sql[anchor_node[win]]),
            "obs_idx": pa.array(obs_idx[win]),
            "created_seen": pa.array(obs_fs[win]).cast(_TS),
        }),
    )  # fmt: skip
    try:
        links = "(SELECT l.* FROM identity_links l SEMI JOIN _rb_clean_a USING (obs_idx))"
        cur.execute(
            f"""CREATE OR REPLACE TEMP TABLE _rb_clean AS
            SELECT c.comp, m.id_type AS anchor_type, m.id_value AS anchor_value, c.created_seen,
                   m.ids_key AS created_key
            FROM _rb_clean_a c JOIN ({members(links)}) m ON m.obs_idx = c.obs_idx AND m.h = c.h"""  # noqa: S608
        )
    finally:
        cur.unregister("_rb_clean_a")
    del anchor_node, win, comp_first
    old = "SELECT profile_idx, profile_id, anchor_type, anchor_value FROM profiles"
    cur.execute(
        f"""CREATE OR REPLACE TEMP TABLE _rb_clean_p AS
        SELECT c.*, o.profile_idx AS old_idx, o.profile_id AS old_id
        FROM _rb_clean c LEFT JOIN ({old}) o USING (anchor_type, anchor_value)"""  # noqa: S608 - a constant
    )
    lap("anchors")

    # 4. Components over a limit: replay through the incremental resolver (positions are replay order).
    replay = np.flatnonzero(obs_dirty)
    cur.register("_rb_replay", pa.table({"obs_idx": pa.array(obs_idx[replay]), "ord": pa.array(replay)}))
    try:
        dirty_rows = cur.execute(
            """SELECT l.obs_idx, l.ids_key, epoch_us(l.first_seen), l.origin FROM identity_links l
            JOIN _rb_replay r USING (obs_idx) ORDER BY r.ord"""
        ).fetchall()
    finally:
        cur.unregister("_rb_replay")
    report.replayed_observations = len(dirty_rows)
    # Only old profiles whose anchor no clean profile took can come back through the replay.
    reuse = {
        (r[2], r[3]): (int(r[0]), str(r[1]))
        for r in cur.execute(
            f"SELECT o.* FROM ({old}) o ANTI JOIN _rb_clean c USING (anchor_type, anchor_value)"  # noqa: S608
        ).fetchall()
    }
    suppressed = {(r[0], r[1]) for r in cur.execute("SELECT id_type, id_value FROM identity_suppressions").fetchall()}
    new_idx = ProvisionalIdx()
    graph = Graph(rules, new_idx=new_idx, reuse=reuse, suppressed=suppressed)
    resolved: dict[int, int | None] = {}
    for obs_i, ids_key, seen, origin in dirty_rows:
        ob = Observation(key=ids_key, ids=split_key(ids_key), seen_at=int(seen), origin=origin)
        resolved[int(obs_i)] = graph.resolve(ob)
    lap("replay")

    # 5. Write. Every identifier of a clean profile was first seen in its earliest observation.
    node_first = np.full(n_nodes, n_obs, dtype=np.int64)
    np.minimum.at(node_first, m_node, m_pos)
    del m_pos, m_node, m_code, m_rank
    _write(cur, graph, resolved, idx=new_idx.settle(cur), now=now, report=report, members=members,
           arrays=_Arrays(obs_idx, obs_fs, obs_comp, obs_clean, labels, dirty, uh_sql, node_first))  # fmt: skip
    lap("write")
    identity_graph.write_log(cur, graph.log, now=now, run=f"rebuild:{now.isoformat()}")
    report.decisions = len(graph.log)
    cur.execute(
        "INSERT INTO identity_log (logged_at, action, reason, run) VALUES (?, 'rebuild', ?, ?)",
        [now, f"{report.profiles} profiles from {report.identifiers} identifiers", f"rebuild:{now.isoformat()}"],
    )
    return report


def _positions(obs_idx: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """obs_idx → position in ``obs_idx`` (a lookup table when the indexes are dense, as the sequence makes them)."""
    if not len(obs_idx):
        return lambda idx: np.zeros(len(idx), dtype=np.int64)
    lo = int(obs_idx.min())
    span = int(obs_idx.max()) - lo + 1
    if span <= 4 * len(obs_idx) + 1024:
        lut = np.full(span, -1, dtype=np.int64)
        lut[obs_idx - lo] = np.arange(len(obs_idx), dtype=np.int64)
        return lambda idx: lut[idx - lo]
    by_idx = np.argsort(obs_idx)
    sorted_idx = obs_idx[by_idx]
    return lambda idx: by_idx[np.searchsorted(sorted_idx, idx)]


@dataclass
class _Arrays:
    obs_idx: np.ndarray
    obs_fs: np.ndarray
    obs_comp: np.ndarray
    obs_clean: np.ndarray
    labels: np.ndarray
    dirty: np.ndarray
    uh_sql: np.ndarray
    node_first: np.ndarray


def _write(
    cur: duckdb.DuckDBPyConnection,
    graph: Graph,
    resolved: dict[int, int | None],
    *,
    idx: Callable[[int], int],
    now: datetime,
    report: RebuildReport,
    members: Callable[[], str],
    arrays: _Arrays,
) -> None:
    ar = arrays
    # New indexes for clean profiles whose anchor had none (one sequence call for all).
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE _rb_clean_p2 AS
        SELECT comp, anchor_type, anchor_value, created_seen, created_key,
               coalesce(old_idx, nextval('profile_idx_seq'))::INTEGER AS profile_idx,
               coalesce(old_id, 'p_' || substr(md5(anchor_type || ':' || anchor_value), 1, 20)) AS profile_id
        FROM _rb_clean_p"""
    )
    got = cur.execute("SELECT comp, profile_idx FROM _rb_clean_p2").fetchnumpy()
    comp_profile = np.full(len(ar.dirty), -1, dtype=np.int32)
    comp_profile[np.asarray(got["comp"], dtype=np.int64)] = np.asarray(got["profile_idx"], dtype=np.int32)
    del got
    dirty_profiles = list(graph.profiles.values())
    cur.register(
        "_rb_dirty_p",
        pa.table({
            "profile_idx": pa.array([idx(p.idx) for p in dirty_profiles], pa.int32()),
            "profile_id": pa.array([p.profile_id for p in dirty_profiles], pa.string()),
            "anchor_type": pa.array([p.anchor[0] for p in dirty_profiles], pa.string()),
            "anchor_value": pa.array([p.anchor[1] for p in dirty_profiles], pa.string()),
            "created_seen": pa.array([p.created[0] for p in dirty_profiles], pa.int64()).cast(_TS),
            "created_key": pa.array([p.created[1] for p in dirty_profiles], pa.string()),
        }),
    )  # fmt: skip
    dirty_members: list[tuple[Identifier, int, int]] = [
        (ident, idx(p.idx), linked) for p in dirty_profiles for ident, linked in p.ids.items()
    ]
    cur.register(
        "_rb_dirty_ids",
        pa.table({
            "id_type": pa.array([m[0][0] for m in dirty_members], pa.string()),
            "id_value": pa.array([m[0][1] for m in dirty_members], pa.string()),
            "profile_idx": pa.array([m[1] for m in dirty_members], pa.int32()),
            "linked_at": pa.array([m[2] for m in dirty_members], pa.int64()).cast(_TS),
        }),
    )  # fmt: skip
    node_clean = np.flatnonzero(~ar.dirty[ar.labels])
    first = ar.node_first[node_clean]
    cur.register(
        "_rb_ids",
        pa.table({
            "h": pa.array(ar.uh_sql[node_clean]),
            "profile_idx": pa.array(comp_profile[ar.labels[node_clean]]),
            "first_obs": pa.array(ar.obs_idx[first]),
            "first_seen": pa.array(ar.obs_fs[first]).cast(_TS),
        }),
    )  # fmt: skip
    clean_pos = np.flatnonzero(ar.obs_clean)
    cur.register(
        "_rb_obs_profile",
        pa.table({
            "obs_idx": pa.concat_arrays([pa.array(ar.obs_idx[clean_pos]),
                                         pa.array(list(resolved), pa.int64())]),
            "profile_idx": pa.concat_arrays([
                pa.array(comp_profile[ar.obs_comp[clean_pos]]),
                pa.array([idx(graph.survivor_of(p)) if p is not None else None for p in resolved.values()], pa.int32()),
            ]),
        }),
    )  # fmt: skip
    try:
        # Ids that disappear: redirect them to whichever profile holds their anchor now.
        got_r = cur.execute(
            """INSERT INTO profile_redirects
            SELECT p.profile_id, p.anchor_type, p.anchor_value, ?, NULL FROM profiles p
            WHERE p.profile_id NOT IN (SELECT profile_id FROM _rb_clean_p2 UNION ALL SELECT profile_id FROM _rb_dirty_p)
            ON CONFLICT (profile_id) DO UPDATE SET anchor_type = excluded.anchor_type,
                anchor_value = excluded.anchor_value, merged_at = excluded.merged_at""",
            [now],
        ).fetchall()
        report.redirects_added = int(got_r[0][0]) if got_r else 0
        cur.execute("DELETE FROM profiles")
        # In profile_id order: the unique index on it is built about twice as fast.
        cur.execute(
            """INSERT INTO profiles (profile_idx, profile_id, created_at, first_seen, last_seen, traits, anchor_type,
                                     anchor_value, created_seen, created_key)
            SELECT profile_idx, profile_id, ?, created_seen, created_seen, NULL, anchor_type, anchor_value,
                   created_seen, created_key FROM _rb_clean_p2
            UNION ALL
            SELECT profile_idx, profile_id, ?, created_seen, created_seen, NULL, anchor_type, anchor_value,
                   created_seen, created_key FROM _rb_dirty_p
            ORDER BY profile_id""",
            [now, now],
        )
        cur.execute("DELETE FROM profile_redirects WHERE profile_id IN (SELECT profile_id FROM profiles)")
        cur.execute("DELETE FROM profile_attributes WHERE profile_idx NOT IN (SELECT profile_idx FROM profiles)")
        # Identifiers: reload the table and build its unique index in bulk.
        # (A fresh table: an index built in the transaction would still see the deleted rows.)
        cur.execute("DROP TABLE profile_identifiers")
        cur.execute(PROFILE_IDENTIFIERS_DDL[0])
        cur.execute(
            f"""INSERT INTO profile_identifiers
            SELECT m.id_type, m.id_value, i.profile_idx, m.source_id, i.first_seen, NULL, i.first_seen
            FROM _rb_ids i JOIN ({members()}) m ON m.obs_idx = i.first_obs AND m.h = i.h
            UNION ALL
            SELECT d.id_type, d.id_value, d.profile_idx, NULL, d.linked_at, NULL, d.linked_at FROM _rb_dirty_ids d
            ORDER BY 1, 2"""  # noqa: S608
        )
        cur.execute(PROFILE_IDENTIFIERS_DDL[1])
        cur.execute(
            """UPDATE identity_links SET profile_idx = m.profile_idx FROM _rb_obs_profile m
            WHERE identity_links.obs_idx = m.obs_idx AND identity_links.profile_idx IS DISTINCT FROM m.profile_idx"""
        )
        report.profiles = int(cur.execute("SELECT count(*) FROM profiles").fetchall()[0][0])
    finally:
        for name in ("_rb_dirty_p", "_rb_dirty_ids", "_rb_ids", "_rb_obs_profile"):
            cur.unregister(name)
        for name in ("_rb_clean", "_rb_clean_p", "_rb_clean_p2"):
            cur.execute(f"DROP TABLE IF EXISTS {name}")
