"""Segment Tracking API messages: validation and normalisation (pure, no I/O).

A message as a client sends it (``track``, ``identify``, ``page``, ``screen``, ``group``, ``alias``)
becomes one :data:`EventRow` — a tuple in the column order of the ``events`` table — or a
:class:`MessageError` naming the field that is wrong. Batch-level ``context`` / ``integrations``
are merged in, ``context.traits`` are merged into identify traits, and ``timestamp`` is corrected
for the client's clock skew with Segment's formula
``timestamp = receivedAt − (sentAt − originalTimestamp)``.
"""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

MESSAGE_TYPES = frozenset({"track", "identify", "page", "screen", "group", "alias"})

#: Column order of an :data:`EventRow` (the ``events`` table, with the event *name* in place of its id).
EVENT_COLUMNS = (
    "message_id", "source_id", "type", "event", "user_id", "anonymous_id", "group_id", "previous_id",
    "timestamp", "original_timestamp", "sent_at", "received_at", "revenue", "currency", "order_id",
    "product_id", "category", "channel", "device_id", "ip", "utm_source", "utm_medium", "utm_campaign",
    "utm_term", "utm_content", "properties", "traits", "context",
)  # fmt: skip
#: Timestamps are microseconds since the epoch (UTC) in an EventRow.
EventRow = tuple[Any, ...]

_ID_MAX = 512
_json_encode = msgspec.json.Encoder().encode


class MessageError(ValueError):
    """A message that cannot be stored; it goes to the dead-letter table with this reason."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


def to_micros(dt: datetime) -> int:
    """Microseconds since the epoch (UTC); a naive datetime is taken as UTC."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _MICRO


def parse_time(value: Any, field: str) -> int | None:
    """An ISO 8601 date-time (or epoch milliseconds) → microseconds since the epoch, UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise MessageError(field, f"not an ISO 8601 date-time: {value[:40]!r}") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        if not 1970 <= dt.year <= 2200:
            raise MessageError(field, f"out of range: {value[:40]!r}")
        return to_micros(dt)
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        # Epoch milliseconds, as some clients send.
        if not 0 <= value < 7_258_118_400_000:
            raise MessageError(field, f"out of range: {value!r}")
        return int(value * 1000)
    raise MessageError(field, "must be an ISO 8601 date-time string")


def _ident(msg: dict[str, Any], key: str) -> str | None:
    value = msg.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
    elif isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    else:
        raise MessageError(key, f"must be a string, not {type(value).__name__}")
    if len(value) > _ID_MAX:
        raise MessageError(key, f"longer than {_ID_MAX} characters")
    return value


def _obj(msg: dict[str, Any], key: str) -> dict[str, Any]:
    value = msg.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MessageError(key, f"must be an object, not {type(value).__name__}")
    return value


def _text(obj: dict[str, Any], key: str, field: str) -> str | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return value[:1024]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise MessageError(field, f"must be a string, not {type(value).__name__}")


def _loose_text(obj: dict[str, Any], key: str) -> str | None:
    """A typed copy of a property: strings and numbers; anything else stays only in the JSON."""
    value = obj.get(key)
    if isinstance(value, str):
        return value[:1024] or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def _money(obj: dict[str, Any], key: str, field: str) -> float | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise MessageError(field, "must be a number, not bool")
    if isinstance(value, str):
        text = value
        try:
            value = float(text.replace(",", "").strip())
        except ValueError:
            raise MessageError(field, f"must be a number: {text[:40]!r}") from None
    if not isinstance(value, int | float) or not math.isfinite(value) or abs(value) >= 1e16:
        raise MessageError(field, "must be a finite number")
    return float(value)


def normalise(
    msg: Any,
    *,
    source_id: int,
    received_us: int,
    batch_sent_at: Any = None,
    batch_context: dict[str, Any] | None = None,
    batch_integrations: dict[str, Any] | None = None,
    implied_type: str | None = None,
) -> EventRow:
    """Validate one message and turn it into an :data:`EventRow`; raise :class:`MessageError`."""
    if not isinstance(msg, dict):
        raise MessageError("message", f"must be an object, not {type(msg).__name__}")
    mtype = msg.get("type", implied_type)
    if implied_type is not None and mtype != implied_type and mtype is not None:
        raise MessageError("type", f"{mtype!r} sent to the /v1/{implied_type} endpoint")
    if not isinstance(mtype, str) or mtype not in MESSAGE_TYPES:
        raise MessageError("type", f"unknown message type {mtype!r}; expected one of {sorted(MESSAGE_TYPES)}")

    user_id = _ident(msg, "userId")
    anonymous_id = _ident(msg, "anonymousId")
    if user_id is None and anonymous_id is None:
        raise MessageError("userId", "a message needs a userId or an anonymousId")

    message_id = _ident(msg, "messageId") or str(uuid.uuid4())
    context = _obj(msg, "context")
    if batch_context:
        context = {**batch_context, **context}
    properties = _obj(msg, "properties")
    traits = _obj(msg, "traits")
    if msg.get("integrations") is not None:
        _obj(msg, "integrations")

    event: str | None = None
    group_id = previous_id = None
    category = None
    if mtype == "track":
        event = _text(msg, "event", "event")
        if not isinstance(msg.get("event"), str):
            raise MessageError("event", f"must be a string, not {type(msg.get('event')).__name__}")
        if event is None:
            raise MessageError("event", "a track message needs an event name")
        event = event[:200]
    elif mtype in ("page", "screen"):
        event = _text(msg, "name", "name")
        category = _text(msg, "category", "category")
    elif mtype == "identify":
        ctx_traits = context.get("traits")
        if ctx_traits is not None:
            if not isinstance(ctx_traits, dict):
                raise MessageError("context.traits", "must be an object")
            traits = {**ctx_traits, **traits}
    elif mtype == "group":
        group_id = _ident(msg, "groupId")
        if group_id is None:
            raise MessageError("groupId", "a group message needs a groupId")
    elif mtype == "alias":
        previous_id = _ident(msg, "previousId")
        if previous_id is None:
            raise MessageError("previousId", "an alias message needs a previousId")
        if user_id is None:
            raise MessageError("userId", "an alias message needs a userId")

    original = parse_time(msg.get("originalTimestamp"), "originalTimestamp")
    client_ts = parse_time(msg.get("timestamp"), "timestamp")
    if original is None:
        original = client_ts
    sent_at = parse_time(msg.get("sentAt"), "sentAt")
    if sent_at is None:
        sent_at = parse_time(batch_sent_at, "sentAt")
    if original is None:
        timestamp = received_us
    elif sent_at is not None:
        timestamp = received_us - (sent_at - original)  # Segment's clock-skew correction
    else:
        timestamp = original

    revenue = _money(properties, "revenue", "properties.revenue")
    if revenue is None and event == "Order Completed":
        revenue = _money(properties, "total", "properties.total")
    device = context.get("device")
    device_id = None
    if isinstance(device, dict):
        device_id = _text(device, "id", "context.device.id")
    campaign = context.get("campaign")
    utm: list[str | None] = [None] * 5
    if isinstance(campaign, dict):
        utm = [_text(campaign, k, f"context.campaign.{k}") for k in ("source", "medium", "name", "term", "content")]
    channel = _text(msg, "channel", "channel") or _text(context, "channel", "context.channel")
    ip = _text(context, "ip", "context.ip")
    if batch_integrations and "integrations" not in msg:
        context = {**context, "integrations": batch_integrations}
    elif msg.get("integrations"):
        context = {**context, "integrations": msg["integrations"]}

    return (
        message_id,
        source_id,
        mtype,
        event,
        user_id,
        anonymous_id,
        group_id,
        previous_id,
        timestamp,
        original,
        sent_at,
        received_us,
        revenue,
        _loose_text(properties, "currency"),
        _loose_text(properties, "order_id"),
        _loose_text(properties, "product_id"),
        category or _loose_text(properties, "category"),
        channel,
        device_id,
        ip,
        *utm,
        _json_encode(properties).decode() if properties else None,
        _json_encode(traits).decode() if traits else None,
        _json_encode(context).decode() if context else None,
    )


def micros_to_datetime(us: int) -> datetime:
    return datetime.fromtimestamp(us / 1_000_000, UTC)
