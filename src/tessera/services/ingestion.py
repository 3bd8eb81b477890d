"""The collection path (数据采集): a Segment-compatible request → validated rows → write-ahead log.

``Collector.prepare`` is pure apart from the clock: it checks sizes, decodes the JSON, validates
every message and returns the log record plus the response counts. The API route awaits the log's
fsync before it answers 200, so an acknowledged batch survives ``kill -9``.
"""

from __future__ import annotations

import base64
import threading
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

import msgspec

from tessera.domain.fast_messages import try_fast
from tessera.domain.messages import MessageError, normalise, parse_time, to_micros
from tessera.services import wal_records
from tessera.services.sources import Source
from tessera.settings import IngestSettings


class RequestError(Exception):
    """The whole request is refused: ``status`` with a JSON body naming what is wrong."""

    def __init__(self, status: int, error: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"success": False, "error": self.error, "message": self.message}


class _Envelope(msgspec.Struct, kw_only=True):
    batch: list[msgspec.Raw]
    sentAt: Any = None
    context: Any = None
    integrations: Any = None
    writeKey: Any = None


class _WriteKeyOnly(msgspec.Struct):
    writeKey: Any = None


_decode_envelope = msgspec.json.Decoder(_Envelope).decode
_decode_any = msgspec.json.Decoder().decode
_decode_key = msgspec.json.Decoder(_WriteKeyOnly).decode


def inflate(body: bytes, encoding: str | None, limit: int) -> bytes:
    """Undo ``Content-Encoding``; refuse (413) as soon as the output passes ``limit`` bytes."""
    enc = (encoding or "identity").strip().lower()
    if enc in ("", "identity"):
        if len(body) > limit:
            raise RequestError(413, "too_large", f"the body is {len(body):,} bytes; the limit is {limit:,}")
        return body
    if enc not in ("gzip", "x-gzip", "deflate"):
        raise RequestError(415, "unsupported_encoding", f"Content-Encoding {enc!r} is not supported; use gzip")
    wbits = 16 + zlib.MAX_WBITS if enc != "deflate" else zlib.MAX_WBITS
    d = zlib.decompressobj(wbits)
    try:
        out = d.decompress(body, limit + 1)  # never inflates more than the limit (gzip bombs)
    except zlib.error as exc:
        raise RequestError(400, "invalid_gzip", f"the body is not valid {enc}: {exc}") from None
    if len(out) > limit or d.unconsumed_tail:
        raise RequestError(413, "too_large", f"the body inflates to more than {limit:,} bytes")
    if not d.eof:
        raise RequestError(400, "invalid_gzip", f"the {enc} body is truncated")
    return out


def key_from_basic_auth(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        raise RequestError(401, "unauthorized", "the Authorization header is not valid basic auth") from None
    return decoded.partition(":")[0] or None


@dataclass
class Prepared:
    record: bytes
    accepted: int
    errors: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        return {
            "success": True,
            "accepted": self.accepted,
            "rejected": len(self.errors),
            "errors": self.errors,
        }


def write_key_in_body(body: bytes) -> str | None:
    try:
        key = _decode_key(body).writeKey
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
    return key if isinstance(key, str) and key else None


class Collector:
    """Validates requests for the write-ahead log; tracks the ingestion counters."""

    def __init__(self, settings: IngestSettings) -> None:
        self.settings = settings
        self.counters = {"requests": 0, "accepted": 0, "rejected": 0, "refused": 0}
        self._lock = threading.Lock()

    def prepare(self, body: bytes, *, source: Source, implied_type: str | None, received_us: int) -> Prepared:
        s = self.settings
        if implied_type is None:
            try:
                env = _decode_envelope(body)
            except msgspec.ValidationError as exc:
                raise RequestError(400, "invalid_batch", f"the batch is malformed: {exc}") from None
            except msgspec.DecodeError as exc:
                raise RequestError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
            raws = env.batch
            if len(raws) > s.max_batch_messages:
                raise RequestError(
                    413, "too_many_messages", f"{len(raws):,} messages; the limit is {s.max_batch_messages:,}"
                )
            batch_context = env.context if isinstance(env.context, dict) else None
            batch_integrations = env.integrations if isinstance(env.integrations, dict) else None
            sent_at = env.sentAt
        else:
            if len(body) > s.max_message_bytes:
                raise RequestError(
                    413, "too_large", f"the message is {len(body):,} bytes; the limit is {s.max_message_bytes:,}"
                )
            raws = [msgspec.Raw(body)]
            batch_context = batch_integrations = sent_at = None
        rows: list[tuple[Any, ...]] = []
        dead: list[tuple[Any, ...]] = []
        errors: list[dict[str, Any]] = []
        fast = implied_type is None and batch_context is None and batch_integrations is None
        batch_sent_us = None
        if fast:
            try:
                batch_sent_us = parse_time(sent_at, "sentAt")
            except MessageError:
                fast = False  # every message gets the slow path's error
        max_bytes = s.max_message_bytes
        for index, raw in enumerate(raws):
            raw_bytes = bytes(raw)
            if fast and len(raw_bytes) <= max_bytes:
                row = try_fast(raw_bytes, source_id=source.id, received_us=received_us, batch_sent_us=batch_sent_us)
                if row is not None:
                    rows.append(row)
                    continue
            msg: Any = None
            try:
                if len(raw_bytes) > s.max_message_bytes:
                    raise MessageError("message", f"{len(raw_bytes):,} bytes; the limit is {s.max_message_bytes:,}")
                try:
                    msg = _decode_any(raw_bytes)
                except msgspec.DecodeError as exc:
                    if implied_type is not None:
                        raise RequestError(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
                    raise
                rows.append(
                    normalise(
                        msg,
                        source_id=source.id,
                        received_us=received_us,
                        batch_sent_at=sent_at,
                        batch_context=batch_context,
                        batch_integrations=batch_integrations,
                        implied_type=implied_type,
                    )
                )
            except MessageError as exc:
                message_id = msg.get("messageId") if isinstance(msg, dict) else None
                message_id = message_id if isinstance(message_id, str) else None
                errors.append({"index": index, "messageId": message_id, "field": exc.field, "reason": exc.reason})
                payload = raw_bytes if len(raw_bytes) <= s.max_message_bytes else raw_bytes[:1024]
                if implied_type is not None and not isinstance(msg, dict):
                    raise RequestError(400, "invalid_message", f"{exc.field}: {exc.reason}") from None
                dead.append((received_us, source.id, message_id, index, exc.field, exc.reason, _json_or_none(payload)))
        record = wal_records.encode(rows, dead)
        with self._lock:
            self.counters["requests"] += 1
            self.counters["accepted"] += len(rows)
            self.counters["rejected"] += len(dead)
        return Prepared(record, len(rows), errors)


def _json_or_none(payload: bytes) -> str | None:
    try:
        text = payload.decode()
        msgspec.json.decode(payload)
    except (UnicodeDecodeError, msgspec.DecodeError):
        return None
    return text


def now_micros() -> int:
    return time.time_ns() // 1000


__all__ = ["Collector", "Prepared", "RequestError", "inflate", "key_from_basic_auth", "to_micros"]
