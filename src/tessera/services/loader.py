"""The loader: moves acknowledged write-ahead-log records into the analytic store.

Each load is one DuckDB transaction holding the new rows *and* the new log checkpoint, so after a
crash the loader resumes exactly where the last commit left it. ``messageId`` de-duplication: a
message whose (source, messageId) was stored within the window (24 h by default, Segment's) is
dropped — client retries and replays store nothing twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tessera.clock import Clock
from tessera.domain.identity import IdentityRules, default_rules
from tessera.domain.messages import to_micros
from tessera.services import identity, wal_records
from tessera.services.identity_sources import event_candidates
from tessera.settings import IngestSettings
from tessera.stores import wal
from tessera.stores.analytic import AnalyticStore

log = logging.getLogger(__name__)

_STR = pa.string()
_TS = pa.timestamp("us")
_DEAD_TYPES = {
    "received_at": _TS, "source_id": pa.int32(), "message_id": _STR, "batch_index": pa.int32(),
    "field": _STR, "reason": _STR, "payload": _STR,
}  # fmt: skip
#: Rows converted to Arrow at a time: each piece holds the GIL for a few milliseconds only.
_CHUNK = 4096
_TIME_COLUMNS = frozenset({"timestamp", "original_timestamp", "sent_at", "received_at"})
_INSERT_EVENTS = """
INSERT INTO events SELECT message_id, source_id, type::message_type, event_id, user_id, anonymous_id,
    group_id, previous_id, "timestamp", original_timestamp, sent_at, received_at,
    revenue::DECIMAL(18,2), currency, order_id, product_id, category, channel, device_id, ip,
    utm_source, utm_medium, utm_campaign, utm_term, utm_content,
    properties::JSON, traits::JSON, context::JSON, m.obs_idx
FROM _load_events LEFT JOIN _identity_rows m ON m.row_key = _load_events._row ORDER BY "timestamp"
"""
# Events some journey reacts to also go to its inbox, in the same transaction (services/journey_inbox.py).
_INSERT_INBOX = """
INSERT INTO journey_inbox (message_id, event_id, obs_idx, "timestamp", received_at, properties)
SELECT message_id, event_id, m.obs_idx, "timestamp", received_at, properties::JSON
FROM _load_events LEFT JOIN _identity_rows m ON m.row_key = _load_events._row
WHERE event_id IN (SELECT n.event_id FROM journey_watch AS w JOIN event_names AS n ON n.name = w.name)
ORDER BY "timestamp"
"""


class Loader:
    def __init__(
        self,
        *,
        store: AnalyticStore,
        wal_dir: Any,
        writer: wal.WalWriter | None,
        settings: IngestSettings,
        clock: Clock,
        rules: IdentityRules | None = None,
    ) -> None:
        self.store = store
        self.rules = rules or default_rules()
        self._normaliser = identity.Normaliser(self.rules)
        self.wal_dir = wal_dir
        self.writer = writer
        self.settings = settings
        self.clock = clock
        self.checkpoint = self._read_checkpoint()
        self._names: dict[str, int] = {}
        self._names_stale = False
        self._seen: OrderedDict[tuple[int, str], int] = OrderedDict()
        self._load_names()
        self._seed_seen()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.loaded_events = 0
        self.loaded_dead = 0
        self.duplicates = 0
        self.last_error: str | None = None
        #: called after each committed load with the observations (``identity_links.obs_idx``) of the
        #: events it stored (rule tags react)
        self.listeners: list[Callable[[list[int]], None]] = []
        self._touched: list[int] = []

    # -- state -------------------------------------------------------------------------------
    def _read_checkpoint(self) -> wal.Position:
        row = self.store.cursor().execute('SELECT segment, "offset" FROM ingest_checkpoint WHERE id = 1').fetchone()
        return wal.Position(int(row[0]), int(row[1])) if row else wal.Position(0, 0)

    def set_rules(self, rules: IdentityRules) -> None:
        """Link with ``rules`` from the next load on."""
        with self._lock:
            self.rules = rules
            self._normaliser = identity.Normaliser(rules)

    def refresh_names(self) -> None:
        """Re-read the event-name dictionary before the next load (something else, e.g. an import,
        added names). Takes no lock: callers may hold the store's write lock."""
        self._names_stale = True

    def _load_names(self) -> None:
        self._names = dict(self.store.cursor().execute("SELECT name, event_id FROM event_names").fetchall())

    def _seed_seen(self) -> None:
        since = self.clock.now() - timedelta(hours=self.settings.dedup_window_hours)
        rows = (
            self.store.cursor()
            .execute(
                "SELECT source_id, message_id, epoch_us(received_at) FROM events WHERE received_at >= ? "
                "ORDER BY received_at DESC LIMIT ?",
                [since.replace(tzinfo=None), self.settings.dedup_max_ids],
            )
            .fetchall()
        )
        for source_id, message_id, us in reversed(rows):
            self._seen[(source_id, message_id)] = us

    def _expire_seen(self, now_us: int) -> None:
        horizon = now_us - self.settings.dedup_window_hours * 3_600_000_000
        seen = self._seen
        while seen and (len(seen) > self.settings.dedup_max_ids or next(iter(seen.values())) < horizon):
            seen.popitem(last=False)

    def backlog_bytes(self) -> int:
        return wal.backlog_bytes(self.wal_dir, self.checkpoint)

    # -- loading -----------------------------------------------------------------------------
    def load_once(self, *, max_rows: int = 200_000) -> int:
        """Load what is durable in the log (up to about ``max_rows``); returns events stored."""
        with self._lock:
            if self._names_stale:
                self._names_stale = False
                self._load_names()
            end = self.writer.durable if self.writer is not None else None
            batches: list[pa.RecordBatch] = []
            pending: list[Any] = []  # rows of format-1 records, converted in pieces below
            dead: list[tuple[Any, ...]] = []
            n_rows = 0
            new_pos = self.checkpoint
            for pos, payload in wal.read_records(self.wal_dir, self.checkpoint, end):
                got, d = wal_records.decode(payload)
                if isinstance(got, pa.RecordBatch):
                    batches.append(got)
                    n_rows += got.num_rows
                else:
                    pending.extend(got)
                    n_rows += len(got)
                    if len(pending) >= _CHUNK:
                        batches.append(wal_records.rows_to_batch(pending))
                        pending = []
                        time.sleep(0)  # hand the GIL to the event loop between pieces
                dead.extend(d)
                new_pos = pos
                if n_rows + len(dead) >= max_rows:
                    break
            if new_pos == self.checkpoint:
                return 0
            if pending:
                batches.append(wal_records.rows_to_batch(pending))
            table = pa.Table.from_batches(batches, schema=wal_records.ROW_SCHEMA)
            fresh, fresh_keys = self._dedup(table)
            try:
                with self.store.transaction() as cur:
                    if fresh.num_rows:
                        self._insert_events(cur, fresh)
                    if dead:
                        self._insert_dead(cur, dead)
                    cur.execute(
                        'INSERT OR REPLACE INTO ingest_checkpoint (id, segment, "offset", updated_at) '
                        "VALUES (1, ?, ?, now()::TIMESTAMP)",
                        [new_pos.segment, new_pos.offset],
                    )
            except BaseException:
                self._touched = []
                self._load_names()  # names inserted in the rolled-back transaction are gone
                raise
            touched, self._touched = self._touched, []
            for listener in self.listeners if touched else ():
                listener(touched)
            for key, us in fresh_keys:
                self._seen[key] = us
            self._expire_seen(to_micros(self.clock.now()))
            self.checkpoint = new_pos
            self.loaded_events += fresh.num_rows
            self.loaded_dead += len(dead)
            self.duplicates += n_rows - fresh.num_rows
            wal.remove_segments_before(self.wal_dir, new_pos)
            return int(fresh.num_rows)

    def _dedup(self, table: pa.Table) -> tuple[pa.Table, list[tuple[tuple[int, str], int]]]:
        """Drop rows whose (source, messageId) was stored in the window or repeats in this load."""
        seen = self._seen
        batch_seen: set[tuple[int, str]] = set()
        keys: list[tuple[tuple[int, str], int]] = []
        mask: list[bool] = []
        sources = table.column("source_id").to_pylist()
        ids = table.column("message_id").to_pylist()
        received = table.column("received_at").to_pylist()
        for key, us in zip(zip(sources, ids, strict=True), received, strict=True):
            if key in seen or key in batch_seen:
                mask.append(False)
                continue
            batch_seen.add(key)
            mask.append(True)
            keys.append((key, us))
        if len(keys) == len(mask):
            return table, keys
        return table.filter(pa.array(mask, type=pa.bool_())), keys

    def _event_ids(self, cur: Any, names: pa.ChunkedArray) -> pa.Array:
        """Dictionary codes of the event names (new names are added to ``event_names``)."""
        distinct = [n for n in pc.unique(names).to_pylist() if n is not None]
        for name in distinct:
            if name not in self._names:
                # The name may have come in through a file import since the cache was filled.
                cur.execute(
                    "INSERT INTO event_names (name) VALUES (?) ON CONFLICT (name) DO NOTHING", [name]
                ).fetchall()
                got = cur.execute("SELECT event_id FROM event_names WHERE name = ?", [name]).fetchall()
                self._names[name] = int(got[0][0])
        lookup = pa.array(distinct, type=pa.string())
        codes = pa.array([self._names[n] for n in distinct], type=pa.int32())
        return pc.take(codes, pc.index_in(names, value_set=lookup))

    def _insert_events(self, cur: Any, rows: pa.Table) -> None:
        columns = []
        names = []
        for field in wal_records.ROW_SCHEMA:
            col = rows.column(field.name)
            if field.name == "event":
                columns.append(self._event_ids(cur, col))
                names.append("event_id")
                continue
            if field.name in _TIME_COLUMNS:
                col = col.cast(_TS)
            columns.append(col)
            names.append(field.name)
        columns.append(pa.array(range(rows.num_rows), pa.int64()))
        names.append("_row")
        table = pa.Table.from_arrays(columns, names=names)
        cur.register("_load_events", table)
        try:
            candidates = event_candidates("_load_events", self.rules, present=names)
            identity.link(
                cur,
                candidates,
                rules=self.rules,
                now=self.clock.now().replace(tzinfo=None),
                normaliser=self._normaliser,
            )
            cur.execute(_INSERT_EVENTS)
            cur.execute(_INSERT_INBOX)
            if self.listeners:  # the batch's observations (small); listeners map them to profiles
                got = cur.execute(f"SELECT DISTINCT obs_idx FROM {identity.ROWS_TABLE} WHERE obs_idx IS NOT NULL")  # noqa: S608 - constant
                self._touched.extend(r[0] for r in got.fetchall())
            cur.execute(f"DROP TABLE {identity.ROWS_TABLE}")
        finally:
            cur.unregister("_load_events")

    def _insert_dead(self, cur: Any, dead: list[tuple[Any, ...]]) -> None:
        columns = list(zip(*dead, strict=True))
        arrays = []
        for i, (_, typ) in enumerate(_DEAD_TYPES.items()):
            if typ == _TS:
                arrays.append(pa.array(columns[i], type=pa.int64()).cast(_TS))
            else:
                arrays.append(pa.array(columns[i], type=typ))
        cur.register("_load_dead", pa.Table.from_arrays(arrays, names=list(_DEAD_TYPES)))
        try:
            cur.execute(
                "INSERT INTO dead_letters SELECT received_at, source_id, message_id, batch_index, field, reason, "
                "payload::JSON FROM _load_dead"
            )
        finally:
            cur.unregister("_load_dead")

    # -- background thread -------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="loader", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        interval = self.settings.load_interval_ms / 1000
        while not self._stop.is_set():
            self._wake.wait(interval)
            self._wake.clear()
            try:
                # One load per interval: under load the batches grow, and the per-commit cost is shared.
                self.load_once(max_rows=500_000)
                self.last_error = None
            except Exception as exc:  # keep the server up; the record stays in the log for a retry
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("loading the write-ahead log failed; will retry")
                self._stop.wait(1.0)

    def flush(self, timeout: float = 30.0) -> bool:
        """Load everything acknowledged so far; True when the checkpoint reached it in time."""

        target = self.writer.durable if self.writer is not None else None
        deadline = time.monotonic() + timeout
        while True:
            self.load_once()
            if target is None or self.checkpoint >= target or self.backlog_bytes() == 0:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        try:
            while self.load_once():
                pass
        except Exception:
            log.exception("final load failed; the records stay in the log")
