"""Work the server does on its own, on a timer (a thread per kind of work)."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod

log = logging.getLogger(__name__)


class Periodic(ABC):
    """Calls :meth:`tick` every ``interval`` seconds in a daemon thread until :meth:`stop`.

    A tick that raises is remembered in ``last_error`` (shown by ``/healthz``) and the next tick
    runs as usual; a tick that succeeds clears it."""

    name = "periodic"

    def __init__(self, *, interval: float) -> None:
        self.interval = interval
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    @abstractmethod
    def tick(self) -> None:
        """One round of the work."""

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.tick()
                self.last_error = None
            except Exception as e:
                self.last_error = f"{type(e).__name__}: {e}"


class Worker(ABC):
    """A thread that works in rounds: again at once while a round says it was busy, else after
    ``interval`` seconds or as soon as :meth:`wake` is called (the loader wakes workers after a load).

    A round that raises is remembered in ``last_error`` (``/healthz`` shows it); the worker waits a
    second and goes on."""

    name = "worker"

    def __init__(self, *, interval: float) -> None:
        self.interval = interval
        self.last_error: str | None = None
        self.rounds = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)

    @abstractmethod
    def round(self) -> bool:
        """One round; True when there may be more to do right away."""

    def start(self) -> None:
        self._thread.start()

    def wake(self, *_: object) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.is_set():
            busy = False
            try:
                busy = self.round()
                self.rounds += 1
                self.last_error = None
            except Exception as e:
                self.last_error = f"{type(e).__name__}: {e}"
                log.exception("%s worker round failed", self.name)
                self._stop.wait(1.0)
            if busy:
                continue
            self._wake.wait(self.interval)
            self._wake.clear()
