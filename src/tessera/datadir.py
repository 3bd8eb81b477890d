"""The data dir (--data-dir): one folder holds everything an embedded instance stores."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class DataDir:
    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> DataDir:
        d = cls(Path(root).expanduser().resolve())
        d.root.mkdir(parents=True, exist_ok=True)
        d.wal.mkdir(exist_ok=True)
        return d

    @property
    def sqlite_path(self) -> Path:
        return self.root / "operational.sqlite"

    @property
    def duckdb_path(self) -> Path:
        return self.root / "analytics.duckdb"

    @property
    def wal(self) -> Path:
        return self.root / "wal"

    @property
    def rejects(self) -> Path:
        p = self.root / "rejects"
        p.mkdir(exist_ok=True)
        return p

    @property
    def server_file(self) -> Path:
        return self.root / "server.json"

    def running_server(self) -> dict[str, object] | None:
        """The server that holds this data dir, if one is alive (its pid, url, admin token file)."""
        try:
            info = json.loads(self.server_file.read_text())
        except (OSError, ValueError):
            return None
        pid = int(info.get("pid", 0))
        try:
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return dict(info)
