"""`tessera points …` — the points programme and ledger (积分) in the terminal.

Every command calls the management API (the running server's, else the same routes in this
process). Exit codes: 0 done, 1 a failure, 2 a refused request naming the field and the reason
(``points: 积分不足 / not enough points: balance 20, asked 30 (insufficient_points)``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tessera.cli.common import DataDirOption, call_in, fail, print_answer

points_app = typer.Typer(help="Points (积分): programme, balances, history, grants, expiry, order processing.",
                         no_args_is_help=True)  # fmt: skip
program_app = typer.Typer(help="The points programme (积分规则).", no_args_is_help=True)
points_app.add_typer(program_app, name="program")
BASE = "/v1/admin/loyalty"
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON. 输出 JSON。")]
ReasonOption = Annotated[str, typer.Option("--reason", help="Why (shown in the history). 原因。")]
KeyOption = Annotated[str, typer.Option("--key", help="Idempotency key: repeating it changes nothing. 幂等键。")]
CampaignOption = Annotated[str | None, typer.Option("--campaign", help="Campaign label. 活动。")]
_ENTRY_COLUMNS = ["id", "kind", "points", "balance_after", "reason", "source", "occurred_at", "expires_at", "key"]


def register(app: typer.Typer) -> None:
    app.add_typer(points_app, name="points")


@program_app.command("show")
def program_show(data_dir: DataDirOption = None) -> None:
    """Print the programme as JSON. 显示积分规则。"""
    print_answer(call_in(data_dir, "GET", f"{BASE}/points/program"), True)


@program_app.command("set")
def program_set(
    file: Annotated[Path, typer.Argument(help="A JSON file with the programme (docs/points.md). 规则 JSON 文件。",
                                         dir_okay=False)],
    data_dir: DataDirOption = None,
) -> None:  # fmt: skip
    """Store a new version of the programme. 保存积分规则。"""
    try:
        body = json.loads(file.read_text(encoding="utf-8"))
    except OSError as e:
        fail(f"FILE: cannot read {file}: {e.strerror}")
    except ValueError as e:
        fail(f"FILE: {file} is not JSON: {e}")
    got = call_in(data_dir, "PUT", f"{BASE}/points/program", json=body)
    typer.echo(f"programme version {got['version']} stored / 积分规则已保存（版本 {got['version']}）")


@points_app.command("balance")
def show_balance(member: Annotated[str, typer.Argument(help="p_… or TYPE:VALUE. 会员。")], as_json: JsonOption = False,
                 data_dir: DataDirOption = None) -> None:  # fmt: skip
    """A member's balance, totals and open lots. 会员积分余额。"""
    got = call_in(data_dir, "GET", f"{BASE}/points/{member}")
    if as_json:
        print_answer(got, True)
        return
    typer.echo(f"{got['profile_id']}: balance {got['balance']} (earned {got['earned']}, spent {got['spent']}, "
               f"expired {got['expired']}, adjusted {got['adjusted']})")  # fmt: skip
    if got["lots"]:
        print_answer(got["lots"], False, title="open lots / 未过期积分", columns=["id", "points", "remaining", "earned_at",
                                                                            "expires_at"])  # fmt: skip


@points_app.command("history")
def show_history(
    member: Annotated[str, typer.Argument(help="p_… or TYPE:VALUE. 会员。")],
    limit: Annotated[int, typer.Option(help="How many entries. 条数。")] = 50,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """A member's ledger, newest first. 积分流水。"""
    got = call_in(data_dir, "GET", f"{BASE}/points/{member}/history", params={"limit": limit})
    print_answer(got, as_json, title=f"points of {member}", columns=_ENTRY_COLUMNS)


def _post(data_dir: Path | None, what: str, member: str, points: int, reason: str, key: str, campaign: str | None,
          as_json: bool, **extra: Any) -> None:  # fmt: skip
    body = {"member": member, "points": points, "reason": reason, "key": key, "campaign": campaign, **extra}
    got = call_in(data_dir, "POST", f"{BASE}/points/{what}", json=body)
    if as_json:
        print_answer(got, True)
        return
    e = got["entry"]
    note = " (replayed: the key existed / 重复请求)" if got["replayed"] else ""
    typer.echo(f"{e['kind']} {e['points']:+d} → balance {got['balance']}{note}")


@points_app.command("earn")
def earn(member: Annotated[str, typer.Argument(help="p_… or TYPE:VALUE. 会员。")],
         points: Annotated[int, typer.Argument(help="Points (> 0). 积分。")], reason: ReasonOption, key: KeyOption,
         campaign: CampaignOption = None, as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:  # fmt: skip
    """Grant points. 发放积分。"""
    _post(data_dir, "earn", member, points, reason, key, campaign, as_json)


@points_app.command("spend")
def spend(member: Annotated[str, typer.Argument(help="p_… or TYPE:VALUE. 会员。")],
          points: Annotated[int, typer.Argument(help="Points (> 0). 积分。")], reason: ReasonOption, key: KeyOption,
          campaign: CampaignOption = None, as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:  # fmt: skip
    """Use points (refused beyond the balance). 积分消费。"""
    _post(data_dir, "spend", member, points, reason, key, campaign, as_json)


@points_app.command("adjust")
def adjust(member: Annotated[str, typer.Argument(help="p_… or TYPE:VALUE. 会员。")],
           points: Annotated[int, typer.Argument(help="Signed points (≠ 0; negative after --: adjust M --reason r --key k -- -50). 调整积分（正负）。")], reason: ReasonOption,
           key: KeyOption, campaign: CampaignOption = None,
           allow_negative: Annotated[bool, typer.Option(help="Let the balance go below 0. 允许负余额。")] = False,
           as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:  # fmt: skip
    """Correct a balance up or down. 积分调整。"""
    _post(data_dir, "adjust", member, points, reason, key, campaign, as_json, allow_negative=allow_negative)


@points_app.command("expire")
def expire(data_dir: DataDirOption = None) -> None:
    """Expire due points now. 立即执行积分过期。"""
    got = call_in(data_dir, "POST", f"{BASE}/points/expire")
    typer.echo(f"expired {got['points']} points of {got['profiles']} members / 已过期 {got['points']} 积分")


@points_app.command("notices")
def notices(data_dir: DataDirOption = None) -> None:
    """Queue Points Expiring events now. 生成积分即将过期提醒。"""
    got = call_in(data_dir, "POST", f"{BASE}/points/notices")
    typer.echo(f"{got['notices']} new Points Expiring events / 新提醒 {got['notices']} 条")


@points_app.command("process-orders")
def process_orders(as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Process new orders, refunds and bonus events now. 立即处理订单积分。"""
    got = call_in(data_dir, "POST", f"{BASE}/orders/process")
    if as_json:
        print_answer(got, True)
        return
    typer.echo(f"{got['orders_new']} new orders, {got['points']} points, {got['refunds']} refunds, "
               f"{got['bonuses']} bonuses, {got['rejections']} rejections ({got['seconds']} s)")  # fmt: skip
