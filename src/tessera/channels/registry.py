"""The channel registry (渠道注册): check a channel's settings, then build it by kind.

:func:`check_config` validates a kind's ``config`` and returns it normalised (defaults filled in,
URLs stripped, the sender address lower-cased in its domain); :func:`build_channel` checks the
same way and returns a ready :class:`~tessera.channels.base.Channel`. A problem raises
:class:`~tessera.channels.base.ChannelConfigError` naming the field: ``kind``, ``secret`` or
``config.<key>``. Unknown keys are refused (a typo such as ``start_tls`` must not silently fall
back to a default). ``*`` = required:

==============  ===================================================================================
``email`` 邮件   ``host``\\*, ``port`` (25; 465 with ``ssl``), ``username``, ``password``,
                ``starttls`` (false), ``ssl`` (false), ``from``\\* (an address), ``from_name``,
                ``timeout`` (30 s), ``max_batch`` (100), ``helo`` (the name given in EHLO)
``sms`` 短信     ``url``\\* (http/https), ``from``\\* (sender id), ``api_key`` (Bearer),
                ``callback_url`` (where the provider posts receipts), ``batch_size`` (100; 1 = a
                request per message), ``timeout`` (10 s), ``max_batch`` (1000 per ``send`` call)
``webhook``     ``url``\\*, ``timeout`` (10 s), ``max_batch`` (50)
``push`` 推送    ``url``\\* (the push gateway), ``timeout``, ``max_batch``
``wechat``      ``url``\\* (the template-message gateway), ``app_id``\\*, ``timeout``, ``max_batch``
``log``         ``path``\\* (a JSON-lines file; the demo's channel, no network)
==============  ===================================================================================

**Sandbox** (沙箱): any kind may be configured as ``{"sandbox": "<file>"}`` instead — messages are
rendered, guarded and recorded exactly as for real, then written to that JSON-lines file rather
than sent (the demo's channels; trying a journey before the provider contract is signed).

Signing secrets (``whsec_`` + base64, Standard Webhooks) of ``webhook`` / ``push`` / ``wechat``
are stored apart from the config and passed to :func:`build_channel` as ``secret``; a ``secret``
found *inside* a config is checked too (``config.secret``) and kept, and used when none is passed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from tessera.channels.base import CHANNEL_KINDS, Channel, ChannelConfigError
from tessera.channels.webhook import sign
from tessera.clock import Clock

_MAX_URL = 2000
_CONTROL_OR_SPACE = re.compile(r"[\s\x00-\x1f\x7f]")
_LOCAL_PART = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")

#: Settings each kind accepts (anything else is refused).
KEYS: dict[str, frozenset[str]] = {
    "email": frozenset(
        {"host", "port", "username", "password", "starttls", "ssl", "from", "from_name", "timeout", "max_batch", "helo"}
    ),
    "sms": frozenset({"url", "from", "api_key", "callback_url", "batch_size", "timeout", "max_batch"}),
    "webhook": frozenset({"url", "secret", "timeout", "max_batch"}),
    "push": frozenset({"url", "secret", "timeout", "max_batch"}),
    "wechat": frozenset({"url", "secret", "app_id", "timeout", "max_batch"}),
    "log": frozenset({"path"}),
}
#: Kinds whose requests are signed with a Standard Webhooks secret.
SIGNED_KINDS = frozenset({"webhook", "push", "wechat"})


# -- field checks ------------------------------------------------------------------------------------


def _present(config: Mapping[str, Any], key: str) -> bool:
    return config.get(key) is not None


def _text(config: Mapping[str, Any], key: str, *, required: bool = False, max_len: int = 500) -> str | None:
    value = config.get(key)
    if value is None:
        if required:
            raise ChannelConfigError(f"config.{key}", "is required")
        return None
    if not isinstance(value, str):
        raise ChannelConfigError(f"config.{key}", f"must be text, not {type(value).__name__}")
    value = value.strip()
    if not value:
        if required:
            raise ChannelConfigError(f"config.{key}", "is required")
        return None
    if len(value) > max_len:
        raise ChannelConfigError(f"config.{key}", f"must be at most {max_len} characters")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ChannelConfigError(f"config.{key}", "must not contain control characters")
    return value


def _int(config: Mapping[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    value = config.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ChannelConfigError(f"config.{key}", f"must be a whole number, not {value!r}")
    if not lo <= value <= hi:
        raise ChannelConfigError(f"config.{key}", f"must be between {lo} and {hi}")
    return value


def _seconds(config: Mapping[str, Any], key: str, default: float) -> float:
    value = config.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ChannelConfigError(f"config.{key}", f"must be a number of seconds, not {value!r}")
    if not 0 < value <= 600:
        raise ChannelConfigError(f"config.{key}", "must be more than 0 and at most 600 seconds")
    return float(value)


def _bool(config: Mapping[str, Any], key: str) -> bool:
    value = config.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ChannelConfigError(f"config.{key}", f"must be true or false, not {value!r}")
    return value


def check_url(value: Any, field: str) -> str:
    """``value`` stripped if it is an absolute http(s) URL with a host (no user:password); else
    :class:`ChannelConfigError` on ``field``."""
    if not isinstance(value, str) or not value.strip():
        raise ChannelConfigError(field, "is required (an http:// or https:// URL)")
    url = value.strip()
    if len(url) > _MAX_URL:
        raise ChannelConfigError(field, f"must be at most {_MAX_URL} characters")
    if _CONTROL_OR_SPACE.search(url):
        raise ChannelConfigError(field, "must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises for a port out of range or not a number
    except ValueError as exc:
        raise ChannelConfigError(field, f"is not a valid URL: {exc}") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ChannelConfigError(field, "must start with http:// or https://")
    if not parts.hostname:
        raise ChannelConfigError(field, "needs a host name, e.g. https://sms.example.com/v1/messages")
    if parts.username is not None or parts.password is not None:
        raise ChannelConfigError(field, "must not carry a user name or password")
    if port == 0:
        raise ChannelConfigError(field, "port 0 is not usable")
    return url


def is_http_url(value: str) -> bool:
    """Whether ``value`` passes :func:`check_url` (e.g. an ``Outbound.to`` that overrides a webhook URL)."""
    try:
        check_url(value, "to")
    except ChannelConfigError:
        return False
    return True


def check_email_address(value: str) -> str:
    """``value`` as a deliverable address ``local@domain`` (domain lower-cased, an internationalised
    domain in its ASCII ``xn--`` form), or :class:`ValueError` saying why not.

    The local part must be a plain dot-atom in ASCII (quoted local parts and SMTPUTF8 mailboxes
    are refused: few providers take them); the domain needs at least one dot.
    """
    address = value.strip() if isinstance(value, str) else ""
    if not address:
        raise ValueError(f"{value!r}: an email address is required")
    if address.count("@") != 1:
        raise ValueError(f"not an email address: {value!r}")
    local, domain = address.split("@")
    if not local.isascii():
        raise ValueError(f"{value!r}: a non-ASCII mailbox name is not supported")
    if len(local) > 64 or not _LOCAL_PART.match(local):
        raise ValueError(f"{value!r}: invalid mailbox name before @")
    try:
        ascii_domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(f"{value!r}: invalid domain after @") from None
    labels = ascii_domain.split(".")
    if len(labels) < 2 or not all(_LABEL.match(label) for label in labels) or labels[-1].isdigit():
        raise ValueError(f"{value!r}: invalid domain after @")
    normalised = f"{local}@{ascii_domain}"
    if len(normalised) > 254:
        raise ValueError(f"{value!r}: longer than 254 characters")
    return normalised


def check_secret(value: Any, field: str) -> str:
    """A Standard Webhooks signing secret (``whsec_`` + base64), or :class:`ChannelConfigError` on ``field``."""
    if not isinstance(value, str):
        raise ChannelConfigError(field, "must be a whsec_… secret")
    try:
        sign(value, "check", 0, b"")
    except ValueError as exc:
        raise ChannelConfigError(field, str(exc)) from None
    return value


# -- per kind ------------------------------------------------------------------------------------------


def _email(config: Mapping[str, Any]) -> dict[str, Any]:
    use_ssl = _bool(config, "ssl")
    starttls = _bool(config, "starttls")
    if use_ssl and starttls:
        raise ChannelConfigError("config.starttls", "use either ssl (implicit TLS, port 465) or starttls, not both")
    username = _text(config, "username")
    password = config.get("password")
    if password is not None and not isinstance(password, str):
        raise ChannelConfigError("config.password", "must be text")
    if password and not username:
        raise ChannelConfigError("config.username", "is required with a password")
    sender = _text(config, "from", required=True)
    assert sender is not None
    try:
        sender = check_email_address(sender)
    except ValueError as exc:
        raise ChannelConfigError("config.from", str(exc)) from None
    return {
        "host": _text(config, "host", required=True, max_len=253),
        "port": _int(config, "port", 465 if use_ssl else 25, 1, 65535),
        "username": username,
        "password": password or None,
        "starttls": starttls,
        "ssl": use_ssl,
        "from": sender,
        "from_name": _text(config, "from_name", max_len=200),
        "timeout": _seconds(config, "timeout", 30.0),
        "max_batch": _int(config, "max_batch", 100, 1, 10_000),
        "helo": _text(config, "helo", max_len=253),
    }


def _sms(config: Mapping[str, Any]) -> dict[str, Any]:
    callback = config.get("callback_url")
    batch_size = _int(config, "batch_size", 100, 1, 1000)
    max_batch = _int(config, "max_batch", max(1000, batch_size), 1, 100_000)
    return {
        "url": check_url(config.get("url"), "config.url"),
        "from": _text(config, "from", required=True, max_len=64),
        "api_key": _text(config, "api_key", max_len=4096),
        "callback_url": check_url(callback, "config.callback_url") if callback is not None else None,
        "batch_size": batch_size,
        "timeout": _seconds(config, "timeout", 10.0),
        "max_batch": max_batch,
    }


def _hook(kind: str) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    def check(config: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "url": check_url(config.get("url"), "config.url"),
            "timeout": _seconds(config, "timeout", 10.0),
            "max_batch": _int(config, "max_batch", 50, 1, 10_000),
        }
        if kind == "wechat":
            out["app_id"] = _text(config, "app_id", required=True, max_len=64)
        if _present(config, "secret"):
            out["secret"] = check_secret(config["secret"], "config.secret")
        return out

    return check


def _log(config: Mapping[str, Any]) -> dict[str, Any]:
    return {"path": _text(config, "path", required=True, max_len=4096)}


_CHECKS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "email": _email,
    "sms": _sms,
    "webhook": _hook("webhook"),
    "push": _hook("push"),
    "wechat": _hook("wechat"),
    "log": _log,
}


def check_config(kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` for a channel of ``kind``, validated and normalised (see the module docstring).

    Raises :class:`ChannelConfigError` naming the field (``kind``, ``config``, ``config.<key>``).
    """
    if kind not in _CHECKS:
        raise ChannelConfigError("kind", f"unknown channel kind {kind!r}; one of {', '.join(CHANNEL_KINDS)}")
    if not isinstance(config, Mapping):
        raise ChannelConfigError("config", "must be an object of settings")
    if "sandbox" in config:
        extra = sorted(set(config) - {"sandbox"})
        if extra:
            raise ChannelConfigError(f"config.{extra[0]}", "a sandbox channel has only the sandbox file")
        return {"sandbox": _text(config, "sandbox", required=True, max_len=4096)}
    for key in config:
        if key not in KEYS[kind]:
            raise ChannelConfigError(f"config.{key}", f"is not a setting of {kind} channels")
    return _CHECKS[kind](config)


def build_channel(
    kind: str, name: str, config: Mapping[str, Any], *, clock: Clock, secret: str | None = None
) -> Channel:
    """A ready channel of ``kind`` called ``name``. ``secret``: the signing secret of a
    ``webhook`` / ``push`` / ``wechat`` channel (else ``config.secret``); ignored by other kinds.
    The caller closes the channel."""
    checked = check_config(kind, config)
    if "sandbox" in checked:
        from tessera.channels.log import LogChannel

        return LogChannel(name, {"path": checked["sandbox"]}, clock=clock)
    if kind == "email":
        from tessera.channels.email import EmailChannel

        return EmailChannel(name, checked, clock=clock)
    if kind == "sms":
        from tessera.channels.sms import SmsChannel

        return SmsChannel(name, checked, clock=clock)
    if kind == "log":
        from tessera.channels.log import LogChannel

        return LogChannel(name, checked, clock=clock)
    from tessera.channels.hooks import PushChannel, WebhookChannel, WeChatChannel

    signed: dict[str, type[WebhookChannel | PushChannel | WeChatChannel]] = {
        "webhook": WebhookChannel, "push": PushChannel, "wechat": WeChatChannel,
    }  # fmt: skip
    cls = signed[kind]
    return cls(name, checked, clock=clock, secret=secret)


__all__ = [
    "KEYS",
    "SIGNED_KINDS",
    "build_channel",
    "check_config",
    "check_email_address",
    "check_secret",
    "check_url",
    "is_http_url",
]
