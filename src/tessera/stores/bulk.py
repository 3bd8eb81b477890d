"""Bulk writes the same on SQLite and PostgreSQL: executemany updates by id, inserts that skip
rows whose unique key is already there (the idempotency keys of journeys and loyalty)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def update_by_id(session: Session, model: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """One executemany UPDATE … WHERE id = :b_id; each row gives ``b_id`` and the columns to set."""
    if not rows:
        return
    table: Any = model.__table__
    columns = [c for c in rows[0] if c != "b_id"]
    stmt = update(table).where(table.c.id == bindparam("b_id")).values({c: bindparam(c) for c in columns})
    session.connection().execute(stmt, list(rows))


def insert_ignoring_duplicates(session: Session, table: Any, rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT … ON CONFLICT DO NOTHING on SQLite and PostgreSQL alike."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    stmt: Any = (postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)).on_conflict_do_nothing()
    session.execute(stmt, list(rows))
