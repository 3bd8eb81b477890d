"""Shared CLI pieces: the --data-dir option, opening an instance, printing errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, NoReturn

import typer
from rich.console import Console

from tessera.runtime import Instance

console = Console()
err_console = Console(stderr=True)

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        "-d",
        help="Data dir holding everything (default ./tessera-data or $TESSERA_DATA).",
        envvar="TESSERA_DATA",
    ),
]


def open_instance(data_dir: Path | None) -> Instance:
    return Instance(data_dir)


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(code)
