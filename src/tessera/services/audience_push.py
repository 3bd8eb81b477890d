"""Getting an audience out: export to CSV / Parquet, and push to a webhook destination.

Both carry the columns a person chooses (:mod:`tessera.compiler.projection`: attributes, traits,
identifiers ``id:phone``, tags ``tag:<key>``), optionally with phones and emails SHA-256-hashed
for ad platforms. A push sends the members in batches, each a Standard-Webhooks-signed JSON POST
retried with backoff (:class:`tessera.channels.webhook.WebhookSender`); a batch that still fails
becomes a delivery dead letter and the push ends ``partial`` (or ``failed`` when none arrived).
Each batch's ``webhook-id`` is ``<push id>_<batch no>``, so a receiver can de-duplicate retries.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import select

from tessera.channels.webhook import WebhookSender
from tessera.compiler.projection import ProjectionError, project
from tessera.compiler.query import Query
from tessera.runtime import Instance
from tessera.services import deliveries
from tessera.services.audience_export import export_members, iter_batches
from tessera.services.audiences import AudienceError, get_audience, members_of
from tessera.stores.models import DestinationRow, PushRow


class PushOut(BaseModel):
    id: str
    audience_id: str
    destination_id: str
    columns: list[str]
    status: str
    started_at: datetime
    finished_at: datetime | None
    rows: int
    batches: int
    batches_failed: int
    error: str | None


@contextmanager
def _projected(inst: Instance, audience_id: str, columns: list[str], hash_identifiers: bool) -> Iterator[Query]:
    """The query of the audience's members with the chosen columns."""
    with members_of(inst=inst, audience_id=audience_id) as members:
        try:
            query = project(members.tree, columns, members.params, hash_identifiers=hash_identifiers)
        except ProjectionError as e:
            raise AudienceError(422, "columns", str(e)) from None
        yield query


def export(*, inst: Instance, audience_id: str, columns: list[str], fmt: Literal["csv", "parquet"],
           hash_identifiers: bool = False) -> tuple[Path, int]:  # fmt: skip
    """Write the members to a file in the data dir's ``exports/`` folder; returns (path, rows)."""
    audience = get_audience(inst=inst, audience_id=audience_id)
    folder = inst.data_dir.root / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = inst.clock.now().strftime("%Y%m%d-%H%M%S")
    path = folder / f"{audience.id}-{stamp}-{secrets.token_hex(3)}.{fmt}"
    with _projected(inst, audience_id, columns, hash_identifiers) as query:
        rows = export_members(inst.analytic.cursor(), query, path, fmt)
    return path, rows


def _destination(inst: Instance, ref: str) -> DestinationRow:
    with inst.operational.session() as s:
        row = s.get(DestinationRow, ref) or s.scalars(select(DestinationRow).where(DestinationRow.name == ref)).first()
        if row is None:
            raise AudienceError(404, "destination", f"no destination {ref!r} (tessera destination list)")
        s.expunge(row)
        return row


def sender_for(inst: Instance) -> WebhookSender:
    d = inst.settings.delivery
    return WebhookSender(None, inst.clock, max_attempts=d.max_attempts, base_delay=d.base_delay_seconds,
                         max_delay=d.max_delay_seconds, timeout=d.timeout_seconds)  # fmt: skip


def push(*, inst: Instance, audience_id: str, destination: str, columns: list[str], batch_size: int = 1000,
         hash_identifiers: bool = False, sender: WebhookSender | None = None) -> PushOut:  # fmt: skip
    """Send the members with ``columns`` to a webhook destination, in signed and retried batches."""
    audience = get_audience(inst=inst, audience_id=audience_id)
    dest = _destination(inst, destination)
    push_id = "push_" + secrets.token_hex(8)
    started = inst.clock.now()
    with inst.operational.session() as s:
        s.add(PushRow(id=push_id, audience_id=audience.id, destination_id=dest.id, columns=columns, status="running",
                      started_at=started, rows=0, batches=0, batches_failed=0))  # fmt: skip
    rows = batches = failed = 0
    error: str | None = None
    own = sender is None
    sender = sender or sender_for(inst)
    try:
        with _projected(inst, audience_id, columns, hash_identifiers) as query:
            for members in iter_batches(inst.analytic.cursor(), query, batch_size):
                batches += 1
                payload = {
                    "type": "audience.members",
                    "push_id": push_id,
                    "audience": {"id": audience.id, "name": audience.name, "name_en": audience.name_en},
                    "batch": batches,
                    "sent_at": inst.clock.now().isoformat(),
                    "members": members,
                }
                result = sender.send(dest.url, dest.secret, payload, msg_id=f"{push_id}_{batches}")
                if result.delivered:
                    rows += len(members)
                    continue
                failed += 1
                error = f"batch {batches}: {result.error}"
                with inst.operational.session() as s:
                    deliveries.record_dead_letter(session=s, channel="webhook", reference=push_id, destination=dest.url,
                                                  payload=payload, result=result, now=inst.clock.now())  # fmt: skip
    finally:
        if own:
            sender.close()
    status = "delivered" if failed == 0 else ("failed" if failed == batches else "partial")
    with inst.operational.session() as s:
        row = s.get(PushRow, push_id)
        assert row is not None
        row.status, row.rows, row.batches, row.batches_failed = status, rows, batches, failed
        row.error, row.finished_at = error, inst.clock.now()
        return PushOut.model_validate(row, from_attributes=True)


def list_pushes(*, inst: Instance, audience_id: str) -> list[PushOut]:
    with inst.operational.session() as s:
        q = select(PushRow).where(PushRow.audience_id == audience_id).order_by(PushRow.started_at.desc())
        return [PushOut.model_validate(r, from_attributes=True) for r in s.scalars(q)]
