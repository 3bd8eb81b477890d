"""SMS (短信) through an HTTP provider with a generic JSON shape.

Settings: see :mod:`tessera.channels.registry` (``url``, ``from``, ``api_key``, ``callback_url``,
``batch_size``, ``timeout``, ``max_batch``). Requests carry ``Authorization: Bearer {api_key}``.

**Request.** With ``batch_size`` > 1 a ``send`` call posts its messages in chunks of
``batch_size``: ``POST url`` with ``{"messages": [{"to", "from", "body", "message_id",
"callback_url"}, …]}`` (``callback_url`` only when configured); with ``batch_size`` 1, one
request per message whose body is the single object. ``message_id`` is the idempotency key
(``Outbound.key``): a provider de-duplicates on it, so a retry after a lost answer does not text
anyone twice. ``to`` must be E.164 (``+8613800138000``, checked with ``phonenumbers``); anything
else is a final error for that message and is not sent.

**Response.** 2xx with ``{"results": [{"message_id", "status": "queued" | "failed",
"provider_id"?, "error"?}]}`` (a single send may be answered with the bare object). ``failed`` is a
final error for that message; a message missing from the results — or an answer that is not
JSON — counts as accepted, since the status was 2xx. A non-2xx answer is for the whole request:
408, 429, 5xx, timeouts and connection errors make every message in it retryable (with
``Retry-After`` seconds or HTTP date as ``retry_after``); other statuses are final for all.

**Receipts (回执).** The provider posts delivery receipts to ``callback_url``;
:func:`parse_receipts` reads such a body — one object or a list of ``{"message_id", "status",
"error"?, "provider_id"?}`` with ``status`` in queued / sent / delivered / undelivered / failed —
into :class:`~tessera.channels.base.Receipt` values.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import orjson
import phonenumbers

from tessera.channels.base import Outbound, Receipt, SendResult
from tessera.channels.registry import check_config
from tessera.channels.webhook import retry_after_seconds
from tessera.clock import Clock

log = logging.getLogger(__name__)

USER_AGENT = "Tessera-SMS/1"
#: Receipt statuses a provider may report.
RECEIPT_STATUSES = ("queued", "sent", "delivered", "undelivered", "failed")
#: Per-message statuses in a send answer that mean the provider did not take the message.
_FAILED = frozenset({"failed", "rejected", "error", "undelivered"})
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_MAX_ERROR = 300


def check_phone(to: str) -> str | None:
    """Why ``to`` is not a valid E.164 number (``+8613800138000``), or None when it is."""
    if not isinstance(to, str) or not _E164.match(to):
        return f"{to!r} is not an E.164 phone number (+ country code and digits, e.g. +8613800138000)"
    try:
        number = phonenumbers.parse(to, None)
    except phonenumbers.NumberParseException:
        return f"{to!r} is not a phone number"
    if not phonenumbers.is_valid_number(number):
        return f"{to!r} is not a valid number for its country"
    return None


class SmsChannel:
    """Sends SMS through one HTTP provider (see the module docstring)."""

    kind = "sms"

    def __init__(
        self, name: str, config: Mapping[str, Any], *, clock: Clock, client: httpx.Client | None = None
    ) -> None:
        self.name = name
        self.config = check_config("sms", config)
        self.max_batch: int = self.config["max_batch"]
        self.batch_size: int = self.config["batch_size"]
        self._clock = clock
        self._own_client = client is None
        self._client = client if client is not None else httpx.Client(timeout=self.config["timeout"])
        self._headers = {"content-type": "application/json", "user-agent": USER_AGENT}
        if self.config["api_key"]:
            self._headers["authorization"] = f"Bearer {self.config['api_key']}"

    def __enter__(self) -> SmsChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def _item(self, m: Outbound) -> dict[str, Any]:
        item = {"to": m.to, "from": self.config["from"], "body": m.body, "message_id": m.key}
        if self.config["callback_url"]:
            item["callback_url"] = self.config["callback_url"]
        return item

    def send(self, messages: Sequence[Outbound]) -> list[SendResult]:
        """One attempt per message, in requests of ``batch_size``; results in the same order."""
        results: dict[int, SendResult] = {}
        ready: list[int] = []
        for i, m in enumerate(messages):
            problem = check_phone(m.to)
            if problem is None and not m.body:
                problem = "the message body is empty"
            if problem is None and not m.key:
                problem = "the message has no key"
            if problem is not None:
                results[i] = SendResult(m.key, False, error=problem)
            else:
                ready.append(i)
        for start in range(0, len(ready), self.batch_size):
            chunk = [messages[i] for i in ready[start : start + self.batch_size]]
            for i, result in zip(ready[start : start + self.batch_size], self._post(chunk), strict=True):
                results[i] = result
        return [results[i] for i in range(len(messages))]

    def _post(self, chunk: list[Outbound]) -> list[SendResult]:
        single = self.batch_size == 1
        payload: Any = self._item(chunk[0]) if single else {"messages": [self._item(m) for m in chunk]}
        try:
            response = self._client.post(self.config["url"], content=orjson.dumps(payload), headers=self._headers)
        except (httpx.InvalidURL, httpx.UnsupportedProtocol) as exc:
            return [SendResult(m.key, False, error=f"invalid URL: {exc}") for m in chunk]
        except httpx.TimeoutException as exc:
            error = f"timed out: {exc or type(exc).__name__}"
            return [SendResult(m.key, False, retryable=True, error=error) for m in chunk]
        except httpx.TransportError as exc:
            error = f"connection failed: {exc or type(exc).__name__}"
            return [SendResult(m.key, False, retryable=True, error=error) for m in chunk]
        status = response.status_code
        if not 200 <= status < 300:
            text = " ".join(response.text[:_MAX_ERROR].split())
            error = f"HTTP {status}" + (f": {text}" if text else "")
            retryable = status in (408, 429) or status >= 500
            wait = retry_after_seconds(response.headers.get("retry-after"), self._clock.now()) if retryable else None
            log.info("sms channel %s: %d messages not sent: %s", self.name, len(chunk), error)
            return [
                SendResult(m.key, False, retryable=retryable, status=status, error=error, retry_after=wait)
                for m in chunk
            ]
        answers = _answers(response)
        out: list[SendResult] = []
        for m in chunk:
            answer = answers.get(m.key)
            if answer is None:
                out.append(SendResult(m.key, True, status=status))
                continue
            provider_id = answer.get("provider_id")
            provider_id = str(provider_id) if isinstance(provider_id, str | int) and provider_id != "" else None
            state = str(answer.get("status", "queued")).lower()
            if state in _FAILED:
                reason = answer.get("error")
                error = f"provider: {reason}" if reason else f"provider: {state}"
                out.append(SendResult(m.key, False, status=status, error=error[:_MAX_ERROR], provider_id=provider_id))
            else:
                out.append(SendResult(m.key, True, status=status, provider_id=provider_id))
        return out


def _answers(response: httpx.Response) -> dict[str, Mapping[str, Any]]:
    """The per-message answers of a 2xx response by ``message_id`` (empty when there are none)."""
    try:
        body = orjson.loads(response.content) if response.content else None
    except orjson.JSONDecodeError:
        log.warning("sms provider answered %d with a body that is not JSON", response.status_code)
        return {}
    items: Any
    if isinstance(body, dict) and isinstance(body.get("results"), list):
        items = body["results"]
    elif isinstance(body, dict) and "message_id" in body:
        items = [body]
    elif isinstance(body, list):
        items = body
    else:
        return {}
    return {
        str(item["message_id"]): item for item in items if isinstance(item, dict) and item.get("message_id") is not None
    }


def parse_receipts(body: Any) -> list[Receipt]:
    """Delivery receipts from a provider's callback body (decoded JSON): one object or a list of
    ``{"message_id", "status", "error"?, "provider_id"?}``.

    Raises :class:`ValueError` naming the first bad item and field, e.g. ``[2].status: must be one
    of queued, sent, delivered, undelivered, failed`` (no index for a single object).
    """
    single = isinstance(body, dict)
    items = [body] if single else body
    if not isinstance(items, list):
        raise ValueError(f"a receipt body is an object or a list of objects, not {type(body).__name__}")
    out: list[Receipt] = []
    for n, item in enumerate(items):
        where = "" if single else f"[{n}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where or 'body'}: must be an object, not {type(item).__name__}")
        key = item.get("message_id")
        if not isinstance(key, str) or not key:
            raise ValueError(f"{where}.message_id: must be a non-empty string".lstrip("."))
        status = item.get("status")
        if not isinstance(status, str) or status not in RECEIPT_STATUSES:
            raise ValueError(f"{where}.status: must be one of {', '.join(RECEIPT_STATUSES)}".lstrip("."))
        error = item.get("error")
        if error is not None and not isinstance(error, str):
            raise ValueError(f"{where}.error: must be a string or null".lstrip("."))
        provider_id = item.get("provider_id")
        if isinstance(provider_id, int) and not isinstance(provider_id, bool):
            provider_id = str(provider_id)
        if provider_id is not None and not isinstance(provider_id, str):
            raise ValueError(f"{where}.provider_id: must be a string or null".lstrip("."))
        out.append(Receipt(key=key, status=status, error=error or None, provider_id=provider_id or None))
    return out


__all__ = ["RECEIPT_STATUSES", "SmsChannel", "check_phone", "parse_receipts"]
