"""The journey worker (旅程执行器): one thread in the server that keeps journeys moving.

Each round: run due audience entries, consume the inbox (triggers, awaited events, goals),
advance people whose timers are due, then send what the outbox holds. It sleeps until the next
timer, the interval, or a wake-up — the loader wakes it after a load that fed the inbox, so a
trigger reaches its first action in well under a second.

:func:`run_until_idle` does the same rounds synchronously; tests and the dry run use it with a
moved clock instead of waiting.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tessera.runtime import Instance
from tessera.services.background import Worker
from tessera.services.journey_dispatch import Dispatcher
from tessera.services.journey_runner import advance_due, consume_inbox, run_entries

log = logging.getLogger(__name__)


@dataclass
class Progress:
    entries: int = 0
    events: int = 0
    steps: int = 0
    sent: int = 0
    effects: int = 0

    @property
    def busy(self) -> bool:
        return bool(self.entries or self.events or self.steps or self.sent or self.effects)


def one_round(
    inst: Instance, dispatcher: Dispatcher, *, now: datetime | None = None, dispatch: bool = True
) -> Progress:
    """One pass of everything the worker does (at ``now``, default the clock's)."""
    p = Progress()
    runs = run_entries(inst=inst, now=now)
    p.entries = sum(r.entered for r in runs) + len(runs)
    while True:
        got = consume_inbox(inst=inst, now=now)
        p.events += got
        if got < 5000:
            break
    batch = inst.settings.journeys.batch_size
    while True:
        got = advance_due(inst=inst, now=now, limit=batch)
        p.steps += got
        if got < batch:
            break
    if dispatch:
        while True:
            r = dispatcher.dispatch_once(now=now)
            p.sent += r.sent
            p.effects += r.effects
            if (
                r.taken < inst.settings.journeys.dispatch_batch
                or (r.sent + r.effects + r.failed + r.suppressed + r.held) == 0
            ):
                break
    return p


def run_until_idle(
    inst: Instance, dispatcher: Dispatcher, *, now: datetime | None = None, rounds: int = 50
) -> Progress:
    """Rounds until nothing moves (or ``rounds``); returns the totals."""
    total = Progress()
    for _ in range(rounds):
        p = one_round(inst, dispatcher, now=now)
        for name in ("entries", "events", "steps", "sent", "effects"):
            setattr(total, name, getattr(total, name) + getattr(p, name))
        if not p.busy:
            break
    return total


def pipeline_trait_writer(pipeline: Any) -> Callable[[Sequence[tuple[str, str, dict[str, Any]]]], None]:
    """Attribute changes as ``identify`` messages through the collection pipeline (the WAL), so the
    loader stays the only writer of events. Each message's id is the effect's idempotency key, so a
    retried write is dropped by the loader's de-duplication."""
    import orjson

    from tessera.services.ingestion import now_micros

    def write(items: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
        inst: Instance = pipeline.instance
        source = _journey_source(inst)
        ids = _identifiers(inst, [pid for _, pid, _ in items])
        batch = []
        for key, pid, traits in items:
            ident = ids.get(pid)
            if ident is None:
                continue
            msg: dict[str, Any] = {"type": "identify", "messageId": f"journey-{key}", "traits": traits,
                                   "timestamp": inst.clock.now().isoformat()}  # fmt: skip
            id_type, value = ident
            if id_type == "user_id":
                msg["userId"] = value
            elif id_type == "anonymous_id":
                msg["anonymousId"] = value
            else:
                msg["anonymousId"] = f"journey:{pid}"
                msg["context"] = {"externalIds": [{"id": value, "type": id_type, "collection": "users"}]}
            batch.append(msg)
        if not batch:
            return
        prepared = pipeline.collector.prepare(orjson.dumps({"batch": batch}), source=source, implied_type=None,
                                              received_us=now_micros())  # fmt: skip
        done = threading.Event()
        errors: list[BaseException] = []

        def settled(error: BaseException | None) -> None:
            if error is not None:
                errors.append(error)
            done.set()

        pipeline.writer.append(prepared.record, settled)
        if not done.wait(30):
            raise TimeoutError("the write-ahead log did not confirm the attribute changes")
        if errors:
            raise errors[0]
        pipeline.loader.wake()

    return write


def _journey_source(inst: Instance) -> Any:
    """The system source ``journeys`` that attribute changes are written under (created on first use)."""
    from sqlalchemy import select

    from tessera.services.sources import _to_source, create_source
    from tessera.stores.models import SourceRow

    with inst.operational.session() as s:
        row = s.scalar(select(SourceRow).where(SourceRow.name == "journeys"))
        if row is not None:
            return _to_source(row)
        return create_source(session=s, name="journeys", kind="system", now=inst.clock.now())


def _identifiers(inst: Instance, profile_ids: Sequence[str]) -> dict[str, tuple[str, str]]:
    """A profile's strongest identifier (user_id first), to address an identify message to it."""
    if not profile_ids:
        return {}
    rank = {"user_id": 0, "member_id": 1, "phone": 2, "email": 3}
    got = (
        inst.analytic.cursor()
        .execute(
            "SELECT p.profile_id, i.id_type, i.id_value FROM profiles p JOIN profile_identifiers i USING (profile_idx) "
            "WHERE p.profile_id IN (SELECT unnest(?))",
            [list(profile_ids)],
        )
        .fetchall()
    )
    out: dict[str, tuple[str, str]] = {}
    for pid, id_type, value in got:
        prev = out.get(pid)
        if prev is None or rank.get(id_type, 9) < rank.get(prev[0], 9):
            out[pid] = (id_type, value)
    return out


class JourneyWorker(Worker):
    """The worker thread. ``wake()`` makes it look now (the loader calls it after each load)."""

    name = "journeys"

    def __init__(self, inst: Instance, *, pipeline: Any = None, interval: float | None = None) -> None:
        super().__init__(interval=interval if interval is not None else inst.settings.journeys.worker_interval_seconds)
        self.inst = inst
        writer = pipeline_trait_writer(pipeline) if pipeline is not None else None
        self.dispatcher = Dispatcher(inst, write_traits=writer)

    def start(self) -> None:
        self.dispatcher.recover()
        from tessera.services.journeys import sync_watch

        sync_watch(inst=self.inst)
        super().start()

    def stop(self) -> None:
        super().stop()
        self.dispatcher.close()

    def round(self) -> bool:
        return one_round(self.inst, self.dispatcher).busy
