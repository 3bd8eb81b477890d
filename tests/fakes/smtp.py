"""A fake SMTP server (邮件服务器): aiosmtpd on a free loopback port, keeping what it receives.

Every accepted message is parsed with ``email.policy.default`` into an
:class:`email.message.EmailMessage` (:attr:`FakeSmtpServer.messages`; the envelopes in
:attr:`FakeSmtpServer.envelopes`). :meth:`~FakeSmtpServer.refuse` makes ``RCPT TO`` of one
address answer ``550`` (or another code); :meth:`~FakeSmtpServer.fail_next` makes the next *n*
``DATA`` commands answer ``451`` (a temporary failure). ``auth=(user, password)`` requires
``AUTH LOGIN/PLAIN`` (allowed without TLS: it is loopback).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    raw: bytes


class _Handler:
    def __init__(self, server: FakeSmtpServer) -> None:
        self.server = server

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        if self.server._auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        with self.server._lock:
            code = self.server._refused.get(address.lower())
        if code is not None:
            return f"{code} 5.1.1 <{address}>: recipient refused" if code >= 500 else f"{code} 4.2.1 <{address}>: busy"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        with self.server._lock:
            if self.server._failures:
                code = self.server._failures.pop(0)
                return f"{code} 4.3.0 temporary failure, try again later" if code < 500 else f"{code} 5.3.0 rejected"
            parsed = message_from_bytes(raw, policy=policy.default)
            assert isinstance(parsed, EmailMessage)
            self.server._received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), parsed, raw))
            self.server._lock.notify_all()
        return "250 OK: queued"


class _QuietSession(Session):
    """aiosmtpd sets the deprecated ``login_data`` after every AUTH (a DeprecationWarning, an error
    under the tests' ``filterwarnings``): keep it without the warning."""

    @property
    def login_data(self) -> Any:
        return self._login_data

    @login_data.setter
    def login_data(self, value: Any) -> None:
        self._login_data = value


class _SMTP(SMTP):
    def _create_session(self) -> Session:
        return _QuietSession(self.loop)


class _Controller(Controller):
    """A controller serving a socket bound before start, so port 0 (a free port) works without races."""

    def __init__(self, handler: Any, sock: socket.socket, **kwargs: Any) -> None:
        super().__init__(handler, hostname="127.0.0.1", port=sock.getsockname()[1], **kwargs)
        self._sock = sock

    def factory(self) -> SMTP:
        return _SMTP(self.handler, **self.SMTP_kwargs)

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


class FakeSmtpServer:
    """An SMTP server on ``127.0.0.1`` and a free port (see the module docstring)."""

    def __init__(self, *, auth: tuple[str, str] | None = None) -> None:
        self._lock = threading.Condition()
        self._received: list[Received] = []
        self._refused: dict[str, int] = {}
        self._failures: list[int] = []
        self._auth = auth
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        self.host = "127.0.0.1"
        self.port = int(sock.getsockname()[1])
        kwargs: dict[str, Any] = {"server_hostname": "fake-smtp.test", "ident": "Tessera fake SMTP"}
        if auth is not None:
            # (auth is enforced in handle_MAIL: aiosmtpd's auth_required without TLS warns)
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        self._controller = _Controller(_Handler(self), sock, **kwargs)
        self._controller.start()
        self._stopped = False

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and self._auth is not None
        if ok:
            assert self._auth is not None
            ok = (auth_data.login.decode(), auth_data.password.decode()) == self._auth
        return AuthResult(success=ok, handled=False)

    def refuse(self, address: str, code: int = 550) -> None:
        """Answer ``RCPT TO:<address>`` with ``code`` (550 = no such mailbox; a 4xx = try later)."""
        with self._lock:
            self._refused[address.lower()] = code

    def fail_next(self, n: int, code: int = 451) -> None:
        """Answer the next ``n`` ``DATA`` commands with ``code`` (451 = temporary failure)."""
        with self._lock:
            self._failures.extend([code] * n)

    @property
    def received(self) -> list[Received]:
        with self._lock:
            return list(self._received)

    @property
    def messages(self) -> list[EmailMessage]:
        return [r.message for r in self.received]

    @property
    def envelopes(self) -> list[tuple[str, list[str]]]:
        return [(r.mail_from, r.rcpt_tos) for r in self.received]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[EmailMessage]:
        """Wait until ``count`` messages arrived; raise :class:`TimeoutError` at the deadline."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._received) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._received)} of {count} messages after {timeout} s")
                self._lock.wait(left)
            return [r.message for r in self._received]

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._controller.stop()

    def __enter__(self) -> FakeSmtpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
