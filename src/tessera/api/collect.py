"""Segment-compatible collection endpoints: /v1/batch, /v1/track, /v1/identify, /v1/page, …"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from tessera.domain.messages import to_micros
from tessera.services.ingestion import RequestError, inflate, key_from_basic_auth, write_key_in_body
from tessera.services.pipeline import Pipeline

router = APIRouter(tags=["collection"])

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object", "additionalProperties": True}}},
        "description": "A Segment Tracking API message (or {batch: [...]}) — gzip allowed.",
    },
    "responses": {
        "200": {"description": "Stored durably; per-message problems are counted and dead-lettered."},
        "400": {"description": "Invalid JSON or a malformed batch."},
        "401": {"description": "Missing or unknown write key."},
        "413": {"description": "Too large (32 KB a message, 500 KB or 2,500 messages a batch)."},
        "429": {"description": "The write path is saturated; see Retry-After."},
    },
}


def _error(exc: RequestError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _read_body(request: Request, limit: int) -> bytes:
    """Read the body, stopping as soon as it is larger than any acceptable request."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, "too_large", f"the body is {int(declared):,} bytes; the limit is {limit:,}")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "too_large", f"the body is larger than {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def _collect(request: Request, implied_type: str | None) -> Response:
    pipeline: Pipeline = request.app.state.pipeline
    settings = pipeline.settings
    limit = settings.max_batch_bytes if implied_type is None else settings.max_message_bytes
    try:
        write_key = key_from_basic_auth(request.headers.get("authorization"))
        source = pipeline.source_for_key(write_key) if write_key else None
        if write_key and source is None:
            raise RequestError(401, "unauthorized", "unknown or disabled write key")
        pipeline.check_capacity()
        raw = await _read_body(request, limit + 64 * 1024)
        body = inflate(raw, request.headers.get("content-encoding"), limit)
        if source is None:
            key = write_key_in_body(body)
            if not key:
                raise RequestError(
                    401, "unauthorized", "send the write key as basic auth user (or writeKey in the body)"
                )
            source = pipeline.source_for_key(key)
            if source is None:
                raise RequestError(401, "unauthorized", "unknown or disabled write key")
        received_us = to_micros(pipeline.instance.clock.now())
        prepared = pipeline.collector.prepare(body, source=source, implied_type=implied_type, received_us=received_us)
        await pipeline.append(prepared.record)
    except RequestError as exc:
        return _error(exc)
    except OSError as exc:
        return JSONResponse(
            {"success": False, "error": "storage_unavailable", "message": f"could not write the log: {exc}"},
            status_code=503,
            headers={"Retry-After": "5"},
        )
    return JSONResponse(prepared.body())


@router.post("/v1/batch", openapi_extra=_BODY_DOC, summary="Send a batch of messages")
async def batch(request: Request) -> Response:
    return await _collect(request, None)


def _single(kind: str) -> None:
    async def endpoint(request: Request) -> Response:
        return await _collect(request, kind)

    endpoint.__name__ = f"collect_{kind}"
    router.add_api_route(
        f"/v1/{kind}", endpoint, methods=["POST"], openapi_extra=_BODY_DOC, summary=f"Send one {kind} message"
    )


for _kind in ("track", "identify", "page", "screen", "group", "alias"):
    _single(_kind)
