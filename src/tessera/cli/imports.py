"""`tessera import KIND FILE` — customers, orders, order items, products, reviews or events.

Exit codes: 0 stored, 1 the file could not be imported (nothing stored), 2 a usage error. When a
server holds the data dir, the file is uploaded to it (``POST /v1/admin/imports/{kind}``).
"""

from __future__ import annotations

import json
import shutil
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from tessera.cli.common import DataDirOption, ask_server, console, err_console, fail, open_instance
from tessera.importing.kinds import KINDS, find_kind
from tessera.importing.mapping import MappingFile, load_mapping_file, parse_default_options, parse_map_options
from tessera.services import sources as sources_service
from tessera.services.identity_rules import get_rules
from tessera.services.imports import ImportFailed, ImportReport, ImportUsageError, import_file

_STAGES = ("reading", "validating", "storing", "done")


def register(app: typer.Typer) -> None:
    app.command("import", no_args_is_help=True)(import_command)


def import_command(
    kind: Annotated[str, typer.Argument(help="customers, orders, order-items, products, reviews or events.")],
    file: Annotated[Path, typer.Argument(help="A CSV, JSON-lines or Parquet file.", show_default=False)],
    map_: Annotated[
        list[str] | None,
        typer.Option("--map", "-m", help="FILE_COLUMN=field (repeatable); FILE_COLUMN= drops the column."),
    ] = None,
    mapping_file: Annotated[
        Path | None, typer.Option("--mapping", help="A YAML/JSON mapping file: columns, defaults (docs/import.md).")
    ] = None,
    default: Annotated[
        list[str] | None, typer.Option("--default", help="field=value for a field the file lacks (repeatable).")
    ] = None,
    file_format: Annotated[
        str | None, typer.Option("--format", help="csv, tsv, jsonl, json or parquet (default: by extension).")
    ] = None,
    encoding: Annotated[
        str | None, typer.Option(help="Text encoding, e.g. gbk, gb18030, utf-16 (default utf-8).")
    ] = None,
    timezone: Annotated[
        str | None, typer.Option(help="Zone of times written without an offset, e.g. Asia/Shanghai (default UTC).")
    ] = None,
    source: Annotated[str | None, typer.Option(help="Name of the source (数据源) the rows come from.")] = None,
    max_rejects: Annotated[
        int, typer.Option("--max-rejects", min=0, help="Store the good rows when at most N rows are rejected.")
    ] = 0,
    rejects: Annotated[
        Path | None, typer.Option(help="Where to write rejected rows (default DATA_DIR/rejects/<import id>.csv).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON for scripts.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Import a file (文件导入): all of it, or nothing when more than --max-rejects rows are bad."""
    spec = find_kind(kind)
    if spec is None:
        fail(f"unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    if not file.is_file():
        fail(f"no such file: {file}")
    try:
        from_file = load_mapping_file(mapping_file) if mapping_file else MappingFile()
        mapping = {**from_file.columns, **parse_map_options(map_ or [])}
        defaults = {**from_file.defaults, **parse_default_options(default or [])}
    except ImportUsageError as exc:
        fail(exc.message)
    if from_file.kind and find_kind(from_file.kind) is not spec:
        fail(f"the mapping file is for {from_file.kind!r}, not {spec.name!r}")
    options: dict[str, Any] = {
        "mapping": mapping,
        "defaults": defaults,
        "format": file_format or from_file.file_format,
        "encoding": encoding or from_file.encoding or "utf-8",
        "timezone": timezone or from_file.timezone or "UTC",
        "max_rejects": max_rejects,
    }

    instance = open_instance(data_dir)
    running = instance.data_dir.running_server()
    if running:
        report, error = _via_server(running, spec.name, file, {**options, "source": source}, as_json=as_json)
    else:
        report, error = _locally(instance, spec.name, file, options, source, rejects, as_json=as_json)
    if report is not None and rejects is not None and report.rejects_path and running:
        try:
            shutil.copyfile(report.rejects_path, rejects)
            report.rejects_path = rejects
        except OSError:
            pass
    _print(report, error, as_json=as_json)
    if error is not None:
        raise typer.Exit(1)


def _locally(
    instance: Any,
    kind: str,
    file: Path,
    options: dict[str, Any],
    source: str | None,
    rejects: Path | None,
    *,
    as_json: bool,
) -> tuple[ImportReport | None, str | None]:
    try:
        source_id = None
        if source is not None:
            with instance.operational.session() as s:
                src = sources_service.get_source_by_name(session=s, name=source)
            if src is None:
                fail(f"no source named {source!r}; create it with: tessera source create {source!r} --kind crm")
            source_id = src.id
        with Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[rows]}"),
            TimeElapsedColumn(),
            console=err_console,
            transient=True,
            disable=as_json,
        ) as bar:
            task = bar.add_task(f"importing {file.name}", total=len(_STAGES) - 1, rows="")

            def progress(stage: str, rows: int) -> None:
                step = _STAGES.index(stage) if stage in _STAGES else 0
                shown = f"{rows:,} rows" if rows else ""
                bar.update(task, completed=step, description=f"{stage} {file.name}", rows=shown)

            report = import_file(
                store=instance.analytic,
                kind=kind,
                path=file,
                mapping=options["mapping"],
                defaults=options["defaults"],
                file_format=options["format"],
                encoding=options["encoding"],
                timezone=options["timezone"],
                source_id=source_id,
                max_rejects=options["max_rejects"],
                rejects_path=rejects,
                rejects_dir=instance.data_dir.rejects,
                work_dir=instance.data_dir.root,
                progress=progress,
                now=instance.clock.now(),
                rules=get_rules(instance.operational),
            )
        return report, None
    except ImportUsageError as exc:
        fail(exc.message)
    except ImportFailed as exc:
        return exc.report, exc.message
    finally:
        instance.close()


def _via_server(
    info: dict[str, Any], kind: str, file: Path, options: dict[str, Any], *, as_json: bool
) -> tuple[ImportReport | None, str | None]:
    waiting = err_console.status(f"importing {file.name} on the server at {info['url']} …")
    with nullcontext() if as_json else waiting, open(file, "rb") as fh:
        status, body = ask_server(
            info,
            "POST",
            f"/v1/admin/imports/{kind}",
            files={"file": (file.name, fh, "application/octet-stream")},
            data={"options": json.dumps(options, ensure_ascii=False)},
        )
    if status == 200:
        return ImportReport.from_dict(body), None
    if status == 422 and isinstance(body.get("report"), dict):
        return ImportReport.from_dict(body["report"]), str(body.get("message"))
    if status in (400, 404):
        fail(str(body.get("message") or body))
    fail(f"the server answered {status}: {body.get('message') or body}", code=1)


def _print(report: ImportReport | None, error: str | None, *, as_json: bool) -> None:
    if as_json:
        out = report.to_dict() if report else {}
        if error is not None:
            out["error"] = error
        typer.echo(json.dumps(out, ensure_ascii=False, indent=2))
        return
    if error is not None:
        err_console.print(f"[bold red]import failed:[/] {error}", highlight=False)
    if report is None:
        return
    table = Table(title=f"{report.kind} ← {report.file_name} ({report.file_format})", title_justify="left")
    table.add_column("read", justify="right")
    table.add_column("stored (new)", justify="right")
    table.add_column("updated", justify="right")
    table.add_column("duplicate", justify="right")
    table.add_column("rejected", justify="right")
    table.add_column("seconds", justify="right")
    table.add_row(
        f"{report.rows_read:,}",
        f"{report.rows_stored:,}",
        f"{report.rows_updated:,}",
        f"{report.rows_duplicate:,}",
        f"[red]{report.rows_rejected:,}[/]" if report.rows_rejected else "0",
        f"{report.seconds:.2f}",
    )
    (err_console if error else console).print(table)
    if report.rows_rejected and report.first_error and error is None:
        console.print(f"first rejected: {report.first_error}", highlight=False)
    if report.rejects_path:
        (err_console if error else console).print(f"rejected rows and reasons: {report.rejects_path}", highlight=False)
    if error is None:
        console.print(f"import [bold]{report.import_id}[/] stored.", highlight=False)
