"""`tessera tag …` — the tag system (标签体系) in the terminal: the catalogue, static values (set,
remove, import), computing, history, quality and tag API keys.

Every command calls the management API: the running server's when one holds the data dir, else
the same routes in this process. Exit codes: 0 done, 1 a failure, 2 a refused request (the message
names the field, e.g. ``value: '白金' is not one of 普通, 金卡``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from tessera.cli.common import DataDirOption, call_in, cell, console, fail, print_answer, read_json_arg
from tessera.domain.identity import parse_identifier

tag_app = typer.Typer(
    help="Tags (标签): catalogue, static values, runs, history, quality, API keys.", no_args_is_help=True
)
category_app = typer.Typer(help="Tag categories (标签分类), a tree.", no_args_is_help=True)
api_key_app = typer.Typer(help="Tag API keys for the open tag API (/v1/tags/…).", no_args_is_help=True)
tag_app.add_typer(category_app, name="category")
tag_app.add_typer(api_key_app, name="api-key")
BASE = "/v1/admin/tags"

JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON.")]
ProfileIdOption = Annotated[str | None, typer.Option("--profile-id", help="The profile's id (p_…).")]
PhoneOption = Annotated[str | None, typer.Option("--phone", help="A phone, as written (138 0013 8000).")]
EmailOption = Annotated[str | None, typer.Option("--email", help="An email address.")]
IdentifierOption = Annotated[
    str | None, typer.Option("--identifier", "-i", help="TYPE:VALUE, e.g. user_id:u123 or wechat_unionid:o6…")
]

_TAG_COLUMNS = ["key", "name", "category", "kind", "value_type", "multi", "status"]
_RUN_COLUMNS = ["tag_key", "trigger", "status", "profiles", "added", "removed", "error"]
_REPORT_COLUMNS = ["tag_key", "op", "items", "applied", "unmatched_total", "invalid_total", "added", "removed"]


def register(app: typer.Typer) -> None:
    app.add_typer(tag_app, name="tag")


def _definition(definition: str | None, file: Path | None, what: str) -> Any:
    if (definition is None) == (file is None):
        fail(f"give the {what} as JSON (or @file.json), or --file FILE.json")
    return read_json_arg(definition if definition is not None else f"@{file}", "--file" if file else what)


# -- categories -----------------------------------------------------------------------------------


@category_app.command("list")
def category_list(as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """The category tree (parents by key)."""
    got = call_in(data_dir, "GET", "/v1/admin/tag-categories")
    print_answer(got, as_json, "标签分类 Categories", ["key", "name", "name_en", "parent", "position"])


@category_app.command("create")
def category_create(
    key: Annotated[str, typer.Argument(help="lower-case letters, digits and _, e.g. car_owner")],
    name: Annotated[str, typer.Argument(help="Display name (zh).")],
    name_en: Annotated[str, typer.Option("--name-en", help="English name.")],
    parent: Annotated[str | None, typer.Option(help="The parent category's key.")] = None,
    position: Annotated[int, typer.Option(min=0, max=10_000, help="Order among its siblings.")] = 0,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Create a category (under --parent, or at the top)."""
    body = {"key": key, "name": name, "name_en": name_en, "parent": parent, "position": position}
    got = call_in(data_dir, "POST", "/v1/admin/tag-categories", json=body)
    print_answer(got, as_json, "标签分类 Category", ["key", "name", "name_en", "parent", "position"])


@category_app.command("delete")
def category_delete(key: str, data_dir: DataDirOption = None) -> None:
    """Remove an empty category (refused, naming what is in it, otherwise)."""
    call_in(data_dir, "DELETE", f"/v1/admin/tag-categories/{key}")
    console.print(f"deleted category {key}")


# -- definitions ----------------------------------------------------------------------------------


@tag_app.command("list")
def list_all(
    category: Annotated[str | None, typer.Option(help="Only this category.")] = None,
    status: Annotated[str | None, typer.Option(help="draft, active or archived.")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Every tag definition."""
    params = {k: v for k, v in (("category", category), ("status", status)) if v}
    got = call_in(data_dir, "GET", BASE, params=params or None)
    print_answer(got, as_json, "标签 Tags", _TAG_COLUMNS)


@tag_app.command("show")
def show(key: str, data_dir: DataDirOption = None) -> None:
    """One tag definition (JSON)."""
    print_answer(call_in(data_dir, "GET", f"{BASE}/{key}"), True)


@tag_app.command("create")
def create(
    definition: Annotated[str | None, typer.Argument(help="The definition as JSON, or @file.json.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="The definition in a JSON file.")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Define a tag: key, name, name_en, category, value_type, enum_values, multi, kind, rules | sql | model …"""
    got = call_in(data_dir, "POST", BASE, json=_definition(definition, file, "definition"))
    print_answer(got, as_json, "标签 Tag", _TAG_COLUMNS)


@tag_app.command("update")
def update(
    key: str,
    changes: Annotated[str | None, typer.Argument(help="Changed fields as JSON, or @file.json.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="Changed fields in a JSON file.")] = None,
    status: Annotated[str | None, typer.Option(help="draft, active or archived.")] = None,
    name: Annotated[str | None, typer.Option(help="New display name (zh).")] = None,
    name_en: Annotated[str | None, typer.Option("--name-en", help="New English name.")] = None,
    schedule: Annotated[str | None, typer.Option(help="Cron for a computed tag; '' removes it.")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Change a tag's definition (a new version; the key and kind never change)."""
    body: dict[str, Any] = {}
    if changes is not None or file is not None:
        got = _definition(changes, file, "changes")
        if not isinstance(got, dict):
            fail("changes: a JSON object of the fields to change")
        body.update(got)
    body.update({k: v for k, v in (("status", status), ("name", name), ("name_en", name_en)) if v is not None})
    if schedule is not None:
        body["schedule"] = schedule or None
    if not body:
        fail("nothing to change: give CHANGES JSON, --file or an option such as --status")
    print_answer(call_in(data_dir, "PATCH", f"{BASE}/{key}", json=body), as_json, "标签 Tag", _TAG_COLUMNS)


@tag_app.command("archive")
def archive(key: str, as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Archive a tag (refused while an active audience uses it, naming the audiences)."""
    got = call_in(data_dir, "PATCH", f"{BASE}/{key}", json={"status": "archived"})
    print_answer(got, as_json, "标签 Tag", _TAG_COLUMNS)


# -- static values --------------------------------------------------------------------------------


def _reference(profile_id: str | None, phone: str | None, email: str | None, identifier: str | None) -> dict[str, str]:
    given = [x for x in (profile_id, phone, email, identifier) if x is not None]
    if len(given) != 1:
        fail("name one profile: --profile-id, --phone, --email or --identifier TYPE:VALUE")
    if profile_id is not None:
        return {"profile_id": profile_id}
    if phone is not None:
        return {"id_type": "phone", "id_value": phone}
    if email is not None:
        return {"id_type": "email", "id_value": email}
    assert identifier is not None
    try:
        id_type, value = parse_identifier(identifier)
    except ValueError as e:
        fail(f"--identifier: {e}")
    return {"id_type": id_type, "id_value": value}


def _print_report(got: dict[str, Any], as_json: bool, title: str) -> None:
    if as_json:
        print_answer(got, True)
        return
    run = got.get("run") or {}
    print_answer({**got, "added": run.get("added"), "removed": run.get("removed")}, False, title, _REPORT_COLUMNS)
    problems = [{**p, "kind": "invalid"} for p in got.get("invalid", [])] + [
        {**p, "kind": "unmatched"} for p in got.get("unmatched", [])
    ]
    if problems:
        where = "line" if any(p.get("line") is not None for p in problems) else "index"
        problems.sort(key=lambda p: p.get(where) or 0)
        console.print("未应用 Not applied:")
        for p in problems:
            ref = p.get("reference") or {}
            shown = ref.get("profile_id") or ":".join(filter(None, (ref.get("id_type"), ref.get("id_value"))))
            field = f"{p['field']}: " if p.get("field") else ""
            typer.echo(
                f"  {where} {p.get(where)}  {p['kind']}  {field}{p['reason']}" + (f"  ({shown})" if shown else "")
            )
        shown_n, total = len(problems), got.get("invalid_total", 0) + got.get("unmatched_total", 0)
        if total > shown_n:
            typer.echo(f"  … {total - shown_n} more (the answer lists the first 1,000 of each kind)")


def _set(data_dir: Path | None, key: str, op: str, ref: dict[str, str], values: list[str], as_json: bool) -> None:
    item: dict[str, Any] = dict(ref)
    if values:
        item["value"] = values[0] if len(values) == 1 else values
    got = call_in(data_dir, "POST", f"{BASE}/{key}/values", json={"op": op, "items": [item]})
    if as_json:
        print_answer(got, True)
    failed = got["invalid"] or got["unmatched"]
    if failed:
        p = failed[0]
        fail(f"{p.get('field') or 'profile'}: {p['reason']}".removeprefix("profile: "))
    if not as_json:
        run = got["run"]
        console.print(f"{key}: {run['added']} added, {run['removed']} removed (run {run['run_id']})")


@tag_app.command("set")
def set_value(
    key: Annotated[str, typer.Argument(help="A static tag.")],
    values: Annotated[list[str], typer.Argument(help="The value (several for a multi-valued tag).")],
    profile_id: ProfileIdOption = None,
    phone: PhoneOption = None,
    email: EmailOption = None,
    identifier: IdentifierOption = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Give one profile a value of a static tag (a single-valued tag's value is replaced)."""
    _set(data_dir, key, "add", _reference(profile_id, phone, email, identifier), values, as_json)


@tag_app.command("remove")
def remove_value(
    key: Annotated[str, typer.Argument(help="A static tag.")],
    values: Annotated[list[str] | None, typer.Argument(help="The value(s) to remove; none = every value.")] = None,
    profile_id: ProfileIdOption = None,
    phone: PhoneOption = None,
    email: EmailOption = None,
    identifier: IdentifierOption = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Remove a value (or every value) of a static tag from one profile."""
    _set(data_dir, key, "remove", _reference(profile_id, phone, email, identifier), values or [], as_json)


@tag_app.command("import")
def import_file(
    key: Annotated[str, typer.Argument(help="A static tag.")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="CSV: identifier column + value / 标签值.")],
    op: Annotated[str, typer.Option(help="add, remove, or replace (the file is the complete value set).")] = "add",
    encoding: Annotated[str, typer.Option(help="File encoding, e.g. gbk.")] = "utf-8",
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Set values of a static tag from a CSV file; lines that fail are listed by line number."""
    with file.open("rb") as f:
        got = call_in(data_dir, "POST", f"{BASE}/{key}/import", data={"op": op, "encoding": encoding},
                    files={"file": (file.name, f, "text/csv")})  # fmt: skip
    _print_report(got, as_json, f"导入 Imported {file.name}")


# -- computing, history, quality ------------------------------------------------------------------


@tag_app.command("run")
def run(
    key: str,
    incremental: Annotated[bool, typer.Option(help="Update from stored state (models that support it).")] = False,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Compute a rule, SQL or model tag now and swap its values in."""
    got = call_in(data_dir, "POST", f"{BASE}/{key}/run", params={"incremental": str(incremental).lower()})
    print_answer(got, as_json, "运行 Run", _RUN_COLUMNS)
    if any(r.get("status") == "failed" for r in got):
        raise typer.Exit(1)


@tag_app.command("runs")
def runs(
    key: str,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """A tag's runs (computations and bulk changes), newest first."""
    got = call_in(data_dir, "GET", f"{BASE}/{key}/runs", params={"limit": limit})
    columns = ["started_at", "trigger", "status", "profiles", "added", "removed", "error"]
    print_answer(got, as_json, f"运行记录 Runs of {key}", columns)


_QUALITY_COLUMNS = ["key", "name", "kind", "holders", "coverage", "low_coverage", "computed_at"]


@tag_app.command("quality")
def quality(
    key: Annotated[str | None, typer.Argument(help="One tag; none = every active tag.")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Coverage, value distribution, last run and usage (one tag), or a summary of every tag."""
    got = call_in(data_dir, "GET", f"{BASE}/{key}/quality" if key else f"{BASE}/quality")
    print_answer(got, as_json, "标签质量 Quality", _QUALITY_COLUMNS)
    if key and not as_json and got.get("values"):
        print_answer(got["values"], False, "分布 Values", ["value", "profiles", "share"])


@tag_app.command("holders")
def holders(
    key: str,
    on: Annotated[str | None, typer.Option("--on", help="A date: who had it at the end of that local day.")] = None,
    at: Annotated[str | None, typer.Option("--at", help="An ISO datetime, e.g. 2026-01-15T08:00:00+08:00.")] = None,
    value: Annotated[str | None, typer.Option(help="Only this value.")] = None,
    limit: Annotated[int, typer.Option(min=0, max=10_000, help="Profile ids to list.")] = 100,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Who had the tag (= --value) on a date or at a time, from the history."""
    if (on is None) == (at is None):
        fail("give --on DATE or --at DATETIME")
    params = {"at": on or at, "limit": limit, **({"value": value} if value is not None else {})}
    got = call_in(data_dir, "GET", f"{BASE}/{key}/holders", params=params)
    if as_json:
        print_answer(got, True)
        return
    what = f"{key} = {value}" if value is not None else key
    console.print(f"{got.get('profiles')} profiles had {what} at {cell(got.get('at'))}")
    for pid in got.get("profile_ids", []):
        typer.echo(pid)


@tag_app.command("trend")
def trend(
    key: str,
    since: Annotated[str, typer.Option(help="First day (YYYY-MM-DD).")],
    until: Annotated[str, typer.Option(help="Last day (YYYY-MM-DD).")],
    value: Annotated[str | None, typer.Option(help="Only this value.")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Per local day and value: how many profiles held it at the end of the day."""
    params = {"since": since, "until": until, **({"value": value} if value is not None else {})}
    got = call_in(data_dir, "GET", f"{BASE}/{key}/trend", params=params)
    days = got.get("days", got) if isinstance(got, dict) else got
    print_answer(got if as_json else days, as_json, f"趋势 Trend of {key}", ["day", "value", "profiles"])


@tag_app.command("preview")
def preview(
    definition: Annotated[str | None, typer.Argument(help="The definition as JSON, or @file.json.")] = None,
    file: Annotated[Path | None, typer.Option("--file", "-f", help="The definition in a JSON file.")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Compute an unsaved rule, SQL or model tag: coverage, distribution and sample rows (nothing is written)."""
    got = call_in(data_dir, "POST", f"{BASE}/preview", json=_definition(definition, file, "definition"))
    if as_json:
        print_answer(got, True)
        return
    print_answer(got, False, "预览 Preview", ["profiles", "holders", "rows", "coverage"])
    if got.get("values"):
        print_answer(got["values"], False, "分布 Values", ["value", "profiles"])
    if got.get("sample"):
        print_answer(got["sample"], False, "样例 Sample", ["profile_id", "value"])


# -- tag API keys ---------------------------------------------------------------------------------

_KEY_COLUMNS = ["id", "name", "read", "write", "prefix", "created_at", "revoked_at"]


def _categories(text: str | None) -> list[str]:
    return [c.strip() for c in (text or "").split(",") if c.strip()]


@api_key_app.command("create")
def api_key_create(
    name: Annotated[str, typer.Argument(help="Who uses it, e.g. CRM 系统.")],
    read: Annotated[str | None, typer.Option(help="Categories it may read, comma-separated, or '*'.")] = None,
    write: Annotated[str | None, typer.Option(help="Categories whose static tags it may set, or '*'.")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Create a tag API key (a category covers its sub-categories); the key is printed once."""
    body = {"name": name, "read": _categories(read), "write": _categories(write)}
    got = call_in(data_dir, "POST", "/v1/admin/tag-api-keys", json=body)
    if as_json:
        print_answer(got, True)
        return
    print_answer(got, False, "标签 API key", _KEY_COLUMNS[:4])
    console.print("the key (send as 'Authorization: Bearer …'), shown once:", highlight=False)
    typer.echo(got["key"])


@api_key_app.command("list")
def api_key_list(as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Every tag API key (revoked ones too), without secrets."""
    print_answer(
        call_in(data_dir, "GET", "/v1/admin/tag-api-keys"),
        as_json,
        "标签 API keys",
        [*_KEY_COLUMNS[:4], *_KEY_COLUMNS[5:]],
    )


@api_key_app.command("revoke")
def api_key_revoke(key_id: int, data_dir: DataDirOption = None) -> None:
    """Revoke a tag API key: it is refused from now on."""
    got = call_in(data_dir, "DELETE", f"/v1/admin/tag-api-keys/{key_id}")
    console.print(f"revoked tag API key {got['id']} ({got['name']})")
