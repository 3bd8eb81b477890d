"""Reading the part of the stored identity graph a batch touches, and writing a graph's changes back.

The stored graph is three tables: ``profiles`` (anchor, creation order), ``profile_identifiers``
(identifier → profile, when linked) and ``identity_links`` (observation → profile). Merges move
rows of the merged-away profile to the survivor and leave a ``profile_redirects`` row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
import pyarrow as pa

from tessera.domain.unify import Graph, Identifier, LogEntry, Profile, profile_id_for
from tessera.services import tag_values

_TS = pa.timestamp("us")


def _ids_table(ids: Iterable[Identifier]) -> pa.Table:
    types, values = [], []
    for t, v in ids:
        types.append(t)
        values.append(v)
    return pa.table({"id_type": pa.array(types, pa.string()), "id_value": pa.array(values, pa.string())})


def _idx_table(idxs: Iterable[int]) -> pa.Table:
    return pa.table({"profile_idx": pa.array(sorted(idxs), pa.int32())})


@dataclass
class Loaded:
    """What was read into a graph: to tell stored rows from new ones when writing back."""

    profiles: set[int] = field(default_factory=set)
    identifiers: set[Identifier] = field(default_factory=set)


def load_profiles(cur: duckdb.DuckDBPyConnection, graph: Graph, idxs: Iterable[int], loaded: Loaded) -> None:
    """Read whole profiles (with every identifier) into ``graph``."""
    want = set(idxs) - loaded.profiles
    if not want:
        return
    cur.register("_g_idx", _idx_table(want))
    try:
        rows = cur.execute(
            "SELECT p.profile_idx, p.profile_id, p.anchor_type, p.anchor_value, epoch_us(p.created_seen), p.created_key "
            "FROM profiles p JOIN _g_idx USING (profile_idx)"
        ).fetchall()
        ids = cur.execute(
            "SELECT i.profile_idx, i.id_type, i.id_value, epoch_us(i.linked_at) "
            "FROM profile_identifiers i JOIN _g_idx USING (profile_idx)"
        ).fetchall()
    finally:
        cur.unregister("_g_idx")
    members: dict[int, dict[Identifier, int]] = {}
    for idx, t, v, linked in ids:
        members.setdefault(idx, {})[(t, v)] = int(linked or 0)
    for idx, pid, at, av, cseen, ckey in rows:
        profile = Profile(
            idx=int(idx),
            profile_id=pid,
            anchor=(at, av),
            created=(int(cseen or 0), ckey or ""),
            ids=members.get(idx, {}),
        )
        graph.add(profile)
        loaded.profiles.add(profile.idx)
        loaded.identifiers.update(profile.ids)


def load_for(cur: duckdb.DuckDBPyConnection, graph: Graph, identifiers: set[Identifier], loaded: Loaded) -> None:
    """Read the profiles holding any of ``identifiers``, their suppressions, and profile ids in use."""
    if not identifiers:
        return
    cur.register("_g_need", _ids_table(identifiers))
    try:
        idxs = [
            int(r[0])
            for r in cur.execute(
                "SELECT DISTINCT p.profile_idx FROM profile_identifiers p JOIN _g_need USING (id_type, id_value)"
            ).fetchall()
        ]
        graph.suppressed.update(
            (t, v)
            for t, v in cur.execute(
                "SELECT s.id_type, s.id_value FROM identity_suppressions s JOIN _g_need USING (id_type, id_value)"
            ).fetchall()
        )
    finally:
        cur.unregister("_g_need")
    load_profiles(cur, graph, idxs, loaded)
    # Profile ids these identifiers would give a new profile that live profiles hold already.
    pids = pa.table({"profile_id": pa.array(sorted({profile_id_for(i) for i in identifiers}), pa.string())})
    cur.register("_g_pids", pids)
    try:
        held = {r[0] for r in cur.execute("SELECT profile_id FROM profiles JOIN _g_pids USING (profile_id)").fetchall()}
    finally:
        cur.unregister("_g_pids")
    one_by_one = live_profile_id(cur)
    bases = set(pids.column("profile_id").to_pylist())

    def taken(pid: str) -> bool:
        return pid in held if pid in bases else one_by_one(pid)

    graph.taken = taken


def live_profile_id(cur: duckdb.DuckDBPyConnection) -> Callable[[str], bool]:
    """Whether a profile id is held by a live profile. A redirected id may be taken over: its
    profile was merged away, and the id comes back when its anchor creates a profile again."""

    def taken(pid: str) -> bool:
        return bool(cur.execute("SELECT 1 FROM profiles WHERE profile_id = ?", [pid]).fetchall())

    return taken


def write_log(cur: duckdb.DuckDBPyConnection, entries: list[LogEntry], *, now: datetime, run: str) -> None:
    if not entries:
        return
    table = pa.table(
        {
            "logged_at": pa.array([now] * len(entries), _TS),
            "event_time": pa.array([e.event_time for e in entries], pa.int64()).cast(_TS),
            "action": pa.array([e.action for e in entries], pa.string()),
            "profile_id": pa.array([e.profile_id for e in entries], pa.string()),
            "other_ids": pa.array([list(e.other_ids) or None for e in entries], pa.list_(pa.string())),
            "id_type": pa.array([e.identifier[0] if e.identifier else None for e in entries], pa.string()),
            "id_value": pa.array([e.identifier[1] if e.identifier else None for e in entries], pa.string()),
            "reason": pa.array([e.reason for e in entries], pa.string()),
            "origin": pa.array([e.origin for e in entries], pa.string()),
            "run": pa.array([run] * len(entries), pa.string()),
        }
    )
    cur.register("_g_log", table)
    try:
        cur.execute(
            "INSERT INTO identity_log (logged_at, event_time, action, profile_id, other_ids, id_type, id_value, "
            "reason, origin, run) SELECT * FROM _g_log"
        )
    finally:
        cur.unregister("_g_log")


def write_changes(
    cur: duckdb.DuckDBPyConnection,
    graph: Graph,
    loaded: Loaded,
    *,
    id_sources: dict[Identifier, int | None],
    now: datetime,
) -> None:
    """Write what ``graph`` changed relative to ``loaded``: merges, new profiles, new identifiers."""
    merges = {loser: graph.survivor_of(loser) for loser in graph.merged if loser in loaded.profiles}
    if merges:
        pids = {p.idx: p.profile_id for p in graph.profiles.values()}
        table = pa.table(
            {
                "loser": pa.array(list(merges), pa.int32()),
                "survivor": pa.array(list(merges.values()), pa.int32()),
                "profile_id": pa.array([graph.removed[m].profile_id for m in merges], pa.string()),
                "anchor_type": pa.array([graph.removed[m].anchor[0] for m in merges], pa.string()),
                "anchor_value": pa.array([graph.removed[m].anchor[1] for m in merges], pa.string()),
                "into_id": pa.array([pids.get(s) for s in merges.values()], pa.string()),
            }
        )
        cur.register("_g_merge", table)
        try:
            for tbl in ("identity_links", "profile_identifiers"):
                cur.execute(
                    f"UPDATE {tbl} SET profile_idx = m.survivor FROM _g_merge m "  # noqa: S608 - fixed names
                    f"WHERE {tbl}.profile_idx = m.loser"
                )
            tag_values.carry_over(cur, "_g_merge", now=now)
            cur.execute("DELETE FROM profiles WHERE profile_idx IN (SELECT loser FROM _g_merge)")
            cur.execute("DELETE FROM profile_attributes WHERE profile_idx IN (SELECT loser FROM _g_merge)")
            cur.execute(
                "INSERT INTO profile_redirects SELECT profile_id, anchor_type, anchor_value, ?, into_id FROM _g_merge "
                "ON CONFLICT (profile_id) DO UPDATE SET anchor_type = excluded.anchor_type, "
                "anchor_value = excluded.anchor_value, merged_at = excluded.merged_at, merged_into = excluded.merged_into",
                [now],
            )
        finally:
            cur.unregister("_g_merge")
    fresh = [p for p in graph.profiles.values() if p.idx not in loaded.profiles]
    if fresh:
        table = pa.table(
            {
                "profile_idx": pa.array([p.idx for p in fresh], pa.int32()),
                "profile_id": pa.array([p.profile_id for p in fresh], pa.string()),
                "seen": pa.array([p.created[0] for p in fresh], pa.int64()).cast(_TS),
                "anchor_type": pa.array([p.anchor[0] for p in fresh], pa.string()),
                "anchor_value": pa.array([p.anchor[1] for p in fresh], pa.string()),
                "created_key": pa.array([p.created[1] for p in fresh], pa.string()),
            }
        )
        cur.register("_g_new", table)
        try:
            cur.execute(
                "INSERT INTO profiles (profile_idx, profile_id, created_at, first_seen, last_seen, traits, anchor_type, "
                "anchor_value, created_seen, created_key) SELECT profile_idx, profile_id, ?, seen, seen, NULL, "
                "anchor_type, anchor_value, seen, created_key FROM _g_new",
                [now],
            )
            # A profile id in use again is no longer a redirect.
            cur.execute("DELETE FROM profile_redirects WHERE profile_id IN (SELECT profile_id FROM _g_new)")
        finally:
            cur.unregister("_g_new")
    new_ids = [
        (ident, p.idx, linked)
        for p in graph.profiles.values()
        for ident, linked in p.ids.items()
        if ident not in loaded.identifiers
    ]
    if new_ids:
        table = pa.table(
            {
                "id_type": pa.array([i[0][0] for i in new_ids], pa.string()),
                "id_value": pa.array([i[0][1] for i in new_ids], pa.string()),
                "profile_idx": pa.array([i[1] for i in new_ids], pa.int32()),
                "source_id": pa.array([id_sources.get(i[0]) for i in new_ids], pa.int32()),
                "linked_at": pa.array([i[2] for i in new_ids], pa.int64()).cast(_TS),
            }
        )
        cur.register("_g_ids", table)
        try:
            cur.execute(
                "INSERT INTO profile_identifiers (id_type, id_value, profile_idx, source_id, first_seen, last_seen, "
                "linked_at) SELECT id_type, id_value, profile_idx, source_id, linked_at, NULL, linked_at FROM _g_ids"
            )
        finally:
            cur.unregister("_g_ids")
