"""A fake webhook receiver: a real HTTP server that checks Standard Webhooks signatures.

Every ``POST`` is checked with :func:`tessera.channels.webhook.verify` against ``secrets`` at the
receiver's ``clock`` (a test's :class:`~tessera.clock.FrozenClock`, or the system time) and
recorded as a :class:`Hit` — path, headers (lower-case), raw body, decoded JSON, and the
verification error if any. A bad signature is answered 401; otherwise 200, unless
:meth:`HookReceiver.fail_next` scripted a status. With ``secrets=None`` nothing is verified and
every JSON body is recorded (e.g. SMS delivery receipts, which are not signed).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

from tessera.channels.webhook import WebhookVerificationError, verify
from tessera.clock import Clock, SystemClock


@dataclass(frozen=True)
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes
    payload: Any
    error: str | None  # why verification failed (answered 401)
    status: int  # what it was answered


@dataclass(frozen=True)
class _Failure:
    status: int
    retry_after: str | None


class HookReceiver:
    """The receiver on ``127.0.0.1`` and a free port; :attr:`url` ends in ``/hooks``."""

    def __init__(self, secrets: str | Sequence[str] | None, *, clock: Clock | None = None) -> None:
        self.secrets = secrets
        self.clock = clock or SystemClock()
        self._lock = threading.Condition()
        self._hits: list[Hit] = []
        self._failures: list[_Failure] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self._stopped = False

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # (headers and body in separate writes would wait on delayed ACKs)
            wbufsize = 65536

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {k.lower(): v for k, v in self.headers.items()}
                error: str | None = None
                if receiver.secrets is None:
                    try:
                        payload = orjson.loads(body)
                    except orjson.JSONDecodeError as exc:
                        payload, error = None, f"not JSON: {exc}"
                else:
                    try:
                        payload = verify(receiver.secrets, headers, body, now=receiver.clock.now())
                    except WebhookVerificationError as exc:
                        payload, error = None, str(exc)
                extra: dict[str, str] = {}
                with receiver._lock:
                    if error is not None:
                        status = 401 if receiver.secrets is not None else 400
                    elif receiver._failures:
                        failure = receiver._failures.pop(0)
                        status = failure.status
                        if failure.retry_after is not None:
                            extra["retry-after"] = failure.retry_after
                    else:
                        status = 200
                    receiver._hits.append(Hit(self.path, headers, body, payload, error, status))
                    receiver._lock.notify_all()
                answer = (error or "ok").encode()
                self.send_response(status)
                self.send_header("content-type", "text/plain; charset=utf-8")
                self.send_header("content-length", str(len(answer)))
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def fail_next(self, n: int, status: int, retry_after: float | str | None = None) -> None:
        """Answer the next ``n`` correctly signed requests with ``status`` (and ``Retry-After``)."""
        value = None if retry_after is None else (retry_after if isinstance(retry_after, str) else f"{retry_after:g}")
        with self._lock:
            self._failures.extend(_Failure(status, value) for _ in range(n))

    @property
    def hits(self) -> list[Hit]:
        with self._lock:
            return list(self._hits)

    @property
    def payloads(self) -> list[Any]:
        """The decoded bodies of the requests that passed verification and were answered 2xx."""
        return [h.payload for h in self.hits if h.error is None and 200 <= h.status < 300]

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Hit]:
        """Wait until ``count`` requests arrived; raise :class:`TimeoutError` at the deadline."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._hits) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._hits)} of {count} requests after {timeout} s")
                self._lock.wait(left)
            return list(self._hits)

    def stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()

    def __enter__(self) -> HookReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
