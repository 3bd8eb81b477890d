"""Tag values (标签值): swapping a run's values in, the history of every change, and what it answers.

Every kind of tag ends here. A computation fills a temp table of ``(tag_key, profile_idx, value)``
— the complete new values of its tags, or of the profiles in its scope — and :func:`swap` writes
the difference in one DuckDB transaction: ``profile_tags`` rows removed and added, one
``tag_changes`` row per value gained or lost, one ``tag_runs`` row per tag. Readers see the old
values or the new ones, never half a run. A run that fails is recorded and changes nothing.

History: the profiles that had ``X = V`` at ``T`` are those whose latest change of ``(X, V)``
before ``T`` (ordered by run) is an addition (:func:`holders_at`); a value's count per day is the
running sum of its +1 / −1 changes (:func:`trend`).
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pyarrow as pa
from pyroaring import BitMap

from tessera.clock import as_utc
from tessera.domain.tags import Tag
from tessera.stores import analytic
from tessera.stores.profile_columns import bitmap_of

NEW = "_tag_new"  # (tag_key, profile_idx, value): what a computation produced
SCOPE = "_tag_scope"  # (profile_idx): the profiles a scoped computation covers


class TagRunError(Exception):
    """A computation that cannot finish (bad values, a timeout …): the run is recorded as failed."""


@dataclass
class RunResult:
    """One tag's part of a run."""

    run_id: str
    tag_key: str
    trigger: str
    status: Literal["succeeded", "failed"]
    started_at: datetime
    finished_at: datetime
    rows: int = 0
    profiles: int = 0
    added: int = 0
    removed: int = 0
    error: str | None = None
    details: dict[str, Any] = field(default_factory=dict)


def create_new_table(cur: duckdb.DuckDBPyConnection) -> None:
    """The (empty) temp table a computation fills."""
    cur.execute(f"CREATE OR REPLACE TEMP TABLE {NEW} (tag_key VARCHAR, profile_idx INTEGER, value VARCHAR)")


def create_scope_table(cur: duckdb.DuckDBPyConnection, profile_idxs: Sequence[int]) -> None:
    cur.register("_tag_scope_in", pa.table({"profile_idx": pa.array(sorted(set(profile_idxs)), pa.int32())}))
    try:
        cur.execute(f"CREATE OR REPLACE TEMP TABLE {SCOPE} AS SELECT profile_idx FROM _tag_scope_in")  # noqa: S608 - fixed names
    finally:
        cur.unregister("_tag_scope_in")


def _naive(t: datetime) -> datetime:
    return as_utc(t).replace(tzinfo=None)


Bitmaps = dict[str, dict[str, BitMap]]  # tag key -> value -> profiles (profile_idx)


def tables_of(keys: Sequence[str]) -> list[str]:
    """What a write of these tags' values reports changed: each tag's own rows (``profile_tags:<key>``),
    so that in-memory copies of other tags stay; a plain ``profile_tags`` change moves them all."""
    return [f"profile_tags:{k}" for k in keys]


def swap(
    cur: duckdb.DuckDBPyConnection,
    tags: Sequence[Tag],
    *,
    trigger: str,
    started_at: datetime,
    now: datetime,
    scoped: bool = False,
    details: dict[str, dict[str, Any]] | None = None,
    produced: Bitmaps | None = None,
) -> list[RunResult]:
    """Swap in the new values of ``tags`` and record one run per tag. Call inside
    ``AnalyticStore.transaction(cur)``: the swap is atomic with it.

    The new values are ``produced`` (bitmaps, for the tags a computer gave them for) or the rows of
    ``_tag_new`` (values trimmed, blanks and duplicates dropped); only profiles that exist count,
    and with ``scoped`` only those in ``_tag_scope`` (the others keep their values). The old values
    are the tag's stored bitmaps (``tag_bitmaps``), or ``profile_tags`` when there are none. Only
    the difference is written: ``profile_tags`` rows deleted and inserted, ``tag_changes``, the
    new bitmaps. Raises :class:`TagRunError` when a single-valued tag got two values for one
    profile (nothing is written).
    """
    keys = [t.key for t in tags]
    universe = _profiles(cur)
    scope = _scope_bitmap(cur) if scoped else None
    new = dict(produced or {})
    missing = [k for k in keys if k not in new]
    if missing:
        new.update(_read_new(cur, missing))
    old = _read_old(cur, keys)
    results: list[RunResult] = []
    added_rows: list[tuple[str, str, BitMap]] = []
    removed_rows: list[tuple[str, str, BitMap]] = []
    batch, run_no = uuid.uuid4().hex[:12], _next_run(cur)
    final: Bitmaps = {}
    for t in tags:
        fresh = {v: bm & universe for v, bm in new.get(t.key, {}).items()}
        before = old.get(t.key, {})
        if scope is not None:  # outside the scope the old values stay
            fresh = {v: bm & scope for v, bm in fresh.items()}
            keep = {v: bm - scope for v, bm in before.items()}
            merged = {v: keep.get(v, BitMap()) | fresh.get(v, BitMap()) for v in set(keep) | set(fresh)}
        else:
            merged = fresh
        merged = {v: bm for v, bm in merged.items() if bm}
        if not t.multi:
            _check_single(t.key, merged)
        added = {v: bm - before.get(v, BitMap()) for v, bm in merged.items()}
        removed = {v: bm - merged.get(v, BitMap()) for v, bm in before.items()}
        added_rows += [(t.key, v, bm) for v, bm in added.items() if bm]
        removed_rows += [(t.key, v, bm) for v, bm in removed.items() if bm]
        final[t.key] = merged
        counted = fresh if scope is not None else merged
        holders = BitMap.union(*counted.values()) if counted else BitMap()
        results.append(
            RunResult(
                run_id=uuid.uuid4().hex[:16], tag_key=t.key, trigger=trigger, status="succeeded",
                started_at=started_at, finished_at=now, rows=sum(len(b) for b in counted.values()),
                profiles=len(holders), added=sum(len(b) for b in added.values()),
                removed=sum(len(b) for b in removed.values()),
                details=(details or {}).get(t.key, {}) | ({"scoped": True, "scope": len(scope)} if scope is not None else {}),
            )
        )  # fmt: skip
    at = _naive(now)
    _write_rows(cur, removed_rows, added_rows, at=at, run_no=run_no)
    _store_bitmaps(cur, final, at=at, run_no=run_no)
    for t, r in zip(tags, results, strict=True):
        _record(cur, t, r, run_no=run_no, batch=batch)
    analytic.changed(cur, *tables_of(keys), "tag_changes")
    return results


def _next_run(cur: duckdb.DuckDBPyConnection) -> int:
    return int(cur.execute("SELECT nextval('tag_run_seq')").fetchall()[0][0])


def _ids(cur: duckdb.DuckDBPyConnection, sql: str) -> BitMap:
    got = cur.execute(sql).fetchnumpy()
    return bitmap_of(np.sort(got["profile_idx"]))


def _profiles(cur: duckdb.DuckDBPyConnection) -> BitMap:
    return _ids(cur, "SELECT profile_idx FROM profiles")


def _scope_bitmap(cur: duckdb.DuckDBPyConnection) -> BitMap:
    return _ids(cur, f"SELECT profile_idx FROM {SCOPE}")  # noqa: S608 - fixed names


def _check_single(key: str, values: dict[str, BitMap]) -> None:
    if len(values) < 2:
        return
    total = sum(len(b) for b in values.values())
    if total == len(BitMap.union(*values.values())):
        return
    items = sorted(values.items())
    for i, (v1, b1) in enumerate(items):
        for v2, b2 in items[i + 1 :]:
            both = b1 & b2
            if both:
                raise TagRunError(
                    f"tag {key!r} is single-valued but profile_idx {both.min()} got several values: {v1}, {v2}"
                )


def grouped(codes: np.ndarray, ids: np.ndarray) -> list[tuple[int, BitMap]]:
    """(code, profiles) per distinct code of parallel arrays (any order)."""
    if not len(codes):
        return []
    order = np.argsort(codes, kind="stable")  # a radix sort for small integer codes
    codes, ids = codes[order], ids[order]
    cuts = np.flatnonzero(np.diff(codes)) + 1
    starts, ends = np.concatenate([[0], cuts]), np.concatenate([cuts, [len(codes)]])
    return [(int(codes[a]), bitmap_of(np.sort(ids[a:b]))) for a, b in zip(starts, ends, strict=True)]


def _bitmaps_of(cur: duckdb.DuckDBPyConnection, relation: str, keys: Sequence[str], *, clean: bool) -> Bitmaps:
    """Bitmaps of the (tag_key, value, profile_idx) rows of ``relation`` for ``keys``: value codes
    made in SQL (few distinct values), grouped in numpy."""
    value = "trim(r.value)" if clean else "r.value"
    cur.execute("CREATE OR REPLACE TEMP TABLE _tag_keys (tag_key VARCHAR)")
    cur.executemany("INSERT INTO _tag_keys VALUES (?)", [[k] for k in keys])
    cur.execute(
        f"""CREATE OR REPLACE TEMP TABLE _tag_dict AS
        SELECT tag_key, value, CAST(row_number() OVER () - 1 AS INTEGER) AS code FROM (
            SELECT DISTINCT r.tag_key, {value} AS value FROM {relation} r SEMI JOIN _tag_keys k ON k.tag_key = r.tag_key
            WHERE r.value IS NOT NULL AND {value} <> '')"""  # noqa: S608 - fixed names
    )
    names = cur.execute("SELECT code, tag_key, value FROM _tag_dict").fetchall()
    out: Bitmaps = {k: {} for k in keys}
    if names:
        small = "SMALLINT" if len(names) < 32_000 else "INTEGER"
        got = cur.execute(
            f"""SELECT CAST(d.code AS {small}) AS code, r.profile_idx FROM {relation} r
            JOIN _tag_dict d ON d.tag_key = r.tag_key AND d.value = {value} WHERE r.profile_idx IS NOT NULL"""  # noqa: S608 - fixed names
        ).fetchnumpy()
        by_code = {c: (k, v) for c, k, v in names}
        for code, bm in grouped(got["code"], got["profile_idx"]):
            k, v = by_code[code]
            out[k][v] = bm
    cur.execute("DROP TABLE _tag_dict")
    cur.execute("DROP TABLE _tag_keys")
    return out


def _read_new(cur: duckdb.DuckDBPyConnection, keys: Sequence[str]) -> Bitmaps:
    return _bitmaps_of(cur, NEW, keys, clean=True)


def _read_old(cur: duckdb.DuckDBPyConnection, keys: Sequence[str]) -> Bitmaps:
    """The values as last swapped: stored bitmaps where a tag has them, else ``profile_tags``."""
    stored = {r[0] for r in cur.execute("SELECT tag_key FROM tag_state WHERE list_contains($k, tag_key)",
                                        {"k": list(keys)}).fetchall()}  # fmt: skip
    out: Bitmaps = {k: {} for k in stored}
    for k, v, blob in cur.execute(
        "SELECT tag_key, value, profiles FROM tag_bitmaps WHERE list_contains($k, tag_key)", {"k": list(stored)}
    ).fetchall():
        out[k][v] = BitMap.deserialize(blob)
    rest = [k for k in keys if k not in stored]
    if rest:
        out.update(_bitmaps_of(cur, "profile_tags", rest, clean=False))
    return out


_NUMBER = re.compile(r"^\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*$", re.ASCII)


def _number(text: str) -> float | None:
    """The number a value reads as (``value_num``): plain decimal notation, finite; else None."""
    if not _NUMBER.match(text):
        return None
    x = float(text)
    return x if math.isfinite(x) else None


def _rows_table(rows: list[tuple[str, str, BitMap]], added: bool) -> pa.Table:
    """Rows (tag_key, value, value_num, profile_idx, added) of (tag, value, profiles) triples; keys and
    values as dictionaries, numbers read once per value."""
    counts = np.array([len(bm) for _, _, bm in rows], dtype=np.int64)
    ids = (np.concatenate([np.frombuffer(bm.to_array(), dtype=np.uint32) for _, _, bm in rows])
           if rows else np.array([], np.uint32))  # fmt: skip
    which = pa.array(np.repeat(np.arange(len(rows), dtype=np.int32), counts), pa.int32())
    numbers = np.array([np.nan if (n := _number(v)) is None else n for _, v, _ in rows], dtype=np.float64)
    num = np.repeat(numbers, counts)
    return pa.table(
        {
            "tag_key": pa.DictionaryArray.from_arrays(which, pa.array([k for k, _, _ in rows], pa.string())),
            "value": pa.DictionaryArray.from_arrays(which, pa.array([v for _, v, _ in rows], pa.string())),
            "value_num": pa.array(num, pa.float64(), mask=np.isnan(num)),
            "profile_idx": pa.array(ids.astype(np.int32), pa.int32()),
            "added": pa.array(np.full(len(ids), added), pa.bool_()),
        }
    )


def write_new(cur: duckdb.DuckDBPyConnection, produced: Bitmaps) -> None:
    """Add bitmaps a computer produced to ``_tag_new`` as rows (for a preview)."""
    rows = [(k, v, bm) for k, vs in produced.items() for v, bm in vs.items() if bm]
    if rows:
        cur.register("_tag_rows_in", _rows_table(rows, True))
        try:
            cur.execute(f"INSERT INTO {NEW} SELECT tag_key, profile_idx, value FROM _tag_rows_in")  # noqa: S608 - fixed names
        finally:
            cur.unregister("_tag_rows_in")


def _write_rows(
    cur: duckdb.DuckDBPyConnection, removed: list[tuple[str, str, BitMap]], added: list[tuple[str, str, BitMap]],
    *, at: datetime, run_no: int,
) -> None:  # fmt: skip
    if removed:
        cur.register("_tag_removed", _rows_table(removed, False))
        try:
            cur.execute(
                """DELETE FROM profile_tags t USING _tag_removed r
                WHERE t.profile_idx = r.profile_idx AND t.tag_key = r.tag_key AND t.value = r.value"""
            )
            cur.execute(
                """INSERT INTO tag_changes (tag_key, profile_idx, value, value_num, added, changed_at, run_no)
                SELECT tag_key, profile_idx, value, value_num, false, $at, $run FROM _tag_removed""",
                {"at": at, "run": run_no},
            )
        finally:
            cur.unregister("_tag_removed")
    if added:
        cur.register("_tag_added", _rows_table(added, True))
        try:
            cur.execute(
                """INSERT INTO profile_tags (profile_idx, tag_key, value, value_num, updated_at)
                SELECT profile_idx, tag_key, value, value_num, $at FROM _tag_added""",
                {"at": at},
            )
            cur.execute(
                """INSERT INTO tag_changes (tag_key, profile_idx, value, value_num, added, changed_at, run_no)
                SELECT tag_key, profile_idx, value, value_num, true, $at, $run FROM _tag_added""",
                {"at": at, "run": run_no},
            )
        finally:
            cur.unregister("_tag_added")


def _store_bitmaps(cur: duckdb.DuckDBPyConnection, values: Bitmaps, *, at: datetime, run_no: int) -> None:
    keys = list(values)
    cur.execute("DELETE FROM tag_bitmaps WHERE list_contains($k, tag_key)", {"k": keys})
    cur.execute("DELETE FROM tag_state WHERE list_contains($k, tag_key)", {"k": keys})
    rows = [(k, v, bm.serialize()) for k, vs in values.items() for v, bm in vs.items()]
    if rows:
        table = pa.table({"tag_key": [r[0] for r in rows], "value": [r[1] for r in rows],
                          "profiles": pa.array([r[2] for r in rows], pa.binary())})  # fmt: skip
        cur.register("_tag_bm", table)
        try:
            cur.execute("INSERT INTO tag_bitmaps SELECT tag_key, value, profiles FROM _tag_bm")
        finally:
            cur.unregister("_tag_bm")
    cur.executemany("INSERT INTO tag_state VALUES (?, ?, ?)", [[k, run_no, at] for k in keys])


def forget_bitmaps(cur: duckdb.DuckDBPyConnection, keys: Sequence[str] | None = None) -> None:
    """Drop the stored bitmaps of ``keys`` (all when None) after writing ``profile_tags`` another
    way: the next swap reads the rows back instead."""
    if keys is None:
        cur.execute("DELETE FROM tag_bitmaps")
        cur.execute("DELETE FROM tag_state")
    else:
        cur.execute("DELETE FROM tag_bitmaps WHERE list_contains($k, tag_key)", {"k": list(keys)})
        cur.execute("DELETE FROM tag_state WHERE list_contains($k, tag_key)", {"k": list(keys)})


def _record(cur: duckdb.DuckDBPyConnection, tag: Tag, r: RunResult, *, run_no: int, batch: str) -> None:
    cur.execute(
        "INSERT INTO tag_runs VALUES ($id, $no, $batch, $key, $ver, $kind, $trigger, $status, $start, $end, "
        "$rows, $profiles, $added, $removed, $error, $details)",
        {"id": r.run_id, "no": run_no, "batch": batch, "key": tag.key, "ver": tag.version, "kind": tag.kind,
         "trigger": r.trigger, "status": r.status, "start": _naive(r.started_at), "end": _naive(r.finished_at),
         "rows": r.rows, "profiles": r.profiles, "added": r.added, "removed": r.removed, "error": r.error,
         "details": json.dumps(r.details, ensure_ascii=False, default=str)},
    )  # fmt: skip


def record_failure(
    cur: duckdb.DuckDBPyConnection, tags: Sequence[Tag], *, trigger: str, started_at: datetime, now: datetime,
    error: str,
) -> list[RunResult]:  # fmt: skip
    """Record a failed run of each tag (nothing was swapped)."""
    run_no = _next_run(cur)
    batch = uuid.uuid4().hex[:12]
    out = []
    for t in tags:
        r = RunResult(run_id=uuid.uuid4().hex[:16], tag_key=t.key, trigger=trigger, status="failed",
                      started_at=started_at, finished_at=now, error=error[:2000])  # fmt: skip
        _record(cur, t, r, run_no=run_no, batch=batch)
        out.append(r)
    return out


# -- static values -----------------------------------------------------------------------------------
Op = Literal["add", "remove", "replace"]


def stage_assignment(cur: duckdb.DuckDBPyConnection, tag: Tag, rows: Sequence[tuple[int, str | None]], op: Op) -> bool:
    """Fill ``_tag_new`` (and ``_tag_scope``) with the tag's values after applying ``rows``.

    ``add``: the value is added (a single-valued tag's value replaced); ``remove``: the value is
    removed (``None``: every value of the tag); ``replace``: ``rows`` are the complete values, every
    profile not listed loses the tag. Returns whether the swap is scoped (not for ``replace``)."""
    create_new_table(cur)
    if op == "replace":
        table = pa.table({"profile_idx": pa.array([r[0] for r in rows], pa.int32()),
                          "value": pa.array([r[1] for r in rows], pa.string())})  # fmt: skip
        cur.register("_tag_rows", table)
        try:
            cur.execute(f"INSERT INTO {NEW} SELECT $key, profile_idx, value FROM _tag_rows", {"key": tag.key})  # noqa: S608
        finally:
            cur.unregister("_tag_rows")
        return False
    # The scope's values now (from the stored bitmaps, not a scan of profile_tags), then the rows in order.
    scope = BitMap(r[0] for r in rows)
    create_scope_table(cur, list(scope))
    current = {v: bm & scope for v, bm in _read_old(cur, [tag.key])[tag.key].items()}
    for idx, value in rows:
        if op == "remove" and value is not None:
            current.get(value, BitMap()).discard(idx)
            continue
        if op == "remove" or not tag.multi:  # remove every value; or a single value is replaced
            for bm in current.values():
                bm.discard(idx)
        if op == "add" and value is not None:
            current.setdefault(value, BitMap()).add(idx)
    write_new(cur, {tag.key: current})
    return True


# -- reading values and history ----------------------------------------------------------------------
def profile_tags(cur: duckdb.DuckDBPyConnection, profile_idx: int) -> list[tuple[str, str, datetime]]:
    """(tag_key, value, updated_at) of one profile, by key and value."""
    rows = cur.execute(
        "SELECT tag_key, value, updated_at FROM profile_tags WHERE profile_idx = $p ORDER BY tag_key, value",
        {"p": profile_idx},
    ).fetchall()
    return [(k, v, as_utc(t)) for k, v, t in rows]


def end_of_day(day: date, tz: str) -> datetime:
    """The first instant after ``day`` in the time zone ``tz`` (the cut-off of "on day D")."""
    return datetime.combine(day + timedelta(days=1), datetime.min.time(), ZoneInfo(tz))


def holders_at(
    cur: duckdb.DuckDBPyConnection, tag_key: str, at: datetime, *, value: str | None = None, limit: int = 100,
) -> tuple[int, list[str]]:  # fmt: skip
    """How many profiles had the tag (the value, when given) just before ``at``, and some of their
    profile ids (the ones that still exist, by id)."""
    base = """SELECT profile_idx FROM (
            SELECT profile_idx, value FROM tag_changes
            WHERE tag_key = $key AND changed_at < $at AND (CAST($value AS VARCHAR) IS NULL OR value = $value)
            GROUP BY profile_idx, value HAVING arg_max(added, run_no))
        GROUP BY profile_idx"""
    params = {"key": tag_key, "at": _naive(at), "value": value}
    total = int(cur.execute(f"SELECT count(*) FROM ({base})", params).fetchall()[0][0])  # noqa: S608
    ids = cur.execute(
        f"SELECT p.profile_id FROM ({base}) h JOIN profiles p USING (profile_idx) ORDER BY p.profile_id LIMIT $lim",  # noqa: S608
        params | {"lim": limit},
    ).fetchall()
    return total, [r[0] for r in ids]


def trend(
    cur: duckdb.DuckDBPyConnection, tag_key: str, *, since: date, until: date, tz: str, value: str | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Per local day in [since, until] and per value: how many profiles held it at the end of that day."""
    start, stop = end_of_day(since - timedelta(days=1), tz), end_of_day(until, tz)
    rows = cur.execute(
        """WITH ch AS (
            SELECT value, CASE WHEN added THEN 1 ELSE -1 END AS delta,
                   CASE WHEN changed_at < $start THEN CAST($since AS DATE)
                        ELSE CAST(timezone($tz, CAST(changed_at AS TIMESTAMPTZ)) AS DATE) END AS day
            FROM tag_changes
            WHERE tag_key = $key AND changed_at < $stop AND (CAST($value AS VARCHAR) IS NULL OR value = $value)),
        per_day AS (SELECT value, day, sum(delta) AS delta FROM ch GROUP BY ALL),
        days AS (SELECT CAST(d AS DATE) AS day FROM range(CAST($since AS DATE), CAST($until AS DATE) + 1, INTERVAL 1 DAY) r(d)),
        vals AS (SELECT DISTINCT value FROM per_day)
        SELECT d.day, v.value, CAST(sum(coalesce(p.delta, 0)) OVER (PARTITION BY v.value ORDER BY d.day) AS BIGINT)
        FROM days d CROSS JOIN vals v LEFT JOIN per_day p ON p.day = d.day AND p.value = v.value
        ORDER BY d.day, v.value""",
        {"key": tag_key, "start": _naive(start), "stop": _naive(stop), "since": since, "until": until, "tz": tz,
         "value": value},
    ).fetchall()  # fmt: skip
    return [{"day": d, "value": v, "profiles": n} for d, v, n in rows]


def runs(cur: duckdb.DuckDBPyConnection, tag_key: str, *, limit: int = 50) -> list[dict[str, Any]]:
    cols = ("run_id", "batch_id", "trigger", "status", "started_at", "finished_at", "rows", "profiles", "added",
            "removed", "error", "details", "tag_version")  # fmt: skip
    rows = cur.execute(
        f"SELECT {', '.join(cols)} FROM tag_runs WHERE tag_key = $key ORDER BY run_no DESC LIMIT $lim",  # noqa: S608
        {"key": tag_key, "lim": limit},
    ).fetchall()
    out = []
    for r in rows:
        d = dict(zip(cols, r, strict=True))
        d["started_at"], d["finished_at"] = as_utc(d["started_at"]), as_utc(d["finished_at"])
        d["details"] = json.loads(d["details"]) if d["details"] else {}
        out.append(d)
    return out


def coverage(cur: duckdb.DuckDBPyConnection, tag_key: str, *, top: int = 50) -> dict[str, Any]:
    """Profiles holding a value, their share of all profiles, and the distribution of values."""
    total = int(cur.execute("SELECT count(*) FROM profiles").fetchall()[0][0])
    holders = int(
        cur.execute(
            "SELECT count(DISTINCT profile_idx) FROM profile_tags WHERE tag_key = $k", {"k": tag_key}
        ).fetchall()[0][0]
    )
    dist = cur.execute(
        """SELECT value, count(*) AS n FROM profile_tags WHERE tag_key = $k
        GROUP BY value ORDER BY n DESC, value LIMIT $top""",
        {"k": tag_key, "top": top},
    ).fetchall()
    return {
        "profiles": total,
        "holders": holders,
        "coverage": holders / total if total else 0.0,
        "values": [{"value": v, "profiles": int(n), "share": n / holders if holders else 0.0} for v, n in dist],
    }


def carry_over(cur: duckdb.DuckDBPyConnection, merges: str, *, now: datetime) -> None:
    """When profiles merge, the survivor keeps its own tag values and takes each tag it lacks from
    the merged-away profiles (the earliest-created one's, for several); history records both sides.

    ``merges`` is a table of (loser, survivor) profile indexes; called in the merge's transaction.
    Computed tags settle at their next run; static values would otherwise be lost."""
    cur.execute(
        f"""CREATE OR REPLACE TEMP TABLE _tag_merge AS
        SELECT t.tag_key, t.profile_idx AS loser, m.survivor, t.value, t.value_num
        FROM profile_tags t JOIN {merges} m ON t.profile_idx = m.loser"""  # noqa: S608 - fixed names
    )
    if not cur.execute("SELECT count(*) FROM _tag_merge").fetchall()[0][0]:
        cur.execute("DROP TABLE _tag_merge")
        return
    at = _naive(now)
    run_no = _next_run(cur)
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE _tag_moved AS
        SELECT survivor AS profile_idx, tag_key, value, value_num FROM _tag_merge g
        WHERE NOT EXISTS (SELECT 1 FROM profile_tags t WHERE t.profile_idx = g.survivor AND t.tag_key = g.tag_key)
        QUALIFY dense_rank() OVER (PARTITION BY survivor, tag_key ORDER BY loser) = 1"""
    )
    cur.execute(
        """INSERT INTO tag_changes (tag_key, profile_idx, value, value_num, added, changed_at, run_no)
        SELECT tag_key, loser, value, value_num, false, $at, $run FROM _tag_merge
        UNION ALL SELECT tag_key, profile_idx, value, value_num, true, $at, $run FROM _tag_moved""",
        {"at": at, "run": run_no},
    )
    cur.execute(f"DELETE FROM profile_tags WHERE profile_idx IN (SELECT loser FROM {merges})")  # noqa: S608 - fixed names
    cur.execute(
        "INSERT INTO profile_tags (profile_idx, tag_key, value, value_num, updated_at) "
        "SELECT profile_idx, tag_key, value, value_num, $at FROM _tag_moved",
        {"at": at},
    )
    touched = [r[0] for r in cur.execute("SELECT DISTINCT tag_key FROM _tag_merge").fetchall()]
    forget_bitmaps(cur, touched)
    cur.execute("DROP TABLE _tag_merge")
    cur.execute("DROP TABLE _tag_moved")
    analytic.changed(cur, *tables_of(touched), "tag_changes")
