"""A store a test fills by hand (rows inserted from Arrow), for the model-tag tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from tessera.clock import FrozenClock
from tessera.runtime import Instance


class HandStore:
    """An instance on a frozen clock with ``event_names`` registered; rows go in through :meth:`_insert`."""

    def __init__(self, root: Path, *, now: datetime, event_names: Sequence[str]) -> None:
        self.clock = FrozenClock(now)
        self.inst = Instance(root / "data", clock=self.clock)
        self.cur = self.inst.analytic.cursor()
        self.cur.executemany("INSERT INTO event_names (event_id, name) VALUES (?, ?)",
                             [[i + 1, n] for i, n in enumerate(event_names)])  # fmt: skip
        self._msg = 0

    def _insert(self, table: str, cols: dict[str, Any]) -> None:
        data = pa.table(cols)
        self.cur.register("_rows", data)
        try:
            names = ", ".join(f'"{c}"' for c in data.column_names)
            self.cur.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM _rows")
        finally:
            self.cur.unregister("_rows")

    def last_run(self, key: str) -> tuple[str, dict[str, Any], str | None]:
        """(status, details, error) of the tag's latest run."""
        status, details, error = self.cur.execute(
            "SELECT status, details, error FROM tag_runs WHERE tag_key = ? ORDER BY run_no DESC LIMIT 1", [key]
        ).fetchall()[0]
        return status, json.loads(details) if details else {}, error

    def close(self) -> None:
        self.cur.close()
        self.inst.close()
