"""`tessera ...` commands of loyalty: coupons (优惠券). Filled in by the coupons part (docs/loyalty-design.md)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this part's command group(s) to the main app."""
    _ = app
