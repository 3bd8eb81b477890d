"""Sources (数据源): each channel sends with its own write key."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tessera.stores.models import SourceRow
from tessera.stores.operational import OperationalStore

#: Channel kinds seen in the seeds; any other lowercase word is accepted too.
KNOWN_KINDS = (
    "app", "web", "server", "wechat_miniprogram", "wechat_official_account", "wecom",
    "tmall", "jd", "douyin", "offline_store", "crm", "survey", "import", "other",
)  # fmt: skip
_KIND_RE = re.compile(r"^[a-z][a-z0-9_]{0,49}$")
_NAME_RE = re.compile(r"^\S(.{0,198}\S)?$")


class SourceError(ValueError):
    """A source request that cannot be honoured; ``field`` names what is wrong."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Source:
    id: int
    name: str
    kind: str
    write_key: str
    created_at: datetime
    disabled: bool


def _to_source(row: SourceRow) -> Source:
    return Source(row.id, row.name, row.kind, row.write_key, row.created_at, row.disabled)


def create_source(*, session: Session, name: str, kind: str, now: datetime) -> Source:
    name = name.strip()
    if not name or not _NAME_RE.match(name):
        raise SourceError("name", "must be 1-200 characters, not blank")
    if not _KIND_RE.match(kind):
        raise SourceError("kind", f"must be a lowercase word such as {', '.join(KNOWN_KINDS[:6])} …")
    if session.scalar(select(SourceRow).where(SourceRow.name == name)) is not None:
        raise SourceError("name", f"a source named {name!r} exists already")
    row = SourceRow(
        name=name,
        kind=kind,
        write_key="wk_" + secrets.token_urlsafe(24),
        created_at=now,
        disabled=False,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:  # a concurrent create with the same name
        raise SourceError("name", f"a source named {name!r} exists already") from exc
    return _to_source(row)


def list_sources(*, session: Session) -> list[Source]:
    return [_to_source(r) for r in session.scalars(select(SourceRow).order_by(SourceRow.id))]


def get_source_by_name(*, session: Session, name: str) -> Source | None:
    row = session.scalar(select(SourceRow).where(SourceRow.name == name))
    return _to_source(row) if row else None


def source_for_key(*, session: Session, write_key: str) -> Source | None:
    row = session.scalar(select(SourceRow).where(SourceRow.write_key == write_key))
    if row is None or row.disabled:
        return None
    return _to_source(row)


def source_names(store: OperationalStore) -> dict[int, str]:
    """source id → name, for reports that show where something came from."""
    with store.session() as s:
        return {x.id: x.name for x in list_sources(session=s)}
