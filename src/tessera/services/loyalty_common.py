"""What coupons, points and tiers share: the refusal type, finding the member, the programme
configuration rows, the events outbox and the job cursors (all in the operational store).

* :class:`LoyaltyError` — a refusal with a stable ``reason`` (``expired``, ``not_owner``,
  ``wrong_channel``, ``threshold_not_met``, ``insufficient_points``, ``out_of_stock``,
  ``limit_reached`` …); the API answers it as 4xx with ``field``, ``message`` and ``reason``.
* :func:`resolve_member` — ``p_…`` profile ids (merged-away ids follow the merge) or
  ``TYPE:VALUE`` identifiers (``phone:+8613800000000``, ``user_id:u1``) → the profile now.
* :func:`emit` — a loyalty event (``Tier Changed``, ``Points Expiring`` …) written in the caller's
  transaction; :mod:`tessera.services.loyalty_events` publishes it as a system event.
* :func:`get_config` / :func:`put_config` — the JSON of the points programme and tier definitions.
* :func:`cursor` / :func:`set_cursor` — how far a job has got, advanced in the job's transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from tessera.errors import RequestError
from tessera.runtime import Instance
from tessera.stores.bulk import insert_ignoring_duplicates
from tessera.stores.models import LoyaltyConfigRow, LoyaltyCursorRow, LoyaltyEventRow

#: loyalty event names journeys can trigger on (system events, ``source_id`` 0)
TIER_CHANGED = "Tier Changed"
POINTS_EXPIRING = "Points Expiring"
POINTS_EARNED = "Points Earned"
COUPON_ISSUED = "Coupon Issued"
COUPON_REDEEMED = "Coupon Redeemed"
COUPON_EXPIRING = "Coupon Expiring"


class LoyaltyError(RequestError):
    """A coupon, points or tier request refused; ``reason`` is the stable code of why."""

    error = "loyalty_refused"


def resolve_member(inst: Instance, member: str, *, field: str = "member") -> str:
    """The current profile id of ``member`` (a profile id, or ``TYPE:VALUE``); 404 when unknown."""
    from tessera.services import profile_view
    from tessera.services.identity_rules import get_rules

    text = (member or "").strip()
    if not text:
        raise LoyaltyError(422, field, "empty: give a profile id (p_…) or an identifier TYPE:VALUE", reason="invalid")
    by_id = text.startswith("p_") and ":" not in text
    cur = inst.analytic.cursor()
    try:
        ref = profile_view.find_profile(
            cur,
            rules=get_rules(inst.operational),
            identifier=None if by_id else text,
            profile_id=text if by_id else None,
        )
    except profile_view.ProfileViewError as e:
        raise LoyaltyError(422, field, e.message, reason="invalid") from None
    finally:
        cur.close()
    if ref is None:
        raise LoyaltyError(404, field, f"no profile {text!r} / 找不到会员 {text!r}", reason="unknown_member")
    return ref.profile_id


def emit(s: Session, events: Sequence[tuple[str, str, str, Mapping[str, Any]]], now: datetime) -> None:
    """Queue events ``(key, profile_id, name, properties)`` in the caller's transaction; a key
    already queued is kept as it was (replays emit nothing new)."""
    rows = [
        {"key": key, "profile_id": pid, "name": name, "properties": dict(props), "created_at": now,
         "published_at": None}
        for key, pid, name, props in events
    ]  # fmt: skip
    insert_ignoring_duplicates(s, LoyaltyEventRow.__table__, rows)


def get_config(s: Session, name: str) -> tuple[dict[str, Any] | None, int]:
    """The stored JSON of ``name`` (``points`` or ``tiers``) and its version (0 when never set)."""
    row = s.get(LoyaltyConfigRow, name)
    return (dict(row.config), row.version) if row is not None else (None, 0)


def put_config(s: Session, name: str, config: Mapping[str, Any], now: datetime) -> int:
    """Store a new version of ``name``; returns the version number."""
    row = s.get(LoyaltyConfigRow, name, with_for_update=True)
    if row is None:
        s.add(LoyaltyConfigRow(name=name, config=dict(config), version=1, updated_at=now))
        return 1
    row.config = dict(config)
    row.version += 1
    row.updated_at = now
    return row.version


def cursor(s: Session, name: str) -> tuple[int, datetime | None]:
    row = s.scalar(select(LoyaltyCursorRow).where(LoyaltyCursorRow.name == name))
    return (row.position, row.at) if row is not None else (0, None)


def set_cursor(s: Session, name: str, position: int, now: datetime, at: datetime | None = None) -> None:
    row = s.get(LoyaltyCursorRow, name, with_for_update=True)
    if row is None:
        s.add(LoyaltyCursorRow(name=name, position=position, at=at, updated_at=now))
    else:
        row.position, row.at, row.updated_at = position, at, now
