"""`tessera identity …`: OneID rules, rebuild, unmerge, the merge log and rejected values.

When a server holds the data dir, commands go through its HTTP API (DuckDB lets one process
write the file); otherwise they open the store directly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from tessera.cli.common import DataDirOption, answer_or_fail, ask_server, console, fail, open_instance
from tessera.services import identity_admin
from tessera.services.identity_rules import RulesError, get_rules, parse_rules, rules_version, save_rules
from tessera.services.sources import source_names

identity_app = typer.Typer(help="OneID (身份识别): rules, rebuild, unmerge, merge log.", no_args_is_help=True)
rules_app = typer.Typer(help="Identity rules (识别规则): types, priority, limits, block-list.", no_args_is_help=True)
identity_app.add_typer(rules_app, name="rules")
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def register(app: typer.Typer) -> None:
    app.add_typer(identity_app, name="identity")


def _call(info: dict[str, Any], method: str, path: str, body: Any = None, params: Any = None) -> Any:
    return answer_or_fail(*ask_server(info, method, path, json=body, params=params))


def _print_json(value: Any) -> None:
    console.print_json(json.dumps(value, default=str, ensure_ascii=False))


@rules_app.command("show")
def rules_show(data_dir: DataDirOption = None, as_json: JsonOption = False) -> None:
    """Show the identity rules in force (types in priority order, limits, block-list)."""
    instance = open_instance(data_dir)
    rules = get_rules(instance.operational)
    version = rules_version(instance.operational)
    if as_json:
        _print_json({"version": version, "rules": rules.model_dump(mode="json")})
        return
    table = Table(title=f"Identity rules 识别规则 (version {version}; 0 = defaults)")
    for col in ("priority 优先级", "type 类型", "label", "limit 上限", "window 窗口", "trait keys"):
        table.add_column(col)
    for i, t in enumerate(rules.types, 1):
        window = f"{t.window_days} d" if t.window_days else "—"
        table.add_row(str(i), t.name, f"{t.label_zh} / {t.label_en}", str(t.limit), window, ", ".join(t.trait_keys))
    console.print(table)
    console.print(f"default region 默认地区: {rules.default_region}; custom types limit: {rules.custom_type_limit}")
    console.print(f"blocked values 屏蔽值: {', '.join(rules.blocked_values)}")
    console.print(f"blocked patterns: {', '.join(rules.blocked_patterns)}")


@rules_app.command("set")
def rules_set(
    file: Annotated[Path, typer.Argument(help="Rules as YAML or JSON (see `rules show --json`).")],
    data_dir: DataDirOption = None,
) -> None:
    """Replace the rules. New links follow them; run `tessera identity rebuild` for stored ones."""
    try:
        body = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        fail(f"{file}: cannot read rules: {exc}")
    if isinstance(body, dict) and "rules" in body and "types" not in body:
        body = body["rules"]
    try:
        rules = parse_rules(body)
    except RulesError as exc:
        fail(f"{file}: {exc.field}: {exc.message}")
    instance = open_instance(data_dir)
    info = instance.data_dir.running_server()
    if info:
        got = _call(info, "PUT", "/v1/admin/identity/rules", body=rules.model_dump(mode="json"))
        version = got["version"]
    else:
        version = save_rules(instance.operational, rules, now=instance.clock.now())
    console.print(
        f"[green]rules saved[/] (version {version}); run `tessera identity rebuild` to apply them to stored links"
    )


@identity_app.command("rebuild")
def rebuild(
    data_dir: DataDirOption = None,
    reextract: Annotated[
        bool, typer.Option(help="Re-derive the raw links from stored events, customers and orders first.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Recompute every profile from the raw links (gives the same profiles as incremental linking)."""
    instance = open_instance(data_dir)
    info = instance.data_dir.running_server()
    if info:
        report = _call(info, "POST", "/v1/admin/identity/rebuild", body={"reextract": reextract})
    else:
        with instance.analytic.transaction() as cur:
            got = identity_admin.rebuild_all(
                cur,
                rules=get_rules(instance.operational),
                now=instance.clock.now().replace(tzinfo=None),
                reextract_links=reextract,
                source_names=source_names(instance.operational),
            )
        report = vars(got)
    if as_json:
        _print_json(report)
        return
    total = sum(report["seconds"].values())
    console.print(
        f"[green]rebuilt[/] {report['profiles']:,} profiles 档案 from {report['identifiers']:,} identifiers "
        f"and {report['observations']:,} observations in {total:.1f} s; "
        f"{report['components_over_limit']:,} groups over a limit replayed ({report['replayed_observations']:,} "
        f"observations, {report['decisions']:,} decisions logged)"
    )


@identity_app.command("unmerge")
def unmerge(
    identifier: Annotated[str, typer.Argument(help="TYPE:VALUE, e.g. device_id:ab12 or phone:13800138000")],
    reason: Annotated[str | None, typer.Option(help="Why (kept in the merge log).")] = None,
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """Remove a wrong link: the identifier links to nothing else; its profile splits back (拆分)."""
    instance = open_instance(data_dir)
    info = instance.data_dir.running_server()
    if info:
        report = _call(info, "POST", "/v1/admin/identity/unmerge", body={"identifier": identifier, "reason": reason})
    else:
        try:
            with instance.analytic.transaction() as cur:
                got = identity_admin.unmerge(
                    cur,
                    rules=get_rules(instance.operational),
                    identifier=identifier,
                    reason=reason,
                    origin="cli",
                    now=instance.clock.now().replace(tzinfo=None),
                )
        except identity_admin.IdentityError as exc:
            fail(f"{exc.field}: {exc.message}")
        report = vars(got)
    if as_json:
        _print_json(report)
        return
    console.print(
        f"[green]unmerged[/] {report['identifier']} from {report['profile_id']}: its {report['observations']} "
        f"observations now belong to {', '.join(report['profiles']) or 'no profile'}"
    )


@identity_app.command("log")
def merge_log(
    data_dir: DataDirOption = None,
    action: Annotated[str | None, typer.Option(help="merge | drop | unmerge | rebuild")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 30,
    as_json: JsonOption = False,
) -> None:
    """The merge log (合并日志), newest first: merges, dropped identifiers and why, unmerges, rebuilds."""
    if action is not None and action not in ("merge", "drop", "unmerge", "rebuild"):
        fail(f"--action: {action!r} is not one of merge, drop, unmerge, rebuild")
    instance = open_instance(data_dir)
    info = instance.data_dir.running_server()
    if info:
        rows = _call(
            info, "GET", "/v1/admin/identity/log", params={"limit": limit, **({"action": action} if action else {})}
        )
    else:
        rows = identity_admin.recent_log(instance.analytic.cursor(), action=action, limit=limit)
    if as_json:
        _print_json(rows)
        return
    table = Table(title="Merge log 合并日志")
    for col in ("seq", "event time", "action", "profile", "identifier", "reason", "origin"):
        table.add_column(col)
    for r in rows:
        ident = f"{r['id_type']}:{r['id_value']}" if r.get("id_type") else ""
        other = f" ← {', '.join(r['other_ids'])}" if r.get("other_ids") else ""
        table.add_row(
            str(r["seq"]), str(r.get("event_time") or ""), r["action"], f"{r.get('profile_id') or ''}{other}", ident,
            r["reason"], r.get("origin") or "",
        )  # fmt: skip
    console.print(table)


@identity_app.command("rejections")
def rejected(
    data_dir: DataDirOption = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 30,
    as_json: JsonOption = False,
) -> None:
    """Identifier values that were not linked (invalid phone, blocked junk …), most frequent first."""
    instance = open_instance(data_dir)
    info = instance.data_dir.running_server()
    if info:
        rows = _call(info, "GET", "/v1/admin/identity/rejections", params={"limit": limit})
    else:
        rows = identity_admin.rejections(instance.analytic.cursor(), limit=limit)
    if as_json:
        _print_json(rows)
        return
    table = Table(title="Rejected identifier values 未关联的标识值")
    for col in ("type", "value", "reason", "count", "last seen", "origin"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["id_type"], r["raw_value"], r["reason"], f"{r['seen_count']:,}", str(r["last_seen"]),
                      r.get("origin") or "")  # fmt: skip
    console.print(table)
