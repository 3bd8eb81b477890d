"""The write-ahead log of the collection path: a 200 is sent only after its record is fsynced.

Records are appended to numbered segment files ``wal/<seq>.wal``; each record is
``b"TW" + u32 length + u32 crc32 + payload``. One writer thread takes every record waiting and
writes them with a single ``fsync`` (group commit), then tells each waiter. The loader reads
records up to the last fsynced position and moves its checkpoint forward in the analytic store
in the same transaction as the rows, so a crash neither loses an acknowledged record nor loads one
twice. A torn record at the end of a segment (a crash mid-write, never acknowledged) is ignored.
"""

from __future__ import annotations

import os
import queue
import struct
import threading
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"TW"
HEADER = struct.Struct("<2sII")
_SEG_SUFFIX = ".wal"

Done = Callable[[BaseException | None], None]


@dataclass(frozen=True, order=True)
class Position:
    segment: int
    offset: int


def segment_path(directory: Path, seq: int) -> Path:
    return directory / f"{seq:012d}{_SEG_SUFFIX}"


def list_segments(directory: Path) -> list[int]:
    out = []
    for p in directory.iterdir():
        if p.suffix == _SEG_SUFFIX and p.stem.isdigit():
            out.append(int(p.stem))
    return sorted(out)


class WalWriter:
    """Appends records with group commit. ``append`` never blocks; ``done`` is called after fsync."""

    def __init__(self, directory: Path, *, segment_bytes: int, fsync: bool = True) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.segment_bytes = segment_bytes
        self.fsync = fsync
        existing = list_segments(directory)
        # Always start a fresh segment: an older one may end in a torn record.
        self._seq = (existing[-1] + 1) if existing else 1
        self._fd = self._open(self._seq)
        self._offset = 0
        self._durable = Position(self._seq, 0)
        self._queue: queue.SimpleQueue[tuple[bytes, Done] | None] = queue.SimpleQueue()
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._written_total = 0
        self._durable_cv = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="wal-writer", daemon=True)
        self._closed = False
        self._roll = False  # after a failed write the segment may end torn: continue in a new one
        self._thread.start()

    def _open(self, seq: int) -> int:
        fd = os.open(segment_path(self.directory, seq), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if self.fsync:
            dfd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        return fd

    @property
    def pending(self) -> int:
        """Records waiting to be written."""
        return self._pending

    @property
    def durable(self) -> Position:
        return self._durable

    def append(self, payload: bytes, done: Done) -> None:
        if self._closed:
            done(RuntimeError("the write-ahead log is closed"))
            return
        with self._pending_lock:
            self._pending += 1
        self._queue.put((payload, done))

    def wait_durable(self, timeout: float) -> Position:
        with self._durable_cv:
            self._durable_cv.wait(timeout)
            return self._durable

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            batch = [item]
            size = len(item[0])
            while size < 8 * 1024 * 1024:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
                size += len(nxt[0])
            error: BaseException | None = None
            try:
                self._write(batch)
            except BaseException as exc:  # disk full, I/O error: every waiter gets a 5xx
                error = exc
                self._roll = True
            with self._pending_lock:
                self._pending -= len(batch)
            for _, done in batch:
                done(error)

    def _write(self, batch: list[tuple[bytes, Done]]) -> None:
        if self._offset >= self.segment_bytes or self._roll:
            self._roll = False
            os.close(self._fd)
            self._seq += 1
            self._fd = self._open(self._seq)
            self._offset = 0
        parts = []
        for payload, _ in batch:
            parts.append(HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)))
            parts.append(payload)
        data = b"".join(parts)
        view = memoryview(data)
        while view:
            n = os.write(self._fd, view)
            view = view[n:]
        if self.fsync:
            os.fdatasync(self._fd)
        self._offset += len(data)
        self._written_total += len(data)
        with self._durable_cv:
            self._durable = Position(self._seq, self._offset)
            self._durable_cv.notify_all()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        self._thread.join(timeout=30)
        os.close(self._fd)


def read_records(directory: Path, start: Position, end: Position | None) -> Iterator[tuple[Position, bytes]]:
    """Records after ``start`` up to ``end`` (all of every segment when ``end`` is None).

    Yields (position after the record, payload). Stops a segment at its first torn record.
    """
    for seq in list_segments(directory):
        if seq < start.segment or (end is not None and seq > end.segment):
            continue
        limit = end.offset if end is not None and seq == end.segment else None
        offset = start.offset if seq == start.segment else 0
        try:
            with open(segment_path(directory, seq), "rb") as f:
                f.seek(offset)
                data = f.read() if limit is None else f.read(max(0, limit - offset))
        except FileNotFoundError:
            continue
        pos = 0
        while pos + HEADER.size <= len(data):
            magic, length, crc = HEADER.unpack_from(data, pos)
            body_start = pos + HEADER.size
            body = data[body_start : body_start + length]
            if magic != MAGIC or len(body) != length or zlib.crc32(body) != crc:
                break  # torn or never-acknowledged tail
            pos = body_start + length
            yield Position(seq, offset + pos), body


def backlog_bytes(directory: Path, checkpoint: Position) -> int:
    """Bytes of log not yet loaded past ``checkpoint``."""
    total = 0
    for seq in list_segments(directory):
        if seq < checkpoint.segment:
            continue
        try:
            size = segment_path(directory, seq).stat().st_size
        except FileNotFoundError:
            continue
        total += size - (checkpoint.offset if seq == checkpoint.segment else 0)
    return max(0, total)


def remove_segments_before(directory: Path, checkpoint: Position) -> int:
    removed = 0
    for seq in list_segments(directory):
        if seq < checkpoint.segment:
            segment_path(directory, seq).unlink(missing_ok=True)
            removed += 1
    return removed
