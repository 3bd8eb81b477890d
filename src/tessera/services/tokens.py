"""Admin / API tokens for the management API (``Authorization: Bearer``)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tessera.stores.models import ApiTokenRow

ADMIN_SCOPE = "admin"


@dataclass(frozen=True)
class IssuedToken:
    id: int
    name: str
    token: str  # shown once
    scopes: list[str]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(*, session: Session, name: str, now: datetime, scopes: list[str] | None = None) -> IssuedToken:
    token = "tsk_" + secrets.token_urlsafe(32)
    row = ApiTokenRow(
        name=name.strip() or "admin",
        token_sha256=_digest(token),
        prefix=token[:10],
        scopes=scopes or [ADMIN_SCOPE],
        created_at=now,
    )
    session.add(row)
    session.flush()
    return IssuedToken(row.id, row.name, token, list(row.scopes))


def check_token(*, session: Session, token: str) -> list[str] | None:
    """The token's scopes, or None when it is unknown or revoked."""
    row = session.scalar(select(ApiTokenRow).where(ApiTokenRow.token_sha256 == _digest(token)))
    if row is None or row.revoked_at is not None:
        return None
    return list(row.scopes)


def revoke_token(*, session: Session, token_id: int, now: datetime) -> bool:
    row = session.get(ApiTokenRow, token_id)
    if row is None:
        return False
    row.revoked_at = now
    return True
