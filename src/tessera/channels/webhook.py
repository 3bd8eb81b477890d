"""Signed webhooks (Webhook 推送), following the Standard Webhooks specification.

Every request carries three headers:

* ``webhook-id`` — the message id. It is the same on every retry of one message, so a receiver
  de-duplicates on it (the outbound idempotency key);
* ``webhook-timestamp`` — when this attempt was signed, in whole seconds since the Unix epoch;
* ``webhook-signature`` — ``v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">``. Several
  space-separated signatures may be sent while a secret is being rotated; one valid one is enough.

The secret is ``whsec_`` followed by base64 of its key bytes; the HMAC key is the decoded bytes.

A receiver checks a request with :func:`verify` (Python), or by hand in any language::

    key      = base64_decode(secret.removeprefix("whsec_"))
    expected = base64_encode(hmac_sha256(key, f"{id}.{timestamp}.".bytes + raw_body))
    accept if any "v1,<sig>" in signature.split(" ") has sig == expected (constant-time compare)
           and |now - timestamp| <= 300 seconds (refuses replays of old requests)

and answers 2xx quickly. Any other answer is retried (:class:`WebhookSender`): 408, 429, 5xx,
timeouts and connection errors with exponential backoff and full jitter, honouring
``Retry-After``; other 4xx and 3xx are final. What is given up on goes to the dead-letter table
(:func:`tessera.services.deliveries.record_dead_letter`).

:func:`attempt` is one signed request without retries, classified the same way (a
:class:`~tessera.channels.base.SendResult`): :class:`WebhookSender` loops over it, and the journey
channels of :mod:`tessera.channels.hooks` call it once per message (their dispatcher retries).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import math
import random
import secrets as _secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from tessera.channels.base import SendResult
from tessera.clock import Clock, SystemClock

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
#: Seconds a receiver accepts between the signed timestamp and its own clock, either way.
DEFAULT_TOLERANCE = 300
#: Statuses worth another attempt; every other non-2xx answer is final.
RETRY_STATUSES = frozenset({408, 429})
USER_AGENT = "Tessera-Webhooks/1"
_SECRET_BYTES = 24
_MAX_ERROR_TEXT = 500


class WebhookVerificationError(ValueError):
    """A request that did not pass :func:`verify`; the message says which check failed."""


# -- signing -------------------------------------------------------------------------------------


def new_secret() -> str:
    """A fresh signing secret: ``whsec_`` + base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(_secrets.token_bytes(_SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError(f"a webhook secret starts with {SECRET_PREFIX!r}")
    try:
        key = base64.b64decode(secret[len(SECRET_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None
    if not key:
        raise ValueError("a webhook secret needs key bytes after whsec_")
    return key


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """``v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">`` under ``secret``."""
    mac = hmac.new(_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return f"{SIGNATURE_VERSION},{base64.b64encode(mac.digest()).decode()}"


def signature_header(secrets: str | Sequence[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` value: one signature per secret (several while rotating), space-separated."""
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    if not keys:
        raise ValueError("at least one secret is needed to sign")
    return " ".join(sign(s, msg_id, timestamp, body) for s in keys)


def verify(
    secrets: str | Sequence[str],
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: datetime | None = None,
    tolerance: int = DEFAULT_TOLERANCE,
) -> Any:
    """Check a received webhook and return its decoded JSON body.

    ``secrets``: the receiver's secret, or several (accepts a signature made with any of them, for
    rotation). ``headers``: the request headers (any letter case). ``body``: the raw bytes, exactly
    as received — never re-serialised JSON. ``now``: the receiver's time (a test's clock; None =
    the system clock). Raises :class:`WebhookVerificationError` naming the failed check: a missing
    header, a timestamp outside ``tolerance`` seconds of ``now``, or no matching ``v1`` signature.
    """
    if now is None:
        now = SystemClock().now()
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, stamp, signatures = (lower.get(h) for h in ("webhook-id", "webhook-timestamp", "webhook-signature"))
    for name, value in (("webhook-id", msg_id), ("webhook-timestamp", stamp), ("webhook-signature", signatures)):
        if not value:
            raise WebhookVerificationError(f"missing header {name}")
    assert msg_id is not None and stamp is not None and signatures is not None
    try:
        timestamp = int(stamp)
    except ValueError:
        raise WebhookVerificationError(f"webhook-timestamp is not whole seconds: {stamp!r}") from None
    skew = now.timestamp() - timestamp
    if skew > tolerance:
        raise WebhookVerificationError(f"message timestamp too old ({int(skew)} s > {tolerance} s): a replay?")
    if skew < -tolerance:
        raise WebhookVerificationError(f"message timestamp too far in the future ({int(-skew)} s > {tolerance} s)")
    keys = [secrets] if isinstance(secrets, str) else list(secrets)
    expected = [sign(s, msg_id, timestamp, body).encode() for s in keys]
    for candidate in signatures.split(" "):
        version, _, _sig = candidate.partition(",")
        if version != SIGNATURE_VERSION:
            continue  # another scheme (v1a, …) or an empty field from double spaces
        if any(hmac.compare_digest(candidate.encode(), e) for e in expected):
            try:
                return orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise WebhookVerificationError(f"signed body is not JSON: {exc}") from None
    raise WebhookVerificationError("no matching v1 signature (wrong secret, or the body was changed)")


# -- sending ---------------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # money stays exact: a decimal string, as in the API
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


def json_body(payload: Mapping[str, Any]) -> bytes:
    """The bytes sent for ``payload``: compact UTF-8 JSON; datetimes in RFC 3339 (naive ones are UTC,
    as stored), decimals as strings."""
    return orjson.dumps(payload, default=_json_default, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_NAIVE_UTC)


def json_safe(payload: Mapping[str, Any]) -> dict[str, Any]:
    """``payload`` as plain JSON values (what a JSON column can store)."""
    out: dict[str, Any] = orjson.loads(json_body(payload))
    return out


@dataclass(frozen=True)
class DeliveryResult:
    """How a send ended.

    ``delivered``: a 2xx answer. ``attempts``: requests made. ``status``: the last HTTP status (None
    after a connection error or timeout). ``error``: why the last attempt failed. ``dead``: given
    up (a final answer, or retries exhausted) — the payload belongs in the dead-letter table.
    """

    delivered: bool
    attempts: int
    status: int | None
    error: str | None
    dead: bool


class WebhookSender:
    """Sends signed JSON payloads with retries. Time, sleep and randomness are injected.

    ``client``: an :class:`httpx.Client` (None: one of our own with ``timeout`` seconds, closed by
    :meth:`close`). ``max_attempts`` counts the first request. Before attempt *n + 1* it sleeps a
    uniformly random time in ``[0, min(max_delay, base_delay * 2**(n-1))]`` (full jitter), or the
    server's ``Retry-After`` (seconds or an HTTP date) when that is longer — capped by
    ``max_delay`` either way. Redirects are not followed: a 3xx is final, like 4xx other than 408
    and 429 (the URL or the payload needs a person, not another try).
    """

    def __init__(
        self,
        client: httpx.Client | None,
        clock: Clock,
        sleep: Callable[[float], None] = time.sleep,
        *,
        max_attempts: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        timeout: float = 10.0,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if base_delay < 0 or max_delay < 0:
            raise ValueError("delays must not be negative")
        self._own_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=timeout, follow_redirects=False)
        self._clock = clock
        self._sleep = sleep
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self._rng = rng if rng is not None else random.Random()

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def send(self, url: str, secret: str | Sequence[str], payload: Mapping[str, Any], *, msg_id: str) -> DeliveryResult:
        """POST ``payload`` as JSON to ``url``, signed with ``secret`` (or each of several), as message ``msg_id``.

        Every attempt is signed afresh at the clock's time (a retry an hour later is still within
        the receiver's tolerance) and carries the same ``webhook-id``.
        """
        if not valid_msg_id(msg_id):
            raise ValueError("msg_id must be non-empty printable ASCII without spaces (it is a header value)")
        body = json_body(payload)
        outcome = SendResult(msg_id, accepted=False)
        tries = 0
        while tries < self.max_attempts:
            tries += 1
            outcome = attempt(self._client, url, secret, body, msg_id=msg_id, clock=self._clock)
            if outcome.accepted:
                log.debug("webhook %s delivered to %s on attempt %d", msg_id, url, tries)
                return DeliveryResult(True, tries, outcome.status, None, False)
            log.info("webhook %s to %s, attempt %d: %s", msg_id, url, tries, outcome.error)
            if not outcome.retryable or tries == self.max_attempts:
                break
            self._sleep(self.delay(tries, outcome.retry_after))
        return DeliveryResult(False, tries, outcome.status, outcome.error, True)

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        ceiling = min(self.max_delay, self.base_delay * 2 ** min(attempt - 1, 62))
        wait = self._rng.uniform(0, ceiling)
        if retry_after is not None:
            wait = max(wait, retry_after)
        return min(wait, self.max_delay)


def valid_msg_id(msg_id: str) -> bool:
    """Whether ``msg_id`` can be a ``webhook-id`` header: non-empty printable ASCII without spaces."""
    return bool(msg_id) and msg_id.isascii() and msg_id.isprintable() and " " not in msg_id


def attempt(
    client: httpx.Client,
    url: str,
    secret: str | Sequence[str],
    payload: Mapping[str, Any] | bytes,
    *,
    msg_id: str,
    clock: Clock,
) -> SendResult:
    """One signed POST of ``payload`` (a mapping sent as :func:`json_body`, or the exact bytes) to ``url``.

    Signed at ``clock``'s time with ``secret`` (or each of several), ``webhook-id`` = ``msg_id``.
    Never raises for what the far side or the network does: a 2xx is ``accepted`` (with the
    ``provider_id`` or WeChat ``msgid`` of a JSON object answer, if any); 408, 429, 5xx, timeouts
    and connection errors are ``retryable`` (``retry_after`` from ``Retry-After``); an invalid
    URL or ``msg_id``, 3xx and other 4xx are final. Used by :class:`WebhookSender` (which adds
    retries) and by the journey channels in :mod:`tessera.channels.hooks` (which leave retries to
    the dispatcher).
    """
    if not valid_msg_id(msg_id):
        return SendResult(msg_id, False, error="invalid message id: must be printable ASCII without spaces")
    body = payload if isinstance(payload, bytes) else json_body(payload)
    timestamp = int(clock.now().timestamp())
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secret, msg_id, timestamp, body),
    }
    try:
        response = client.post(url, content=body, headers=headers)
    except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:  # no retry will fix the URL
        return SendResult(msg_id, False, error=f"invalid URL: {exc}")
    except httpx.TimeoutException as exc:
        return SendResult(msg_id, False, retryable=True, error=f"timed out: {exc or type(exc).__name__}")
    except httpx.TransportError as exc:  # refused, reset, DNS …
        return SendResult(msg_id, False, retryable=True, error=f"connection failed: {exc or type(exc).__name__}")
    status = response.status_code
    if 200 <= status < 300:
        return SendResult(msg_id, True, status=status, provider_id=_provider_id(response))
    text = response.text[:_MAX_ERROR_TEXT].strip()
    if 300 <= status < 400:
        where = response.headers.get("location", "?")
        return SendResult(
            msg_id, False, status=status, error=f"HTTP {status}: redirected to {where}; update the destination URL"
        )
    retryable = status in RETRY_STATUSES or status >= 500
    wait = retry_after_seconds(response.headers.get("retry-after"), clock.now()) if retryable else None
    error = f"HTTP {status}" + (f": {text}" if text else "")
    return SendResult(msg_id, False, retryable=retryable, status=status, error=error, retry_after=wait)


def _provider_id(response: httpx.Response) -> str | None:
    """The far side's own id from a small JSON object answer (``provider_id``, or WeChat's ``msgid``)."""
    if "json" not in response.headers.get("content-type", "") or len(response.content) > 65536:
        return None
    try:
        answer = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(answer, dict):
        return None
    for name in ("provider_id", "msgid"):
        value = answer.get(name)
        if isinstance(value, str | int) and not isinstance(value, bool) and str(value):
            return str(value)
    return None


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` in seconds from ``now``: delta-seconds or an HTTP date; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


__all__ = [
    "DEFAULT_TOLERANCE",
    "DeliveryResult",
    "WebhookSender",
    "WebhookVerificationError",
    "attempt",
    "json_body",
    "json_safe",
    "new_secret",
    "retry_after_seconds",
    "sign",
    "signature_header",
    "valid_msg_id",
    "verify",
]
