"""A fast path for the common message shapes, decoded by msgspec in C.

Most traffic is ``track`` / ``page`` / ``screen`` messages with string ids, RFC 3339 timestamps and
plainly typed properties. :func:`try_fast` turns such a raw message into the very same
:data:`~tessera.domain.messages.EventRow` as :func:`~tessera.domain.messages.normalise` would,
about three times faster; ``properties`` / ``context`` are kept as the client's JSON text instead of
being decoded and re-encoded. Anything unusual (identify, batch-level context, numbers as ids,
strings as money, other date formats, invalid input) returns ``None`` and takes the slow path,
which owns every validation message. A property test checks both paths agree.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta, Raw, Struct

from tessera.domain.messages import EventRow, to_micros

_ID_MAX = 512
_TEXT_MAX = 1024


_NULL = Raw(b"null")


_Id = Annotated[str, Meta(max_length=_ID_MAX)]
_Text = Annotated[str, Meta(max_length=_TEXT_MAX)]  # longer: the slow path truncates


class _Msg(Struct, kw_only=True):
    type: str
    event: Annotated[str, Meta(max_length=200)] | None = None
    name: _Text | None = None
    category: _Text | None = None
    userId: _Id | None = None
    anonymousId: _Id | None = None
    messageId: _Id | None = None
    timestamp: datetime | None = None
    originalTimestamp: datetime | None = None
    sentAt: datetime | None = None
    channel: _Text | None = None
    properties: Raw = _NULL
    traits: Raw = _NULL
    context: Raw = _NULL
    integrations: Raw = _NULL


class _Props(Struct, kw_only=True):
    revenue: float | None = None
    total: float | None = None
    currency: _Text | None = None
    order_id: _Text | None = None
    product_id: _Text | None = None
    category: _Text | None = None


class _Device(Struct, kw_only=True):
    id: _Text | None = None


class _Campaign(Struct, kw_only=True):
    source: _Text | None = None
    medium: _Text | None = None
    name: _Text | None = None
    term: _Text | None = None
    content: _Text | None = None


class _Ctx(Struct, kw_only=True):
    ip: _Text | None = None
    channel: _Text | None = None
    device: _Device | None = None
    campaign: _Campaign | None = None


_decode_msg = msgspec.json.Decoder(_Msg).decode
_decode_props = msgspec.json.Decoder(_Props).decode
_decode_ctx = msgspec.json.Decoder(_Ctx).decode
_decode_obj = msgspec.json.Decoder(dict[str, Any]).decode
_FAST_TYPES = frozenset({"track", "page", "screen"})
_EMPTY = _Props()
_EMPTY_CTX = _Ctx()


def _members(text: bytes) -> bool | None:
    """True: an object with members; False: null or an empty object; None: not an object (slow path).

    ``text`` is exactly the value's JSON (msgspec's Raw has no surrounding whitespace), and an
    object with members always holds a ':' outside its strings.
    """
    if text[:1] == b"{":
        return b":" in text
    if text == b"null":
        return False
    return None


def _micros(dt: datetime | None) -> int | None | bool:
    if dt is None:
        return None
    if dt.year < 1970 or dt.year > 2200:
        return False
    return to_micros(dt)


def _money(value: float | None) -> float | None | bool:
    if value is None:
        return None
    if not math.isfinite(value) or abs(value) >= 1e16:
        return False
    return float(value)


def try_fast(raw: bytes, *, source_id: int, received_us: int, batch_sent_us: int | None) -> EventRow | None:
    """The row for a common message, or None when the slow path must decide."""
    try:
        m = _decode_msg(raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    mtype = m.type
    if mtype not in _FAST_TYPES or _members(bytes(m.integrations)) is not False:
        return None
    user_id = m.userId
    if user_id is not None:
        user_id = user_id.strip() or None
    anonymous_id = m.anonymousId
    if anonymous_id is not None:
        anonymous_id = anonymous_id.strip() or None
    if user_id is None and anonymous_id is None:
        return None
    message_id = m.messageId
    if message_id is not None:
        message_id = message_id.strip()
    if not message_id:
        message_id = str(uuid.uuid4())
    p_raw, c_raw, t_raw = bytes(m.properties), bytes(m.context), bytes(m.traits)
    p_set, c_set, t_set = _members(p_raw), _members(c_raw), _members(t_raw)
    if p_set is None or c_set is None or t_set is None:
        return None
    try:
        props = _decode_props(p_raw) if p_set else _EMPTY
        ctx = _decode_ctx(c_raw) if c_set else _EMPTY_CTX
        if t_set:
            _decode_obj(t_raw)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None

    if mtype == "track":
        event = m.event
        if not event:
            return None
        category = props.category or None
    else:
        event = m.name or None
        category = m.category or props.category or None

    original = _micros(m.originalTimestamp)
    client_ts = _micros(m.timestamp)
    sent_at = _micros(m.sentAt)
    if original is False or client_ts is False or sent_at is False:
        return None
    if original is None:
        original = client_ts
    if sent_at is None:
        sent_at = batch_sent_us
    if original is None:
        timestamp = received_us
    elif sent_at is not None:
        timestamp = received_us - (sent_at - original)
    else:
        timestamp = original

    revenue = _money(props.revenue)
    if revenue is None and event == "Order Completed":
        revenue = _money(props.total)
    if revenue is False:
        return None
    campaign = ctx.campaign
    device = ctx.device
    return (
        message_id,
        source_id,
        mtype,
        event,
        user_id,
        anonymous_id,
        None,
        None,
        timestamp,
        original,
        sent_at,
        received_us,
        revenue,
        props.currency or None,
        props.order_id or None,
        props.product_id or None,
        category,
        m.channel or ctx.channel or None,
        (device.id or None) if device is not None else None,
        ctx.ip or None,
        *(
            (
                campaign.source or None,
                campaign.medium or None,
                campaign.name or None,
                campaign.term or None,
                campaign.content or None,
            )
            if campaign is not None
            else (None, None, None, None, None)
        ),  # fmt: skip
        p_raw.decode() if p_set else None,
        t_raw.decode() if t_set else None,
        c_raw.decode() if c_set else None,
    )
