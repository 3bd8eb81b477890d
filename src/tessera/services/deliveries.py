"""Destinations (推送目的地) and undeliverable payloads (投递死信).

A destination is a webhook URL and its signing secret (``whsec_…``, see
:mod:`tessera.channels.webhook`). The secret is generated here, shown once at creation, and read
back only by the sender (:func:`destination_secret`); listings never carry it.

A payload given up on — a final 4xx, or retries exhausted — is kept in
``delivery_dead_letters`` with why it failed, so an operator can see it and send it again.
"""

from __future__ import annotations

import re
import secrets as _secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tessera.channels.webhook import DeliveryResult, json_safe, new_secret
from tessera.clock import as_utc
from tessera.stores.models import DeliveryDeadLetterRow, DestinationRow

DestinationKind = Literal["webhook"]
_NAME_RE = re.compile(r"^\S(.{0,198}\S)?$")
_MAX_URL = 2000
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f-\x9f]")


class DeliveryError(ValueError):
    """A destination request that cannot be honoured; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class Destination(BaseModel):
    """A push destination, without its secret."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    kind: DestinationKind
    url: str
    created_at: datetime


class DeadLetter(BaseModel):
    """An outbound payload that was not delivered."""

    model_config = ConfigDict(frozen=True)

    id: int
    channel: str
    reference: str
    destination: str
    payload: dict[str, Any]
    attempts: int
    last_status: int | None
    error: str
    created_at: datetime


def _destination(row: DestinationRow) -> Destination:
    return Destination(id=row.id, name=row.name, kind="webhook", url=row.url, created_at=as_utc(row.created_at))


def validate_url(url: str) -> str:
    """``url`` stripped, if it is an absolute http(s) URL with a host; raises :class:`DeliveryError` (field ``url``)."""
    url = url.strip()
    if not url:
        raise DeliveryError("url", "is required")
    if len(url) > _MAX_URL:
        raise DeliveryError("url", f"must be at most {_MAX_URL} characters")
    if _CONTROL_OR_SPACE.search(url):
        raise DeliveryError("url", "must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port out of range or not a number
    except ValueError as exc:
        raise DeliveryError("url", f"is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise DeliveryError("url", "must start with http:// or https://")
    if not parts.hostname:
        raise DeliveryError("url", "needs a host name, e.g. https://crm.example.com/hooks/tessera")
    if parts.username is not None or parts.password is not None:
        raise DeliveryError("url", "must not carry a user name or password; receivers verify the signature instead")
    if port == 0:
        raise DeliveryError("url", "port 0 is not usable")
    return url


def create_destination(
    *, session: Session, name: str, url: str, now: datetime, kind: DestinationKind = "webhook"
) -> tuple[Destination, str]:
    """A new destination and its signing secret (shown to the user once, for their receiver)."""
    name = name.strip()
    if not _NAME_RE.match(name):
        raise DeliveryError("name", "must be 1-200 characters, not blank")
    if kind != "webhook":
        raise DeliveryError("kind", "only webhook destinations exist so far")
    url = validate_url(url)
    if session.scalar(select(DestinationRow.id).where(DestinationRow.name == name)) is not None:
        raise DeliveryError("name", f"a destination named {name!r} exists already")
    secret = new_secret()
    row = DestinationRow(
        id="dst_" + _secrets.token_hex(8), name=name, kind=kind, url=url, secret=secret, created_at=now
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent create with the same name
        raise DeliveryError("name", f"a destination named {name!r} exists already") from exc
    return _destination(row), secret


def list_destinations(*, session: Session) -> list[Destination]:
    rows = session.scalars(select(DestinationRow).order_by(DestinationRow.created_at, DestinationRow.name))
    return [_destination(r) for r in rows]


def get_destination(*, session: Session, destination_id: str) -> Destination | None:
    row = session.get(DestinationRow, destination_id)
    return _destination(row) if row is not None else None


def destination_secret(*, session: Session, destination_id: str) -> str | None:
    """The signing secret, for the sender; None for an unknown destination."""
    return session.scalar(select(DestinationRow.secret).where(DestinationRow.id == destination_id))


def delete_destination(*, session: Session, destination_id: str) -> bool:
    """Remove a destination; False if there was none. Past pushes keep its id."""
    row = session.get(DestinationRow, destination_id)
    if row is None:
        return False
    session.delete(row)
    session.flush()
    return True


def record_dead_letter(
    *,
    session: Session,
    channel: str,
    reference: str,
    destination: str,
    payload: Mapping[str, Any],
    result: DeliveryResult,
    now: datetime,
) -> int:
    """Keep an undelivered payload. ``reference`` says what it belongs to (a push id, a journey
    step's idempotency key …); ``destination`` where it was going. Returns the new row's id."""
    if result.delivered:
        raise ValueError("a delivered payload is not a dead letter")
    row = DeliveryDeadLetterRow(
        channel=channel,
        reference=reference[:200],
        destination=destination[:_MAX_URL],
        payload=json_safe(payload),
        attempts=result.attempts,
        last_status=result.status,
        error=result.error or "not delivered",
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row.id


def list_dead_letters(*, session: Session, reference: str | None = None, limit: int = 1000) -> list[DeadLetter]:
    """Dead letters, oldest first; only those of ``reference`` when given."""
    query = select(DeliveryDeadLetterRow).order_by(DeliveryDeadLetterRow.id).limit(limit)
    if reference is not None:
        query = query.where(DeliveryDeadLetterRow.reference == reference)
    return [
        DeadLetter(
            id=r.id,
            channel=r.channel,
            reference=r.reference,
            destination=r.destination,
            payload=r.payload,
            attempts=r.attempts,
            last_status=r.last_status,
            error=r.error,
            created_at=as_utc(r.created_at),
        )
        for r in session.scalars(query)
    ]
