"""`tessera audience …` and `tessera destination …` — audiences (群组 / 人群包) in the terminal.

Every command calls the management API: the running server's when one holds the data dir, else
the same routes in this process. Exit codes: 0 done, 1 a failure, 2 a refused request (the
message names the field, e.g. ``definition.children[1].window.last: must be > 0``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tessera.cli.common import (
    DataDirOption,
    answer_or_fail,
    api_request,
    call_in,
    console,
    fail,
    open_instance,
    print_answer,
    read_json_arg,
)

audience_app = typer.Typer(
    help="Audiences (群组 / 人群包): define, count, explain, export, push.", no_args_is_help=True
)
destination_app = typer.Typer(help="Push destinations (推送目的地): signed webhooks.", no_args_is_help=True)
BASE = "/v1/admin/audiences"

JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON.")]
DefinitionOption = Annotated[
    str | None, typer.Option("--definition", help="The condition as JSON, or @file.json (docs/conditions.md).")
]


def register(app: typer.Typer) -> None:
    app.add_typer(audience_app, name="audience")
    app.add_typer(destination_app, name="destination")


@audience_app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="Display name (zh or en), unique.")],
    definition: DefinitionOption = None,
    kind: Annotated[str, typer.Option(help="dynamic (evaluated when used) or static (snapshot now).")] = "dynamic",
    schedule: Annotated[
        str | None, typer.Option(help="Cron for refreshing a dynamic audience, e.g. '0 8 1 * *'.")
    ] = None,
    name_en: Annotated[str | None, typer.Option("--name-en", help="English name.")] = None,
    description: Annotated[str | None, typer.Option(help="What it is for.")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Create a static or dynamic audience from a condition."""
    if definition is None:
        fail("give --definition JSON or --definition @file.json")
    body = {"name": name, "kind": kind, "definition": read_json_arg(definition, "--definition"),
            "schedule": schedule, "name_en": name_en, "description": description}  # fmt: skip
    got = call_in(data_dir, "POST", BASE, json=body)
    print_answer(got, as_json, "群组 Audience", ["id", "name", "kind", "member_count", "schedule", "next_refresh_at"])


@audience_app.command("list")
def list_all(kind: Annotated[str | None, typer.Option(help="static, dynamic or imported.")] = None,
             as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:  # fmt: skip
    """Every audience."""
    got = call_in(data_dir, "GET", BASE, params={"kind": kind} if kind else None)
    print_answer(
        got, as_json, "群组 Audiences", ["id", "name", "kind", "status", "member_count", "refreshed_at", "schedule"]
    )


@audience_app.command("show")
def show(audience_id: str, data_dir: DataDirOption = None) -> None:
    """One audience with its definition (JSON)."""
    print_answer(call_in(data_dir, "GET", f"{BASE}/{audience_id}"), True)


@audience_app.command("update")
def update(
    audience_id: str,
    definition: DefinitionOption = None,
    name: Annotated[str | None, typer.Option(help="New name.")] = None,
    schedule: Annotated[str | None, typer.Option(help="New cron; '' removes it.")] = None,
    status: Annotated[str | None, typer.Option(help="active or archived.")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Change an audience (a new definition is a new version; a static audience is re-snapshotted)."""
    body: dict[str, Any] = {k: v for k, v in (("name", name), ("status", status)) if v is not None}
    if schedule is not None:
        body["schedule"] = schedule
    if definition is not None:
        body["definition"] = read_json_arg(definition, "--definition")
    got = call_in(data_dir, "PATCH", f"{BASE}/{audience_id}", json=body)
    print_answer(got, as_json, "群组 Audience", ["id", "name", "kind", "status", "version", "member_count", "schedule"])


@audience_app.command("delete")
def delete(audience_id: str, data_dir: DataDirOption = None) -> None:
    """Delete an audience (refused while another audience uses it)."""
    call_in(data_dir, "DELETE", f"{BASE}/{audience_id}")
    console.print(f"deleted {audience_id}")


@audience_app.command("estimate")
def estimate(definition: DefinitionOption = None, as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Count who a definition selects, without saving it."""
    if definition is None:
        fail("give --definition JSON or --definition @file.json")
    got = call_in(data_dir, "POST", f"{BASE}/estimate", json={"definition": read_json_arg(definition, "--definition")})
    print_answer(got, as_json, "预估人数 Estimate", ["members", "profiles", "engine", "took_ms"])


@audience_app.command("count")
def count(audience_id: str, as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Members now (a dynamic audience is evaluated)."""
    got = call_in(data_dir, "GET", f"{BASE}/{audience_id}/count")
    print_answer(got, as_json, "人数 Count", ["members", "profiles", "engine", "took_ms"])


_MEMBER_COLUMNS = ["profile_id", "name", "city", "member_level", "total_spend", "last_seen"]


@audience_app.command("members")
def members(
    audience_id: str,
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
    after: Annotated[int | None, typer.Option(help="next_after of the previous page.")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """A page of members."""
    params = {"limit": limit, **({"after": after} if after is not None else {})}
    got = call_in(data_dir, "GET", f"{BASE}/{audience_id}/members", params=params)
    if as_json:
        print_answer(got, True)
        return
    print_answer(got["members"], False, "成员 Members", _MEMBER_COLUMNS)
    if got.get("next_after") is not None:
        console.print(f"more: --after {got['next_after']}")


@audience_app.command("sample")
def sample(audience_id: str, size: Annotated[int, typer.Option(min=1, max=1000)] = 20,
           seed: str = "", as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:  # fmt: skip
    """A random sample of members (the same for the same --seed)."""
    got = call_in(data_dir, "GET", f"{BASE}/{audience_id}/sample", params={"size": size, "seed": seed})
    print_answer(got, as_json, "抽样 Sample", _MEMBER_COLUMNS)


@audience_app.command("refresh")
def refresh(audience_id: str, as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Re-evaluate a dynamic audience now; record and emit who entered and left."""
    got = call_in(data_dir, "POST", f"{BASE}/{audience_id}/refresh")
    print_answer(got, as_json, "刷新 Refresh", ["run_id", "members", "entered", "exited", "finished_at"])


@audience_app.command("changes")
def changes(audience_id: str, limit: Annotated[int, typer.Option(min=1, max=10_000)] = 50,
            as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:  # fmt: skip
    """Who entered or left, newest first."""
    got = call_in(data_dir, "GET", f"{BASE}/{audience_id}/changes", params={"limit": limit})
    print_answer(got, as_json, "变化 Changes", ["changed_at", "change", "profile_id", "run_id"])


@audience_app.command("import")
def import_file(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV of phones / emails / ids.")],
    name: Annotated[str, typer.Option(help="Audience name.")],
    id_type: Annotated[str | None, typer.Option("--id-type", help="For a one-column file without header.")] = None,
    encoding: Annotated[str, typer.Option(help="File encoding, e.g. gbk.")] = "utf-8",
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Create an imported audience (上传人群包); prints how many rows matched."""
    form = {"name": name, "encoding": encoding, **({"id_type": id_type} if id_type else {})}
    with file.open("rb") as f:
        got = call_in(data_dir, "POST", f"{BASE}/import", data=form, files={"file": (file.name, f, "text/csv")})
    if as_json:
        print_answer(got, True)
        return
    print_answer(
        got,
        False,
        f"导入 Imported {got['audience']['id']}",
        ["rows", "matched", "unmatched", "invalid", "empty", "members"],
    )
    if got["unmatched"] or got["invalid"]:
        console.print(f"unmatched rows: tessera audience import-rows {got['audience']['id']} --status unmatched")


@audience_app.command("import-rows")
def import_rows(audience_id: str, status: Annotated[str | None, typer.Option(help="matched, unmatched, invalid, empty.")] = None,
                limit: Annotated[int, typer.Option(min=1, max=100_000)] = 100,
                as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:  # fmt: skip
    """The import report of an imported audience, row by row."""
    params = {"limit": limit, **({"status": status} if status else {})}
    got = call_in(data_dir, "GET", f"{BASE}/{audience_id}/import-rows", params=params)
    print_answer(
        got,
        as_json,
        "导入明细 Import rows",
        ["line", "id_type", "raw_value", "id_value", "status", "reason", "profile_id"],
    )


@audience_app.command("explain")
def explain(
    audience_id: Annotated[str | None, typer.Argument(help="A dynamic audience (or give --definition).")] = None,
    identifier: Annotated[
        str | None, typer.Option("--identifier", "-i", help="TYPE:VALUE, e.g. phone:13800138000.")
    ] = None,
    profile_id: Annotated[str | None, typer.Option("--id", help="A profile id.")] = None,
    definition: DefinitionOption = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Why a profile is or is not in an audience: each condition, matched or not, with the value seen."""
    body: dict[str, Any] = {"identifier": identifier, "profile_id": profile_id}
    if audience_id is None:
        if definition is None:
            fail("give an audience id or --definition")
        body["definition"] = read_json_arg(definition, "--definition")
        path = f"{BASE}/explain"
    else:
        path = f"{BASE}/{audience_id}/explain"
    got = call_in(data_dir, "POST", path, json=body)
    if as_json:
        print_answer(got, True)
        return
    mark = "[green]✓ in[/]" if got["matched"] else "[red]✗ not in[/]"
    console.print(f"{got['profile_id']}: {mark}")
    rows = [{"path": x["path"], "matched": "✓" if x["matched"] else "✗", "leaf": json.dumps(x["leaf"], ensure_ascii=False),
             "value": json.dumps(x["value"], ensure_ascii=False, default=str)} for x in got["leaves"]]  # fmt: skip
    print_answer(rows, False, "条件 Conditions", ["path", "matched", "leaf", "value"])


@audience_app.command("export")
def export(
    audience_id: str,
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write (.csv or .parquet).")],
    columns: Annotated[str, typer.Option(help="Comma-separated: name, city, id:phone, id:email, tag:rfm_group …")] = "",
    hash_identifiers: Annotated[
        bool, typer.Option("--hash", help="SHA-256 of phones and emails (ad platforms).")
    ] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Export members with chosen columns to CSV or Parquet."""
    fmt = "parquet" if out.suffix.lower() == ".parquet" else "csv"
    body = {
        "columns": [c.strip() for c in columns.split(",") if c.strip()],
        "format": fmt,
        "hash_identifiers": hash_identifiers,
    }
    instance = open_instance(data_dir)
    try:
        r = api_request(instance, "POST", f"{BASE}/{audience_id}/export", json=body)
    finally:
        instance.close()
    if r.status_code != 200:
        answer_or_fail(r.status_code, r.json())
    out.write_bytes(r.content)
    console.print(f"wrote {out} ({len(r.content):,} bytes)")


@audience_app.command("push")
def push(
    audience_id: str,
    destination: Annotated[str, typer.Option(help="Destination id or name (tessera destination list).")],
    columns: Annotated[str, typer.Option(help="Comma-separated member variables to carry.")] = "",
    batch_size: Annotated[int, typer.Option(min=1, max=10_000)] = 1000,
    hash_identifiers: Annotated[bool, typer.Option("--hash", help="SHA-256 of phones and emails.")] = False,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Push members to a webhook destination in signed, retried batches."""
    body = {"destination": destination, "columns": [c.strip() for c in columns.split(",") if c.strip()],
            "batch_size": batch_size, "hash_identifiers": hash_identifiers}  # fmt: skip
    got = call_in(data_dir, "POST", f"{BASE}/{audience_id}/push", json=body)
    print_answer(got, as_json, "推送 Push", ["id", "status", "rows", "batches", "batches_failed", "error"])
    if got.get("status") != "delivered":
        raise typer.Exit(1)


@audience_app.command("insight")
def insight(
    audience_id: str,
    columns: Annotated[str, typer.Option(help="Comma-separated attributes and tag:<key>.")],
    compare_to: Annotated[str, typer.Option("--compare-to", help="'everyone' or another audience id.")] = "everyone",
    top: Annotated[int, typer.Option(min=1, max=1000)] = 10,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Distribution of attributes and tags vs. a comparison, with TGI (群组洞察)."""
    got = call_in(
        data_dir,
        "GET",
        f"{BASE}/{audience_id}/insight",
        params={"columns": columns, "compare_to": compare_to, "top": top},
    )
    if as_json:
        print_answer(got, True)
        return
    console.print(f"members {got['members']:,} vs {got['compare_to']} {got['base_members']:,}")
    for col in got["columns"]:
        rows = [{**v, "share": f"{v['share']:.1%}", "base_share": f"{v['base_share']:.1%}"} for v in col["values"]]
        print_answer(rows, False, col["column"], ["value", "count", "share", "base_share", "tgi"])


@destination_app.command("create")
def destination_create(name: str, url: Annotated[str, typer.Option(help="https://… webhook URL.")],
                       data_dir: DataDirOption = None) -> None:  # fmt: skip
    """Add a webhook destination; prints its signing secret once."""
    got = call_in(data_dir, "POST", "/v1/admin/destinations", json={"name": name, "url": url})
    console.print(f"id {got['destination']['id']}\nsecret (shown once) {got['secret']}")


@destination_app.command("list")
def destination_list(as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Every destination."""
    print_answer(
        call_in(data_dir, "GET", "/v1/admin/destinations"),
        as_json,
        "推送目的地 Destinations",
        ["id", "name", "kind", "url"],
    )


@destination_app.command("delete")
def destination_delete(destination_id: str, data_dir: DataDirOption = None) -> None:
    """Delete a destination."""
    call_in(data_dir, "DELETE", f"/v1/admin/destinations/{destination_id}")
    console.print(f"deleted {destination_id}")
