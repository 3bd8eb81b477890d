"""What every channel (渠道) is: one interface for email, SMS, push, WeChat and webhooks.

A channel makes **one attempt** per message and says how it went; it never sleeps or retries.
The journey dispatcher (``services/journey_dispatch.py``) owns retries (backoff with jitter via
``next_attempt_at``), dead letters, guards and rate limits, so every channel behaves the same.

Every message carries an idempotency key (a hash of journey, version, node, person and entry).
Channels pass it on where the far side can de-duplicate: the SMS ``message_id``, the
``webhook-id`` header, the email ``Message-ID``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

#: The kinds of channel a journey action can use.
CHANNEL_KINDS = ("email", "sms", "push", "wechat", "webhook", "log")


@dataclass(frozen=True)
class Outbound:
    """One rendered message ready to go.

    ``key``: the idempotency key (ASCII, ≤ 64 chars). ``to``: the address — an email address, an
    E.164 phone, a push token, a WeChat openid or a URL (webhook). ``subject``: email subject or
    push / WeChat title. ``body``: the text (email: HTML or plain). ``data``: structured extras
    (WeChat template ``template_id`` + ``data``, push ``data``, the webhook JSON ``payload``).
    """

    key: str
    to: str
    body: str
    subject: str | None = None
    data: Mapping[str, Any] = field(default_factory=dict)
    profile_id: str | None = None


@dataclass(frozen=True)
class SendResult:
    """How one attempt at one message ended.

    ``accepted``: the provider took it (2xx / SMTP 250). ``retryable``: a failure worth another
    attempt (408, 429, 5xx, SMTP 4xx, timeouts, refused connections). ``retry_after``: seconds the
    provider asked us to wait. ``provider_id``: the provider's own id, matched by delivery receipts.
    """

    key: str
    accepted: bool
    retryable: bool = False
    status: int | None = None
    error: str | None = None
    provider_id: str | None = None
    retry_after: float | None = None


@dataclass(frozen=True)
class Receipt:
    """A delivery receipt (回执) from a provider: ``key`` is our message key."""

    key: str
    status: str  # queued | sent | delivered | undelivered | failed
    error: str | None = None
    provider_id: str | None = None


class Channel(Protocol):
    """A configured channel. ``send`` makes one attempt per message, in order, and returns one
    result per message (same order). It must not raise for a per-message failure."""

    kind: str
    name: str
    #: the most messages one ``send`` call should be given
    max_batch: int

    def send(self, messages: Sequence[Outbound]) -> list[SendResult]: ...

    def close(self) -> None: ...


class ChannelConfigError(ValueError):
    """A channel configuration that cannot work; ``field`` names what is wrong (``config.url`` …)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


__all__ = ["CHANNEL_KINDS", "Channel", "ChannelConfigError", "Outbound", "Receipt", "SendResult"]
