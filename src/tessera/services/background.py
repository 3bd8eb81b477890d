"""Work the server does on its own, on a timer (a thread per kind of work)."""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod


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
