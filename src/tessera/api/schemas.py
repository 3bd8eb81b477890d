"""Request and response schemas of the management API (separate from stored models)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class SourceCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200, description="e.g. 'WeChat mini-program 小程序'")
    kind: str = Field(default="other", description="app, web, wechat_miniprogram, tmall, jd, offline_store, crm …")


class SourceOut(BaseModel):
    id: int
    name: str
    kind: str
    write_key: str
    created_at: datetime
    disabled: bool


class TokenCreate(BaseModel):
    name: str = Field(default="admin", min_length=1, max_length=200)


class TokenOut(BaseModel):
    id: int
    name: str
    token: str = Field(description="shown once; keep it")
    scopes: list[str]


class EventOut(BaseModel):
    message_id: str
    source_id: int
    type: str
    event: str | None
    user_id: str | None
    anonymous_id: str | None
    timestamp: datetime
    received_at: datetime
    properties: dict[str, Any] | None
    traits: dict[str, Any] | None
    context: dict[str, Any] | None
    revenue: float | None = None
    order_id: str | None = None
    product_id: str | None = None


class EventPage(BaseModel):
    events: list[EventOut]
    next_before: str | None = Field(description="pass as ?before= to get the next (older) page")


class DeadLetterOut(BaseModel):
    received_at: datetime
    source_id: int | None
    message_id: str | None
    batch_index: int | None
    field: str | None
    reason: str
    payload: Any


class Stats(BaseModel):
    sources: list[dict[str, Any]]
    totals: dict[str, int]
    wal_backlog_bytes: int
    ingest: dict[str, Any] | None = None
