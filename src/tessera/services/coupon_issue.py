"""Issuing coupons from outside a transaction (发券): one member through the API, everyone in an
audience, or the members of a file — each call one transaction through
:func:`tessera.services.coupons.issue_in_session`, idempotent by key (docs/coupons.md)."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from tessera.runtime import Instance
from tessera.services import loyalty_common
from tessera.services.coupons import (
    CouponOut,
    IssueRequest,
    IssueResult,
    coupon_by_code,
    coupon_outs,
    issue_in_session,
    load_template,
)
from tessera.services.loyalty_common import LoyaltyError


class IssueOut(BaseModel):
    """One coupon issued (or the one a repeated key issued first)."""

    coupon: CouponOut
    replayed: bool


class BulkIssueOut(BaseModel):
    """What an audience or file issue did: counts, and every refusal by reason."""

    template: str
    key: str
    requested: int = Field(description="people asked for (distinct members)")
    issued: int = Field(description="new coupons")
    replayed: int = Field(description="coupons an earlier call with the same key had issued")
    refused: dict[str, int] = Field(description="reason → people: out_of_stock, limit_reached, inactive")
    events: bool = Field(description="whether a Coupon Issued event was queued per new coupon")


class FileProblem(BaseModel):
    line: int
    member: str
    reason: str = Field(description="invalid, unknown_member, or the issue refusal (out_of_stock …)")
    message: str


class FileIssueOut(BulkIssueOut):
    rows: int
    problems: list[FileProblem] = Field(description="every row that got no coupon, by line number")


def issue(inst: Instance, template_key: str, member: str, key: str, *, source: str = "api",
          source_ref: str | None = None, campaign: str | None = None) -> IssueOut:  # fmt: skip
    """Issue one coupon to a member (profile id or TYPE:VALUE) under idempotency ``key``; a refusal
    (inactive, limit_reached, out_of_stock) raises 409 with the reason, having written nothing."""
    key = _check_key(key)
    now = inst.clock.now()
    with inst.operational.session() as s:
        load_template(s, template_key)  # 404 before resolving the member
    profile_id = loyalty_common.resolve_member(inst, member)
    req = IssueRequest(profile_id, key, source, source_ref, campaign)
    with inst.operational.session() as s:
        got = issue_in_session(s, template_key, [req], now)
        if got.refused:
            reason = got.refused[0][1]
            raise LoyaltyError(409, "template", _ISSUE_REFUSALS[reason], reason=reason)
        one = got.issued[0]
        return IssueOut(coupon=coupon_outs(s, [coupon_by_code(s, one.code)], now)[0], replayed=one.replayed)


_ISSUE_REFUSALS = {
    "inactive": "券模板未启用（已暂停或归档） / the template is paused or archived",
    "limit_reached": "已达每人限领数量 / the member already holds as many as one person may",
    "out_of_stock": "券已发完 / the template's stock is used up",
}


def _check_key(key: str) -> str:
    key = (key or "").strip()
    if not key or len(key) > 150:
        raise LoyaltyError(422, "key", "幂等键须为 1–150 个字符 / the idempotency key is 1–150 characters",
                           reason="invalid")  # fmt: skip
    return key


def _summary(template_key: str, key: str, requests: Sequence[IssueRequest], got: IssueResult,
             emit_events: bool) -> dict[str, Any]:  # fmt: skip
    return {
        "template": template_key, "key": key, "requested": len(requests),
        "issued": sum(1 for i in got.issued if not i.replayed), "replayed": sum(1 for i in got.issued if i.replayed),
        "refused": dict(Counter(reason for _r, reason in got.refused)), "events": emit_events,
    }  # fmt: skip


def audience_profiles(inst: Instance, audience_id: str) -> list[str]:
    """The current members of an audience (dynamic audiences evaluated now), in profile order."""
    from sqlglot import exp

    from tessera.compiler.query import run as run_query
    from tessera.services.audiences import members_of

    try:
        with members_of(inst=inst, audience_id=audience_id) as m:
            tree = (
                exp.select(exp.column("profile_id", "p"))
                .distinct()
                .from_(m.tree.subquery("m"))
                .join(exp.alias_(exp.to_table("profiles"), "p"), on="p.profile_idx = m.profile_idx")
                .order_by(exp.column("profile_id", "p"))
            )
            return [str(r[0]) for r in run_query(inst.analytic.cursor(), tree, m.params.values)]
    except LoyaltyError:
        raise
    except Exception as e:
        if getattr(e, "status", None) == 404:
            raise LoyaltyError(404, "audience_id", f"没有群组 {audience_id!r} / no audience {audience_id!r}",
                               reason="not_found") from None  # fmt: skip
        raise


def bulk_issue(inst: Instance, template_key: str, audience_id: str, key: str, now: datetime | None = None, *,
               emit_events: bool = True) -> BulkIssueOut:  # fmt: skip
    """One coupon to every current member of an audience, in one transaction; the per-person key is
    ``f"{key}:{profile_id}"`` so a repeat (or a retry after a failure) issues nothing twice. When the
    stock runs out, members beyond it are counted under ``refused.out_of_stock``."""
    key = _check_key(key)
    now = now or inst.clock.now()
    with inst.operational.session() as s:
        load_template(s, template_key)
    people = audience_profiles(inst, audience_id)
    return BulkIssueOut(**issue_profiles(inst, template_key, people, key, now, source="bulk", source_ref=audience_id,
                                         emit_events=emit_events))  # fmt: skip


def issue_profiles(inst: Instance, template_key: str, people: Sequence[str], key: str, now: datetime, *,
                   source: str, source_ref: str | None, emit_events: bool) -> dict[str, Any]:  # fmt: skip
    """The inside of :func:`bulk_issue`: one request per profile id, one transaction."""
    requests = [IssueRequest(pid, f"{key}:{pid}", source, source_ref) for pid in people]
    with inst.operational.session() as s:
        got = issue_in_session(s, template_key, requests, now, emit_events=emit_events)
    return _summary(template_key, key, requests, got, emit_events)


def import_issue(inst: Instance, template_key: str, data: bytes, key: str, *, encoding: str = "utf-8",
                 emit_events: bool = True) -> FileIssueOut:  # fmt: skip
    """Issue from a CSV file with a ``member`` column (profile id or TYPE:VALUE; 会员 also accepted).

    Like imported audiences (``services/audience_import``): rows that resolve get their coupon, every
    other row is reported by line number with the reason; a file without a member column is refused
    whole. The per-person key is ``f"{key}:{profile_id}"``, so re-sending a corrected file issues only
    what is missing, and two rows of one person give one coupon."""
    key = _check_key(key)
    now = inst.clock.now()
    with inst.operational.session() as s:
        load_template(s, template_key)
    try:
        text = data.decode(encoding).removeprefix("\ufeff")
    except (UnicodeDecodeError, LookupError) as e:
        raise LoyaltyError(422, "file", f"无法按 {encoding} 读取 / cannot read the file as {encoding}: {e}",
                           reason="invalid") from None  # fmt: skip
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise LoyaltyError(422, "file", "文件为空 / the file is empty", reason="invalid")
    header = [h.strip().lower() for h in rows[0]]
    col = next((i for i, h in enumerate(header) if h in ("member", "会员", "profile_id")), None)
    if col is None:
        raise LoyaltyError(422, "file", f"缺少 member 列 / the header needs a member column (got {rows[0]!r})",
                           reason="invalid")  # fmt: skip
    problems: list[FileProblem] = []
    wanted: list[tuple[int, str, str]] = []  # (line, text, profile id)
    resolved: dict[str, str | None] = {}
    for n, cells in enumerate(rows[1:], start=2):
        member = cells[col].strip() if col < len(cells) else ""
        if not member:
            if any(c.strip() for c in cells):
                problems.append(FileProblem(line=n, member="", reason="invalid", message="会员为空 / no member"))
            continue
        if member not in resolved:
            try:
                resolved[member] = loyalty_common.resolve_member(inst, member)
            except LoyaltyError as e:
                resolved[member] = None
                problems.append(FileProblem(line=n, member=member, reason=e.reason or "invalid", message=e.message))
                continue
        pid = resolved[member]
        if pid is None:
            problems.append(FileProblem(line=n, member=member, reason="unknown_member",
                                        message=f"找不到会员 / no profile {member!r}"))  # fmt: skip
            continue
        wanted.append((n, member, pid))
    people = list(dict.fromkeys(pid for _n, _m, pid in wanted))
    requests = [IssueRequest(pid, f"{key}:{pid}", "import", f"file:{key}") for pid in people]
    with inst.operational.session() as s:
        got = issue_in_session(s, template_key, requests, now, emit_events=emit_events)
    refused = {r.profile_id: reason for r, reason in got.refused}
    for n, member, pid in wanted:
        if pid in refused:
            problems.append(
                FileProblem(line=n, member=member, reason=refused[pid], message=_ISSUE_REFUSALS[refused[pid]])
            )
    problems.sort(key=lambda p: p.line)
    return FileIssueOut(**_summary(template_key, key, requests, got, emit_events), rows=len(rows) - 1,
                        problems=problems)  # fmt: skip
