"""Shared CLI pieces: the --data-dir option, opening an instance, printing errors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
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


def ask_server(
    info: dict[str, Any], method: str, path: str, *, unreachable_code: int = 1, **kw: Any
) -> tuple[int, Any]:
    """Ask the server that holds the data dir (``server.json``), with its admin token.

    Returns (status, JSON body — ``{"message": text}`` when the body is not JSON); exits with
    ``unreachable_code`` when the server does not answer.
    """
    try:
        r = httpx.request(
            method,
            f"{info['url']}{path}",
            headers={"Authorization": f"Bearer {info['admin_token']}"},
            timeout=httpx.Timeout(60.0, read=3600.0),
            **kw,
        )
    except httpx.HTTPError as exc:
        fail(f"the server at {info['url']} did not answer: {exc}", code=unreachable_code)
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, {"message": r.text[:500]}


def answer_or_fail(status: int, body: Any) -> Any:
    """The body of a 200; a refused request (400/404/409/422) exits 2 naming the field, anything else 1."""
    if status == 200:
        return body
    if status in (400, 404, 409, 422):
        fail(f"{body.get('field', '')}: {body.get('message', body)}".lstrip(": "))
    fail(f"the server answered {status}: {body.get('message') or body}", code=1)
