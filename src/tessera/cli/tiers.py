"""`tessera tier …` — member tiers (会员等级) in the terminal: the programme, levels with member counts,
a member's tier and history, manual changes and the review.

Every command calls the management API (the running server's, else the same routes in this
process). Exit codes: 0 done, 1 a failure, 2 a refused request naming the field
(``program.levels[2].threshold: thresholds rise strictly …``).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from tessera.cli.common import DataDirOption, call_in, console, err_console, fail, print_answer

tier_app = typer.Typer(
    help="Member tiers (会员等级): programme, levels, members, manual changes, reviews.", no_args_is_help=True
)
program_app = typer.Typer(help="The tier programme (等级方案). 查看与设置等级方案。", no_args_is_help=True)
tier_app.add_typer(program_app, name="program")

BASE = "/v1/admin/loyalty/tiers"
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON. 输出 JSON。")]


def register(app: typer.Typer) -> None:
    """Add the ``tier`` group to the main app."""
    app.add_typer(tier_app, name="tier")


def _member(member: str) -> str:
    return quote(member, safe="")


@program_app.command("show")
def program_show(data_dir: DataDirOption = None) -> None:
    """The programme and its version (JSON). 查看等级方案。"""
    print_answer(call_in(data_dir, "GET", f"{BASE}/program"), True)


@program_app.command("set")
def program_set(
    file: Annotated[
        Path, typer.Argument(help="A JSON file: the programme (docs/tiers.md). 方案 JSON 文件。", dir_okay=False)
    ],
    remap: Annotated[
        list[str] | None,
        typer.Option("--remap", help="OLD=NEW: move members off a removed level. 删除等级时的去向。"),
    ] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Store a new version of the programme from a file. 设置等级方案。"""
    try:
        body: Any = json.loads(file.read_text(encoding="utf-8"))
    except OSError as e:
        fail(f"FILE: cannot read {file}: {e.strerror}")
    except ValueError as e:
        fail(f"FILE: {file} is not JSON: {e}")
    if isinstance(body, dict) and "program" in body:  # a saved `program show` answer
        body = body["program"]
    moves: dict[str, str] = {}
    for item in remap or []:
        old, sep, new = item.partition("=")
        if not sep or not old or not new:
            fail(f"--remap: give OLD=NEW, e.g. vip=gold, not {item!r}")
        moves[old] = new
    got = call_in(data_dir, "PUT", f"{BASE}/program", json={"program": body, "remap": moves})
    moved = f", {got['moved']} members moved 会员已迁移" if got.get("moved") else ""
    console.print(f"[green]✓[/] tier programme version {got['version']} saved 已保存{moved}")


@tier_app.command("list")
def list_levels(as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Levels with thresholds and member counts. 各等级及会员数。"""
    got = call_in(data_dir, "GET", BASE)
    if as_json:
        print_answer(got, True)
        return
    if not got["levels"]:
        err_console.print("no tier programme yet / 尚未设置等级方案: tessera tier program set FILE.json")
        return
    rows = [{**lv, "multiplier": lv["benefits"]["points_multiplier"]} for lv in got["levels"]]
    title = f"会员等级 Tiers (v{got['version']}, {got['metric']}, {got['window_days']} days)"
    print_answer(rows, False, title, ["key", "name", "name_en", "threshold_text", "multiplier", "members"])


@tier_app.command("show")
def show(
    member: Annotated[str, typer.Argument(help="p_… or TYPE:VALUE (phone:+8613800000000). 会员。")],
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """A member's tier, progress and history. 查看会员等级。"""
    got = call_in(data_dir, "GET", f"{BASE}/members/{_member(member)}")
    if as_json:
        print_answer(got, True)
        return
    p = got["progress"]
    nxt = f"; {p['missing_text']} to 距 {p['next_name']}" if p.get("next_tier") else ""
    console.print(f"{got['profile_id']}: [bold]{got['name']}[/] {got['name_en']} — {got['metric_text']}{nxt}")
    if got["history"]:
        print_answer(got["history"], False, "等级历史 History", ["at", "from_tier", "to_tier", "direction", "reason"])


@tier_app.command("set")
def set_tier(
    member: Annotated[str, typer.Argument(help="p_… or TYPE:VALUE. 会员。")],
    tier: Annotated[str, typer.Argument(help="The level key, e.g. gold. 等级。")],
    reason: Annotated[str, typer.Option("--reason", help="Why (recorded as 'manual: …'). 原因。")],
    key: Annotated[str | None, typer.Option("--key", help="Idempotency key (default: a new one). 幂等键。")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Put a member on a tier by hand. 人工调整等级。"""
    body = {"tier": tier, "reason": reason, "key": key or f"cli:{uuid.uuid4().hex}"}
    got = call_in(data_dir, "POST", f"{BASE}/members/{_member(member)}", json=body)
    if as_json:
        print_answer(got, True)
        return
    c = got["change"]
    if c is None:
        console.print(f"{got['tier']['profile_id']} already on 已是 {got['tier']['name']}")
    else:
        again = " (replayed 重放)" if got["replayed"] else ""
        console.print(f"[green]✓[/] {c['profile_id']}: {c['from_name']} → {c['to_name']} ({c['direction']}){again}")


@tier_app.command("review")
def review(as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Evaluate everyone now (upgrades and downgrades). 立即评定全部会员。"""
    got = call_in(data_dir, "POST", f"{BASE}/review")
    print_answer(got, as_json, "等级评定 Review", ["evaluated", "up", "down", "unchanged", "placed"])
