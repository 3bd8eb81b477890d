"""`tessera profile show|search|refresh` — the 360° view (用户360视图) in the terminal.

Exit codes: 0 found, 1 nothing found (or the server failed), 2 a usage error. When a server holds
the data dir, the command asks it (``/v1/admin/profiles/…``); otherwise it opens the store.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.panel import Panel
from rich.table import Table

from tessera.cli.common import DataDirOption, answer_or_fail, ask_server, console, fail, open_instance
from tessera.domain.identity import IdentityRules
from tessera.runtime import Instance
from tessera.services import loyalty_member, profile_view, tag_catalogue
from tessera.services import sources as sources_service
from tessera.services.identity_rules import get_rules
from tessera.services.profile_view import Profile360, ProfileHit, ProfileViewError

profile_app = typer.Typer(help="Profiles (用户档案): the 360° view, search, attribute refresh.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(profile_app, name="profile")


class _NotFound(Exception):
    pass


def _server(info: dict[str, Any], method: str, path: str, **kw: Any) -> Any:
    """Ask the running server; its 400/404 bodies become the same errors as a local run."""
    status, body = ask_server(info, method, path, **kw)
    if status == 404:
        raise _NotFound(body.get("message", "not found"))
    return answer_or_fail(status, body)


def _local_context(instance: Instance) -> tuple[IdentityRules, dict[int, str]]:
    return get_rules(instance.operational), sources_service.source_names(instance.operational)


@profile_app.command("show")
def show(
    identifier: Annotated[
        str | None, typer.Option("--identifier", "-i", help="TYPE:VALUE, e.g. phone:13800138000 or user_id:u1.")
    ] = None,
    profile_id: Annotated[
        str | None, typer.Option("--id", help="A profile id (p_…); merged-away ids work too.")
    ] = None,
    events: Annotated[int, typer.Option("--events", min=1, max=1000, help="Timeline events to show.")] = 20,
    orders: Annotated[int, typer.Option("--orders", min=1, max=1000, help="Latest orders to show.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print the 360° view as JSON (the API's shape).")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """The 360° view of one profile: attributes, identities, orders, timeline, merge history."""
    if (identifier is None) == (profile_id is None):
        fail("give --identifier TYPE:VALUE or --id PROFILE_ID (one of them)")
    instance = open_instance(data_dir)
    running = instance.data_dir.running_server()
    params = {"timeline_limit": events, "orders_limit": orders}
    try:
        if running:
            if identifier is not None:
                body = _server(running, "GET", "/v1/admin/profiles/lookup", params={**params, "identifier": identifier})
            else:
                body = _server(running, "GET", f"/v1/admin/profiles/{profile_id}", params=params)
            view = Profile360.model_validate(body)
        else:
            view = _show_locally(instance, identifier, profile_id, events, orders)
    except _NotFound as exc:
        fail(str(exc), code=1)
    finally:
        instance.close()
    if as_json:
        typer.echo(view.model_dump_json(indent=2))
        return
    _print_view(view)


def _show_locally(
    instance: Instance, identifier: str | None, profile_id: str | None, events: int, orders: int
) -> Profile360:
    rules, names = _local_context(instance)
    cur = instance.analytic.cursor()
    try:
        ref = profile_view.find_profile(cur, rules=rules, identifier=identifier, profile_id=profile_id)
        if ref is None and identifier is not None:
            id_type, value = profile_view.normalised_identifier(rules, identifier)
            raise _NotFound(f"no profile has the identifier {id_type}:{value}")
        if ref is None:
            raise _NotFound(f"no profile {profile_id}")
        with instance.operational.session() as s:
            tags = {t.key: t for t in tag_catalogue.list_tags(session=s)}
        view = profile_view.profile_360(
            cur, ref=ref, rules=rules, source_names=names, timeline_limit=events, orders_limit=orders,
            tag_catalogue=tags,
        )  # fmt: skip
        view.loyalty = loyalty_member.member_loyalty(instance, view.profile.profile_id)
        return view
    except ProfileViewError as exc:
        fail(str(exc))
    finally:
        cur.close()


@profile_app.command("search")
def search(
    q: Annotated[str, typer.Argument(help="Part of a phone number, an e-mail address or a name.")],
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many profiles.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Find profiles by partial phone, e-mail or name (搜索用户)."""
    instance = open_instance(data_dir)
    running = instance.data_dir.running_server()
    try:
        if running:
            hits = [ProfileHit.model_validate(h) for h in _server(running, "GET", "/v1/admin/profiles/search",
                                                                  params={"q": q, "limit": limit})]  # fmt: skip
        else:
            cur = instance.analytic.cursor()
            try:
                hits = profile_view.search_profiles(cur, q=q, limit=limit, rules=get_rules(instance.operational))
            except ProfileViewError as exc:
                fail(str(exc))
            finally:
                cur.close()
    finally:
        instance.close()
    if as_json:
        typer.echo(json.dumps([h.model_dump(mode="json") for h in hits], ensure_ascii=False, indent=2))
        return
    if not hits:
        fail(f"no profile matches {q!r}", code=1)
    table = Table(title=f"用户搜索 Profiles matching {q!r}", title_justify="left")
    for col in ("profile", "姓名 name", "手机 phones", "邮箱 emails", "matched", "最近 last seen"):
        table.add_column(col, overflow="fold")
    for h in hits:
        table.add_row(h.profile_id, h.name or "", "\n".join(h.phones), "\n".join(h.emails), ", ".join(h.matched),
                      _when(h.last_seen))  # fmt: skip
    console.print(table)


@profile_app.command("refresh")
def refresh(data_dir: DataDirOption = None) -> None:
    """Recompute the stored attributes of every profile (用户属性), e.g. after changing merge policies."""
    instance = open_instance(data_dir)
    running = instance.data_dir.running_server()
    try:
        if running:
            n = int(_server(running, "POST", "/v1/admin/profiles/refresh")["refreshed"])
        else:
            from tessera.services.profile_attributes import refresh_attributes

            rules, names = _local_context(instance)
            with instance.analytic.transaction() as cur:
                n = refresh_attributes(cur, rules=rules, source_names=names, now=instance.clock.now())
    finally:
        instance.close()
    console.print(f"属性已刷新 attributes refreshed for [bold]{n:,}[/] profiles")


# -- rendering -----------------------------------------------------------------------------------


def _when(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M") if dt else "—"


def _print_view(v: Profile360) -> None:
    p, a = v.profile, v.attributes
    head = [
        f"[bold]{p.profile_id}[/]  (idx {p.profile_idx})",
        f"首次 first seen {_when(a.first_seen or p.first_seen)}   最近 last seen {_when(a.last_seen or p.last_seen)}",
        f"渠道 channels {', '.join(a.channels) or '—'}   事件 events {a.event_count:,}   订单 orders {a.order_count:,}"
        f"   消费 spend {a.total_spend}",
    ]
    if p.anchor_type:
        head.append(f"锚点 anchor {p.anchor_type}:{p.anchor_value}")
    if v.redirected_from:
        head.append(f"[yellow]{v.redirected_from} was merged into this profile (已合并)[/]")
    console.print(Panel("\n".join(head), title="用户档案 Profile", title_align="left", expand=False))

    traits = Table(title="属性 Traits", title_justify="left", show_header=False)
    for key, value in sorted(a.traits.items()):
        traits.add_row(key, value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    if a.traits:
        console.print(traits)

    ids = Table(title="身份标识 Identities", title_justify="left")
    ids.add_column("类型 type", overflow="fold")
    ids.add_column("值 value", overflow="fold", min_width=14)
    ids.add_column("来源 source", overflow="fold")
    ids.add_column("首次/最近 seen", min_width=16)
    for i in v.identities:
        ids.add_row(i.type, i.value, i.source or "", f"{_when(i.first_seen)}\n{_when(i.last_seen)}")
    console.print(ids)

    if v.orders:
        orders = Table(title="订单 Orders", title_justify="left")
        for col in ("order", "时间 ordered at", "status", "channel", "items", "total"):
            orders.add_column(col, justify="right" if col in ("items", "total") else "left")
        for o in v.orders:
            orders.add_row(o.order_id, _when(o.ordered_at), o.status or "", o.channel or o.source or "",
                           f"{o.item_count} / {o.quantity}", f"{o.total} {o.currency or ''}".strip())  # fmt: skip
        console.print(orders)

    timeline = Table(title="行为时间线 Timeline (newest first)", title_justify="left")
    timeline.add_column("时间 time", min_width=10)
    timeline.add_column("type", no_wrap=True)
    timeline.add_column("事件 event", overflow="fold", min_width=15)
    timeline.add_column("来源 source", overflow="fold", min_width=8)
    timeline.add_column("details", overflow="fold")
    for e in v.timeline.events:
        details = json.dumps(e.properties, ensure_ascii=False)[:60] if e.properties else ""
        timeline.add_row(_when(e.timestamp), e.type, e.event or "", e.source or str(e.source_id), details)
    console.print(timeline)
    if v.timeline.next_before:
        console.print(f"older events: --events N, or GET …/events?before={v.timeline.next_before}", highlight=False)

    if v.tags:
        tags = Table(title="标签 Tags", title_justify="left")
        for col in ("tag", "name", "kind", "values", "computed"):
            tags.add_column(col, overflow="fold")
        for t in v.tags:
            tags.add_row(t.key, t.name or "", t.kind or "", ", ".join(t.values), _when(t.computed_at or t.updated_at))
        console.print(tags)
    if v.merge_history:
        history = Table(title="合并记录 Merge history", title_justify="left")
        for col in ("#", "logged", "action", "profile", "others", "identifier", "reason"):
            history.add_column(col, overflow="fold")
        for m in v.merge_history:
            ident = f"{m.id_type}:{m.id_value}" if m.id_type else ""
            history.add_row(str(m.seq), _when(m.logged_at), m.action, m.profile_id or "", ", ".join(m.other_ids),
                            ident, m.reason)  # fmt: skip
        console.print(history)
    if v.loyalty is not None:
        _print_loyalty(v.loyalty)
    console.print(
        f"同意 consents: {len(v.consents)}   标签 tags: {len(v.tags)}   人群 audiences: {len(v.audiences)}",
        highlight=False,
    )


def _print_loyalty(lo: loyalty_member.MemberLoyalty) -> None:
    """Points, tier and coupons (会员权益) in a few lines."""
    tier = lo.tier
    pts = lo.points
    line = f"积分 points [bold]{pts.balance:,}[/]"
    if pts.next_expiry is not None:
        line += f" ({pts.next_expiry_points:,} expire {_when(pts.next_expiry)})"
    if tier is not None:
        line += f"   等级 tier [bold]{tier.name}[/] {tier.name_en} since {_when(tier.since) if tier.since else '—'}"
    usable = sum(1 for c in lo.coupons if c.status == "issued")
    line += f"   券 coupons {usable} usable / {len(lo.coupons)}"
    console.print(line, highlight=False)
