"""Injected time. Everything that reads 'now' takes a Clock, so tests can move time."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FrozenClock:
    """A clock a test can set and move."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = (start or datetime(2026, 1, 1, tzinfo=UTC)).astimezone(UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._now = self._now + delta

    def set(self, when: datetime) -> None:
        """Move to ``when`` (an aware time in any zone; kept as UTC, like the system clock)."""
        with self._lock:
            self._now = when.astimezone(UTC)


def monotonic() -> float:
    return time.monotonic()


def as_utc(value: datetime) -> datetime:
    """A time read back from the operational store as aware UTC (SQLite hands back naive UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
