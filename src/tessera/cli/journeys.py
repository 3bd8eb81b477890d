"""`tessera journey …` and `tessera channel …` — journeys, campaigns (客户旅程 / 营销活动) and channels
(渠道) in the terminal.

Every command calls the management API: the running server's when one holds the data dir, else
the same routes in this process. Exit codes: 0 done, 1 a failure, 2 a refused request (the message
names the field, e.g. ``definition.nodes[1].data.template.body.zh: line 1: unexpected '}'``).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from tessera.cli.common import (
    DataDirOption,
    call_in,
    console,
    fail,
    print_answer,
)

journey_app = typer.Typer(
    help="Journeys and campaigns (客户旅程 / 营销活动): drafts, publishing, reports, dry runs, previews.",
    no_args_is_help=True,
)
channel_app = typer.Typer(
    help="Channels (渠道): SMS, email, push, WeChat, webhook and log senders journeys use.", no_args_is_help=True
)
BASE = "/v1/admin/journeys"
CHANNELS = "/v1/admin/channels"

JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON. 输出 JSON。")]
FileArgument = Annotated[
    Path, typer.Argument(help="A JSON file: {name, definition, …} (docs/journeys.md). JSON 文件。", dir_okay=False)
]
_JOURNEY_COLUMNS = ["id", "name", "kind", "status", "version", "next_run_at", "updated_at"]


def register(app: typer.Typer) -> None:
    app.add_typer(journey_app, name="journey")
    app.add_typer(channel_app, name="channel")


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        fail(f"{what}: cannot read {path}: {e.strerror}")
    except ValueError as e:
        fail(f"{what}: {path} is not JSON: {e}")


def _journey_file(path: Path) -> dict[str, Any]:
    body = _read_json(path, "FILE")
    if not isinstance(body, dict):
        fail(f'FILE: {path} must hold a JSON object such as {{"name": …, "definition": {{…}}}}')
    return body


def _definition_of(body: dict[str, Any]) -> Any:
    """A file holds either ``{"definition": {…}, …}`` or the definition itself (``nodes``, ``edges``)."""
    return body.get("definition", body)


def _iso(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        fail(f"{option}: not an ISO time such as 2026-05-01T10:00:00+08:00: {value!r}")
    if when.tzinfo is None:
        fail(f"{option}: give a time zone offset, e.g. {value}+08:00")
    return when.isoformat()


# --- journeys -------------------------------------------------------------------------------------------


@journey_app.command("list")
def list_all(
    status: Annotated[str | None, typer.Option(help="draft, active, paused or ended. 按状态筛选。")] = None,
    kind: Annotated[str | None, typer.Option(help="journey or campaign. 按类型筛选。")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Every journey and campaign. 全部旅程与活动。"""
    params = {k: v for k, v in (("status", status), ("kind", kind)) if v}
    got = call_in(data_dir, "GET", BASE, params=params or None)
    print_answer(got, as_json, "旅程 Journeys", _JOURNEY_COLUMNS)


@journey_app.command("show")
def show(journey_id: str, data_dir: DataDirOption = None) -> None:
    """One journey with its draft definition (JSON). 查看旅程。"""
    print_answer(call_in(data_dir, "GET", f"{BASE}/{journey_id}"), True)


@journey_app.command("create")
def create(file: FileArgument, as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Create a draft from a JSON file {name, name_en?, description?, definition}. 从文件新建草稿。"""
    got = call_in(data_dir, "POST", BASE, json=_journey_file(file))
    print_answer(got, as_json, "旅程 Journey", _JOURNEY_COLUMNS)


@journey_app.command("update")
def update(journey_id: str, file: FileArgument, as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Replace the draft (and names) from a JSON file; publish to make it live. 修改草稿。"""
    got = call_in(data_dir, "PATCH", f"{BASE}/{journey_id}", json=_journey_file(file))
    print_answer(got, as_json, "旅程 Journey", _JOURNEY_COLUMNS)


@journey_app.command("delete")
def delete(journey_id: str, data_dir: DataDirOption = None) -> None:
    """Delete a journey never published (a published one is ended instead). 删除草稿。"""
    call_in(data_dir, "DELETE", f"{BASE}/{journey_id}")
    console.print(f"deleted 已删除 {journey_id}")


@journey_app.command("validate")
def validate(file: FileArgument, data_dir: DataDirOption = None) -> None:
    """Check a definition in full without storing it; lists every problem. 校验定义。"""
    got = call_in(data_dir, "POST", f"{BASE}/validate", json={"definition": _definition_of(_journey_file(file))})
    console.print(f"[green]✓ valid 有效[/] ({got['nodes']} nodes, {got['edges']} edges)")


def _lifecycle(action: str, journey_id: str, as_json: bool, data_dir: Path | None) -> None:
    got = call_in(data_dir, "POST", f"{BASE}/{journey_id}/{action}")
    print_answer(got, as_json, "旅程 Journey", _JOURNEY_COLUMNS)


@journey_app.command("publish")
def publish(journey_id: str, as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Check the draft in full and publish it as the next version. 发布新版本。"""
    _lifecycle("publish", journey_id, as_json, data_dir)


@journey_app.command("pause")
def pause(journey_id: str, as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Pause: no one enters or moves. 暂停。"""
    _lifecycle("pause", journey_id, as_json, data_dir)


@journey_app.command("resume")
def resume(journey_id: str, as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Resume a paused journey. 恢复。"""
    _lifecycle("resume", journey_id, as_json, data_dir)


@journey_app.command("end")
def end(journey_id: str, as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """End: no one enters any more; people inside finish. 结束。"""
    _lifecycle("end", journey_id, as_json, data_dir)


@journey_app.command("versions")
def versions(journey_id: str, as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Published versions. 已发布版本。"""
    got = call_in(data_dir, "GET", f"{BASE}/{journey_id}/versions")
    rows = [{**v, "nodes": len(v["definition"].get("nodes", []))} for v in got]
    print_answer(got if as_json else rows, as_json, "版本 Versions", ["version", "published_at", "nodes"])


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:.1%}"


@journey_app.command("report")
def report(
    journey_id: str,
    version: Annotated[int | None, typer.Option(min=1, help="Only people who entered this version. 指定版本。")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Per node: entered, waiting, sent, delivered, suppressed, failed; A/B arms with rate, CI, p-value. 旅程报表。"""
    got = call_in(data_dir, "GET", f"{BASE}/{journey_id}/report", params={"version": version} if version else None)
    if as_json:
        print_answer(got, True)
        return
    s = got["summary"]
    conv = s["conversion"]
    scope = "" if got["scope"] is None else f" (version {got['scope']})"
    console.print(
        f"[bold]{got['name']}[/] {got['journey_id']} · {got['status']} · v{got['version']}{scope}\n"
        f"entered 进入 {s['entered']:,} · live 进行中 {s['live']:,} · completed 完成 {s['completed']:,} · "
        f"exited 退出 {s['exited']:,} · converted 转化 {s['converted']:,} ({_pct(conv['rate'])}, "
        f"95% CI {_pct(conv['ci_low'])}–{_pct(conv['ci_high'])})",
        highlight=False,
    )
    rows = []
    for n in got["nodes"]:
        m = n.get("messages") or {}
        suppressed = m.get("suppressed", 0)
        why = ", ".join(f"{k} {v}" for k, v in (m.get("suppressed_by") or {}).items())
        rows.append({
            "node": n["id"], "type": n["type"], "entered": n["entered"], "waiting": n["waiting"],
            "sent": m.get("sent", "") if m else "", "delivered": m.get("delivered", "") if m else "",
            "suppressed": (f"{suppressed} ({why})" if why else suppressed) if m else "",
            "failed": (m.get("failed", 0) + m.get("dead", 0)) if m else "",
            "branches": ", ".join(f"{h} {c}" for h, c in n["by_handle"].items()) if len(n["by_handle"]) > 1 else "",
        })  # fmt: skip
    print_answer(rows, False, "节点 Nodes", ["node", "type", "entered", "waiting", "sent", "delivered", "suppressed",
                                            "failed", "branches"])  # fmt: skip
    for sp in got["splits"]:
        arms = []
        for b in sp["branches"]:
            c, cmp = b["conversion"], (b.get("comparison") or {}) if b["people"] else {}
            arms.append({
                "arm": b["handle"] + (" (对照 control)" if b.get("control") else ""), "people": b["people"],
                "converted": c["converted"], "rate": _pct(c["rate"]),
                "95% CI": f"{_pct(c['ci_low'])}–{_pct(c['ci_high'])}",
                "vs control": "" if not cmp else f"{cmp['diff']:+.1%} [{cmp['ci_low']:+.1%}, {cmp['ci_high']:+.1%}]",
                "p-value": "" if not cmp or cmp.get("p_value") is None else f"{cmp['p_value']:.3g}",
                "significant": "" if not cmp else ("✓" if cmp["significant"] else "–"),
            })  # fmt: skip
        title = f"{'A/B 测试' if sp['type'] == 'ab' else '条件分支 split'} {sp['node_id']}"
        print_answer(arms, False, title, ["arm", "people", "converted", "rate", "95% CI", "vs control", "p-value",
                                         "significant"])  # fmt: skip


@journey_app.command("messages")
def messages(
    journey_id: str,
    node: Annotated[str | None, typer.Option(help="One node's messages. 指定节点。")] = None,
    status: Annotated[str | None, typer.Option(help="pending, sent, delivered, suppressed, failed … 按状态。")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """The journey's messages (the outbox), newest first, addresses masked. 发件箱明细。"""
    params: dict[str, Any] = {"limit": limit, **{k: v for k, v in (("node", node), ("status", status)) if v}}
    got = call_in(data_dir, "GET", f"{BASE}/{journey_id}/messages", params=params)
    print_answer(got, as_json, "消息 Messages", ["created_at", "node_id", "profile_id", "channel", "address", "status",
                                                 "reason", "attempts", "error"])  # fmt: skip


@journey_app.command("dry-run")
def dry_run(
    journey_id: Annotated[str | None, typer.Argument(help="A stored journey (its draft). 已保存的旅程。")] = None,
    file: Annotated[Path | None, typer.Option("--file", help="Or a definition file, not stored. 或定义文件。")] = None,
    days: Annotated[int, typer.Option(min=1, max=366, help="Days to simulate. 模拟天数。")] = 30,
    start: Annotated[str | None, typer.Option(help="ISO start time (default now). 开始时间。")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Simulate a journey: per day, people entering and messages per channel (nothing is sent). 模拟运行。"""
    if (journey_id is None) == (file is None):
        fail("give a journey id or --file FILE.json")
    body: dict[str, Any] = {"days": days, "start": _iso(start, "--start")}
    if file is not None:
        body["definition"] = _definition_of(_journey_file(file))
        got = call_in(data_dir, "POST", f"{BASE}/dry-run", json=body)
    else:
        got = call_in(data_dir, "POST", f"{BASE}/{journey_id}/dry-run", json=body)
    if as_json:
        print_answer(got, True)
        return
    _print_dry_run(got)


def _print_dry_run(got: dict[str, Any]) -> None:
    kinds = ("sms", "email", "push", "wechat")
    rows = [{"day": d["date"], "entered": d["entered"], **{k: d["messages"].get(k, 0) for k in kinds},
             "suppressed": d["suppressed"]} for d in got["days"]]  # fmt: skip
    print_answer(rows, False, "模拟 Dry run (per day 每天)", ["day", "entered", *kinds, "suppressed"])
    sent = ", ".join(f"{k} {n:,}" for k, n in got["messages"].items()) or "0"
    why = ", ".join(f"{k} {n:,}" for k, n in got["suppressed"].items())
    console.print(
        f"entered 进入 {got['entered']:,} · sent 发送 {sent} · suppressed 屏蔽 {sum(got['suppressed'].values()):,}"
        + (f" ({why})" if why else "")
        + f" · still inside at the end 期末仍在 {got['live_at_end']:,}"
        + (f" · sampled 抽样 ×{got['scale']:.3g}" if got["sampled"] else ""),
        highlight=False,
    )
    for w in got["warnings"]:
        console.print(f"[yellow]! {w}[/]", highlight=False)


def _template(text: str, text_en: str | None, subject: str | None, subject_en: str | None) -> dict[str, Any]:
    template: dict[str, Any] = {"body": {"zh": text, **({"en": text_en} if text_en else {})}}
    if subject or subject_en:
        template["subject"] = {k: v for k, v in (("zh", subject), ("en", subject_en)) if v}
    return template


@journey_app.command("campaign")
def campaign(
    name: Annotated[str, typer.Option(help="Campaign name, unique. 活动名称。")],
    audience: Annotated[str, typer.Option(help="Audience id (tessera audience list). 人群 ID。")],
    text: Annotated[str, typer.Option(help="Message text (zh); Jinja2 variables such as {{ profile.name }}. 文案。")],
    channel: Annotated[str, typer.Option(help="sms, email, push or wechat. 渠道类型。")] = "sms",
    text_en: Annotated[str | None, typer.Option("--text-en", help="English text. 英文文案。")] = None,
    subject: Annotated[str | None, typer.Option(help="Subject / title (email, push). 标题。")] = None,
    subject_en: Annotated[str | None, typer.Option("--subject-en", help="English subject. 英文标题。")] = None,
    at: Annotated[str | None, typer.Option(help="When, ISO with offset (default now). 发送时间。")] = None,
    every: Annotated[str | None, typer.Option(help="Repeat: year, month, week or day. 周期。")] = None,
    cron: Annotated[str | None, typer.Option(help="Or repeat on a cron, e.g. '0 10 1 * *'. 定时。")] = None,
    control: Annotated[float | None, typer.Option(help="Control group percent, e.g. 10. 对照组比例。")] = None,
    channel_name: Annotated[str | None, typer.Option("--channel-name", help="A configured channel's name.")] = None,
    fallback: Annotated[list[str] | None, typer.Option(help="Fallback kinds in order, e.g. --fallback sms.")] = None,
    transactional: Annotated[bool, typer.Option(help="Skip quiet hours and caps. 事务类消息。")] = False,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Create and publish a single campaign (一次性活动) in one step. 一步创建并发布活动。"""
    body: dict[str, Any] = {
        "name": name, "audience_id": audience, "channel": channel, "template": _template(text, text_en, subject,
                                                                                           subject_en),
        "at": _iso(at, "--at"), "every": every, "cron": cron, "control_percent": control, "channel_name": channel_name,
        "fallback": fallback or [], "transactional": transactional,
    }  # fmt: skip
    got = call_in(data_dir, "POST", f"{BASE}/campaigns", json={k: v for k, v in body.items() if v is not None})
    print_answer(got, as_json, "活动 Campaign", _JOURNEY_COLUMNS)


@journey_app.command("preview")
def preview(
    file: Annotated[Path, typer.Option("--file", help="A template JSON {subject?, body, data?}. 模板文件。")],
    profile_id: Annotated[str | None, typer.Option("--profile", help="A profile id. 用户 ID。")] = None,
    identifier: Annotated[
        str | None, typer.Option("--identifier", "-i", help="TYPE:VALUE, e.g. phone:13800138000. 标识。")
    ] = None,
    kind: Annotated[str, typer.Option(help="sms, email, push or wechat. 渠道类型。")] = "sms",
    locale: Annotated[str | None, typer.Option(help="zh or en (default: the person's). 语言。")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Render a message template for one person. 用某人的资料预览消息。"""
    if (profile_id is None) == (identifier is None):
        fail("give --profile ID or --identifier TYPE:VALUE")
    template = _read_json(file, "--file")
    if isinstance(template, dict) and "template" in template:
        template = template["template"]
    body = {"template": template, "profile_id": profile_id, "identifier": identifier, "kind": kind, "locale": locale}
    got = call_in(data_dir, "POST", f"{BASE}/preview", json={k: v for k, v in body.items() if v is not None})
    if as_json:
        print_answer(got, True)
        return
    console.print(f"[bold]{got['profile_id']}[/] · {got['kind']} → {got['address'] or '—'} · locale {got['locale']}",
                  highlight=False)  # fmt: skip
    if got["blocked"]:
        console.print(f"[yellow]would not be sent 不会发送: {got['blocked']}[/]", highlight=False)
    if got["subject"]:
        console.print(f"[bold]subject 标题[/] {got['subject']}", highlight=False)
    console.print(got["body"], highlight=False, markup=False)
    if got["data"]:
        console.print(json.dumps(got["data"], ensure_ascii=False, indent=2), highlight=False, markup=False)
    if got["missing"]:
        console.print(f"[yellow]missing variables 缺失变量: {', '.join(got['missing'])}[/]", highlight=False)


# --- channels -------------------------------------------------------------------------------------------------

_CHANNEL_COLUMNS = ["name", "kind", "disabled", "config", "receipt_url"]


def _config_pairs(pairs: list[str]) -> dict[str, Any]:
    """``key=value`` (text) and ``key:=json`` (a number, true/false, an object …), as HTTPie writes them."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            fail(f"--config: write key=value or key:=JSON, not {pair!r}")
        if key.endswith(":"):
            key = key[:-1]
            try:
                out[key] = json.loads(value)
            except ValueError as e:
                fail(f"--config {key}: not JSON: {e}")
        else:
            out[key] = value
    return out


@channel_app.command("add")
def channel_add(
    name: Annotated[str, typer.Argument(help="Channel name: letters, digits, _ or -. 渠道名称。")],
    kind: Annotated[str, typer.Option(help="sms, email, push, wechat, webhook or log. 渠道类型。")],
    config: Annotated[
        list[str] | None,
        typer.Option(help="A setting: key=value (text) or key:=JSON (port:=465, ssl:=true); repeat. 配置项。"),
    ] = None,
    config_file: Annotated[
        Path | None, typer.Option("--config-file", help="Settings as a JSON object (the options win). 配置文件。")
    ] = None,
    secret: Annotated[str | None, typer.Option(help="whsec_… for signed kinds (default: generated).")] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Add a channel; prints its signing secret once (webhook, push, WeChat). 新增渠道（签名密钥只显示一次）。"""
    settings: dict[str, Any] = {}
    if config_file is not None:
        loaded = _read_json(config_file, "--config-file")
        if not isinstance(loaded, dict):
            fail("--config-file: must hold a JSON object of settings")
        settings.update(loaded)
    settings.update(_config_pairs(config or []))
    body = {"name": name, "kind": kind, "config": settings, **({"secret": secret} if secret else {})}
    got = call_in(data_dir, "POST", CHANNELS, json=body)
    if as_json:
        print_answer(got, True)
        return
    print_answer(got, False, "渠道 Channel", _CHANNEL_COLUMNS)
    if got.get("secret"):
        console.print(f"signing secret 签名密钥 (shown once 只显示一次): {got['secret']}", highlight=False)
    if got.get("receipt_url"):
        console.print(f"receipt URL 回执地址: {got['receipt_url']}", highlight=False, soft_wrap=True)
        if not got["config"].get("callback_url"):
            console.print(
                "the provider posts delivery receipts to callback_url 服务商把回执发到 callback_url:\n"
                f"  tessera channel update {got['name']} --config 'callback_url={got['receipt_url']}'",
                highlight=False,
                soft_wrap=True,
            )


@channel_app.command("update")
def channel_update(
    name: str,
    config: Annotated[
        list[str] | None, typer.Option(help="A setting to change: key=value or key:=JSON; repeat. 修改配置项。")
    ] = None,
    as_json: JsonOption = False,
    data_dir: DataDirOption = None,
) -> None:
    """Change a channel's settings (merged into the current ones, checked again). 修改渠道配置。"""
    got = call_in(data_dir, "PATCH", f"{CHANNELS}/{name}", json={"config": _config_pairs(config or [])})
    print_answer(got, as_json, "渠道 Channel", _CHANNEL_COLUMNS)


@channel_app.command("list")
def channel_list(as_json: JsonOption = False, data_dir: DataDirOption = None) -> None:
    """Every channel (secrets are never listed). 全部渠道。"""
    print_answer(call_in(data_dir, "GET", CHANNELS), as_json, "渠道 Channels", _CHANNEL_COLUMNS)


@channel_app.command("show")
def channel_show(name: str, data_dir: DataDirOption = None) -> None:
    """One channel (JSON). 查看渠道。"""
    print_answer(call_in(data_dir, "GET", f"{CHANNELS}/{name}"), True)


@channel_app.command("remove")
def channel_remove(name: str, data_dir: DataDirOption = None) -> None:
    """Delete a channel (refused while a live journey uses it). 删除渠道。"""
    call_in(data_dir, "DELETE", f"{CHANNELS}/{name}")
    console.print(f"removed 已删除 {name}")


@channel_app.command("disable")
def channel_disable(name: str, data_dir: DataDirOption = None) -> None:
    """Stop sending through a channel (journeys fall back or suppress). 停用渠道。"""
    got = call_in(data_dir, "PATCH", f"{CHANNELS}/{name}", json={"disabled": True})
    console.print(f"disabled 已停用 {got['name']}")


@channel_app.command("enable")
def channel_enable(name: str, data_dir: DataDirOption = None) -> None:
    """Send through a disabled channel again. 启用渠道。"""
    got = call_in(data_dir, "PATCH", f"{CHANNELS}/{name}", json={"disabled": False})
    console.print(f"enabled 已启用 {got['name']}")
