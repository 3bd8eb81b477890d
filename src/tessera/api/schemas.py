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


class ProblemOut(BaseModel):
    field: str = Field(description="what is wrong: a JSON path, a row, a code")
    message: str


class RefusalOut(BaseModel):
    """A refused request (拒绝): ``field`` names the first problem, ``reason`` is a stable code."""

    success: bool = False
    error: str = Field(description="loyalty_refused, invalid_request, not_found, conflict, unauthorized …")
    field: str = ""
    message: str
    reason: str | None = Field(
        None, description="expired, not_owner, wrong_channel, threshold_not_met, insufficient_points, out_of_stock …"
    )
    problems: list[ProblemOut] = Field(default_factory=list)


#: ``responses=`` of a route that can refuse (the OpenAPI a console is generated from shows them)
REFUSALS: dict[int | str, dict[str, Any]] = {
    code: {"model": RefusalOut, "description": text}
    for code, text in ((404, "not found 不存在"), (409, "conflict 冲突"), (422, "invalid 无效"))
}
