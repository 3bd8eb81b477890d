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
from datetime import timedelta
from typing import Any

import pyarrow as pa

from tessera.clock import Clock
from tessera.domain.messages import EVENT_COLUMNS, to_micros
from tessera.services.ingestion import WAL_FORMAT, decode_record
from tessera.services.profiles import link_primary_identifiers
from tessera.settings import IngestSettings
from tessera.stores import wal
from tessera.stores.analytic import AnalyticStore

log = logging.getLogger(__name__)

_STR = pa.string()
_TS = pa.timestamp("us")
_EVENT_TYPES: dict[str, pa.DataType] = {
    "message_id": _STR, "source_id": pa.int32(), "type": _STR, "event_id": pa.int32(),
    "user_id": _STR, "anonymous_id": _STR, "group_id": _STR, "previous_id": _STR,
    "timestamp": _TS, "original_timestamp": _TS, "sent_at": _TS, "received_at": _TS,
    "revenue": pa.float64(), "currency": _STR, "order_id": _STR, "product_id": _STR,
    "category": _STR, "channel": _STR, "device_id": _STR, "ip": _STR, "utm_source": _STR,
    "utm_medium": _STR, "utm_campaign": _STR, "utm_term": _STR, "utm_content": _STR,
    "properties": _STR, "traits": _STR, "context": _STR,
}  # fmt: skip
_DEAD_TYPES = {
    "received_at": _TS, "source_id": pa.int32(), "message_id": _STR, "batch_index": pa.int32(),
    "field": _STR, "reason": _STR, "payload": _STR,
}  # fmt: skip
_EVENT_NAME_POS = EVENT_COLUMNS.index("event")
#: Rows converted to Arrow at a time (each piece holds the GIL for a few milliseconds).
_CHUNK = 4096
_INSERT_EVENTS = """
INSERT INTO events SELECT message_id, source_id, type::message_type, event_id, user_id, anonymous_id,
    group_id, previous_id, "timestamp", original_timestamp, sent_at, received_at,
    revenue::DECIMAL(18,2), currency, order_id, product_id, category, channel, device_id, ip,
    utm_source, utm_medium, utm_campaign, utm_term, utm_content,
    properties::JSON, traits::JSON, context::JSON
FROM _load_events ORDER BY "timestamp"
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
    ) -> None:
        self.store = store
        self.wal_dir = wal_dir
        self.writer = writer
        self.settings = settings
        self.clock = clock
        self.checkpoint = self._read_checkpoint()
        self._names: dict[str, int] = {}
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

    # -- state -------------------------------------------------------------------------------
    def _read_checkpoint(self) -> wal.Position:
        row = self.store.cursor().execute('SELECT segment, "offset" FROM ingest_checkpoint WHERE id = 1').fetchone()
        return wal.Position(int(row[0]), int(row[1])) if row else wal.Position(0, 0)

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
            end = self.writer.durable if self.writer is not None else None
            rows: list[tuple[Any, ...]] = []
            dead: list[tuple[Any, ...]] = []
            new_pos = self.checkpoint
            for pos, payload in wal.read_records(self.wal_dir, self.checkpoint, end):
                fmt, r, d = decode_record(payload)
                if fmt != WAL_FORMAT:
                    raise RuntimeError(f"unknown write-ahead-log record format {fmt}")
                rows.extend(r)
                dead.extend(d)
                new_pos = pos
                if len(rows) + len(dead) >= max_rows:
                    break
            if new_pos == self.checkpoint:
                return 0
            fresh, fresh_keys = self._dedup(rows)
            try:
                with self.store.transaction() as cur:
                    if fresh:
                        self._insert_events(cur, fresh)
                    if dead:
                        self._insert_dead(cur, dead)
                    cur.execute(
                        'INSERT OR REPLACE INTO ingest_checkpoint (id, segment, "offset", updated_at) '
                        "VALUES (1, ?, ?, now()::TIMESTAMP)",
                        [new_pos.segment, new_pos.offset],
                    )
            except BaseException:
                self._load_names()  # names inserted in the rolled-back transaction are gone
                raise
            for key, us in fresh_keys:
                self._seen[key] = us
            self._expire_seen(to_micros(self.clock.now()))
            self.checkpoint = new_pos
            self.loaded_events += len(fresh)
            self.loaded_dead += len(dead)
            self.duplicates += len(rows) - len(fresh)
            wal.remove_segments_before(self.wal_dir, new_pos)
            return len(fresh)

    def _dedup(self, rows: list[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], list[tuple[tuple[int, str], int]]]:
        fresh = []
        keys: list[tuple[tuple[int, str], int]] = []
        batch_seen: set[tuple[int, str]] = set()
        seen = self._seen
        for row in rows:
            key = (row[1], row[0])
            if key in seen or key in batch_seen:
                continue
            batch_seen.add(key)
            fresh.append(row)
            keys.append((key, row[11]))
        return fresh, keys

    def _event_ids(self, cur: Any, rows: list[tuple[Any, ...]]) -> list[int | None]:
        names = self._names
        out: list[int | None] = []
        for row in rows:
            name = row[_EVENT_NAME_POS]
            if name is None:
                out.append(None)
                continue
            eid = names.get(name)
            if eid is None:
                got = cur.execute("INSERT INTO event_names (name) VALUES (?) RETURNING event_id", [name]).fetchone()
                eid = int(got[0])
                names[name] = eid
            out.append(eid)
        return out

    def _insert_events(self, cur: Any, rows: list[tuple[Any, ...]]) -> None:
        event_ids = self._event_ids(cur, rows)
        batches = []
        for start in range(0, len(rows), _CHUNK):
            # Small pieces, yielding the GIL between them: the server's event loop keeps answering.
            batches.append(self._record_batch(rows[start : start + _CHUNK], event_ids[start : start + _CHUNK]))
            time.sleep(0)
        table = pa.Table.from_batches(batches)
        cur.register("_load_events", table)
        try:
            cur.execute(_INSERT_EVENTS)
            cur.execute(
                """CREATE OR REPLACE TEMP VIEW _link_input AS
                   SELECT CASE WHEN user_id IS NOT NULL THEN 'user_id' ELSE 'anonymous_id' END AS id_type,
                          coalesce(user_id, anonymous_id) AS id_value, "timestamp" AS seen_at, source_id
                   FROM _load_events"""
            )
            link_primary_identifiers(cur)
            cur.execute("DROP VIEW _link_input")
        finally:
            cur.unregister("_load_events")

    @staticmethod
    def _record_batch(rows: list[tuple[Any, ...]], event_ids: list[int | None]) -> pa.RecordBatch:
        columns = list(zip(*rows, strict=True))
        arrays = []
        names = []
        for i, col in enumerate(EVENT_COLUMNS):
            if col == "event":
                arrays.append(pa.array(event_ids, type=pa.int32()))
                names.append("event_id")
                continue
            typ = _EVENT_TYPES[col]
            if typ == _TS:
                arrays.append(pa.array(columns[i], type=pa.int64()).cast(_TS))
            else:
                arrays.append(pa.array(columns[i], type=typ))
            names.append(col)
        return pa.RecordBatch.from_arrays(arrays, names=names)

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
