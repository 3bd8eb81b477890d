"""Segment-compatible collection endpoints: /v1/batch, /v1/track, /v1/identify, /v1/page, …"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tessera.domain.messages import MESSAGE_TYPES, to_micros
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


_encode = msgspec.json.Encoder().encode
Reply = tuple[int, bytes, dict[str, str]]


def _error(exc: RequestError) -> Reply:
    return exc.status, _encode(exc.body()), exc.headers or {}


async def _read_body(chunks: AsyncIterator[bytes], declared: str | None, limit: int) -> bytes:
    """Read the body, stopping as soon as it is larger than any acceptable request."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(413, "too_large", f"the body is {int(declared):,} bytes; the limit is {limit:,}")
    parts = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise RequestError(413, "too_large", f"the body is larger than {limit:,} bytes")
        parts.append(chunk)
    return b"".join(parts)


async def handle(
    pipeline: Pipeline, implied_type: str | None, headers: Mapping[str, str], chunks: AsyncIterator[bytes]
) -> Reply:
    """One collection request → (status, JSON body, extra headers). Shared by the route and the fast lane."""
    settings = pipeline.settings
    limit = settings.max_batch_bytes if implied_type is None else settings.max_message_bytes
    try:
        write_key = key_from_basic_auth(headers.get("authorization"))
        source = pipeline.source_for_key(write_key) if write_key else None
        if write_key and source is None:
            raise RequestError(401, "unauthorized", "unknown or disabled write key")
        pipeline.check_capacity()
        raw = await _read_body(chunks, headers.get("content-length"), limit + 64 * 1024)
        body = inflate(raw, headers.get("content-encoding"), limit)
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
        return (
            503,
            _encode({"success": False, "error": "storage_unavailable", "message": f"could not write the log: {exc}"}),
            {"Retry-After": "5"},
        )
    return 200, _encode(prepared.body()), {}


async def _collect(request: Request, implied_type: str | None) -> Response:
    pipeline: Pipeline = request.app.state.pipeline
    status, body, headers = await handle(pipeline, implied_type, request.headers, request.stream())
    return Response(body, status_code=status, headers=headers, media_type="application/json")


#: Path → implied message type, for the ASGI fast lane.
PATHS: dict[str, str | None] = {"/v1/batch": None, **{f"/v1/{k}": k for k in MESSAGE_TYPES}}


class CollectFastLane:
    """ASGI middleware answering ``POST /v1/*`` collection requests before FastAPI's routing.

    The same :func:`handle` as the documented routes, minus the framework's per-request
    machinery (about a fifth of the server's CPU at tens of thousands of events a second).
    """

    def __init__(self, app: ASGIApp, state: Any) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in PATHS:
            await self.app(scope, receive, send)
            return
        pipeline: Pipeline | None = getattr(self.state, "pipeline", None)
        if pipeline is None:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}

        async def chunks() -> AsyncIterator[bytes]:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise RequestError(400, "disconnected", "the client went away")
                yield message.get("body", b"")
                if not message.get("more_body", False):
                    return

        status, body, extra = await handle(pipeline, PATHS[scope["path"]], headers, chunks())
        out = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        out += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": body})


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
