"""Loyalty follows OneID merges (会员合并): when two profiles become one, the merged-away member's
points, coupons, orders and tier history carry over to the profile that now holds them.

OneID leaves a ``profile_redirects`` row for each merged-away profile (DuckDB). :func:`fold_merges`
reads the redirects written since its cursor, finds the survivor through the redirect's anchor
(as the 360° view does), and in one operational transaction per merge:

* points move through the ledger (append-only): each open lot is credited to the survivor with
  its own expiry, an unpaid deficit is carried as a deduction, and the merged-away account is
  brought to zero — keys ``merge:<old>:<merged at>:…``, so a repeat moves nothing;
* coupons are re-owned (``merged_from`` keeps the old owner); processed orders follow, so the
  survivor's tier counts the combined spend; the merged-away tier row is dropped and the survivor
  is evaluated (upgrades only: a review decides downgrades).

An unmerge (``tessera identity unmerge``) does not split loyalty back; staff adjust by hand.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from tessera.clock import as_utc
from tessera.runtime import Instance
from tessera.services import loyalty_common
from tessera.stores.models import CouponRow, LoyaltyOrderRow, MemberTierRow, PointsAccountRow

_CURSOR = "merges"


def fold_merges(inst: Instance, now: datetime | None = None) -> int:
    """Carry loyalty over for the merges since the last call; returns how many were folded."""
    from tessera.services import profile_view
    from tessera.services.identity_rules import get_rules

    now = now or inst.clock.now()
    with inst.operational.session() as s:
        _, since = loyalty_common.cursor(s, _CURSOR)
    cur = inst.analytic.cursor()
    try:
        rows = cur.execute(
            "SELECT profile_id, merged_at FROM profile_redirects WHERE ? IS NULL OR merged_at > ? ORDER BY merged_at",
            [since.replace(tzinfo=None) if since else None] * 2,
        ).fetchall()
        if not rows:
            return 0
        rules = get_rules(inst.operational)
        with inst.operational.session() as s:
            holders = _with_loyalty(s, [r[0] for r in rows])
        moves: list[tuple[str, str, datetime]] = []
        for old, merged_at in rows:
            if old not in holders:
                continue  # nothing to carry over
            ref = profile_view.find_profile(cur, rules=rules, profile_id=old)
            if ref is not None and ref.profile_id != old:
                moves.append((old, ref.profile_id, as_utc(merged_at)))
        last = as_utc(rows[-1][1])
    finally:
        cur.close()
    folded = 0
    for old, new, merged_at in moves:
        with inst.operational.session() as s:
            if _fold(s, old, new, merged_at, now):
                folded += 1
    with inst.operational.session() as s:
        loyalty_common.set_cursor(s, _CURSOR, 0, now, at=last)
    return folded


def _with_loyalty(s: Session, profile_ids: list[str]) -> set[str]:
    """Those of ``profile_ids`` that hold points, coupons, processed orders or a tier."""
    out: set[str] = set()
    for column in (PointsAccountRow.profile_id, CouponRow.profile_id, LoyaltyOrderRow.profile_id,
                   MemberTierRow.profile_id):  # fmt: skip
        for i in range(0, len(profile_ids), 900):
            out.update(s.scalars(select(column).where(column.in_(profile_ids[i : i + 900])).distinct()))
    return out


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


def _fold(s: Session, old: str, new: str, merged_at: datetime, now: datetime) -> bool:
    from tessera.services import points, tiers
    from tessera.services.points import NewEntry

    stamp = merged_at.strftime("%Y%m%dT%H%M%S%f")
    moved = False
    account = s.get(PointsAccountRow, old)
    if account is not None and account.balance != 0:
        got = points.member_lots(s, old, now)
        why = f"合并会员 {old} / merged from {old}"
        entries = [
            NewEntry(key=f"merge:{old}:{stamp}:{lot.id}", profile_id=new, kind="adjust", points=lot.remaining,
                     reason=why, source="merge", source_ref=old, expires_at=lot.expires_at, occurred_at=lot.earned_at)
            for lot in got.open if lot.remaining
        ]  # fmt: skip
        if got.deficit:
            entries.append(NewEntry(key=f"merge:{old}:{stamp}:deficit", profile_id=new, kind="adjust",
                                    points=-got.deficit, reason=why, source="merge", source_ref=old))  # fmt: skip
        entries.append(NewEntry(key=f"merge:{old}:{stamp}:out", profile_id=old, kind="adjust", points=-account.balance,
                                reason=f"并入会员 {new} / merged into {new}", source="merge", source_ref=new))  # fmt: skip
        points.post_in_session(s, entries, now, allow_negative=True)
        moved = True
    coupons = s.execute(update(CouponRow).where(CouponRow.profile_id == old).values(profile_id=new, merged_from=old))
    orders = s.execute(update(LoyaltyOrderRow).where(LoyaltyOrderRow.profile_id == old).values(profile_id=new))
    dropped = s.execute(delete(MemberTierRow).where(MemberTierRow.profile_id == old))
    moved = moved or bool(_count(coupons) or _count(orders) or _count(dropped))
    if moved:
        tiers.evaluate_in_session(s, [new], now, scheduled=False)
    return moved
