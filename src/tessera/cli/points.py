"""`tessera ...` commands of loyalty: points (积分). Filled in by the points part (docs/loyalty-design.md)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this part's command group(s) to the main app."""
    _ = app
