"""`tessera ...` commands of loyalty: tiers (会员等级). Filled in by the tiers part (docs/loyalty-design.md)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this part's command group(s) to the main app."""
    _ = app
