"""Purchases and activity per profile (购买与活跃): the facts the value and lifecycle models share.

**A purchase** is a qualifying row of ``orders`` — status not cancelled or refunded
(:data:`EXCLUDED_STATUSES`, compared trimmed and lower-cased; no status counts) — or an
``Order Completed`` event (``revenue`` its amount, 0 when missing). They are de-duplicated by
``order_id``: an order id present in ``orders`` is decided by that row alone (so a refund recorded
there also cancels the event's purchase); events whose order id is not in ``orders`` count once per
order id (the earliest); events without an order id (or an empty one) count each.
Rows reach profiles through their observation (``identity_idx`` → ``identity_links.obs_idx``), never
a stored profile id: a merge or unmerge moves purchases with the observation.

**Activity** is the time of the latest non-system event (``source_id`` ≠ 0) per observation, for
events since a horizon the models ask for (lifecycle: its longest threshold; AIPL: awareness).
Folds append a row per observation seen (readers take the latest); a rebuild leaves one.

Both live in tables (``tag_purchases``, ``tag_activity``; ``tag_model_state`` says how far they have
got) kept by observation, so that an incremental run (``ComputeContext.incremental``) folds in only:

- events appended since (``events.rowid`` above the stored watermark: the loader only appends, one
  writer at a time, so rows committed later have larger rowids — late-arriving events with old
  timestamps included);
- ``orders`` rows of imports not folded yet (an import re-stamps ``import_id`` on every row it
  inserts or changes, so a status changed to refunded is seen), and rows without an import id.

A full run (``incremental=False``, except previews) rebuilds the part it needs from scratch —
unless the last change to it was a rebuild and its inputs (events, orders, identity rebuilds) are
unchanged since, when a rebuild would give the same rows (the second model of one run). An
incremental run (or a preview) rebuilds when there is no state, after an identity rebuild
(``identity_log`` action ``rebuild``: re-extraction may renumber observations), when events were
deleted (fewer rows up to the watermark), when the state was rebuilt more than
:data:`REBUILD_DAYS` days ago (a safety net), or (activity) when a longer horizon is asked for.

Days are local calendar days in the workspace time zone: ``days_since(t) = today - local_date(t)``
(0 = today). "At least D days ago" is ``t < cutoff(D)``, the UTC instant of local midnight starting
day ``today - D + 1``; "within the last N days" is ``t >= cutoff(N)`` — UTC comparisons, exact in
any zone. Purchases and events after now are ignored.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
from pyroaring import BitMap

from tessera.services.tag_values import grouped
from tessera.stores.profile_columns import bitmap_of

if TYPE_CHECKING:
    import duckdb

    from tessera.services.tag_runs import ComputeContext

ORDER_COMPLETED = "Order Completed"
#: Order statuses that do not count as purchases (compared with ``lower(trim(status))``).
EXCLUDED_STATUSES = ("cancelled", "canceled", "refunded", "已取消", "已退款")
#: An incremental run rebuilds state older than this (catches what folding cannot see).
REBUILD_DAYS = 7

PURCHASES = "purchases"
ACTIVITY = "activity"


# -- days -------------------------------------------------------------------------------------------
def cutoff(ctx: ComputeContext, days: int) -> datetime:
    """Naive UTC start of local day ``today - days + 1``: ``t < cutoff`` ⇔ ``days_since(t) >= days``."""
    day = ctx.eval.today - timedelta(days=days - 1)
    return datetime.combine(day, dtime(), ctx.eval.zone).astimezone(UTC).replace(tzinfo=None)


def end_of_today(ctx: ComputeContext) -> datetime:
    """Naive UTC end of the local today (``cutoff(ctx, 0)``): later times are in the future."""
    return cutoff(ctx, 0)


#: ``local_date(col)`` in SQL for a zone with one UTC offset over the data (``$tz_offset`` seconds).
LOCAL_DAY_FIXED = "CAST({col} + to_seconds($tz_offset) AS DATE)"
#: … and for a zone whose offset changes: ``$tz_starts`` the change instants (UTC), ``$tz_offsets``
#: the offset before the first change, then after each.
LOCAL_DAY_CHANGING = (
    "CAST({col} + to_seconds($tz_offsets[1 + len(list_filter($tz_starts, lambda s: s <= {col}))]) AS DATE)"
)


def local_day(col: str, ctx: ComputeContext, since: datetime | None) -> tuple[str, dict[str, Any]]:
    """SQL for the local date of the naive-UTC timestamp column ``col`` (a fixed column name) and
    its parameters, exact for times from ``since`` to now (DuckDB's ``timezone()`` is ~10x slower)."""
    zone = ctx.eval.zone
    start = since or ctx.eval.now_utc
    starts, offsets = _offset_changes(zone, start - timedelta(days=1), ctx.eval.now_utc + timedelta(days=2))
    if not starts:
        return LOCAL_DAY_FIXED.format(col=col), {"tz_offset": offsets[0]}
    return LOCAL_DAY_CHANGING.format(col=col), {"tz_starts": starts, "tz_offsets": offsets}


def _offset(zone: ZoneInfo, t: datetime) -> int:
    off = t.replace(tzinfo=UTC).astimezone(zone).utcoffset()
    return int(off.total_seconds()) if off is not None else 0


def _offset_changes(zone: ZoneInfo, lo: datetime, hi: datetime) -> tuple[list[datetime], list[int]]:
    """The instants (naive UTC, to the second) in [lo, hi] where ``zone``'s offset changes, and the
    offsets: before the first change, then after each."""
    offsets = [_offset(zone, lo)]
    starts: list[datetime] = []
    step = timedelta(hours=12)
    t = lo
    while t < hi:
        nxt = min(t + step, hi)
        if _offset(zone, nxt) != offsets[-1]:
            a, b = t, nxt  # offset(a) = current, offset(b) differs: bisect to the second
            while b - a > timedelta(seconds=1):
                mid = a + (b - a) / 2
                if _offset(zone, mid) == offsets[-1]:
                    a = mid
                else:
                    b = mid
            b = b.replace(microsecond=0) if _offset(zone, b.replace(microsecond=0)) != offsets[-1] else b
            starts.append(b)
            offsets.append(_offset(zone, b))
        t = nxt
    return starts, offsets


# -- state ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class State:
    built_at: datetime
    updated_at: datetime
    events_rowid: int
    events_rows: int
    orders_rows: int
    rebuild_seq: int
    since: datetime | None
    rebuilt: bool


def state(cur: duckdb.DuckDBPyConnection, part: str) -> State | None:
    row = cur.execute(
        """SELECT built_at, updated_at, events_rowid, events_rows, orders_rows, rebuild_seq, since, rebuilt
        FROM tag_model_state WHERE part = $part""",
        {"part": part},
    ).fetchall()
    return State(*row[0]) if row else None


@dataclass(frozen=True)
class Inputs:
    """What the state is made from, as the refreshing transaction sees it."""

    events_rowid: int  # the largest events rowid (−1: none)
    events_rows: int
    orders_rows: int  # 0 for the activity
    rebuild_seq: int  # the latest identity rebuild's identity_log seq (0: none)
    old_events_rows: int | None  # events with a rowid up to the stored watermark (None: no state)
    unfolded_orders: int  # orders of imports not folded yet, or without an import id


def _inputs(cur: duckdb.DuckDBPyConnection, st: State | None, *, orders: bool) -> Inputs:
    one = lambda sql, params=None: int(cur.execute(sql, params or {}).fetchall()[0][0])  # noqa: E731
    return Inputs(
        events_rowid=one("SELECT coalesce(max(rowid), -1) FROM events"),
        events_rows=one("SELECT count(*) FROM events"),
        orders_rows=one("SELECT count(*) FROM orders") if orders else 0,
        rebuild_seq=one("SELECT coalesce(max(seq), 0) FROM identity_log WHERE action = 'rebuild'"),
        old_events_rows=None
        if st is None
        else one("SELECT count(*) FROM events WHERE rowid <= $w", {"w": st.events_rowid}),
        unfolded_orders=one(
            """SELECT count(*) FROM orders
            WHERE import_id IS NULL OR import_id NOT IN (SELECT import_id FROM tag_purchase_imports)"""
        )
        if orders
        else 0,
    )


def _plan(ctx: ComputeContext, st: State | None, inp: Inputs, since: datetime | None = None) -> tuple[str, str | None]:
    """("rebuild", why) | ("fold", None) | ("keep", why): what to do with a part's state."""
    broken = None
    if st is not None:
        if inp.rebuild_seq != st.rebuild_seq:
            broken = "identity rebuilt since"
        elif inp.events_rowid < st.events_rowid or inp.old_events_rows != st.events_rows:
            broken = "events deleted since"
        elif st.since is not None and (since is None or since < st.since):
            broken = "longer horizon asked for"
    if not ctx.incremental and ctx.trigger != "preview":  # a preview updates the state, as cheaply as it can
        unchanged = (
            st is not None and st.rebuilt and broken is None and inp.events_rowid == st.events_rowid
            and inp.events_rows == st.events_rows and inp.orders_rows == st.orders_rows and not inp.unfolded_orders
        )  # fmt: skip
        if unchanged:  # a rebuild would give the same rows (e.g. the second model of one run)
            return "keep", "rebuilt by an earlier full run; its events, orders and identities are unchanged"
        return "rebuild", "full run"
    if st is None:
        return "rebuild", "no state yet"
    if broken:
        return "rebuild", broken
    if st.built_at < ctx.eval.now_utc - timedelta(days=REBUILD_DAYS):
        return "rebuild", f"state older than {REBUILD_DAYS} days"
    return "fold", None


def _save(cur: duckdb.DuckDBPyConnection, part: str, ctx: ComputeContext, *, action: str, inp: Inputs,
          since: datetime | None, old: State | None) -> None:  # fmt: skip
    now = ctx.eval.now_utc
    rebuilt = action == "rebuild" or (action == "keep" and old is not None and old.rebuilt)
    built = now if action == "rebuild" or old is None else old.built_at
    cur.execute("DELETE FROM tag_model_state WHERE part = $part", {"part": part})
    cur.execute(
        """INSERT INTO tag_model_state (part, built_at, updated_at, events_rowid, events_rows, orders_rows,
                                        rebuild_seq, since, rebuilt)
        VALUES ($part, $built, $now, $rowid, $rows, $orders, $seq, $since, $rebuilt)""",
        {"part": part, "built": built, "now": now, "rowid": inp.events_rowid, "rows": inp.events_rows,
         "orders": inp.orders_rows, "seq": inp.rebuild_seq, "since": since, "rebuilt": rebuilt},
    )  # fmt: skip


_DONE = {"rebuild": "rebuilt", "fold": "updated", "keep": "kept"}


def _order_completed(cur: duckdb.DuckDBPyConnection) -> int | None:
    row = cur.execute("SELECT event_id FROM event_names WHERE name = $n", {"n": ORDER_COMPLETED}).fetchall()
    return int(row[0][0]) if row else None


# -- purchases --------------------------------------------------------------------------------------
_COLUMNS = "order_id, obs_idx, bought_at, amount, from_orders"
#: Events with an order id: the earliest counts (ties: the lower observation, the smaller amount).
_EARLIEST = "QUALIFY row_number() OVER (PARTITION BY order_id ORDER BY bought_at, obs_idx, amount) = 1"


def refresh_purchases(cur: duckdb.DuckDBPyConnection, ctx: ComputeContext) -> dict[str, Any]:
    """Bring ``tag_purchases`` up to date (rebuilt or folded, see the module text); what was done."""
    started = time.perf_counter()
    orders = events = 0
    with ctx.inst.analytic.transaction(cur):
        old = state(cur, PURCHASES)
        inp = _inputs(cur, old, orders=True)
        action, why = _plan(ctx, old, inp)
        if action == "rebuild":
            cur.execute("DELETE FROM tag_purchases")
            cur.execute("DELETE FROM tag_purchase_imports")
            orders = _fold_orders(cur, everything=True)
            events = _fold_events(cur, lo=None, hi=inp.events_rowid)
        elif action == "fold" and old is not None:
            orders = _fold_orders(cur, everything=False) if inp.unfolded_orders else 0
            events = _fold_events(cur, lo=old.events_rowid, hi=inp.events_rowid)
        _save(cur, PURCHASES, ctx, action=action, inp=inp, since=None, old=old)
    return {
        "purchases": _DONE[action],
        **({"purchases_reason": why} if why else {}),
        "orders_folded": orders,
        "events_folded": events,
        "purchases_seconds": round(time.perf_counter() - started, 3),
    }


_QUALIFYING = "identity_idx IS NOT NULL AND (status IS NULL OR NOT list_contains($excluded, lower(trim(status))))"


def _fold_orders(cur: duckdb.DuckDBPyConnection, *, everything: bool) -> int:
    """Orders of imports not folded yet replace whatever their ids had (``everything``: all orders,
    into an empty table)."""
    excluded = {"excluded": list(EXCLUDED_STATUSES)}
    if everything:
        cur.execute(
            f"""INSERT INTO tag_purchases ({_COLUMNS})
            SELECT order_id, identity_idx, ordered_at, total, true FROM orders WHERE {_QUALIFYING}""",  # noqa: S608 - fixed SQL
            excluded,
        )
        cur.execute(
            "INSERT INTO tag_purchase_imports SELECT DISTINCT import_id FROM orders WHERE import_id IS NOT NULL"
        )
        return int(cur.execute("SELECT count(*) FROM orders").fetchall()[0][0])
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE _tp_orders AS
        SELECT order_id, identity_idx, ordered_at, total, status, import_id FROM orders
        WHERE import_id IS NULL OR import_id NOT IN (SELECT import_id FROM tag_purchase_imports)"""
    )
    n = int(cur.execute("SELECT count(*) FROM _tp_orders").fetchall()[0][0])
    if n:
        cur.execute("DELETE FROM tag_purchases WHERE order_id IN (SELECT order_id FROM _tp_orders)")
        cur.execute(
            f"""INSERT INTO tag_purchases ({_COLUMNS})
            SELECT order_id, identity_idx, ordered_at, total, true FROM _tp_orders WHERE {_QUALIFYING}""",  # noqa: S608 - fixed SQL
            excluded,
        )
        cur.execute(
            """INSERT INTO tag_purchase_imports
            SELECT DISTINCT import_id FROM _tp_orders WHERE import_id IS NOT NULL
            EXCEPT SELECT import_id FROM tag_purchase_imports"""
        )
    cur.execute("DROP TABLE _tp_orders")
    return n


#: Order Completed events (``$eid``) not decided by ``orders``, as purchase rows; ``{rows}`` limits
#: them to the rowids being folded (nothing in a rebuild: the transaction sees none beyond ``hi``).
_EVENT_PURCHASES = """CREATE OR REPLACE TEMP TABLE _tp_new AS
    SELECT nullif(e.order_id, '') AS order_id, e.identity_idx AS obs_idx, e."timestamp" AS bought_at,
           CAST(coalesce(e.revenue, 0) AS DECIMAL(18, 2)) AS amount, false AS from_orders
    FROM events e ANTI JOIN orders o ON o.order_id = nullif(e.order_id, '')
    WHERE e.event_id = $eid AND e.identity_idx IS NOT NULL {rows}"""


def _fold_events(cur: duckdb.DuckDBPyConnection, *, lo: int | None, hi: int) -> int:
    """Order Completed events with ``lo < rowid <= hi`` (``lo`` None: all; each row is folded once):
    those without an order id count each; an order id keeps its earliest event (among the stored
    one and the new ones); order ids known to ``orders`` are left to it."""
    event_id = _order_completed(cur)
    if event_id is None or (lo is not None and hi <= lo):
        return 0
    if lo is None:
        cur.execute(_EVENT_PURCHASES.format(rows=""), {"eid": event_id})
    else:
        cur.execute(
            _EVENT_PURCHASES.format(rows="AND e.rowid > $lo AND e.rowid <= $hi"), {"eid": event_id, "lo": lo, "hi": hi}
        )
    n = int(cur.execute("SELECT count(*) FROM _tp_new").fetchall()[0][0])
    if n and lo is not None:  # an incremental fold: the stored purchases of the same order ids compete
        cur.execute(
            """CREATE OR REPLACE TEMP TABLE _tp_old AS
            SELECT p.* FROM tag_purchases p SEMI JOIN _tp_new n ON p.order_id = n.order_id"""
        )
        if int(cur.execute("SELECT count(*) FROM _tp_old").fetchall()[0][0]):
            cur.execute(f"INSERT INTO _tp_new SELECT {_COLUMNS} FROM _tp_old")  # noqa: S608 - fixed names
            cur.execute("DELETE FROM tag_purchases p USING _tp_old o WHERE p.order_id = o.order_id")
        cur.execute("DROP TABLE _tp_old")
    if n:
        cur.execute(
            f"""INSERT INTO tag_purchases ({_COLUMNS})
            SELECT {_COLUMNS} FROM _tp_new WHERE order_id IS NULL
            UNION ALL
            SELECT {_COLUMNS} FROM _tp_new WHERE order_id IS NOT NULL {_EARLIEST}"""  # noqa: S608 - fixed text
        )
    cur.execute("DROP TABLE _tp_new")
    return n


# -- activity ---------------------------------------------------------------------------------------
#: The latest non-system event per observation since ``$since`` (null: ever); ``{rows}`` as above.
_ACTIVITY = """{into}
    SELECT identity_idx AS obs_idx, max("timestamp") AS last_seen FROM events
    WHERE identity_idx IS NOT NULL AND source_id <> 0
      AND "timestamp" >= coalesce(CAST($since AS TIMESTAMP), TIMESTAMP '-infinity') {rows}
    GROUP BY identity_idx"""


def refresh_activity(cur: duckdb.DuckDBPyConnection, ctx: ComputeContext, horizon_days: int | None) -> dict[str, Any]:
    """Bring ``tag_activity`` up to date for "seen in the last ``horizon_days`` days" questions
    (None: ever). Events before the horizon are left out of a rebuild (they cannot matter)."""
    started = time.perf_counter()
    since = cutoff(ctx, horizon_days) if horizon_days is not None else None
    n = 0
    with ctx.inst.analytic.transaction(cur):
        old = state(cur, ACTIVITY)
        inp = _inputs(cur, old, orders=False)
        action, why = _plan(ctx, old, inp, since)
        keep_since = old.since if action != "rebuild" and old is not None else since
        if action == "rebuild":
            cur.execute("DELETE FROM tag_activity")
            n = int(
                cur.execute(_ACTIVITY.format(into="INSERT INTO tag_activity", rows=""), {"since": since}).fetchall()[0][
                    0
                ]
            )
        elif action == "fold" and old is not None and inp.events_rowid > old.events_rowid:
            # appended, not merged: readers take the latest row of an observation (cheaper than an
            # UPDATE of the 10M-row table); a rebuild leaves one row per observation again
            n = int(
                cur.execute(
                    _ACTIVITY.format(into="INSERT INTO tag_activity", rows="AND rowid > $lo AND rowid <= $hi"),
                    {"lo": old.events_rowid, "hi": inp.events_rowid, "since": keep_since},
                ).fetchall()[0][0]
            )
        _save(cur, ACTIVITY, ctx, action=action, inp=inp, since=keep_since, old=old)
    return {
        "activity": _DONE[action],
        **({"activity_reason": why} if why else {}),
        "activity_observations_folded": n,
        "activity_seconds": round(time.perf_counter() - started, 3),
    }


# -- per profile ---------------------------------------------------------------------------------------
def scope_filter(ctx: ComputeContext, column: str = "profile_idx") -> str:
    """``AND <column> IN (the scope)`` when the run is scoped, else nothing (fixed names only)."""
    return f"AND {column} IN (SELECT profile_idx FROM {ctx.scope})" if ctx.scope else ""  # noqa: S608 - fixed names


def obs_scope_filter(ctx: ComputeContext, column: str) -> str:
    """``AND <column> IN (observations of the scope's profiles)`` when scoped (fixed names only)."""
    if not ctx.scope:
        return ""
    return f"AND {column} IN (SELECT obs_idx FROM identity_links WHERE profile_idx IN (SELECT profile_idx FROM {ctx.scope}))"  # noqa: S608 - fixed names


EPOCH = datetime(1970, 1, 1)
#: "No time" in the int64 microsecond arrays below: before and after every real time.
NEVER = np.iinfo(np.int64).min
UNSET = np.iinfo(np.int64).max


def us(t: datetime) -> int:
    """Microseconds since 1970 of a naive-UTC time (DuckDB's ``epoch_us``)."""
    return (t - EPOCH) // timedelta(microseconds=1)


class ProfileMap:
    """The profiles of a run (everyone, or the scope) as dense slots 0..n-1, and their observations.

    Per-profile facts are reduced in numpy over these slots (``np.maximum.at`` …) rather than
    by joining and grouping 10M-row tables in SQL, several times faster at that size. Rows read:
    ``profiles`` and ``identity_links`` (once), then whatever a model needs by observation."""

    def __init__(self, cur: duckdb.DuckDBPyConnection, ctx: ComputeContext) -> None:
        self.cur, self.ctx = cur, ctx
        self.profile_idx: np.ndarray = cur.execute(
            f"SELECT profile_idx FROM profiles WHERE true {scope_filter(ctx)}"  # noqa: S608 - fixed SQL
        ).fetchnumpy()["profile_idx"]
        self.n = len(self.profile_idx)
        links = cur.execute(
            f"""SELECT l.obs_idx, l.profile_idx, epoch_us(l.first_seen) AS t FROM identity_links l
            WHERE l.profile_idx IS NOT NULL {scope_filter(ctx, "l.profile_idx")}"""  # noqa: S608 - fixed SQL
        ).fetchnumpy()
        self.link_slots = self._profile_slots(links["profile_idx"])
        self.link_first: np.ndarray = links["t"]
        obs = links["obs_idx"]
        self._sorted = len(obs) and int(obs.max()) > 4 * len(obs) + 1_000_000  # sparse ids: binary search
        if self._sorted:
            order = np.argsort(obs)
            self._obs, self._obs_slots = obs[order], self.link_slots[order]
        else:
            self._by_obs = np.full(int(obs.max()) + 1 if len(obs) else 1, -1, np.int64)
            self._by_obs[obs] = self.link_slots

    def _profile_slots(self, keys: np.ndarray) -> np.ndarray:
        """The slot of each profile_idx (-1: not one of the run's profiles)."""
        p = self.profile_idx
        if self.n and int(p[-1]) - int(p[0]) == self.n - 1 and bool(np.all(np.diff(p) == 1)):  # 1..n in order
            slots = keys.astype(np.int64) - int(p[0])
            if len(keys) and (int(slots.min()) < 0 or int(slots.max()) >= self.n):
                slots[(slots < 0) | (slots >= self.n)] = -1
            return slots
        table = np.full(int(p.max()) + 1 if self.n else 1, -1, np.int64)
        table[p] = np.arange(self.n)
        return self._lookup(table, keys)

    @staticmethod
    def _lookup(table: np.ndarray, keys: np.ndarray) -> np.ndarray:
        if not len(keys) or (int(keys.min()) >= 0 and int(keys.max()) < len(table)):
            return table[keys]
        out = np.full(len(keys), -1, np.int64)
        ok = (keys >= 0) & (keys < len(table))
        out[ok] = table[keys[ok]]
        return out

    def created(self, which: np.ndarray) -> np.ndarray:
        """The profiles' own first time (first_seen, else its creating observation's, else created_at)
        of the slots ``which``, in µs."""
        if not len(which):
            return np.zeros(0, np.int64)
        ids = self.profile_idx[which]
        self.cur.register("_pm_ids", pa.table({"profile_idx": pa.array(ids, pa.int32())}))
        try:
            got = self.cur.execute(
                """SELECT p.profile_idx, epoch_us(coalesce(p.first_seen, p.created_seen, p.created_at)) AS t
                FROM profiles p SEMI JOIN _pm_ids i ON i.profile_idx = p.profile_idx"""
            ).fetchnumpy()
        finally:
            self.cur.unregister("_pm_ids")
        order = np.argsort(ids)
        out = np.zeros(len(ids), np.int64)
        out[order[np.searchsorted(ids[order], got["profile_idx"])]] = got["t"]
        return out

    def slots(self, obs: np.ndarray) -> np.ndarray:
        """The slot of each observation's profile (-1: not one of this run's profiles)."""
        if not self._sorted:
            return self._lookup(self._by_obs, obs)
        pos = np.searchsorted(self._obs, obs)
        pos = np.minimum(pos, max(len(self._obs) - 1, 0))
        found = self._obs[pos] == obs if len(self._obs) else np.zeros(len(obs), bool)
        return np.where(found, self._obs_slots[pos], -1)

    def by_obs(self, sql: str, params: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Run ``sql`` (columns ``obs_idx`` and others, no NULLs); return (slots, the other columns) of
        the rows whose observation belongs to one of the run's profiles."""
        got = self.cur.execute(sql, params or {}).fetchnumpy()
        slots = self.slots(got.pop("obs_idx"))
        if len(slots) and int(slots.min()) >= 0:
            return slots, got
        keep = slots >= 0
        return slots[keep], {k: v[keep] for k, v in got.items()}

    def maximum(self, slots: np.ndarray, values: np.ndarray, into: np.ndarray | None = None) -> np.ndarray:
        out = np.full(self.n, NEVER, np.int64) if into is None else into
        np.maximum.at(out, slots, values)
        return out

    def minimum(self, slots: np.ndarray, values: np.ndarray, into: np.ndarray | None = None) -> np.ndarray:
        out = np.full(self.n, UNSET, np.int64) if into is None else into
        np.minimum.at(out, slots, values)
        return out

    def count(self, slots: np.ndarray) -> np.ndarray:
        """How many of the rows belong to each slot."""
        return np.bincount(slots, minlength=self.n)

    def bitmaps(self, codes: np.ndarray, names: Sequence[str]) -> dict[str, BitMap]:
        """Value → profiles for per-slot codes (0 = no value, k = ``names[k - 1]``)."""
        return code_bitmaps(codes, self.profile_idx, names)


def code_bitmaps(codes: np.ndarray, profile_idx: np.ndarray, names: Sequence[str]) -> dict[str, BitMap]:
    """Value → profiles (what a computer may hand the swap in ``ComputeContext.produced`` instead of
    rows) of parallel arrays: code 0 = no value, k = ``names[k - 1]``."""
    if len(names) <= 16:  # a mask per value beats sorting by value
        ordered = bool(np.all(profile_idx[1:] > profile_idx[:-1]))
        out = {}
        for k, name in enumerate(names, 1):
            ids = profile_idx[codes == k]
            if len(ids):
                out[name] = bitmap_of(ids if ordered else np.sort(ids))
        return out
    keep = codes > 0
    return {names[c - 1]: bm for c, bm in grouped(codes[keep], profile_idx[keep])}
