"""Signed HTTP channels: webhook, push (推送) and WeChat template messages (模板消息).

All three POST one JSON request per message, signed with the Standard Webhooks scheme of
:mod:`tessera.channels.webhook` (same headers, same :func:`~tessera.channels.webhook.verify` on
the far side), ``webhook-id`` = the message key so the receiver de-duplicates retries. They
make one attempt per message, in order (``max_batch`` 50 by default); 2xx → accepted, 408, 429,
5xx, timeouts and connection errors → retryable (``Retry-After`` → ``retry_after``), anything
else → final. A JSON object answer's ``provider_id`` (or WeChat ``msgid``) is kept.

Settings (:mod:`tessera.channels.registry`): ``url``, ``timeout``, ``max_batch``; WeChat also
``app_id``. The signing secret (``whsec_…``) is passed apart from the settings.

Bodies:

* :class:`WebhookChannel` — ``Outbound.data["payload"]`` when given (any JSON object), else
  ``{"to", "subject", "body", "profile_id", "key"}``. An ``Outbound.to`` that is an http(s) URL
  replaces the configured URL for that message.
* :class:`PushChannel` — ``{"to": device token, "title": subject, "body", "data", "message_id"}``
  (``data`` = ``Outbound.data``) for a push gateway that talks to APNs / FCM / vendor push.
* :class:`WeChatChannel` — a 公众号 template message for a gateway that holds the access token:
  ``{"touser": openid, "template_id", "url", "data": {key: {"value": v}}, "message_id",
  "app_id"}`` from ``Outbound.data`` ``{"template_id", "url"?, "data": {key: v}}`` (a value that
  is already ``{"value": …, "color": …}`` is passed as it is). No ``template_id`` → final error.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from tessera.channels.base import ChannelConfigError, Outbound, SendResult
from tessera.channels.registry import check_config, check_secret, is_http_url
from tessera.channels.webhook import attempt
from tessera.clock import Clock


class _SignedChannel(ABC):
    """One signed POST per message to ``config["url"]``; subclasses shape the body."""

    kind: str = ""

    def __init__(
        self,
        name: str,
        config: Mapping[str, Any],
        *,
        clock: Clock,
        secret: str | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.name = name
        self.config = check_config(self.kind, config)
        if secret is None:
            secret = self.config.get("secret")
            if secret is None:
                raise ChannelConfigError("secret", f"a {self.kind} channel needs a signing secret (whsec_…)")
        self._secret = check_secret(secret, "secret")
        self.max_batch: int = self.config["max_batch"]
        self._clock = clock
        self._own_client = client is None
        self._client = (
            client if client is not None else httpx.Client(timeout=self.config["timeout"], follow_redirects=False)
        )

    def __enter__(self) -> _SignedChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._own_client:
            self._client.close()

    def url_for(self, message: Outbound) -> str:
        url: str = self.config["url"]
        return url

    @abstractmethod
    def body_for(self, message: Outbound) -> Mapping[str, Any] | str:
        """The JSON object sent for ``message``, or a reason it cannot be sent (a final error)."""

    def send(self, messages: Sequence[Outbound]) -> list[SendResult]:
        """One signed request per message, in order; results in the same order."""
        out: list[SendResult] = []
        for m in messages:
            body = self.body_for(m)
            if isinstance(body, str):
                out.append(SendResult(m.key, False, error=body))
                continue
            try:
                out.append(attempt(self._client, self.url_for(m), self._secret, body, msg_id=m.key, clock=self._clock))
            except TypeError as exc:  # a value json_body cannot encode
                out.append(SendResult(m.key, False, error=f"cannot send as JSON: {exc}"))
        return out


class WebhookChannel(_SignedChannel):
    """Posts each message to a URL (see the module docstring)."""

    kind = "webhook"

    def url_for(self, message: Outbound) -> str:
        return message.to.strip() if is_http_url(message.to) else super().url_for(message)

    def body_for(self, message: Outbound) -> Mapping[str, Any] | str:
        payload = message.data.get("payload")
        if payload is not None:
            if not isinstance(payload, Mapping):
                return f"data.payload must be a JSON object, not {type(payload).__name__}"
            return payload
        return {
            "to": message.to,
            "subject": message.subject,
            "body": message.body,
            "profile_id": message.profile_id,
            "key": message.key,
        }


class PushChannel(_SignedChannel):
    """Posts app push notifications to a push gateway (see the module docstring)."""

    kind = "push"

    def body_for(self, message: Outbound) -> Mapping[str, Any] | str:
        if not message.to.strip():
            return "no push token to send to"
        return {
            "to": message.to,
            "title": message.subject,
            "body": message.body,
            "data": dict(message.data),
            "message_id": message.key,
        }


class WeChatChannel(_SignedChannel):
    """Posts WeChat template messages (模板消息) to a gateway (see the module docstring)."""

    kind = "wechat"

    def body_for(self, message: Outbound) -> Mapping[str, Any] | str:
        if not message.to.strip():
            return "no WeChat openid to send to"
        template_id = message.data.get("template_id")
        if not isinstance(template_id, str) or not template_id.strip():
            return "data.template_id is required for a WeChat template message"
        fields = message.data.get("data") or {}
        if not isinstance(fields, Mapping):
            return f"data.data must be an object of template fields, not {type(fields).__name__}"
        return {
            "touser": message.to,
            "template_id": template_id,
            "url": message.data.get("url"),
            "data": {
                str(k): dict(v) if isinstance(v, Mapping) and "value" in v else {"value": v} for k, v in fields.items()
            },
            "message_id": message.key,
            "app_id": self.config["app_id"],
        }


__all__ = ["PushChannel", "WeChatChannel", "WebhookChannel"]
