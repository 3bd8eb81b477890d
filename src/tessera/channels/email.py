"""Email (邮件) over SMTP: one connection per ``send`` call, one result per recipient.

Settings: see :mod:`tessera.channels.registry` (``host``, ``port``, ``username`` / ``password``,
``starttls`` or ``ssl``, ``from``, ``from_name``, ``timeout``, ``max_batch``, ``helo``).

Each :class:`~tessera.channels.base.Outbound` becomes one :class:`email.message.EmailMessage`
(UTF-8 throughout: Chinese subjects and sender names are RFC 2047 encoded words, bodies are
``charset=utf-8``, base64 unless plain ASCII) with

* ``Message-ID: <{key}@tessera>`` and ``X-Tessera-Key: {key}`` — the idempotency key, so a
  receiving system (or a person reading headers) can tell a retry from a new message;
* ``Date`` from the injected clock, ``From: "{from_name}" <{from}>``, ``To``, ``Subject``;
* a ``text/plain`` part, plus a ``text/html`` alternative when the body looks like HTML (the
  plain part is then the HTML with tags stripped: links keep their URL, blocks become lines);
* ``List-Unsubscribe: <url>`` and ``List-Unsubscribe-Post: List-Unsubscribe=One-Click`` (RFC 8058)
  when ``Outbound.data["unsubscribe_url"]`` is set.

Outcomes: 250 → accepted. SMTP 4xx answers (greylisting, mailbox busy), refused connections,
timeouts and a connection dropped mid-batch → ``retryable`` (the rest of the batch too when the
connection is gone). SMTP 5xx (e.g. ``550`` recipient refused) → final for that message; the
others in the batch still go. An address that is not a plain ``local@domain`` → final, naming it,
without talking to the server. A failure to connect, greet, STARTTLS or log in applies to the
whole batch (4xx / network → retryable, 5xx such as ``535`` bad credentials → final).
"""

from __future__ import annotations

import logging
import re
import smtplib
import ssl
from collections.abc import Mapping, Sequence
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime
from html import unescape
from html.parser import HTMLParser
from typing import Any

from tessera.channels.base import Outbound, SendResult
from tessera.channels.registry import check_config, check_email_address
from tessera.clock import Clock

log = logging.getLogger(__name__)

#: Characters allowed in the key where it goes into ``Message-ID`` (an RFC 5322 dot-atom).
_KEY = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}$")
_LOOKS_HTML = re.compile(
    r"<\s*(?:html|body|head|p|div|br|table|tr|td|a\s|span|h[1-6]|img|strong|b|em|i|ul|ol|li|center|font)\b|</\s*[a-z][a-z0-9]*\s*>",
    re.IGNORECASE,
)
_MAX_ERROR = 300


def looks_like_html(body: str) -> bool:
    """Whether ``body`` is HTML (has a common tag), so it is sent with a plain-text alternative."""
    return bool(_LOOKS_HTML.search(body))


class _TextOfHtml(HTMLParser):
    _BLOCKS = frozenset(
        {"p", "div", "br", "tr", "table", "ul", "ol", "li", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "section"}
    )
    _SKIP = frozenset({"script", "style", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0
        self._href: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._SKIP:
            self._skipping += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")
            if tag == "li":
                self.parts.append("- ")
        elif tag == "a":
            self._href.append(dict(attrs).get("href"))

    def handle_endtag(self, tag: str) -> None:
        if tag in self._SKIP:
            self._skipping = max(0, self._skipping - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")
        elif tag == "a" and self._href:
            href = self._href.pop()
            if href and href.startswith(("http://", "https://", "mailto:")):
                self.parts.append(f" ({href})")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """A readable plain-text version of an HTML body: tags stripped, blocks on their own lines,
    links followed by their URL in brackets, entities decoded, runs of blank lines squeezed."""
    parser = _TextOfHtml()
    parser.feed(html)
    parser.close()
    text = unescape("".join(parser.parts))
    lines = [re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip() + "\n"


class EmailChannel:
    """Sends email through one SMTP server (see the module docstring)."""

    kind = "email"

    def __init__(self, name: str, config: Mapping[str, Any], *, clock: Clock) -> None:
        self.name = name
        self.config = check_config("email", config)
        self.max_batch: int = self.config["max_batch"]
        self._clock = clock
        self._sender = Address(display_name=self.config["from_name"] or "", addr_spec=self.config["from"])

    def close(self) -> None:
        """Nothing to release: each ``send`` opens and closes its own connection."""

    # -- building ------------------------------------------------------------------------------------

    def build_message(self, message: Outbound, to: str) -> EmailMessage:
        """The :class:`EmailMessage` sent for ``message`` to the checked address ``to``."""
        msg = EmailMessage()
        msg["From"] = self._sender
        msg["To"] = to
        msg["Subject"] = " ".join((message.subject or "").splitlines())  # a header is one line
        msg["Date"] = format_datetime(self._clock.now())
        msg["Message-ID"] = f"<{message.key}@tessera>"
        msg["X-Tessera-Key"] = message.key
        unsubscribe = message.data.get("unsubscribe_url")
        if isinstance(unsubscribe, str) and unsubscribe.strip():
            msg["List-Unsubscribe"] = f"<{unsubscribe.strip()}>"
            msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"  # RFC 8058: mail apps POST the link
        if looks_like_html(message.body):
            text = html_to_text(message.body)
            msg.set_content(text, charset="utf-8", cte=_cte(text))
            msg.add_alternative(message.body, subtype="html", charset="utf-8", cte=_cte(message.body))
        else:
            msg.set_content(message.body, charset="utf-8", cte=_cte(message.body))
        return msg

    # -- sending -------------------------------------------------------------------------------------

    def _connect(self) -> smtplib.SMTP:
        cfg = self.config
        helo = cfg["helo"]
        smtp: smtplib.SMTP
        if cfg["ssl"]:
            smtp = smtplib.SMTP_SSL(
                cfg["host"],
                cfg["port"],
                local_hostname=helo,
                timeout=cfg["timeout"],
                context=ssl.create_default_context(),
            )
        else:
            smtp = smtplib.SMTP(cfg["host"], cfg["port"], local_hostname=helo, timeout=cfg["timeout"])
        try:
            if cfg["starttls"]:
                smtp.starttls(context=ssl.create_default_context())
            if cfg["username"]:
                smtp.login(cfg["username"], cfg["password"] or "")
        except BaseException:
            _close(smtp)
            raise
        return smtp

    def send(self, messages: Sequence[Outbound]) -> list[SendResult]:
        """One attempt per message over one SMTP connection; results in the same order."""
        results: list[SendResult | None] = [None] * len(messages)
        ready: list[tuple[int, Outbound, str]] = []
        for i, m in enumerate(messages):
            if not _KEY.match(m.key):
                results[i] = SendResult(m.key, False, error=f"message key {m.key!r} cannot be a Message-ID")
                continue
            try:
                ready.append((i, m, check_email_address(m.to)))
            except ValueError as exc:
                results[i] = SendResult(m.key, False, error=f"invalid recipient: {exc}")
        if ready:
            self._send_ready(ready, results)
        out = [r for r in results if r is not None]
        assert len(out) == len(messages)
        return out

    def _send_ready(self, ready: list[tuple[int, Outbound, str]], results: list[SendResult | None]) -> None:
        try:
            smtp = self._connect()
        except Exception as exc:
            failure = _failure("", exc)
            log.info("email channel %s: cannot connect to %s: %s", self.name, self.config["host"], failure.error)
            for i, m, _ in ready:
                results[i] = SendResult(
                    m.key, False, retryable=failure.retryable, status=failure.status, error=failure.error
                )
            return
        try:
            lost: SendResult | None = None
            for i, m, to in ready:
                if lost is not None:  # the connection is gone: the rest wait for another attempt
                    results[i] = SendResult(m.key, False, retryable=True, status=lost.status, error=lost.error)
                    continue
                try:
                    refused = smtp.send_message(self.build_message(m, to), from_addr=self.config["from"], to_addrs=[to])
                except Exception as exc:
                    result = _failure(m.key, exc, to)
                    results[i] = result
                    if _connection_lost(exc):
                        lost = result
                    continue
                if refused:  # (only with several recipients; one refused recipient raises instead)
                    code, text = refused.get(to, (550, b"refused"))
                    results[i] = _coded(m.key, code, text, to)
                else:
                    results[i] = SendResult(m.key, True, status=250)
        finally:
            _close(smtp)


def _cte(text: str) -> str:
    """Transfer encoding: 7bit for plain ASCII, else base64 (8bit needs 8BITMIME, which not every hop has)."""
    return "7bit" if text.isascii() and all(len(line) <= 998 for line in text.splitlines()) else "base64"


def _close(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


def _text(value: bytes | str) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return " ".join(text.split())[:_MAX_ERROR]


def _coded(key: str, code: int, text: bytes | str, to: str = "") -> SendResult:
    where = f" for {to}" if to else ""
    error = f"SMTP {code}{where}: {_text(text)}".rstrip(": ")
    return SendResult(key, False, retryable=400 <= code < 500, status=code, error=error)


def _failure(key: str, exc: Exception, to: str = "") -> SendResult:
    """What an exception from smtplib means for one message."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        code, text = next(iter(exc.recipients.values()), (550, b"recipient refused"))
        return _coded(key, code, text, to)
    if isinstance(exc, smtplib.SMTPResponseException):  # sender refused, DATA refused, auth, HELO …
        return _coded(key, exc.smtp_code, exc.smtp_error, to)
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return SendResult(key, False, retryable=True, error=f"connection lost: {exc or 'server disconnected'}")
    if isinstance(exc, TimeoutError):
        return SendResult(key, False, retryable=True, error=f"timed out: {exc or 'no answer'}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):  # e.g. STARTTLS asked of a server without it
        return SendResult(key, False, error=f"not supported by the server: {exc}")
    if isinstance(exc, smtplib.SMTPException):  # (a subclass of OSError: test it first)
        return SendResult(key, False, retryable=True, error=f"SMTP error: {exc}")
    if isinstance(exc, ssl.SSLCertVerificationError):  # a retry meets the same certificate
        return SendResult(key, False, error=f"TLS certificate refused: {exc}")
    if isinstance(exc, OSError):  # refused, reset, DNS, TLS …
        return SendResult(key, False, retryable=True, error=f"connection failed: {exc}")
    return SendResult(key, False, error=f"{type(exc).__name__}: {exc}")


def _connection_lost(exc: Exception) -> bool:
    """Whether the connection is unusable after ``exc`` (not just this message refused)."""
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return True
    return isinstance(exc, OSError) and not isinstance(exc, smtplib.SMTPException)


__all__ = ["EmailChannel", "html_to_text", "looks_like_html"]
