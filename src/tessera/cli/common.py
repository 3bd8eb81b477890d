"""Shared CLI pieces: the --data-dir option, opening an instance, printing errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

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
    r = _server_request(info, method, path, unreachable_code=unreachable_code, **kw)
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, {"message": r.text[:500]}


def _server_request(
    info: dict[str, Any], method: str, path: str, *, unreachable_code: int, **kw: Any
) -> httpx.Response:
    try:
        return httpx.request(
            method,
            f"{info['url']}{path}",
            headers={"Authorization": f"Bearer {info['admin_token']}"},
            timeout=httpx.Timeout(60.0, read=3600.0),
            **kw,
        )
    except httpx.HTTPError as exc:
        fail(f"the server at {info['url']} did not answer: {exc}", code=unreachable_code)


def answer_or_fail(status: int, body: Any) -> Any:
    """The body of a 200; a refused request (400/404/409/422) exits 2 naming the field (every other
    problem listed first, the stable ``reason`` code after the message), anything else 1."""
    if status == 200:
        return body
    if not isinstance(body, dict):
        body = {"message": str(body)}
    if status in (400, 404, 409, 422):
        for p in body.get("problems") or []:
            if p.get("field") != body.get("field") or p.get("message") != body.get("message"):
                err_console.print(f"[red]✗[/] {p.get('field', '')}: {p.get('message', '')}", highlight=False)
        reason = f" ({body['reason']})" if body.get("reason") else ""
        fail(f"{body.get('field', '')}: {body.get('message', body)}{reason}".lstrip(": "))
    fail(f"the server answered {status}: {body.get('message') or body}", code=1)


def api_request(instance: Instance, method: str, path: str, **kw: Any) -> httpx.Response:
    """One code path for a command: the running server when one holds the data dir, else the same
    API in this process (without the ingestion pipeline)."""
    running = instance.data_dir.running_server()
    if running:
        return _server_request(running, method, path, unreachable_code=1, **kw)
    import anyio  # only for commands without a server

    from tessera.api.app import create_app  # the API imports every service

    token = "local-cli"
    app = create_app(instance, local_token=token)  # without its lifespan: no ingestion pipeline

    async def ask() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://tessera.local") as client:
            return await client.request(method, path, headers={"Authorization": f"Bearer {token}"}, **kw)

    return anyio.run(ask)


def call_api(instance: Instance, method: str, path: str, **kw: Any) -> Any:
    """The JSON answer of :func:`api_request`; a refusal exits 2 naming the field, a failure 1."""
    r = api_request(instance, method, path, **kw)
    try:
        body = r.json() if r.content else {}
    except ValueError:
        body = {"message": r.text[:500]}
    if r.status_code in (200, 201, 204):
        return body
    return answer_or_fail(r.status_code, body)


def read_json_arg(text: str, what: str) -> Any:
    """A JSON argument given inline or as ``@file.json``; exits 2 naming ``what`` when it is not JSON."""
    import json

    try:
        if text.startswith("@"):
            text = Path(text[1:]).read_text(encoding="utf-8")
        return json.loads(text)
    except OSError as e:
        fail(f"{what}: cannot read {text[1:]}: {e.strerror}")
    except ValueError as e:
        fail(f"{what}: not JSON: {e}")


def call_in(data_dir: Path | None, method: str, path: str, **kw: Any) -> Any:
    """:func:`call_api` on the data dir's instance (opened for the call, closed after)."""
    instance = open_instance(data_dir)
    try:
        return call_api(instance, method, path, **kw)
    finally:
        instance.close()


def cell(value: Any) -> str:
    """A table cell: ISO times to the minute (UTC offset kept), lists joined, None as blank."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(cell(v) for v in value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    text = str(value)
    if len(text) >= 19 and text[4] == "-" and text[10] == "T":
        return text[:16].replace("T", " ") + (text[-6:] if text[-6] in "+-" else "")
    return text


def print_answer(body: Any, as_json: bool, title: str | None = None, columns: list[str] | None = None) -> None:
    """An API answer: as JSON, or as a table of ``columns`` (the first, a key, is not folded)."""
    if as_json or columns is None:
        typer.echo(json.dumps(body, ensure_ascii=False, indent=2))
        return
    rows = body if isinstance(body, list) else [body]
    table = Table(title=title, title_justify="left")
    for i, c in enumerate(columns):
        widest = max((cell_len(cell(r.get(c))) for r in rows), default=0) if i == 0 else None
        table.add_column(c, overflow="fold", min_width=min(widest, 40) if widest else None)
    for r in rows:
        table.add_row(*[cell(r.get(c)) for c in columns])
    console.print(table)
