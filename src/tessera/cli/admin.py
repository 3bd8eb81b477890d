"""`tessera serve`, `tessera stats`, `tessera source …`, `tessera token …`."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from tessera.cli.common import DataDirOption, answer_or_fail, ask_server, console, fail, open_instance
from tessera.services import sources as sources_service
from tessera.services import tokens as tokens_service
from tessera.services.stats import collect_stats

source_app = typer.Typer(help="Sources (数据源): one write key per channel.", no_args_is_help=True)
token_app = typer.Typer(help="Admin tokens for the management API.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)
    app.command("stats")(stats)
    app.add_typer(source_app, name="source")
    app.add_typer(token_app, name="token")


def serve(
    data_dir: DataDirOption = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8600).")] = None,
) -> None:
    """Run the HTTP server (collection + management API) on the data dir."""
    from tessera.api.server import serve as run

    instance = open_instance(data_dir)
    running = instance.data_dir.running_server()
    if running:
        fail(f"a server (pid {running['pid']}) already serves {instance.data_dir.root} at {running['url']}")
    h = host or instance.settings.server.host
    p = port or instance.settings.server.port

    def ready(url: str, _token: str) -> None:
        console.print(f"[green]Tessera is serving[/] {instance.data_dir.root} at [bold]{url}[/]  (docs: {url}/docs)")

    run(instance, host=h, port=p, on_ready=ready)


def stats(
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """What is stored: events, profiles, orders, dead letters — per source."""
    instance = open_instance(data_dir)
    running = instance.data_dir.running_server()
    if running:
        data = answer_or_fail(*ask_server(running, "GET", "/v1/admin/stats", unreachable_code=2))
    else:
        with instance.operational.session() as s:
            srcs = sources_service.list_sources(session=s)
        data = collect_stats(cur=instance.analytic.cursor(), sources=srcs)
        instance.close()
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    table = Table(title=f"Tessera — {instance.data_dir.root}")
    for col in ("source", "kind", "events", "profiles", "customers", "orders", "dead letters"):
        table.add_column(col, justify="right" if col not in ("source", "kind") else "left")
    for row in data["sources"]:
        table.add_row(
            str(row["name"]), str(row["kind"]),
            *(f"{row[k]:,}" for k in ("events", "profiles", "customers", "orders", "dead_letters")),
        )  # fmt: skip
    console.print(table)
    totals = data["totals"]
    console.print("  ".join(f"{k}: [bold]{v:,}[/]" for k, v in totals.items()))


@source_app.command("create")
def source_create(
    name: Annotated[str, typer.Argument(help="A name, e.g. '微信小程序' or 'Tmall flagship'.")],
    kind: Annotated[str, typer.Option(help="app, web, wechat_miniprogram, tmall, jd, offline_store, crm …")] = "other",
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Create a source and print its write key."""
    instance = open_instance(data_dir)
    try:
        with instance.operational.session() as s:
            src = sources_service.create_source(session=s, name=name, kind=kind, now=instance.clock.now())
    except sources_service.SourceError as exc:
        fail(str(exc))
    finally:
        instance.close()
    if as_json:
        typer.echo(json.dumps({"id": src.id, "name": src.name, "kind": src.kind, "write_key": src.write_key}))
    else:
        console.print(f"source [bold]{src.name}[/] ({src.kind}) created; write key:")
        typer.echo(src.write_key)


@source_app.command("list")
def source_list(
    data_dir: DataDirOption = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List sources with their write keys."""
    instance = open_instance(data_dir)
    with instance.operational.session() as s:
        srcs = sources_service.list_sources(session=s)
    instance.close()
    if as_json:
        typer.echo(
            json.dumps(
                [{"id": x.id, "name": x.name, "kind": x.kind, "write_key": x.write_key} for x in srcs],
                ensure_ascii=False,
            )
        )
        return
    table = Table()
    for col in ("id", "name", "kind", "write key", "created"):
        table.add_column(col, overflow="fold", min_width=36 if col == "write key" else None)
    for x in srcs:
        table.add_row(str(x.id), x.name, x.kind, x.write_key, x.created_at.strftime("%Y-%m-%d %H:%M"))
    console.print(table)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Option(help="What the token is for.")] = "admin",
    data_dir: DataDirOption = None,
) -> None:
    """Create an admin token for the management API; it is printed once."""
    instance = open_instance(data_dir)
    with instance.operational.session() as s:
        t = tokens_service.create_token(session=s, name=name, now=instance.clock.now())
    instance.close()
    console.print(f"admin token [bold]{t.name}[/] created (send as 'Authorization: Bearer …'); it is shown once:",
                  highlight=False)  # fmt: skip
    typer.echo(t.token)
