"""The management API (admin token): sources, tokens, stats, reading events and dead letters."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from sqlglot import exp

from tessera.api.deps import get_instance, require_admin
from tessera.api.schemas import (
    DeadLetterOut,
    EventOut,
    EventPage,
    SourceCreate,
    SourceOut,
    Stats,
    TokenCreate,
    TokenOut,
)
from tessera.runtime import Instance
from tessera.services import sources as sources_service
from tessera.services import tokens as tokens_service
from tessera.services.pipeline import Pipeline
from tessera.services.stats import collect_stats

router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(require_admin)])
InstanceDep = Annotated[Instance, Depends(get_instance)]


def _pipeline(request: Request) -> Pipeline | None:
    return getattr(request.app.state, "pipeline", None)


@router.get("/sources", response_model=list[SourceOut])
def list_sources(instance: InstanceDep) -> list[SourceOut]:
    with instance.operational.session() as s:
        return [SourceOut(**vars(x)) for x in sources_service.list_sources(session=s)]


@router.post("/sources", response_model=SourceOut, status_code=201)
def create_source(body: SourceCreate, instance: InstanceDep) -> SourceOut:
    try:
        with instance.operational.session() as s:
            src = sources_service.create_source(session=s, name=body.name, kind=body.kind, now=instance.clock.now())
    except sources_service.SourceError as exc:
        code = 409 if "exists" in exc.message else 422
        raise HTTPException(code, {"error": "invalid_source", "field": exc.field, "message": exc.message}) from None
    return SourceOut(**vars(src))


@router.post("/tokens", response_model=TokenOut, status_code=201)
def create_token(body: TokenCreate, instance: InstanceDep) -> TokenOut:
    with instance.operational.session() as s:
        t = tokens_service.create_token(session=s, name=body.name, now=instance.clock.now())
    return TokenOut(id=t.id, name=t.name, token=t.token, scopes=t.scopes)


@router.get("/stats", response_model=Stats)
def stats(request: Request, instance: InstanceDep) -> Stats:
    pipeline = _pipeline(request)
    with instance.operational.session() as s:
        srcs = sources_service.list_sources(session=s)
    cur = instance.analytic.cursor()
    try:
        out = collect_stats(cur=cur, sources=srcs, wal_backlog_bytes=pipeline.loader.backlog_bytes() if pipeline else 0)
    finally:
        cur.close()
    if pipeline is not None:
        out["ingest"] = {
            **pipeline.collector.counters,
            "loaded_events": pipeline.loader.loaded_events,
            "loaded_dead_letters": pipeline.loader.loaded_dead,
            "duplicates_dropped": pipeline.loader.duplicates,
            "loader_error": pipeline.loader.last_error,
        }
    return Stats(**out)


@router.post("/flush")
async def flush(request: Request) -> dict[str, Any]:
    """Wait until everything acknowledged so far is loaded into the analytic store."""
    pipeline = _pipeline(request)
    if pipeline is None:
        return {"flushed": True}
    ok = await asyncio.to_thread(pipeline.loader.flush, 60.0)
    if not ok:
        raise HTTPException(503, {"error": "flush_timeout", "message": "the loader did not catch up in 60 s"})
    return {"flushed": True, "backlog_bytes": pipeline.loader.backlog_bytes()}


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


_EVENT_LIST_COLUMNS = [
    "message_id", "source_id", "type::VARCHAR", "event", "user_id", "anonymous_id", '"timestamp"', "received_at",
    "properties", "traits", "context", "revenue::DOUBLE", "order_id", "product_id", 'epoch_us("timestamp")',
]  # fmt: skip


@router.get("/events", response_model=EventPage)
def read_events(
    instance: InstanceDep,
    source_id: int | None = None,
    user_id: str | None = None,
    anonymous_id: str | None = None,
    event: str | None = None,
    type: Annotated[str | None, Query(pattern="^(track|identify|page|screen|group|alias)$")] = None,
    message_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: Annotated[str | None, Query(description="cursor from next_before")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> EventPage:
    """Newest first. Filters combine with AND; every value is a bound parameter."""
    # Built as a SQLGlot tree; every value is a bound parameter (``?``), never pasted into the text.
    conds: list[exp.Expression] = []
    params: list[Any] = []

    def cond(expr: exp.Expression, *values: Any) -> None:
        conds.append(expr)
        params.extend(values)

    for col, val in (
        ("source_id", source_id),
        ("user_id", user_id),
        ("anonymous_id", anonymous_id),
        ("event", event),
        ("message_id", message_id),
    ):
        if val is not None:
            cond(exp.column(col).eq(exp.Placeholder()), val)
    if type is not None:
        cond(exp.column("type").eq(exp.Placeholder()), type)
    ts = exp.column("timestamp", quoted=True)
    if since is not None:
        cond(ts >= exp.Placeholder(), _naive_utc(since))
    if until is not None:
        cond(ts < exp.Placeholder(), _naive_utc(until))
    if before is not None:
        ts_us, _, mid = before.partition("|")
        if not ts_us.isdigit():
            raise HTTPException(400, {"error": "invalid_cursor", "field": "before", "message": "bad cursor"})
        key = exp.Tuple(expressions=[exp.func("epoch_us", ts), exp.column("message_id")])
        cond(
            exp.LT(this=key, expression=exp.Tuple(expressions=[exp.Placeholder(), exp.Placeholder()])), int(ts_us), mid
        )
    query = (
        exp.select(*_EVENT_LIST_COLUMNS)
        .from_("events_named")
        .where(exp.and_(*conds) if conds else exp.true())
        .order_by(exp.Ordered(this=ts, desc=True), exp.Ordered(this=exp.column("message_id"), desc=True))
        .limit(exp.Placeholder())
    )
    sql = query.sql(dialect="duckdb")
    params.append(limit)
    cur = instance.analytic.cursor()
    try:
        rows = cur.execute(sql, params).fetchall()
    finally:
        cur.close()
    events = [
        EventOut(
            message_id=r[0],
            source_id=r[1],
            type=r[2],
            event=r[3],
            user_id=r[4],
            anonymous_id=r[5],
            timestamp=_utc(r[6]),
            received_at=_utc(r[7]),
            properties=_json(r[8]),
            traits=_json(r[9]),
            context=_json(r[10]),
            revenue=r[11],
            order_id=r[12],
            product_id=r[13],
        )  # fmt: skip
        for r in rows
    ]
    nxt = f"{rows[-1][14]}|{rows[-1][0]}" if len(rows) == limit else None
    return EventPage(events=events, next_before=nxt)


@router.get("/dead-letters", response_model=list[DeadLetterOut])
def dead_letters(
    instance: InstanceDep,
    source_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[DeadLetterOut]:
    sql = "SELECT received_at, source_id, message_id, batch_index, field, reason, payload FROM dead_letters"
    params: list[Any] = []
    if source_id is not None:
        sql += " WHERE source_id = ?"
        params.append(source_id)
    sql += " ORDER BY received_at DESC LIMIT ?"
    params.append(limit)
    cur = instance.analytic.cursor()
    try:
        rows = cur.execute(sql, params).fetchall()
    finally:
        cur.close()
    return [
        DeadLetterOut(
            received_at=_utc(r[0]),
            source_id=r[1],
            message_id=r[2],
            batch_index=r[3],
            field=r[4],
            reason=r[5],
            payload=_json(r[6]),
        )  # fmt: skip
        for r in rows
    ]


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=UTC)


def _naive_utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(tzinfo=None) if dt.tzinfo else dt
