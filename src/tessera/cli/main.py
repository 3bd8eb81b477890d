"""The `tessera` command line (Typer + Rich)."""

from __future__ import annotations

import typer

from tessera.cli import (
    admin,
    audiences,
    coupons,
    demo,
    identity,
    imports,
    journeys,
    loyalty,
    points,
    profiles,
    tags,
    tiers,
)

app = typer.Typer(
    name="tessera",
    help="Tessera CDP — collect, unify, tag, select, activate, measure.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
admin.register(app)
imports.register(app)
demo.register(app)
profiles.register(app)
identity.register(app)
audiences.register(app)
tags.register(app)
journeys.register(app)
coupons.register(app)
points.register(app)
tiers.register(app)
loyalty.register(app)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
