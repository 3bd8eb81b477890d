"""`tessera import …` — filled in by the file-import module."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    return None
