"""`tessera coupon …` — coupons (优惠券) in the terminal: templates, issuing, redemption, reports.

Every command calls the management API (the running server's, else the same routes in this
process). Exit codes: 0 done, 1 a failure, 2 a refused request — the message names the field and
the reason, e.g. ``code: 优惠券已使用 / the coupon has already been used (already_redeemed)``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tessera.cli.common import DataDirOption, call_in, err_console, fail, print_answer

coupon_app = typer.Typer(
    help="Coupons (优惠券): templates, issuing, redemption, expiry, reports.", no_args_is_help=True
)
template_app = typer.Typer(help="Coupon templates (券模板).", no_args_is_help=True)
coupon_app.add_typer(template_app, name="template")
BASE = "/v1/admin/loyalty"

JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON. 输出 JSON。")]
KeyOption = Annotated[str, typer.Option("--key", help="Idempotency key: the same key issues nothing twice. 幂等键。")]
_TEMPLATE_COLUMNS = ["key", "name", "kind", "summary", "status", "stock", "issued", "campaign", "valid_until"]
_COUPON_COLUMNS = ["code", "template", "profile_id", "status", "usable", "valid_until", "discount", "order_id"]
_REPORT_COLUMNS = ["template", "campaign", "currency", "issued", "redeemed", "expired", "void", "open",
                   "redemption_rate", "discount", "gmv"]  # fmt: skip


def register(app: typer.Typer) -> None:
    """Add the ``coupon`` command group to the main app."""
    app.add_typer(coupon_app, name="coupon")


# --- templates --------------------------------------------------------------------------------------------


@template_app.command("create")
def template_create(
    file: Annotated[
        Path, typer.Argument(help="A JSON file with the template (docs/coupons.md). 模板 JSON 文件。", dir_okay=False)
    ],  # fmt: skip
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Create a template from a JSON file. 从文件新建券模板。"""
    try:
        body = json.loads(file.read_text(encoding="utf-8"))
    except OSError as e:
        fail(f"FILE: cannot read {file}: {e.strerror}")
    except ValueError as e:
        fail(f"FILE: {file} is not JSON: {e}")
    print_answer(call_in(data_dir, "POST", f"{BASE}/coupon-templates", json=body), as_json, "券模板 Template",
                 _TEMPLATE_COLUMNS)  # fmt: skip


@template_app.command("list")
def template_list(
    status: Annotated[str | None, typer.Option(help="active, paused or archived. 按状态筛选。")] = None,
    campaign: Annotated[str | None, typer.Option(help="Campaign label. 按活动筛选。")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Every template. 全部券模板。"""
    params = {k: v for k, v in (("status", status), ("campaign", campaign)) if v}
    got = call_in(data_dir, "GET", f"{BASE}/coupon-templates", params=params or None)
    print_answer(got, as_json, "券模板 Templates", _TEMPLATE_COLUMNS)


@template_app.command("show")
def template_show(key: str, data_dir: DataDirOption = None) -> None:
    """One template (JSON). 查看券模板。"""
    print_answer(call_in(data_dir, "GET", f"{BASE}/coupon-templates/{key}"), True)


def _set_status(key: str, status: str, data_dir: Path | None) -> None:
    got = call_in(data_dir, "POST", f"{BASE}/coupon-templates/{key}/status", json={"status": status})
    typer.echo(f"{got['key']}: {got['status']}")


@template_app.command("pause")
def template_pause(key: str, data_dir: DataDirOption = None) -> None:
    """Stop issuing (issued coupons stay usable). 暂停发券。"""
    _set_status(key, "paused", data_dir)


@template_app.command("resume")
def template_resume(key: str, data_dir: DataDirOption = None) -> None:
    """Issue again. 恢复发券。"""
    _set_status(key, "active", data_dir)


@template_app.command("archive")
def template_archive(key: str, data_dir: DataDirOption = None) -> None:
    """Retire a template (issued coupons stay usable). 归档。"""
    _set_status(key, "archived", data_dir)


# --- issuing -------------------------------------------------------------------------------------------------


@coupon_app.command("issue")
def issue(
    template: Annotated[str, typer.Argument(help="Template key. 券模板。")],
    member: Annotated[str, typer.Option("--member", help="Profile id or TYPE:VALUE. 会员。")],
    key: KeyOption,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Issue one coupon to a member. 给会员发券。"""
    got = call_in(data_dir, "POST", f"{BASE}/coupon-templates/{template}/issue", json={"member": member, "key": key})
    if as_json:
        print_answer(got, True)
        return
    c = got["coupon"]
    note = " (replayed: issued before with this key / 该幂等键已发过)" if got["replayed"] else ""
    typer.echo(f"{c['code']}  {c['summary']}  → {c['profile_id']}  valid until {c['valid_until'] or '—'}{note}")


def _print_bulk(got: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_answer(got, True)
        return
    refused = ", ".join(f"{k} {v}" for k, v in got["refused"].items()) or "none"
    typer.echo(f"{got['template']}: {got['issued']} issued, {got['replayed']} replayed, refused: {refused} "
               f"(of {got['requested']}) / 新发 {got['issued']}，重放 {got['replayed']}")  # fmt: skip
    for p in got.get("problems", [])[:50]:
        err_console.print(f"[yellow]line {p['line']}[/] {p['member']}: {p['reason']} — {p['message']}", highlight=False)


@coupon_app.command("issue-audience")
def issue_audience(
    template: Annotated[str, typer.Argument(help="Template key. 券模板。")],
    audience_id: Annotated[str, typer.Argument(help="Audience id. 群组。")],
    key: KeyOption,
    events: Annotated[bool, typer.Option("--events/--no-events", help="Queue Coupon Issued events. 发事件。")] = True,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Issue one coupon to every member of an audience. 给群组全部成员发券。"""
    got = call_in(data_dir, "POST", f"{BASE}/coupon-templates/{template}/issue-audience",
                json={"audience_id": audience_id, "key": key, "events": events})  # fmt: skip
    _print_bulk(got, as_json)


@coupon_app.command("issue-file")
def issue_file(
    template: Annotated[str, typer.Argument(help="Template key. 券模板。")],
    file: Annotated[Path, typer.Argument(help="CSV with a member column. 含 member 列的 CSV。", dir_okay=False)],
    key: KeyOption,
    encoding: Annotated[str, typer.Option(help="File encoding, e.g. gbk. 文件编码。")] = "utf-8",
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Issue coupons to the members listed in a CSV file. 按文件发券。"""
    try:
        data = file.read_bytes()
    except OSError as e:
        fail(f"FILE: cannot read {file}: {e.strerror}")
    got = call_in(data_dir, "POST", f"{BASE}/coupon-templates/{template}/issue-file",
                params={"key": key, "encoding": encoding}, content=data)  # fmt: skip
    _print_bulk(got, as_json)


# --- coupons ------------------------------------------------------------------------------------------------


@coupon_app.command("list")
def list_coupons(
    member: Annotated[str | None, typer.Option(help="Profile id or TYPE:VALUE. 会员。")] = None,
    template: Annotated[str | None, typer.Option(help="Template key. 券模板。")] = None,
    status: Annotated[str | None, typer.Option(help="issued, redeemed, expired or void. 状态。")] = None,
    limit: Annotated[int, typer.Option(help="At most this many. 条数。")] = 100,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Coupons, newest first. 券列表。"""
    params: dict[str, Any] = {k: v for k, v in (("member", member), ("template", template), ("status", status)) if v}
    got = call_in(data_dir, "GET", f"{BASE}/coupons", params={**params, "limit": limit})
    print_answer(got, as_json, "优惠券 Coupons", _COUPON_COLUMNS)


@coupon_app.command("show")
def show(code: str, data_dir: DataDirOption = None) -> None:
    """One coupon (JSON). 查看券。"""
    print_answer(call_in(data_dir, "GET", f"{BASE}/coupons/{code}"), True)


@coupon_app.command("redeem")
def redeem(
    code: str,
    member: Annotated[str, typer.Option("--member", help="The buyer: profile id or TYPE:VALUE. 买家。")],
    order: Annotated[str, typer.Option("--order", help="Order id (also the idempotency key). 订单号。")],
    amount: Annotated[str, typer.Option("--amount", help="Order amount before the coupon, e.g. 320.00. 订单金额。")],
    channel: Annotated[str | None, typer.Option(help="Where the order was placed. 渠道。")] = None,
    currency: Annotated[str, typer.Option(help="ISO currency. 币种。")] = "CNY",
    shipping: Annotated[str | None, typer.Option(help="Shipping charge. 运费。")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Redeem a coupon on an order. 核销。"""
    body: dict[str, Any] = {"member": member, "order_id": order, "amount": amount, "currency": currency,
                            "channel": channel}  # fmt: skip
    if shipping is not None:
        body["shipping"] = shipping
    got = call_in(data_dir, "POST", f"{BASE}/coupons/{code}/redeem", json=body)
    if as_json:
        print_answer(got, True)
        return
    typer.echo(f"{got['code']}: redeemed on {got['order_id']}, discount {got['discount']} {got['currency']} "
               f"/ 已核销，优惠 {got['discount']}")  # fmt: skip


@coupon_app.command("void")
def void(code: str, data_dir: DataDirOption = None) -> None:
    """Void an unused coupon. 作废。"""
    got = call_in(data_dir, "POST", f"{BASE}/coupons/{code}/void")
    typer.echo(f"{got['code']}: {got['status']}")


@coupon_app.command("expire")
def expire(data_dir: DataDirOption = None) -> None:
    """Mark lapsed coupons expired now. 立即处理过期券。"""
    got = call_in(data_dir, "POST", f"{BASE}/coupons/expire")
    typer.echo(f"{got['expired']} expired / 过期 {got['expired']} 张")


@coupon_app.command("report")
def report(
    template: Annotated[str | None, typer.Option(help="Template key. 券模板。")] = None,
    campaign: Annotated[str | None, typer.Option(help="Campaign label. 活动。")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Issued, redeemed, expired, open, rate, discount and GMV. 券报表。"""
    params = {k: v for k, v in (("template", template), ("campaign", campaign)) if v}
    got = call_in(data_dir, "GET", f"{BASE}/coupon-reports", params=params or None)
    if as_json:
        print_answer(got, True)
        return
    print_answer(got["templates"], False, "按模板 By template", _REPORT_COLUMNS)
    print_answer(got["campaigns"], False, "按活动 By campaign", _REPORT_COLUMNS[1:])
