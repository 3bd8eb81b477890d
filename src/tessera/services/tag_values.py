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
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

import duckdb
import pyarrow as pa

from tessera.clock import as_utc
from tessera.domain.tags import Tag
from tessera.stores import analytic

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


def swap(
    cur: duckdb.DuckDBPyConnection,
    tags: Sequence[Tag],
    *,
    trigger: str,
    started_at: datetime,
    now: datetime,
    scoped: bool = False,
    details: dict[str, dict[str, Any]] | None = None,
) -> list[RunResult]:
    """Write the difference between ``_tag_new`` and the stored values of ``tags`` (only the
    profiles in ``_tag_scope`` when ``scoped``) and record one run per tag. Call inside
    ``AnalyticStore.transaction(cur)``: the swap is atomic with it.

    Values are cleaned first: rows without a profile or value are dropped, values trimmed and
    duplicates removed; rows of profiles that no longer exist are dropped. Raises
    :class:`TagRunError` when a single-valued tag got two values for one profile.
    """
    keys = [t.key for t in tags]
    by_key = {t.key: t for t in tags}
    cur.execute("CREATE OR REPLACE TEMP TABLE _tag_keys (tag_key VARCHAR)")
    cur.executemany("INSERT INTO _tag_keys VALUES (?)", [[k] for k in keys])

    def in_scope(alias: str) -> str:
        return f"AND {alias}.profile_idx IN (SELECT profile_idx FROM {SCOPE})" if scoped else ""  # noqa: S608 - fixed names

    cur.execute(
        f"""CREATE OR REPLACE TEMP TABLE _tag_clean AS
        SELECT DISTINCT n.tag_key, n.profile_idx, trim(n.value) AS value
        FROM {NEW} n SEMI JOIN _tag_keys k ON k.tag_key = n.tag_key
        WHERE n.profile_idx IS NOT NULL AND n.value IS NOT NULL AND trim(n.value) <> ''
          AND n.profile_idx IN (SELECT profile_idx FROM profiles) {in_scope("n")}"""  # noqa: S608 - fixed names
    )
    single = [k for k in keys if not by_key[k].multi]
    if single:
        row = cur.execute(
            """SELECT c.tag_key, c.profile_idx, list(c.value ORDER BY c.value)[:3] FROM _tag_clean c
            WHERE list_contains($single, c.tag_key) GROUP BY ALL HAVING count(*) > 1 LIMIT 1""",
            {"single": single},
        ).fetchone()
        if row is not None:
            raise TagRunError(
                f"tag {row[0]!r} is single-valued but profile_idx {row[1]} got several values: {', '.join(row[2])}"
            )
    cur.execute(
        f"""CREATE OR REPLACE TEMP TABLE _tag_old AS
        SELECT t.tag_key, t.profile_idx, t.value FROM profile_tags t SEMI JOIN _tag_keys k ON k.tag_key = t.tag_key
        WHERE true {in_scope("t")}"""  # noqa: S608 - fixed names
    )
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE _tag_diff AS
        SELECT *, true AS added FROM (SELECT * FROM _tag_clean EXCEPT SELECT * FROM _tag_old)
        UNION ALL
        SELECT *, false AS added FROM (SELECT * FROM _tag_old EXCEPT SELECT * FROM _tag_clean)"""
    )
    at = _naive(now)
    run_no = int(cur.execute("SELECT nextval('tag_run_seq')").fetchone()[0])  # type: ignore[index]
    cur.execute(
        """DELETE FROM profile_tags t USING _tag_diff d
        WHERE NOT d.added AND t.tag_key = d.tag_key AND t.profile_idx = d.profile_idx AND t.value = d.value"""
    )
    cur.execute(
        """INSERT INTO profile_tags (profile_idx, tag_key, value, value_num, updated_at)
        SELECT profile_idx, tag_key, value, TRY_CAST(value AS DOUBLE), $at FROM _tag_diff WHERE added""",
        {"at": at},
    )
    cur.execute(
        """INSERT INTO tag_changes (tag_key, profile_idx, value, value_num, added, changed_at, run_no)
        SELECT tag_key, profile_idx, value, TRY_CAST(value AS DOUBLE), added, $at, $run FROM _tag_diff""",
        {"at": at, "run": run_no},
    )
    counts = {
        r[0]: r[1:]
        for r in cur.execute(
            """SELECT k.tag_key,
                (SELECT count(*) FROM _tag_clean c WHERE c.tag_key = k.tag_key),
                (SELECT count(DISTINCT c.profile_idx) FROM _tag_clean c WHERE c.tag_key = k.tag_key),
                (SELECT count(*) FILTER (WHERE d.added) FROM _tag_diff d WHERE d.tag_key = k.tag_key),
                (SELECT count(*) FILTER (WHERE NOT d.added) FROM _tag_diff d WHERE d.tag_key = k.tag_key)
            FROM _tag_keys k"""
        ).fetchall()
    }
    batch = uuid.uuid4().hex[:12]
    results = []
    for t in tags:
        rows, profiles, added, removed = (int(x) for x in counts[t.key])
        result = RunResult(
            run_id=uuid.uuid4().hex[:16], tag_key=t.key, trigger=trigger, status="succeeded", started_at=started_at,
            finished_at=now, rows=rows, profiles=profiles, added=added, removed=removed,
            details=(details or {}).get(t.key, {}) | ({"scoped": True} if scoped else {}),
        )  # fmt: skip
        _record(cur, t, result, run_no=run_no, batch=batch)
        results.append(result)
    for tmp in ("_tag_clean", "_tag_old", "_tag_diff", "_tag_keys"):
        cur.execute(f"DROP TABLE IF EXISTS {tmp}")
    analytic.changed(cur, "profile_tags", "tag_changes")
    return results


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
    run_no = int(cur.execute("SELECT nextval('tag_run_seq')").fetchone()[0])  # type: ignore[index]
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
    table = pa.table(
        {
            "profile_idx": pa.array([r[0] for r in rows], pa.int32()),
            "value": pa.array([r[1] for r in rows], pa.string()),
        }
    )
    cur.register("_tag_rows", table)
    try:
        if op == "replace":
            cur.execute(f"INSERT INTO {NEW} SELECT $key, profile_idx, value FROM _tag_rows", {"key": tag.key})  # noqa: S608
            return False
        create_scope_table(cur, [r[0] for r in rows])
        keep = "t.value <> ALL (SELECT r.value FROM _tag_rows r WHERE r.profile_idx = t.profile_idx)"
        if op == "remove":
            keep = (
                "NOT EXISTS (SELECT 1 FROM _tag_rows r WHERE r.profile_idx = t.profile_idx "
                "AND (r.value IS NULL OR r.value = t.value))"
            )
        elif not tag.multi:
            keep = "false"  # the new value replaces the old one
        cur.execute(
            f"""INSERT INTO {NEW} SELECT t.tag_key, t.profile_idx, t.value FROM profile_tags t
            WHERE t.tag_key = $key AND t.profile_idx IN (SELECT profile_idx FROM {SCOPE}) AND {keep}""",  # noqa: S608
            {"key": tag.key},
        )
        if op == "add":
            last = "" if tag.multi else "QUALIFY row_number() OVER (PARTITION BY profile_idx ORDER BY _n DESC) = 1"
            cur.execute(
                f"""INSERT INTO {NEW} SELECT $key, profile_idx, value
                FROM (SELECT *, row_number() OVER () AS _n FROM _tag_rows) WHERE value IS NOT NULL {last}""",  # noqa: S608
                {"key": tag.key},
            )
        return True
    finally:
        cur.unregister("_tag_rows")


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
    total = int(cur.execute(f"SELECT count(*) FROM ({base})", params).fetchone()[0])  # type: ignore[index]  # noqa: S608
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
    total = int(cur.execute("SELECT count(*) FROM profiles").fetchone()[0])  # type: ignore[index]
    holders = int(
        cur.execute(
            "SELECT count(DISTINCT profile_idx) FROM profile_tags WHERE tag_key = $k", {"k": tag_key}
        ).fetchone()[0]  # type: ignore[index]
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
    if not cur.execute("SELECT count(*) FROM _tag_merge").fetchone()[0]:  # type: ignore[index]
        cur.execute("DROP TABLE _tag_merge")
        return
    at = _naive(now)
    run_no = int(cur.execute("SELECT nextval('tag_run_seq')").fetchone()[0])  # type: ignore[index]
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
    cur.execute("DROP TABLE _tag_merge")
    cur.execute("DROP TABLE _tag_moved")
    analytic.changed(cur, "profile_tags", "tag_changes")
