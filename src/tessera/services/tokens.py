"""Admin / API tokens (``Authorization: Bearer``): admin tokens for the management API, tag API keys
(scoped to tag categories) for the open tag API.

A token's ``scopes`` say what it may do: ``admin`` (the management API, everything), or
``tags:read:<category>`` / ``tags:write:<category>`` (``*`` = every category; a category covers its
sub-categories) for the open tag API (:mod:`tessera.services.tag_static`).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from tessera.stores.models import ApiTokenRow

ADMIN_SCOPE = "admin"
TAG_READ = "tags:read:"
TAG_WRITE = "tags:write:"


@dataclass(frozen=True)
class IssuedToken:
    id: int
    name: str
    token: str  # shown once
    scopes: list[str]


@dataclass(frozen=True)
class TokenInfo:
    """A token without its secret."""

    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None

    @property
    def admin(self) -> bool:
        return ADMIN_SCOPE in self.scopes


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _info(row: ApiTokenRow) -> TokenInfo:
    return TokenInfo(row.id, row.name, row.prefix, list(row.scopes), row.created_at, row.revoked_at)


def create_token(*, session: Session, name: str, now: datetime, scopes: list[str] | None = None) -> IssuedToken:
    """A new token (an admin token unless ``scopes`` are given); the secret is in the answer only."""
    if scopes is not None and not scopes:
        raise ValueError("a token needs at least one scope")
    token = "tsk_" + secrets.token_urlsafe(32)
    row = ApiTokenRow(
        name=name.strip() or "admin",
        token_sha256=_digest(token),
        prefix=token[:10],
        scopes=list(scopes) if scopes is not None else [ADMIN_SCOPE],
        created_at=now,
    )
    session.add(row)
    session.flush()
    return IssuedToken(row.id, row.name, token, list(row.scopes))


def lookup_token(*, session: Session, token: str) -> TokenInfo | None:
    """The token (id, name, scopes), or None when it is unknown or revoked."""
    row = session.scalar(select(ApiTokenRow).where(ApiTokenRow.token_sha256 == _digest(token)))
    if row is None or row.revoked_at is not None:
        return None
    return _info(row)


def check_token(*, session: Session, token: str) -> list[str] | None:
    """The token's scopes, or None when it is unknown or revoked."""
    info = lookup_token(session=session, token=token)
    return None if info is None else info.scopes


def list_tokens(*, session: Session) -> list[TokenInfo]:
    """Every token (revoked ones too), oldest first; never the secrets."""
    return [_info(r) for r in session.scalars(select(ApiTokenRow).order_by(ApiTokenRow.id))]


def get_token(*, session: Session, token_id: int) -> TokenInfo | None:
    row = session.get(ApiTokenRow, token_id)
    return None if row is None else _info(row)


def revoke_token(*, session: Session, token_id: int, now: datetime) -> bool:
    row = session.get(ApiTokenRow, token_id)
    if row is None:
        return False
    if row.revoked_at is None:
        row.revoked_at = now
    return True
