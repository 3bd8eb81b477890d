"""A fake SMS provider (短信服务商): a real HTTP server speaking the generic JSON shape of
:mod:`tessera.channels.sms`.

* ``POST`` (any path) with ``Authorization: Bearer {api_key}`` (else 401) and either
  ``{"messages": [{"to", "from", "body", "message_id", "callback_url"?}, …]}`` — answered
  ``{"results": [{"message_id", "status", "provider_id"?, "error"?}, …]}`` — or one such object,
  answered with one result object. A body that is not JSON of that shape → 400.
* A message whose ``to`` is not E.164 or is :meth:`FakeSmsProvider.block`-ed gets ``"failed"``;
  the rest ``"queued"``. Like real providers it **de-duplicates by ``message_id``**: a repeat is
  answered ``queued`` with the first ``provider_id`` and not sent again. :attr:`messages` holds
  the unique accepted messages in order; :attr:`raw_count` counts every message of every
  answered-2xx request, repeats included; :attr:`requests` records every request.
* :meth:`fail_next` makes the next *n* requests answer a status (503 with ``Retry-After``, 429,
  400 …) without accepting anything.
* ``receipts="delivered"`` or ``"undelivered"``: a background thread posts delivery receipts for
  each newly accepted message to its ``callback_url`` exactly as given (a token in its query
  string travels along), as a JSON list batched per URL.

Run alone (the crash test runs it in its own process)::

    python -m tests.fakes.sms_provider --port 8090 --api-key K --record sent.jsonl

prints ``{"url": …}`` on one line once listening, appends each unique accepted message to the
record file as a JSON line (flushed), and stops cleanly on SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any

import httpx
import orjson

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


@dataclass
class SmsRequest:
    """One request as the provider saw it."""

    path: str
    headers: dict[str, str]
    body: Any
    status: int  # what it was answered


@dataclass
class _Failure:
    status: int
    retry_after: str | None


@dataclass
class _State:
    api_key: str
    receipts: str | None
    record: IO[bytes] | None
    lock: threading.Condition = field(default_factory=threading.Condition)
    requests: list[SmsRequest] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    provider_ids: dict[str, str] = field(default_factory=dict)
    raw_count: int = 0
    failures: list[_Failure] = field(default_factory=list)
    blocked: dict[str, str] = field(default_factory=dict)
    outbox: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    receipts_posted: list[tuple[str, int, list[dict[str, Any]]]] = field(default_factory=list)
    stopping: bool = False


def _check(item: Any) -> str | None:
    if not isinstance(item, dict):
        return "each message is an object"
    for name in ("to", "from", "body", "message_id"):
        if not isinstance(item.get(name), str) or not item[name]:
            return f"{name} is required"
    return None


def _handler(state: _State) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: one connection carries many batches
        disable_nagle_algorithm = True  # (headers and body in separate writes would wait on delayed ACKs)
        wbufsize = 65536

        def _answer(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            data = orjson.dumps(body)
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            with contextlib.suppress(OSError):
                self.wfile.write(data)

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length", "0")))
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                body = None
            status, answer, extra = self._decide(headers, body)
            self._answer(status, answer, extra)

        def _decide(self, headers: dict[str, str], body: Any) -> tuple[int, Any, dict[str, str]]:
            with state.lock:
                if headers.get("authorization") != f"Bearer {state.api_key}":
                    state.requests.append(SmsRequest(self.path, headers, body, 401))
                    return 401, {"error": "invalid api key"}, {}
                if state.failures:
                    failure = state.failures.pop(0)
                    state.requests.append(SmsRequest(self.path, headers, body, failure.status))
                    extra = {"retry-after": failure.retry_after} if failure.retry_after is not None else {}
                    return failure.status, {"error": f"simulated {failure.status}"}, extra
                single = isinstance(body, dict) and "messages" not in body
                items = [body] if single else body.get("messages") if isinstance(body, dict) else None
                problem = "body must be a message or {messages: [...]}" if not isinstance(items, list) else None
                if problem is None and items is not None:
                    problem = next((f"messages[{i}]: {p}" for i, m in enumerate(items) if (p := _check(m))), None)
                if problem is not None or items is None:
                    state.requests.append(SmsRequest(self.path, headers, body, 400))
                    return 400, {"error": problem}, {}
                state.requests.append(SmsRequest(self.path, headers, body, 200))
                results = [self._accept(m) for m in items]
                state.lock.notify_all()
            return 200, (results[0] if single else {"results": results}), {}

        def _accept(self, m: dict[str, Any]) -> dict[str, Any]:
            key = m["message_id"]
            state.raw_count += 1
            if key in state.provider_ids:  # a repeat: answered as before, not sent again
                return {"message_id": key, "status": "queued", "provider_id": state.provider_ids[key]}
            reason = None if _E164.match(m["to"]) else "invalid destination number"
            reason = state.blocked.get(m["to"], reason)
            if reason is not None:
                return {"message_id": key, "status": "failed", "error": reason}
            provider_id = f"fake-{len(state.provider_ids) + 1}"
            state.provider_ids[key] = provider_id
            message = {**m, "provider_id": provider_id}
            state.messages.append(message)
            if state.record is not None:
                state.record.write(orjson.dumps(message) + b"\n")
                state.record.flush()
            if state.receipts and m.get("callback_url"):
                state.outbox.append((m["callback_url"], message))
            return {"message_id": key, "status": "queued", "provider_id": provider_id}

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class FakeSmsProvider:
    """The provider on ``127.0.0.1`` (a free port unless ``port`` is given); see the module docstring."""

    def __init__(
        self,
        api_key: str = "test-api-key",
        *,
        receipts: str | None = None,
        port: int = 0,
        record: str | Path | None = None,
    ) -> None:
        if receipts not in (None, "delivered", "undelivered"):
            raise ValueError("receipts is 'delivered', 'undelivered' or None")
        self._state = _State(api_key=api_key, receipts=receipts, record=None)
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self._state))
        self._state.record = open(record, "ab") if record is not None else None  # noqa: SIM115 (closed by stop)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}/v1/sms"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self._poster: threading.Thread | None = None
        if receipts:
            self._poster = threading.Thread(target=self._post_receipts, daemon=True)
            self._poster.start()
        self._stopped = False

    # -- control -----------------------------------------------------------------------------------

    def fail_next(self, n: int, status: int, retry_after: float | str | None = None) -> None:
        """Answer the next ``n`` requests with ``status`` (and ``Retry-After``), accepting nothing."""
        value = None if retry_after is None else (retry_after if isinstance(retry_after, str) else f"{retry_after:g}")
        with self._state.lock:
            self._state.failures.extend(_Failure(status, value) for _ in range(n))

    def block(self, number: str, error: str = "number is on the block list") -> None:
        """Answer ``failed`` with ``error`` for messages to ``number`` (a valid number the carrier refuses)."""
        with self._state.lock:
            self._state.blocked[number] = error

    # -- what was seen -------------------------------------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        with self._state.lock:
            return list(self._state.messages)

    @property
    def raw_count(self) -> int:
        with self._state.lock:
            return self._state.raw_count

    @property
    def requests(self) -> list[SmsRequest]:
        with self._state.lock:
            return list(self._state.requests)

    @property
    def receipts_posted(self) -> list[tuple[str, int, list[dict[str, Any]]]]:
        """Each receipt post: (URL, HTTP status answered or 0 for a connection error, body)."""
        with self._state.lock:
            return list(self._state.receipts_posted)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until ``count`` unique messages were accepted; raise :class:`TimeoutError` at the deadline."""
        deadline = time.monotonic() + timeout
        with self._state.lock:
            while len(self._state.messages) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(self._state.messages)} of {count} messages after {timeout} s")
                self._state.lock.wait(left)
            return list(self._state.messages)

    def wait_for_receipts(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until receipts for ``count`` messages were posted (answered or not); return them."""
        deadline = time.monotonic() + timeout
        with self._state.lock:
            while (n := sum(len(b) for _, _, b in self._state.receipts_posted)) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{n} of {count} receipts after {timeout} s")
                self._state.lock.wait(left)
            return [r for _, _, body in self._state.receipts_posted for r in body]

    # -- receipts ------------------------------------------------------------------------------------

    def _post_receipts(self) -> None:
        state = self._state
        with httpx.Client(timeout=5) as client:
            while True:
                with state.lock:
                    while not state.outbox and not state.stopping:
                        state.lock.wait()
                    if state.stopping:
                        return
                    batch, state.outbox = state.outbox, []
                by_url: dict[str, list[dict[str, Any]]] = {}
                for url, m in batch:
                    receipt: dict[str, Any] = {
                        "message_id": m["message_id"],
                        "status": state.receipts,
                        "provider_id": m["provider_id"],
                    }
                    if state.receipts == "undelivered":
                        receipt["error"] = "UNDELIV: handset unreachable"
                    by_url.setdefault(url, []).append(receipt)
                for url, receipts in by_url.items():
                    try:
                        status = client.post(url, json=receipts).status_code
                    except httpx.HTTPError:
                        status = 0
                    with state.lock:
                        state.receipts_posted.append((url, status, receipts))
                        state.lock.notify_all()

    # -- life ------------------------------------------------------------------------------------------

    def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
        with self._state.lock:
            self._state.stopping = True
            self._state.lock.notify_all()
        if self._poster is not None:
            self._poster.join()
        if self._state.record is not None:
            self._state.record.close()

    def __enter__(self) -> FakeSmsProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.sms_provider", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0 = a free one)")
    parser.add_argument("--api-key", default="test-api-key")
    parser.add_argument("--record", help="append each unique accepted message to this file as a JSON line")
    parser.add_argument("--receipts", choices=["delivered", "undelivered"], default=None)
    args = parser.parse_args(argv)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    with FakeSmsProvider(args.api_key, receipts=args.receipts, port=args.port, record=args.record) as provider:
        sys.stdout.write(orjson.dumps({"url": provider.url, "port": provider.port}).decode() + "\n")
        sys.stdout.flush()
        done.wait()
    return 0


def _iter_lines(path: Path) -> Iterator[dict[str, Any]]:
    """The messages a ``--record`` file holds (a torn last line, from a kill mid-write, is skipped)."""
    with open(path, "rb") as f:
        for line in f:
            with contextlib.suppress(orjson.JSONDecodeError):
                yield orjson.loads(line)


def read_record(path: str | Path) -> list[dict[str, Any]]:
    """The messages recorded by ``--record``, in order."""
    return list(_iter_lines(Path(path)))


if __name__ == "__main__":
    raise SystemExit(main())
