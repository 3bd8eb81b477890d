"""`tessera demo`: generate the demo brand 远山户外 Yuanshan Outdoor, load it, serve it."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tessera.cli.common import DataDirOption, console, fail
from tessera.datadir import DataDir
from tessera.runtime import Instance
from tessera.settings import load_settings

#: What ``--force`` removes from a data dir: only what Tessera itself keeps there.
_OWNED = (
    "analytics.duckdb", "analytics.duckdb.wal", "operational.sqlite", "operational.sqlite-wal",
    "operational.sqlite-shm", "wal", "rejects", "demo", "demo.json", "server.json",
)  # fmt: skip


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    users: Annotated[int, typer.Option(min=1, help="People to generate (members, shoppers, visitors).")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same data.")] = 42,
    data_dir: DataDirOption = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8600).")] = None,
    no_serve: Annotated[bool, typer.Option("--no-serve", help="Generate and load, then exit without serving.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Wipe the data dir's Tessera files and generate again.")
    ] = False,
    live: Annotated[int, typer.Option(min=0, help="Live messages sent through /v1/batch after loading.")] = 2_000,
) -> None:
    """Demo brand 演示品牌: generate 远山户外 Yuanshan Outdoor, load it through import and collection, serve it."""
    from tessera.demo import load
    from tessera.demo.texts import BRAND_FULL

    settings = load_settings()
    root = Path(data_dir).expanduser() if data_dir is not None else Path(settings.data)
    running = DataDir.at(root).running_server()
    if running:
        fail(f"a server (pid {running['pid']}) serves {root} at {running['url']}; stop it first")
    if force:
        _wipe(root)
    data = DataDir.at(root)
    marker = load.Marker.read(data.root)
    if marker is None and (data.duckdb_path.exists() or data.sqlite_path.exists()):
        fail(
            f"{data.root} holds Tessera data that is not a demo; pass --force to replace it or pick another --data-dir"
        )
    instance = Instance(data.root, settings=settings)
    h = host or settings.server.host
    p = port or settings.server.port
    console.rule(f"[bold]{BRAND_FULL}[/] · Tessera demo 演示")
    if marker is not None:
        console.print(
            f"复用 Reusing the demo in {data.root} ({marker.users:,} people, seed {marker.seed}, "
            f"generated {marker.generated_at}); --force generates it again."
        )
        messages: list[dict[str, Any]] = []
    else:
        marker, messages = _build(instance, users=users, seed=seed, live=live)
    now = instance.clock.now()
    sources = load.ensure_sources(instance, now)
    token = load.new_admin_token(instance, now)
    write_key = sources[load.LIVE_SOURCE].write_key
    example = _example(data.root)
    if no_serve:
        accepted = 0
        if messages:
            started = time.perf_counter()
            with console.status("实时消息 Sending live messages through the collection path …"):
                accepted = load.send_live_in_process(instance, messages, sources[load.LIVE_SOURCE])
            _done("实时消息 Live messages", f"{accepted:,} accepted", time.perf_counter() - started)
        totals = _totals(instance)
        instance.close()
        _ready(f"http://{h}:{p}", token, write_key, totals, accepted, data.root, example, serving=False)
        return

    from tessera.api.server import run_demo_server

    totals = _totals(instance)
    started = time.perf_counter()

    def print_ready(url: str, accepted: int) -> None:
        if messages:
            _done("实时消息 Live messages", f"{accepted:,} accepted over /v1/batch", time.perf_counter() - started)
        _ready(url, token, write_key, totals, accepted, data.root, example, serving=True)

    console.print(f"启动 Starting the server on {h}:{p} …")
    run_demo_server(
        instance,
        host=h,
        port=p,
        live_messages=messages,
        write_key=write_key,
        admin_token=token,
        print_ready=print_ready,
    )


def _wipe(root: Path) -> None:
    for name in _OWNED:
        path = root / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _done(stage: str, what: str, seconds: float) -> None:
    console.print(f"[green]✓[/] {stage}: {what} [dim]({seconds:.1f} s)[/]")


def _build(instance: Instance, *, users: int, seed: int, live: int) -> tuple[Any, list[dict[str, Any]]]:
    """Generate, import, and prepare the live messages; returns the marker and the messages."""
    from tessera.demo import load
    from tessera.demo.audiences import create_audiences
    from tessera.demo.generate import generate
    from tessera.demo.journeys import create_journeys, run_once
    from tessera.demo.live import live_messages
    from tessera.demo.loyalty import create_loyalty, create_loyalty_journeys
    from tessera.demo.tags import create_tags

    now = instance.clock.now()
    timings: dict[str, float] = {}
    out_dir = instance.data_dir.root / load.FILES_DIR
    started = time.perf_counter()
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("生成 Generating people, orders, events", total=users)
        files = generate(
            users=users,
            seed=seed,
            out_dir=out_dir,
            now=now,
            progress=lambda done, _total: progress.update(task, completed=done),
        )
    timings["generate"] = time.perf_counter() - started
    c = files.counts
    _done(
        "生成 Generated",
        f"{c['people']:,} people · {c['customers']:,} members · {c['orders']:,} orders · {c['events']:,} events "
        f"· {c['reviews']:,} reviews · {c['products']:,} products → {out_dir}",
        timings["generate"],
    )
    sources = load.ensure_sources(instance, now)
    started = time.perf_counter()
    plan = files.imports()
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("导入 Importing files", total=len(plan))

        def on_done(kind: str, path: Path, report: Any) -> None:
            progress.advance(task)
            progress.console.print(
                f"  [dim]imported[/] {path.name:<36} {report.rows_stored:>10,} rows  [dim]{report.seconds:5.1f} s[/]"
            )

        load.import_files(instance, files, sources, now=now, on_done=on_done)
    timings["import"] = time.perf_counter() - started
    _done("导入 Imported", f"{len(plan)} files through the file importer", timings["import"])
    started = time.perf_counter()
    with console.status("画像 Computing profile attributes …"):
        profiles = load.refresh_profiles(instance, now=now)
    timings["attributes"] = time.perf_counter() - started
    _done("画像 Profile attributes", f"{profiles:,} profiles", timings["attributes"])
    started = time.perf_counter()
    with console.status("标签 Computing tags (rule, SQL, model, static) …"):
        runs = create_tags(instance)
    timings["tags"] = time.perf_counter() - started
    failed = [f"{r.tag_key}: {r.error}" for r in runs if r.status != "succeeded"]
    _done("标签 Tags", f"{len(runs)} tags · {sum(r.rows for r in runs):,} values"
          + (f" · [red]{len(failed)} failed[/]: {'; '.join(failed)}" if failed else ""), timings["tags"])  # fmt: skip
    started = time.perf_counter()
    with console.status("群组 Creating audiences …"):
        made = create_audiences(instance)
    timings["audiences"] = time.perf_counter() - started
    _done("群组 Audiences", " · ".join(f"{a.name} {a.member_count or 0:,}" for a in made), timings["audiences"])
    started = time.perf_counter()
    with console.status("会员 Loyalty: coupon templates, points, tiers; orders → points …"):
        loyalty = create_loyalty(instance)
    timings["loyalty"] = time.perf_counter() - started
    _done("会员 Loyalty", f"{loyalty['templates']} coupon templates · {loyalty['orders']:,} orders → "
          f"{loyalty['points']:,} points · {loyalty['members']:,} members in tiers", timings["loyalty"])  # fmt: skip
    started = time.perf_counter()
    with console.status("旅程 Publishing journeys and running the campaign (sandbox channels) …"):
        journeys = create_journeys(instance) + create_loyalty_journeys(instance)
        moved = run_once(instance)
    timings["journeys"] = time.perf_counter() - started
    _done("旅程 Journeys", " · ".join(j.name for j in journeys) + f" · {moved.sent:,} messages → "
          f"{instance.data_dir.root / 'outbox'}", timings["journeys"])  # fmt: skip
    messages = live_messages(users=users, seed=seed, now=now, count=live) if live else []
    marker = load.Marker(users=users, seed=seed, generated_at=load.utc_iso(now), counts=dict(c), timings=timings)
    marker.write(instance.data_dir.root)
    return marker, messages


def _totals(instance: Instance) -> dict[str, int]:
    from tessera.services import sources as sources_service
    from tessera.services.stats import collect_stats

    with instance.operational.session() as s:
        srcs = sources_service.list_sources(session=s)
    return dict(collect_stats(cur=instance.analytic.cursor(), sources=srcs)["totals"])


def _example(root: Path) -> tuple[str, str]:
    """A real member id and product id of the demo, for the paste-ready requests."""
    import pyarrow.parquet as pq

    from tessera.demo import load

    found = []
    for name, column, fallback in (
        ("customers", "member_id", "YS100000001"),
        ("products", "product_id", "YS-JA001-BK-M"),
    ):
        try:
            table = pq.ParquetFile(root / load.FILES_DIR / f"{name}.parquet").read_row_group(0, columns=[column])
            found.append(str(table.column(0)[0].as_py()))
        except (OSError, IndexError, ValueError):
            found.append(fallback)
    return found[0], found[1]


def _ready(
    url: str,
    token: str,
    write_key: str,
    totals: dict[str, int],
    accepted: int,
    root: Path,
    example: tuple[str, str],
    *,
    serving: bool,
) -> None:
    user, product = example
    table = Table.grid(padding=(0, 2))
    for key in ("profiles", "customers", "orders", "order_items", "events", "reviews", "products"):
        table.add_row(key, f"{totals.get(key, 0):,}")
    if accepted:
        table.add_row("live messages", f"{accepted:,} (+ in events)")
    track = (
        f"curl -u '{write_key}:' -H 'Content-Type: application/json' {url}/v1/track \\\n"
        f'  -d \'{{"userId":"{user}","event":"Product Viewed","properties":{{"product_id":"{product}"}}}}\''
    )
    batch = (
        f"curl -u '{write_key}:' -H 'Content-Type: application/json' {url}/v1/batch \\\n"
        f'  -d \'{{"batch":[{{"type":"track","anonymousId":"demo-visitor-1","event":"Coupon Claimed",'
        f'"properties":{{"coupon_id":"VIP-95"}}}},{{"type":"identify","userId":"{user}",'
        f'"traits":{{"member_level":"金卡"}}}}]}}\''
    )
    stats = f"curl -H 'Authorization: Bearer {token}' {url}/v1/admin/stats"
    events = f"curl -H 'Authorization: Bearer {token}' '{url}/v1/admin/events?limit=5&event=Order%20Completed'"
    question = {"definition": {"type": "and", "children": [
        {"type": "attribute", "field": "city", "op": "eq", "value": "上海"},
        {"type": "event", "event": "Product Viewed", "window": {"last": 30}, "count": {"op": "gte", "value": 2}},
    ]}}  # fmt: skip
    estimate = (
        f"curl -H 'Authorization: Bearer {token}' -H 'Content-Type: application/json' "
        f"{url}/v1/admin/audiences/estimate \\\n  -d '{json.dumps(question, ensure_ascii=False, separators=(',', ':'))}'"
    )
    journeys = f"curl -H 'Authorization: Bearer {token}' '{url}/v1/admin/journeys?kind=campaign'"
    cli = (
        f"tessera stats --data-dir {root}\ntessera audience list --data-dir {root}\n"
        f"tessera journey list --data-dir {root}   # then: tessera journey report <id> / dry-run <id>\n"
        f"tail -f {root / 'outbox' / 'sms.jsonl'}   # what the sandbox SMS channel 'sent'"
    )
    head = (
        f"[bold]Tessera is serving 正在服务[/] {url}   API docs: {url}/docs"
        if serving
        else f"[bold]Loaded 已加载[/] {root}\nServe it with: tessera serve --data-dir {root}   (then {url})"
    )
    console.print(Panel(head, title="远山户外 Yuanshan Outdoor · Tessera demo", expand=False))
    console.print(f"Admin token 管理令牌 (Bearer): [bold]{token}[/]", soft_wrap=True, highlight=False)
    console.print(f"Write key 写入密钥 (官方App):   [bold]{write_key}[/]", soft_wrap=True, highlight=False)
    console.print(table)
    console.print("\n[bold]Try it 试一试[/]  (track / batch with the write key; admin API with the token)")
    for line in (track, batch, stats, events, estimate, journeys, cli):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
        console.print()
    if serving:
        console.print("[dim]Ctrl-C stops the server; `tessera demo` again reuses this data (--force regenerates).[/]")
