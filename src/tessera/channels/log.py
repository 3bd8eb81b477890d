"""The log channel (日志渠道): writes messages to a file instead of sending them (the demo's channel).

Setting: ``path``, a file (its folder is created). Each ``send`` call appends one JSON line per
message — ``{"at", "key", "to", "subject", "body", "data"}``, ``at`` = the clock's time in
RFC 3339 — then flushes and fsyncs, and reports every message accepted. No network, so a demo
journey can run anywhere and ``tail -f`` shows what would have gone out.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from tessera.channels.base import Outbound, SendResult
from tessera.channels.registry import check_config
from tessera.channels.webhook import json_body
from tessera.clock import Clock


class LogChannel:
    """Appends messages to a JSON-lines file; always accepts (see the module docstring)."""

    kind = "log"
    max_batch = 1000

    def __init__(self, name: str, config: Mapping[str, Any], *, clock: Clock) -> None:
        self.name = name
        self.config = check_config("log", config)
        self.path = Path(self.config["path"])
        self._clock = clock

    def send(self, messages: Sequence[Outbound]) -> list[SendResult]:
        if not messages:
            return []
        at = self._clock.now().isoformat()
        lines = b"".join(_line(at, m) for m in messages)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "ab") as f:
                f.write(lines)
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:  # a full disk or a wrong path: try again later
            return [
                SendResult(m.key, False, retryable=True, error=f"cannot write {self.path}: {exc}") for m in messages
            ]
        return [SendResult(m.key, True) for m in messages]

    def close(self) -> None:
        """Nothing to release: each ``send`` opens and closes the file."""


def _line(at: str, m: Outbound) -> bytes:
    record = {"at": at, "key": m.key, "to": m.to, "subject": m.subject, "body": m.body, "data": dict(m.data)}
    try:
        return json_body(record) + b"\n"
    except TypeError:  # a value JSON cannot hold: written as its text rather than lost
        return orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS) + b"\n"


__all__ = ["LogChannel"]
