"""Member tiers (会员等级): evaluating members, the scheduled review, manual changes, the programme.

* :func:`evaluate_in_session` — the metric of each member over ``(now − window, now]`` (spend from
  ``loyalty_orders``, or points earned from ``points_ledger``) in one SQL aggregate per chunk, then
  :func:`tessera.domain.tiers.decide`; every change writes ``member_tiers``, ``tier_changes`` (unique
  key ``tier:<profile>:<to>:<now iso>``, so a replay at the same instant is a no-op) and queues a
  ``Tier Changed`` event, all in the caller's transaction. On orders (``scheduled=False``) only
  upgrades; at a review also downgrades. Members without a row start at the first level silently
  (no event) unless they qualify higher at once (an upgrade from the first level). Rows that do not
  change get their ``metric`` and ``evaluated_at`` refreshed in one executemany.
* :func:`review` — the scheduled evaluation of everyone (a tier row, or an order / earn in the
  window) in batches, one transaction each; :func:`due` says whether the cron wants one. A review
  cut short resumes: members already evaluated since it began are skipped, so nobody is moved
  down twice.
* :func:`tier_multipliers` — the points multiplier of each member's tier (the order processor).
* :func:`profile_tier` — the member's tier, progress to the next level and history (360° view).
* :func:`set_program` — a new version of the programme; removing a level members hold is refused
  unless ``remap`` moves them (each move is a recorded change with an event).
* :func:`set_tier` — a manual change by staff (reason ``manual: …``), idempotent by key.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo

from croniter import croniter
from pydantic import BaseModel, Field
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from tessera.clock import as_utc
from tessera.domain.tiers import Benefits, Direction, Level, TierProgram, TierProgramError, decide, parse_program
from tessera.runtime import Instance
from tessera.services.loyalty_common import (
    TIER_CHANGED,
    LoyaltyError,
    cursor,
    emit,
    get_config,
    put_config,
    resolve_member,
    set_cursor,
)
from tessera.stores.bulk import insert_ignoring_duplicates
from tessera.stores.models import (
    CouponTemplateRow,
    LoyaltyConfigRow,
    LoyaltyOrderRow,
    MemberTierRow,
    PointsEntryRow,
    TierChangeRow,
)

CONFIG = "tiers"
REVIEW_CURSOR = "tiers_review"
#: review batch size (members per transaction)
BATCH = 5_000
_DONE, _RUNNING = 1, 2
_ONE = Decimal(1)


# --- schemas -----------------------------------------------------------------------------------------


class TierChange(BaseModel):
    """One tier change (升降级记录)."""

    key: str
    profile_id: str
    from_tier: str | None
    to_tier: str
    from_name: str | None = None
    to_name: str = ""
    direction: Direction
    reason: str
    metric: int = Field(description="the metric then (minor units for spend, points for points)")
    at: datetime


class Progress(BaseModel):
    """What is missing to reach the next level (升级进度) and to keep this one (保级)."""

    next_tier: str | None = Field(description="the next level's key; None at the top")
    next_name: str | None = None
    next_name_en: str | None = None
    next_threshold: int | None = Field(default=None, description="in metric units")
    missing: int = Field(default=0, description="metric still needed for the next level (0 at the top)")
    missing_text: str = ""
    keep: int = Field(default=0, description="the current level's keep, in metric units")
    keep_missing: int = Field(default=0, description="metric still needed to keep this level at the next review")


class TierOut(BaseModel):
    """A member's tier (会员等级): names, benefits, since, metric, progress, history newest first."""

    profile_id: str
    tier: str
    name: str
    name_en: str
    benefits: Benefits
    since: datetime | None = Field(description="when the member reached it; None if never evaluated (the default)")
    metric: int = Field(description="at the last evaluation: minor units for spend, points for points")
    metric_kind: Literal["spend", "points"]
    metric_text: str
    currency: str
    window_days: int
    evaluated_at: datetime | None
    progress: Progress
    history: list[TierChange]


class ProgramOut(BaseModel):
    version: int = Field(description="0 when no programme was ever set")
    updated_at: datetime | None
    program: TierProgram | None


class ProgramSet(ProgramOut):
    moved: int = Field(default=0, description="members moved off removed levels by remap")


class LevelOut(BaseModel):
    key: str
    name: str
    name_en: str
    threshold: int = Field(description="in metric units (minor units for spend)")
    keep: int
    threshold_text: str
    benefits: Benefits
    members: int = Field(description="members holding it (evaluated at least once)")


class TiersOut(BaseModel):
    version: int
    enabled: bool
    metric: Literal["spend", "points"] | None
    currency: str | None
    window_days: int | None
    levels: list[LevelOut]
    unknown: dict[str, int] = Field(default_factory=dict, description="members on keys the programme lacks")


class ReviewOut(BaseModel):
    """What a review did."""

    evaluated: int = 0
    up: int = 0
    down: int = 0
    unchanged: int = 0
    placed: int = Field(default=0, description="members given their first tier row at the first level (no event)")
    skipped: int = Field(default=0, description="already evaluated by an interrupted review that this one resumed")


class SetTierOut(BaseModel):
    change: TierChange | None = Field(description="None when the member already held the tier")
    replayed: bool = False
    tier: TierOut


# --- programme ------------------------------------------------------------------------------------------


def program(s: Session) -> TierProgram | None:
    """The stored programme (enabled or not), or None when none was set."""
    body, _ = get_config(s, CONFIG)
    return TierProgram.model_validate(body) if body is not None else None


def _active(s: Session) -> TierProgram | None:
    p = program(s)
    return p if p is not None and p.enabled else None


def program_out(s: Session) -> ProgramOut:
    row = s.get(LoyaltyConfigRow, CONFIG)
    if row is None:
        return ProgramOut(version=0, updated_at=None, program=None)
    return ProgramOut(version=row.version, updated_at=as_utc(row.updated_at), program=program(s))


def set_program(inst: Instance, body: Any, *, remap: Mapping[str, str] | None = None) -> ProgramSet:
    """Store a new version of the programme (every problem named by its path under ``program``).

    Levels may be added, renamed and re-priced: members keep their level until the next
    evaluation. Removing a level members hold is refused (409) unless ``remap`` names, for each
    removed level, a level of the new programme to move them to.
    """
    try:
        new = parse_program(body)
    except TierProgramError as e:
        errors = [(f"program.{p}" if p else "program", m) for p, m in e.errors]
        raise LoyaltyError(422, errors[0][0], errors[0][1], errors, reason="invalid") from None
    remap = dict(remap or {})
    now = inst.clock.now()
    with inst.operational.session() as s:
        old = program(s)
        held = dict(s.execute(select(MemberTierRow.tier, func.count()).group_by(MemberTierRow.tier)).all())
        keys = {lv.key for lv in new.levels}
        problems: list[tuple[str, str]] = []
        for i, lv in enumerate(new.levels):
            template = lv.benefits.birthday_coupon
            if template and s.get(CouponTemplateRow, template) is None:
                problems.append((f"program.levels[{i}].benefits.birthday_coupon",
                                 f"没有券模板 {template!r} / no coupon template {template!r}"))  # fmt: skip
        for src, dst in sorted(remap.items()):
            if src in keys:
                problems.append((f"remap.{src}", f"{src} is still a level; remap moves members off removed levels"))
            elif dst not in keys:
                problems.append((f"remap.{src}", f"no level {dst!r} in the new programme / 新方案中没有等级 {dst!r}"))
        if problems:
            raise LoyaltyError(422, problems[0][0], problems[0][1], problems, reason="invalid")
        for key, n in sorted(held.items()):
            if key not in keys and key not in remap:
                raise LoyaltyError(
                    409, "program.levels",
                    f"等级 {key} 仍有 {n} 名会员：请保留该等级或用 remap 指定新等级 / level {key} is held by {n} "
                    f"members: keep it, or give remap {{{key!r}: <level>}}",
                    reason="invalid",
                )  # fmt: skip
        moved = 0
        for src, dst in sorted(remap.items()):
            if held.get(src):
                moved += _remap(s, old, new, src, dst, now)
        put_config(s, CONFIG, new.model_dump(mode="json"), now)
        s.flush()
        out = program_out(s)
    return ProgramSet(**out.model_dump(), moved=moved)


def _remap(s: Session, old: TierProgram | None, new: TierProgram, src: str, dst: str, now: datetime) -> int:
    """Move every member on the removed level ``src`` to ``dst``: a change and an event each."""
    rows = s.execute(select(MemberTierRow.profile_id, MemberTierRow.metric).where(MemberTierRow.tier == src)).all()
    old_level = old.level(src) if old is not None else None
    to = new.level(dst)
    assert to is not None
    up = old_level is not None and old is not None and new.units(to.threshold) > old.units(old_level.threshold)
    direction: Direction = "up" if up else "down"
    from_name = old_level.name if old_level else src
    reason = f"等级方案调整：{from_name} 已取消 → {to.name} / programme changed: {src} removed → {dst}"
    changes = [
        TierChange(key=_key(pid, dst, now), profile_id=pid, from_tier=src, to_tier=dst, from_name=from_name,
                   to_name=to.name, direction=direction, reason=reason[:200], metric=metric, at=now)
        for pid, metric in rows
    ]  # fmt: skip
    s.execute(update(MemberTierRow).where(MemberTierRow.tier == src).values(tier=dst, since=now))
    _record(s, new, changes, now)
    return len(changes)


# --- evaluation ---------------------------------------------------------------------------------------------


def _key(profile_id: str, to: str, now: datetime) -> str:
    return f"tier:{profile_id}:{to}:{now.isoformat()}"


def _chunk(s: Session) -> int:
    return 900 if s.get_bind().dialect.name == "sqlite" else 10_000


def _chunks(ids: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for i in range(0, len(ids), size):
        yield ids[i : i + size]


def _activity(p: TierProgram, now: datetime) -> tuple[Any, Any, list[Any]]:
    """(profile id column, value column, conditions) of the metric's rows in ``(now − window, now]``."""
    start = now - timedelta(days=p.window_days)
    if p.metric == "spend":
        o = LoyaltyOrderRow.__table__.c
        return o.profile_id, o.amount, [o.status == "completed", o.currency == p.currency, o.ordered_at > start,
                                        o.ordered_at <= now]  # fmt: skip
    pl = PointsEntryRow.__table__.c
    return pl.profile_id, pl.points, [pl.kind == "earn", pl.occurred_at > start, pl.occurred_at <= now]


def _metrics(s: Session, p: TierProgram, ids: Sequence[str], now: datetime) -> dict[str, int]:
    pid_col, value, conditions = _activity(p, now)
    q = select(pid_col, func.sum(value)).where(*conditions)
    out: dict[str, int] = {}
    for part in _chunks(ids, _chunk(s)):
        rows = s.execute(q.where(pid_col.in_(part)).group_by(pid_col))
        out.update((pid, int(v or 0)) for pid, v in rows)
    return out


def _current(s: Session, ids: Sequence[str]) -> dict[str, tuple[str, datetime]]:
    t = MemberTierRow.__table__.c
    out: dict[str, tuple[str, datetime]] = {}
    for part in _chunks(ids, _chunk(s)):
        rows = s.execute(select(t.profile_id, t.tier, t.since).where(t.profile_id.in_(part)))
        out.update((pid, (tier, as_utc(since))) for pid, tier, since in rows)
    return out


def _reason(p: TierProgram, direction: Direction, to: Level, cur: Level | None, metric: int) -> str:
    what_zh, what_en = ("消费", "spend") if p.metric == "spend" else ("获得积分", "points earned")
    m = p.text(metric)
    if direction == "up":
        bar = p.text(p.units(to.threshold))
        text = (f"近{p.window_days}天{what_zh} {m} ≥ {to.name} {bar} / "
                f"{what_en} {m} in {p.window_days} days ≥ {to.name_en or to.key} {bar}")  # fmt: skip
    else:
        base = cur or to
        bar = p.text(p.units(base.keep_or_threshold))
        text = (f"近{p.window_days}天{what_zh} {m} < {base.name}保级 {bar} / "
                f"{what_en} {m} in {p.window_days} days < {base.name_en or base.key} keep {bar}")  # fmt: skip
    return text[:200]


@dataclass
class _Outcome:
    changes: list[TierChange] = field(default_factory=list)
    placed: int = 0
    unchanged: int = 0


def _evaluate(s: Session, p: TierProgram, ids: Sequence[str], now: datetime, *, scheduled: bool) -> _Outcome:
    out = _Outcome()
    if not ids:
        return out
    metrics = _metrics(s, p, ids, now)
    current = _current(s, ids)
    first = p.first
    new_rows: list[dict[str, Any]] = []
    refresh: list[dict[str, Any]] = []
    for pid in ids:
        metric = metrics.get(pid, 0)
        held = current.get(pid)
        if held is None:
            got = decide(p, first.key, now, metric, now, scheduled=False)
            tier = got[0] if got else first.key
            new_rows.append({"profile_id": pid, "tier": tier, "since": now, "metric": metric, "evaluated_at": now})
            if got is None:
                out.placed += 1
                continue
            from_key: str = first.key
        else:
            from_key, since = held
            got = decide(p, from_key, since, metric, now, scheduled=scheduled)
            if got is None:
                refresh.append({"b_pid": pid, "metric": metric, "evaluated_at": now})
                out.unchanged += 1
                continue
        to_key, direction = got
        to, cur = p.level(to_key), p.level(from_key)
        assert to is not None
        out.changes.append(
            TierChange(key=_key(pid, to_key, now), profile_id=pid, from_tier=from_key, to_tier=to_key,
                       from_name=cur.name if cur else from_key, to_name=to.name, direction=direction,
                       reason=_reason(p, direction, to, cur, metric), metric=metric, at=now)
        )  # fmt: skip
    insert_ignoring_duplicates(s, MemberTierRow.__table__, new_rows)
    if refresh:
        stmt = (
            update(MemberTierRow)
            .where(MemberTierRow.profile_id == bindparam("b_pid"))
            .values(metric=bindparam("metric"), evaluated_at=bindparam("evaluated_at"))
        )
        s.connection().execute(stmt, refresh)
    # a change moves the row only from the tier it was decided on (the store decides a race with a
    # concurrent evaluation or manual change: the loser records nothing)
    placed_new = {r["profile_id"] for r in new_rows}
    kept: list[TierChange] = []
    for c in out.changes:
        if c.profile_id in placed_new:
            kept.append(c)
            continue
        moved = s.execute(
            update(MemberTierRow)
            .where(MemberTierRow.profile_id == c.profile_id, MemberTierRow.tier == c.from_tier)
            .values(tier=c.to_tier, since=now, metric=c.metric, evaluated_at=now)
        )
        if getattr(moved, "rowcount", 0) == 1:
            kept.append(c)
    out.changes = kept
    _record(s, p, out.changes, now)
    return out


def _record(s: Session, p: TierProgram, changes: Sequence[TierChange], now: datetime) -> None:
    """``tier_changes`` rows and ``Tier Changed`` events (keys already there are left as they were)."""
    if not changes:
        return
    insert_ignoring_duplicates(
        s, TierChangeRow.__table__,
        [{"key": c.key, "profile_id": c.profile_id, "from_tier": c.from_tier, "to_tier": c.to_tier,
          "direction": c.direction, "reason": c.reason, "metric": c.metric, "at": c.at} for c in changes],
    )  # fmt: skip
    events = []
    for c in changes:
        to = p.level(c.to_tier)
        src = p.level(c.from_tier) if c.from_tier else None
        props = {
            "from": c.from_tier, "to": c.to_tier, "from_name": c.from_name, "to_name": c.to_name,
            "from_name_en": src.name_en if src else None, "to_name_en": to.name_en if to else None,
            "direction": c.direction, "metric": c.metric, "metric_kind": p.metric, "metric_text": p.text(c.metric),
            "reason": c.reason, "benefits": (to.benefits if to else Benefits()).model_dump(mode="json"),
        }  # fmt: skip
        events.append((c.key, c.profile_id, TIER_CHANGED, props))
    emit(s, events, now)


def evaluate_in_session(
    s: Session, profile_ids: Sequence[str] | None, now: datetime, *, scheduled: bool
) -> list[TierChange]:
    """Evaluate members in the caller's transaction; returns the changes made (nothing when tiers are
    off). ``profile_ids=None`` evaluates everyone who holds a tier or has activity in the window."""
    p = _active(s)
    if p is None:
        return []
    ids = _everyone(s, p, now) if profile_ids is None else list(dict.fromkeys(profile_ids))
    return _evaluate(s, p, ids, now, scheduled=scheduled).changes


def _everyone(s: Session, p: TierProgram, now: datetime) -> list[str]:
    pid_col, _, conditions = _activity(p, now)
    found = {pid for (pid,) in s.execute(select(MemberTierRow.profile_id))}
    found.update(pid for (pid,) in s.execute(select(pid_col).where(*conditions).distinct()))
    return sorted(found)


def tier_multipliers(s: Session, profile_ids: Sequence[str]) -> dict[str, Decimal]:
    """The points multiplier of each member's tier (the first level's for members without a row;
    1 for everyone when tiers are off)."""
    ids = list(dict.fromkeys(profile_ids))
    p = _active(s)
    if p is None:
        return dict.fromkeys(ids, _ONE)
    mult = {lv.key: lv.benefits.points_multiplier for lv in p.levels}
    default = p.first.benefits.points_multiplier
    out = dict.fromkeys(ids, default)
    special = [k for k, m in mult.items() if m != default]
    if not special or not ids:
        return out
    t = MemberTierRow.__table__.c
    for part in _chunks(ids, _chunk(s)):
        q = select(t.profile_id, t.tier).where(t.profile_id.in_(part), t.tier.in_(special))
        for pid, tier in s.execute(q):
            out[pid] = mult[tier]
    return out


# --- reading ---------------------------------------------------------------------------------------------


def _history(s: Session, p: TierProgram | None, profile_id: str, limit: int = 50) -> list[TierChange]:
    q = (
        select(TierChangeRow)
        .where(TierChangeRow.profile_id == profile_id)
        .order_by(TierChangeRow.at.desc(), TierChangeRow.id.desc())
        .limit(limit)
    )

    def name(key: str | None) -> str | None:
        lv = p.level(key) if p is not None and key else None
        return lv.name if lv else key

    return [
        TierChange(key=r.key, profile_id=r.profile_id, from_tier=r.from_tier, to_tier=r.to_tier,
                   from_name=name(r.from_tier), to_name=name(r.to_tier) or r.to_tier,
                   direction="up" if r.direction == "up" else "down", reason=r.reason, metric=r.metric,
                   at=as_utc(r.at))
        for r in s.scalars(q)
    ]  # fmt: skip


def profile_tier(s: Session, profile_id: str) -> TierOut | None:
    """The member's tier, benefits, progress and history; the first level when never evaluated;
    None when no programme is enabled."""
    p = _active(s)
    if p is None:
        return None
    row = s.get(MemberTierRow, profile_id)
    key = row.tier if row is not None else p.first.key
    metric = row.metric if row is not None else 0
    i = p.index(key)
    lv = p.levels[i] if i is not None else Level(key=key, name=key, name_en=key, threshold=Decimal(0))
    nxt = p.levels[i + 1] if i is not None and i + 1 < len(p.levels) else None
    keep = p.units(lv.keep_or_threshold)
    progress = Progress(next_tier=None, keep=keep, keep_missing=max(0, keep - metric))
    if nxt is not None:
        bar = p.units(nxt.threshold)
        progress = progress.model_copy(
            update={"next_tier": nxt.key, "next_name": nxt.name, "next_name_en": nxt.name_en, "next_threshold": bar,
                    "missing": max(0, bar - metric), "missing_text": p.text(max(0, bar - metric))}
        )  # fmt: skip
    return TierOut(
        profile_id=profile_id, tier=key, name=lv.name, name_en=lv.name_en, benefits=lv.benefits,
        since=as_utc(row.since) if row is not None else None, metric=metric, metric_kind=p.metric,
        metric_text=p.text(metric), currency=p.currency, window_days=p.window_days,
        evaluated_at=as_utc(row.evaluated_at) if row is not None else None, progress=progress,
        history=_history(s, p, profile_id),
    )  # fmt: skip


def tier_counts(s: Session) -> dict[str, int]:
    """Members per tier key (members evaluated at least once)."""
    q = select(MemberTierRow.tier, func.count()).group_by(MemberTierRow.tier)
    return {k: int(n) for k, n in s.execute(q)}


def tiers_out(s: Session) -> TiersOut:
    """The levels with their member counts (GET /tiers)."""
    info = program_out(s)
    counts = tier_counts(s)
    p = info.program
    if p is None:
        return TiersOut(version=0, enabled=False, metric=None, currency=None, window_days=None, levels=[],
                        unknown=counts)  # fmt: skip
    levels = [
        LevelOut(key=lv.key, name=lv.name, name_en=lv.name_en, threshold=p.units(lv.threshold),
                 keep=p.units(lv.keep_or_threshold), threshold_text=p.text(p.units(lv.threshold)),
                 benefits=lv.benefits, members=counts.pop(lv.key, 0))
        for lv in p.levels
    ]  # fmt: skip
    return TiersOut(version=info.version, enabled=p.enabled, metric=p.metric, currency=p.currency,
                    window_days=p.window_days, levels=levels, unknown=counts)  # fmt: skip


# --- review ------------------------------------------------------------------------------------------------


def due(inst: Instance, now: datetime) -> bool:
    """Whether the programme's review cron fired since the last review (or since the programme was
    set, before any review), or a review was cut short."""
    with inst.operational.session() as s:
        p = _active(s)
        if p is None:
            return False
        state, at = cursor(s, REVIEW_CURSOR)
        if state == _RUNNING:
            return True
        base = at
        if base is None:
            row = s.get(LoyaltyConfigRow, CONFIG)
            base = row.updated_at if row is not None else now
    zone = ZoneInfo(inst.settings.timezone)
    nxt: datetime = croniter(p.review, as_utc(base).astimezone(zone)).get_next(datetime)
    return nxt <= now


def review(inst: Instance, now: datetime, *, batch: int = BATCH) -> ReviewOut:
    """The scheduled evaluation of everyone (upgrades and downgrades), one transaction per batch;
    records the review in the ``tiers_review`` cursor."""
    out = ReviewOut()
    with inst.operational.session() as s:
        p = _active(s)
        if p is None:
            set_cursor(s, REVIEW_CURSOR, _DONE, now, at=now)
            return out
        state, started = cursor(s, REVIEW_CURSOR)
        ids = _everyone(s, p, now)
        if state == _RUNNING and started is not None:
            t = MemberTierRow.__table__.c
            done = {pid for (pid,) in s.execute(select(t.profile_id).where(t.evaluated_at >= started))}
            out.skipped = sum(1 for pid in ids if pid in done)
            ids = [pid for pid in ids if pid not in done]
        else:
            started = now
        set_cursor(s, REVIEW_CURSOR, _RUNNING, now, at=started)
    for part in _chunks(ids, batch):
        with inst.operational.session() as s:
            got = _evaluate(s, p, part, now, scheduled=True)
        out.evaluated += len(part)
        out.up += sum(1 for c in got.changes if c.direction == "up")
        out.down += sum(1 for c in got.changes if c.direction == "down")
        out.unchanged += got.unchanged
        out.placed += got.placed
    with inst.operational.session() as s:
        set_cursor(s, REVIEW_CURSOR, _DONE, now, at=now)
    return out


# --- manual changes -----------------------------------------------------------------------------------------


def set_tier(inst: Instance, member: str, tier: str, reason: str, key: str) -> SetTierOut:
    """Put a member (``p_…`` or ``TYPE:VALUE``) on ``tier`` by hand (人工调整), idempotent by ``key``."""
    pid = resolve_member(inst, member)
    with inst.operational.session() as s:
        return set_tier_in_session(s, pid, tier, reason, key, inst.clock.now())


def set_tier_in_session(s: Session, profile_id: str, tier: str, reason: str, key: str, now: datetime) -> SetTierOut:
    """A manual change (reason ``manual: …``); replaying ``key`` changes nothing and answers the
    first call's change. The next evaluation may move the member again (an order upgrades; a
    review downgrades below keep once the minimum stay is over)."""
    if not key.strip() or len(key) > 150:
        raise LoyaltyError(422, "key", "1–150 characters / 幂等键需 1–150 个字符", reason="invalid")
    if not reason.strip():
        raise LoyaltyError(422, "reason", "say why / 请填写原因", reason="invalid")
    pid = profile_id
    change_key = f"tier:manual:{key}"
    p = _active(s)
    if p is None:
        raise LoyaltyError(409, "tier", "no tier programme is enabled / 未启用会员等级方案", reason="inactive")
    first = s.scalar(select(TierChangeRow).where(TierChangeRow.key == change_key))
    if first is not None:
        if first.profile_id != pid or first.to_tier != tier:
            raise LoyaltyError(
                409, "key", f"key {key!r} was used for another change / 幂等键已用于其他调整", reason="invalid"
            )
        done = next(c for c in _history(s, p, pid, limit=10_000) if c.key == change_key)
        tier_out = profile_tier(s, pid)
        assert tier_out is not None
        return SetTierOut(change=done, replayed=True, tier=tier_out)
    to = p.level(tier)
    if to is None:
        levels = ", ".join(lv.key for lv in p.levels)
        raise LoyaltyError(422, "tier", f"no level {tier!r}; levels: {levels} / 没有等级 {tier!r}", reason="invalid")
    row = s.get(MemberTierRow, pid, with_for_update=True)
    from_key = row.tier if row is not None else p.first.key
    change: TierChange | None = None
    if from_key != tier:
        fi, ti = p.index(from_key), p.index(tier)
        direction: Direction = "up" if fi is None or (ti is not None and ti > fi) else "down"
        cur = p.level(from_key)
        change = TierChange(
            key=change_key, profile_id=pid, from_tier=from_key, to_tier=tier,
            from_name=cur.name if cur else from_key, to_name=to.name, direction=direction,
            reason=f"manual: {reason.strip()}"[:200], metric=row.metric if row is not None else 0, at=now,
        )  # fmt: skip
        _record(s, p, [change], now)
    if row is None:
        s.add(MemberTierRow(profile_id=pid, tier=tier, since=now, metric=0, evaluated_at=now))
    elif change is not None:
        row.tier, row.since = tier, now
    s.flush()
    tier_out = profile_tier(s, pid)
    assert tier_out is not None
    return SetTierOut(change=change, tier=tier_out)


def issue_birthday_coupons(inst: Instance, people: Sequence[tuple[str, int]], now: datetime) -> int:
    """The tier benefit ``birthday_coupon``: for each (member, local year) whose birthday is today, a
    coupon of their tier's template (key ``tier-birthday:<profile>:<year>``: once a year; a refusal —
    stock, limit, template paused — is skipped). Returns how many were issued."""
    from tessera.services.coupons import IssueRequest, issue_in_session

    if not people:
        return 0
    issued = 0
    with inst.operational.session() as s:
        p = _active(s)
        if p is None or not any(lv.benefits.birthday_coupon for lv in p.levels):
            return 0
        templates = {lv.key: lv.benefits.birthday_coupon for lv in p.levels}
        current = _current(s, [pid for pid, _ in people])
        wanted: dict[str, list[IssueRequest]] = defaultdict(list)
        for pid, year in people:
            tier = current[pid][0] if pid in current else p.first.key
            template = templates.get(tier)
            if template:
                wanted[template].append(IssueRequest(profile_id=pid, key=f"tier-birthday:{pid}:{year}", source="tier",
                                                     source_ref=f"tier:{tier}", campaign=f"tier:{tier}"))  # fmt: skip
        for template, requests in wanted.items():
            try:
                got = issue_in_session(s, template, requests, now)
            except LoyaltyError:
                continue  # the template is gone: the programme check names it when the programme is saved
            issued += sum(1 for i in got.issued if not i.replayed)
    return issued
