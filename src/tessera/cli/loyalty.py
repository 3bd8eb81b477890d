"""`tessera loyalty …` — loyalty as a whole (会员运营): run the worker's round now, and show one
member's coupons, points and tier together. Coupons, points and tiers have their own groups
(`tessera coupon`, `tessera points`, `tessera tier`).

Through the management API (the running server's, else the same routes in this process). Exit
codes: 0 done, 1 a failure, 2 a refused request naming the field.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import typer

from tessera.cli.common import DataDirOption, call_in, console, print_answer

loyalty_app = typer.Typer(
    help="Loyalty (会员运营): run orders → points / coupons / tiers now; a member's benefits.", no_args_is_help=True
)
BASE = "/v1/admin/loyalty"
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON. 输出 JSON。")]


def register(app: typer.Typer) -> None:
    app.add_typer(loyalty_app, name="loyalty")


@loyalty_app.command("run")
def run(
    data_dir: DataDirOption = None,
    daily: Annotated[bool, typer.Option("--daily", help="Also run the daily jobs now. 同时执行每日任务。")] = False,
    as_json: JsonOption = False,
) -> None:
    """Process new orders, expire what lapsed, review tiers when due, publish events. 立即执行一轮。"""
    body = call_in(data_dir, "POST", f"{BASE}/run", params={"daily": daily})
    if as_json:
        print_answer(body, True)
        return
    console.print(
        f"orders {body['orders']:,} · coupons expired {body['coupons_expired']:,} · points lots expired "
        f"{body['points_expired']:,} · notices {body['notices']:,} · birthdays {body['birthdays']:,} · tier changes "
        f"{body['tier_changes']:,} · events published {body['published']:,}"
    )


@loyalty_app.command("member")
def member(
    member: Annotated[str, typer.Argument(help="p_… or TYPE:VALUE (phone:+8613800000000). 会员。")],
    data_dir: DataDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """A member's coupons, points and tier. 会员权益：券、积分、等级。"""
    body = call_in(data_dir, "GET", f"{BASE}/members/{quote(member, safe='')}")
    if as_json:
        print_answer(body, True)
        return
    pts = body["points"]
    tier = body.get("tier") or {}
    console.print(f"[bold]{body['profile_id']}[/]  积分 points {pts['balance']:,}  等级 tier {tier.get('name') or '—'}")
    print_answer(body["coupons"], False, title="券 Coupons", columns=["code", "template", "status", "valid_until"])
    print_answer(
        pts["history"],
        False,
        title="积分流水 Points",
        columns=["occurred_at", "kind", "points", "balance_after", "reason"],
    )
