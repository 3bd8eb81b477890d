"""The running ingestion pipeline of a server: write-ahead log writer + loader + source keys."""

from __future__ import annotations

import asyncio
import threading
import time

from tessera.runtime import Instance
from tessera.services import sources as sources_service
from tessera.services.identity_rules import get_rules
from tessera.services.ingestion import Collector, RequestError
from tessera.services.loader import Loader
from tessera.services.sources import Source
from tessera.stores.wal import WalWriter

_KEY_TTL = 30.0


class Pipeline:
    def __init__(self, instance: Instance) -> None:
        self.instance = instance
        settings = instance.settings.ingest
        self.settings = settings
        self.collector = Collector(settings)
        self.writer = WalWriter(instance.data_dir.wal, segment_bytes=settings.wal_segment_bytes, fsync=settings.fsync)
        self.loader = Loader(
            store=instance.analytic,
            wal_dir=instance.data_dir.wal,
            writer=self.writer,
            settings=settings,
            clock=instance.clock,
            rules=get_rules(instance.operational),
        )
        self._keys: dict[str, tuple[Source | None, float]] = {}
        self._keys_lock = threading.Lock()
        self._backlog = 0
        self._backlog_at = 0.0

    def start(self) -> None:
        # Recover whatever an earlier process acknowledged but did not load, before taking traffic.
        self.loader.flush(timeout=600)
        self.loader.start()

    def stop(self) -> None:
        self.writer.close()
        self.loader.stop()

    def source_for_key(self, write_key: str) -> Source | None:
        now = time.monotonic()
        with self._keys_lock:
            hit = self._keys.get(write_key)
            if hit is not None and hit[1] > now:
                return hit[0]
        with self.instance.operational.session() as s:
            source = sources_service.source_for_key(session=s, write_key=write_key)
        with self._keys_lock:
            if len(self._keys) > 10_000:
                self._keys.clear()
            self._keys[write_key] = (source, now + (_KEY_TTL if source else 2.0))
        return source

    def check_capacity(self) -> None:
        """429 + Retry-After when the log writer or the loader cannot keep up."""
        s = self.settings
        now = time.monotonic()
        if now - self._backlog_at > 0.5:
            self._backlog = self.loader.backlog_bytes()
            self._backlog_at = now
        if self.writer.pending >= s.max_pending_writes or self._backlog >= s.max_backlog_bytes:
            self.collector.counters["refused"] += 1
            raise RequestError(
                429,
                "saturated",
                "the write path is saturated; retry after the number of seconds in Retry-After",
                headers={"Retry-After": str(s.retry_after_seconds)},
            )

    async def append(self, record: bytes) -> None:
        """Append to the log and return once it is fsynced."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def done(error: BaseException | None) -> None:
            loop.call_soon_threadsafe(_settle, fut, error)

        self.writer.append(record, done)
        await fut


def _settle(fut: asyncio.Future[None], error: BaseException | None) -> None:
    if fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)
