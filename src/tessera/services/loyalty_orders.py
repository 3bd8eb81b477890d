"""Order processing (订单积分): orders and bonus events from the analytic store into loyalty.

:func:`process_orders` reads, batch by batch, what arrived since its cursors:

* events after ``loyalty_cursors["events_rowid"]`` (DuckDB ``events.rowid``) whose name is an order
  event (``Order Completed``), a refund event (``Order Refunded``) or a bonus event of the programme
  (签到 ``Checked In`` …), each joined to its profile *now* (observation → profile);
* imported orders after ``loyalty_cursors["orders_rowid"]`` (``orders.rowid``).

An order is processed once per ``order_id`` (events without one: once per message, as
``msg:<message id>``); ``loyalty_orders`` is the record, whichever of the event and the import
comes first. In **one operational transaction per batch** it writes the new ``loyalty_orders`` rows,
redeems the orders' coupons (``coupons.redeem_in_session``; a refusal becomes a
``loyalty_rejections`` row ``redeem:<order id>`` and the order still earns), posts the points
(``order:<order id>``, expiring ``lifetime_days`` after the order time), the bonus grants (one per
``per`` period by key) and the refunds' clawbacks (``refund:<order id>``, may go negative), has the
tiers re-evaluated for the buyers (upgrades only) and moves both cursors. A crash before the commit
leaves everything as it was; a replay is a no-op by keys. Two processors racing claim the cursors
with a conditional update: the loser's batch rolls back and is read again.

An imported order whose status is ``refunded`` or ``cancelled`` refunds an order already processed,
or is recorded with 0 points. Later status changes of an order re-imported in place are not seen
(its row keeps its rowid): send ``Order Refunded`` or adjust by hand.

Bulk accrual emits no ``Points Earned`` events (see :mod:`tessera.services.points`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

import orjson
from sqlalchemy import insert, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tessera.domain.money import decimals
from tessera.domain.points import PointsProgram, bonus_key, points_for_order
from tessera.runtime import Instance
from tessera.services.loyalty_common import LoyaltyError
from tessera.services.points import Row, bulk_insert, db_time, post_rows, present, program
from tessera.stores.bulk import insert_ignoring_duplicates
from tessera.stores.models import LoyaltyCursorRow, LoyaltyOrderRow, LoyaltyRejectionRow

EVENTS_CURSOR = "events_rowid"
ORDERS_CURSOR = "orders_rowid"
DEFAULT_CURRENCY = "CNY"
_EXCLUDED = ("refunded", "cancelled")
#: a batch writing this many orders refreshes PostgreSQL's statistics of the loyalty tables
_ANALYZE_FROM = 10_000
_ORDER_COLUMNS = ("order_id", "profile_id", "amount", "currency", "channel", "ordered_at", "coupon_code", "points",
                  "status", "source", "message_id", "created_at")  # fmt: skip
_ORDERS: Any = LoyaltyOrderRow.__table__
_CURSORS: Any = LoyaltyCursorRow.__table__
_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


@dataclass
class OrdersProgress:
    """What :func:`process_orders` did (summed over its batches)."""

    batches: int = 0
    events_read: int = 0
    orders_read: int = 0
    orders_new: int = 0
    points: int = 0
    bonuses: int = 0
    refunds: int = 0
    coupons_returned: int = 0  # coupons of refunded orders given back (templates with return_on_refund)
    rejections: int = 0
    profiles: int = 0
    more: bool = False
    seconds: float = 0.0
    retried: int = 0
    notes: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per phase (read, known, compute, orders …)

    def _took(self, phase: str, since: float) -> float:
        now = time.perf_counter()
        self.timings[phase] = round(self.timings.get(phase, 0.0) + now - since, 3)
        return now


class _Moved(Exception):
    """Another processor moved a cursor first."""


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(slots=True)
class _Order:
    order_id: str
    profile_id: str
    profile_idx: int
    us: int  # the order time, µs since 1970 (UTC)
    amount: int
    currency: str
    channel: str | None
    coupon: str | None
    source: str
    message_id: str | None
    status: str = "completed"
    #: the discount the order reports (``discount`` property / column): the coupon's threshold is
    #: checked against the amount before it (满300减30 needs 300 before the 30 off)
    discount: int = 0
    points: int = 0
    at_db: Any = None  # the order time as the operational store takes it
    exp_db: Any = None  # when its points expire, likewise

    @property
    def at(self) -> datetime:
        return _EPOCH + timedelta(microseconds=self.us)


@dataclass
class _Batch:
    events_to: int
    orders_to: int
    events_read: int = 0
    orders_read: int = 0
    orders: list[_Order] = field(default_factory=list)
    refunds: list[tuple[str, str, datetime, int, str, str]] = field(
        default_factory=list
    )  # id, pid, at, amount, cur, why
    bonuses: list[tuple[str, str, int, datetime, str, dict[str, Any]]] = field(default_factory=list)
    more: bool = False


def _lock(inst: Instance) -> threading.Lock:
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(str(inst.data_dir.root), threading.Lock())


def process_orders(
    inst: Instance, now: datetime, *, limit: int = 50_000, max_batches: int | None = None
) -> OrdersProgress:
    """Process new order, refund and bonus events and imported orders, ``limit`` rows of each per
    batch, until caught up (or ``max_batches`` batches: then ``more`` says whether rows are left)."""
    started = time.perf_counter()
    out = OrdersProgress()
    with _lock(inst):
        while max_batches is None or out.batches < max_batches:
            for attempt in range(3):
                try:
                    more = _one_batch(inst, now, limit, out)
                    break
                except (_Moved, IntegrityError):
                    out.retried += 1
                    if attempt == 2:
                        raise
            out.batches += 1
            out.more = more
            if not more:
                break
    out.seconds = round(time.perf_counter() - started, 3)
    return out


# --- reading the analytic store ------------------------------------------------------------------------------------

_EVENTS_SQL = """
SELECT e.rowid, e.message_id, n.name, p.profile_id, p.profile_idx, epoch_us(e."timestamp"),
       CAST(e."timestamp" AS VARCHAR), CAST(e."timestamp" + to_days(CAST($life AS INTEGER)) AS VARCHAR),
       CAST(round(e.revenue * 100) AS BIGINT), e.currency, nullif(e.order_id, ''),
       coalesce(e.channel, json_extract_string(e.properties, '$.channel')),
       json_extract_string(e.properties, '$.coupon'),
       CASE WHEN list_contains($bonus, n.name) THEN CAST(e.properties AS VARCHAR) END,
       CAST(round(coalesce(TRY_CAST(json_extract_string(e.properties, '$.discount') AS DECIMAL(18, 2)), 0) * 100)
            AS BIGINT)
FROM events e JOIN event_names n ON n.event_id = e.event_id
LEFT JOIN identity_links l ON l.obs_idx = e.identity_idx
LEFT JOIN profiles p ON p.profile_idx = l.profile_idx
WHERE e.rowid > $lo AND e.rowid <= $hi AND list_contains($names, n.name)
ORDER BY e.rowid LIMIT $limit"""

_ORDERS_SQL = """
SELECT o.rowid, o.order_id, p.profile_id, p.profile_idx, epoch_us(o.ordered_at),
       CAST(o.ordered_at AS VARCHAR), CAST(o.ordered_at + to_days(CAST($life AS INTEGER)) AS VARCHAR), CAST(round(o.total * 100) AS BIGINT),
       o.currency, o.channel, nullif(o.coupon_code, ''), lower(trim(o.status)),
       CAST(round(coalesce(o.discount, 0) * 100) AS BIGINT)
FROM orders o LEFT JOIN identity_links l ON l.obs_idx = o.identity_idx
LEFT JOIN profiles p ON p.profile_idx = l.profile_idx
WHERE o.rowid > $lo AND o.rowid <= $hi
ORDER BY o.rowid LIMIT $limit"""


_TWO_PLACES: dict[str, bool] = {}


def _rows(cur: Any, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The rows of a query, converted column by column through Arrow (several times faster than
    ``fetchall`` for wide batches)."""
    got = cur.sql(sql, params=params).to_arrow_table()
    return list(zip(*[c.to_pylist() for c in got.columns], strict=True))


def _text(v: str | None) -> str | None:
    """DuckDB's text of a timestamp in SQLAlchemy's SQLite form (always six fractional digits)."""
    if v is None or len(v) == 26:
        return v
    return v + ".000000" if len(v) == 19 else v.ljust(26, "0")


def _minor(cents: int | None, currency: str) -> int:
    if cents is None:
        return 0
    two = _TWO_PLACES.get(currency)
    if two is None:
        two = _TWO_PLACES[currency] = decimals(currency) == 2
    return cents if two else cents // 100


def _read(inst: Instance, prog: PointsProgram, ev_lo: int, ord_lo: int, limit: int, *, text_times: bool) -> _Batch:
    """One batch: the events and imported orders after the cursors, read with one query each; times
    come as DuckDB's text (SQLite's form) when ``text_times``, else as datetimes."""
    orders, refunds, bonus_names = (
        set(prog.order_events),
        set(prog.refund_events),
        prog.bonus_events if prog.enabled else set(),
    )
    names = sorted(orders | refunds | bonus_names)
    cur = inst.analytic.cursor()
    try:
        ev_hi = int(cur.execute("SELECT coalesce(max(rowid), -1) FROM events").fetchall()[0][0])
        ord_hi = int(cur.execute("SELECT coalesce(max(rowid), -1) FROM orders").fetchall()[0][0])
        ev_rows = (_rows(cur, _EVENTS_SQL, {"lo": ev_lo, "hi": ev_hi, "names": names, "bonus": sorted(bonus_names),
                                            "limit": limit, "life": prog.lifetime_days}) if ev_hi > ev_lo else [])  # fmt: skip
        ord_rows = (_rows(cur, _ORDERS_SQL, {"lo": ord_lo, "hi": ord_hi, "limit": limit, "life": prog.lifetime_days})
                    if ord_hi > ord_lo else [])  # fmt: skip
    finally:
        cur.close()
    b = _Batch(events_to=ev_hi if len(ev_rows) < limit else int(ev_rows[-1][0]),
               orders_to=ord_hi if len(ord_rows) < limit else int(ord_rows[-1][0]),
               events_read=len(ev_rows), orders_read=len(ord_rows),
               more=len(ev_rows) >= limit or len(ord_rows) >= limit)  # fmt: skip
    b.events_to, b.orders_to = max(b.events_to, ev_lo), max(b.orders_to, ord_lo)
    for (
        _rowid,
        mid,
        name,
        pid,
        idx,
        us,
        ts_text,
        exp_text,
        cents,
        currency,
        oid,
        channel,
        coupon,
        props,
        off,
    ) in ev_rows:
        if pid is None:
            continue
        cur_code = (currency or DEFAULT_CURRENCY).upper()
        if name in orders:
            o = _Order(oid or f"msg:{mid}", pid, idx, us, _minor(cents, cur_code), cur_code, channel, coupon, "event",
                       mid, discount=_minor(off, cur_code) if coupon else 0)  # fmt: skip
            o.at_db, o.exp_db = (_text(ts_text), _text(exp_text)) if text_times else (o.at, prog.expiry(o.at))
            b.orders.append(o)
        elif name in refunds:
            b.refunds.append(
                (oid or "", pid, _EPOCH + timedelta(microseconds=us), _minor(cents, cur_code), cur_code, mid)
            )
        else:
            data = orjson.loads(props) if props else {}
            b.bonuses.append((mid, pid, idx, _EPOCH + timedelta(microseconds=us), name,
                              data if isinstance(data, dict) else {}))  # fmt: skip
    for _rowid, oid, pid, idx, us, ts_text, exp_text, cents, currency, channel, coupon, status, off in ord_rows:
        if pid is None or not oid:
            continue
        cur_code = (currency or DEFAULT_CURRENCY).upper()
        o = _Order(oid, pid, idx, us, _minor(cents, cur_code), cur_code, channel, coupon, "import", None,
                   discount=_minor(off, cur_code) if coupon else 0)  # fmt: skip
        o.at_db, o.exp_db = (_text(ts_text), _text(exp_text)) if text_times else (o.at, prog.expiry(o.at))
        if status in _EXCLUDED:
            o.status = status
        b.orders.append(o)
    return b


# --- the operational transaction ------------------------------------------------------------------------------------


def _claim(s: Session, name: str, old: int, new: int, now: datetime, exists: bool) -> None:
    """Move a cursor from ``old`` to ``new`` — only if nobody moved it since it was read."""
    if not exists:
        s.execute(insert(_CURSORS).values(name=name, position=new, at=now, updated_at=now))
        return
    got = s.execute(update(_CURSORS).where(_CURSORS.c.name == name, _CURSORS.c.position == old)
                    .values(position=new, at=now, updated_at=now))  # fmt: skip
    if getattr(got, "rowcount", 1) != 1:
        raise _Moved(name)


def _cursors(s: Session) -> dict[str, int]:
    return {n: int(p) for n, p in s.execute(select(_CURSORS.c.name, _CURSORS.c.position)
                                            .where(_CURSORS.c.name.in_([EVENTS_CURSOR, ORDERS_CURSOR])))}  # fmt: skip


def _chunks(items: Sequence[Any], n: int = 2000) -> Any:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def _known_orders(s: Session, ids: Sequence[str]) -> dict[str, tuple[str, int, str]]:
    """order id → (profile id, points, status) of the ids already processed."""
    got = present(s, "loyalty_orders", "order_id", ids, also="profile_id, points, status")
    return {oid: (pid, int(pts), status) for oid, pid, pts, status in got}


def _tier_info(
    s: Session, pids: Sequence[str], prog: PointsProgram, notes: list[str]
) -> tuple[dict[str, Decimal], dict[str, str]]:
    try:
        from tessera.services.tiers import tier_multipliers
    except ImportError:  # the tiers part is not there: everyone earns at factor 1
        notes.append("tiers.tier_multipliers missing: factor 1")
        factors: dict[str, Decimal] = {}
    else:
        factors = dict(tier_multipliers(s, pids))
    keys: dict[str, str] = {}
    if any(m.tiers for m in prog.multipliers):
        from tessera.stores.models import MemberTierRow

        t: Any = MemberTierRow.__table__
        for part in _chunks(list(pids)):
            keys.update(
                dict(s.execute(select(t.c.profile_id, t.c.tier).where(t.c.profile_id.in_(part))).tuples().all())
            )
    return factors, keys


def _matched(inst: Instance, s: Session, prog: PointsProgram, idxs: Sequence[int]) -> dict[int, set[str]]:
    """profile_idx → keys of the multipliers whose profile condition holds (compiled, batch only)."""
    with_cond = [m for m in prog.multipliers if m.condition is not None]
    if not with_cond or not idxs:
        return {}
    from tessera.domain.conditions import parse_condition
    from tessera.services.audiences import compile_context
    from tessera.services.journey_facts import matching

    ctx = compile_context(inst, s)
    out: dict[int, set[str]] = {}
    for m in with_cond:
        for idx in matching(inst, parse_condition(m.condition), sorted(set(idxs)), ctx):
            out.setdefault(idx, set()).add(m.key)
    return out


def _rater(prog: PointsProgram) -> Callable[[_Order, str | None, Decimal, set[str]], int]:
    """The points of an order; the common case (no multipliers) in plain integer/Decimal steps."""
    if not prog.enabled:
        return lambda o, tier, factor, matched: 0
    if prog.multipliers:
        return lambda o, tier, factor, matched: points_for_order(prog, o.amount, o.currency, o.channel, o.at, tier,
                                                                 factor, matched)[0]  # fmt: skip
    rates = {r.currency: r.points_per_unit for r in prog.rates}
    places = {c: decimals(c) for c in rates}
    rounding = ROUND_FLOOR if prog.rounding == "floor" else ROUND_HALF_UP
    one = Decimal(1)

    def rate(o: _Order, tier: str | None, factor: Decimal, matched: set[str]) -> int:
        r = rates.get(o.currency)
        if r is None or o.amount <= 0:
            return 0
        if r == one and factor == one and rounding == ROUND_FLOOR:
            return o.amount // (100 if places[o.currency] == 2 else 1)
        raw = Decimal(o.amount).scaleb(-places[o.currency]) * r * factor
        return max(int(raw.quantize(one, rounding=rounding)), 0)

    return rate


def _redeem(s: Session, orders: Sequence[_Order], now: datetime, out: OrdersProgress) -> list[dict[str, Any]]:
    """Redeem the orders' coupons; each refusal → a rejection row (the order stands)."""
    todo = [o for o in orders if o.coupon]
    if not todo:
        return []
    try:
        from tessera.services.coupons import Redemption, redeem_in_session
    except ImportError:
        out.notes.append("coupons.redeem_in_session missing: coupons not redeemed")
        return []
    rejected = []
    for o in todo:
        assert o.coupon is not None
        try:
            redeem_in_session(s, Redemption(code=o.coupon, profile_id=o.profile_id, order_id=o.order_id,
                                            amount_minor=o.amount + o.discount, currency=o.currency,
                                            channel=o.channel), now)  # fmt: skip
        except LoyaltyError as e:
            rejected.append({"key": f"redeem:{o.order_id}", "kind": "redeem", "profile_id": o.profile_id,
                             "code": o.coupon[:40], "order_id": o.order_id, "reason": (e.reason or "invalid")[:40],
                             "detail": e.message, "at": now})  # fmt: skip
    return rejected


def _one_batch(inst: Instance, now: datetime, limit: int, out: OrdersProgress) -> bool:
    with inst.operational.session() as s:
        prog = program(s)
        pos = _cursors(s)
        text_times = s.get_bind().dialect.name == "sqlite"
    ev_lo, ord_lo = pos.get(EVENTS_CURSOR, -1), pos.get(ORDERS_CURSOR, -1)
    t = time.perf_counter()
    b = _read(inst, prog, ev_lo, ord_lo, limit, text_times=text_times)
    t = out._took("read", t)
    if b.events_to == ev_lo and b.orders_to == ord_lo:
        return False
    tz = inst.settings.timezone
    with inst.operational.session() as s:
        ts = db_time(s)
        if text_times:  # a bigger page cache for this connection: the batch touches many index pages
            s.connection().exec_driver_sql("PRAGMA cache_size = -262144")
        _claim(s, EVENTS_CURSOR, ev_lo, b.events_to, now, EVENTS_CURSOR in pos)
        _claim(s, ORDERS_CURSOR, ord_lo, b.orders_to, now, ORDERS_CURSOR in pos)
        refund_ids = [r[0] for r in b.refunds if r[0]] + [o.order_id for o in b.orders if o.status in _EXCLUDED]
        known = _known_orders(s, [o.order_id for o in b.orders] + refund_ids)
        t = out._took("known", t)
        new: dict[str, _Order] = {}
        refunds: list[tuple[str, str, datetime, int, str, str]] = list(b.refunds)
        for o in b.orders:
            if o.order_id in known or o.order_id in new:
                if o.status in _EXCLUDED:  # an import saying an order we know was refunded / cancelled
                    refunds.append((o.order_id, o.profile_id, o.at, o.amount, o.currency, f"import:{o.status}"))
                continue
            new[o.order_id] = o
        buyers = list(dict.fromkeys([o.profile_id for o in new.values()] + [r[1] for r in refunds]))
        factors, tier_keys = _tier_info(s, buyers, prog, out.notes)
        matched = _matched(inst, s, prog, [o.profile_idx for o in new.values()]) if prog.enabled else {}
        rate = _rater(prog)
        one = Decimal(1)
        nothing: set[str] = set()
        rows: list[Row] = []
        reason = "订单积分 / order points"
        for o in new.values():
            if o.status in _EXCLUDED:
                continue
            o.points = rate(o, tier_keys.get(o.profile_id), factors.get(o.profile_id, one),
                            matched.get(o.profile_idx, nothing))  # fmt: skip
            if o.points > 0:
                rows.append((f"order:{o.order_id}", o.profile_id, "earn", o.points, reason, "order", None, None,
                             o.order_id, None, o.exp_db, o.at_db))  # fmt: skip
        rejections = _redeem(s, [o for o in new.values() if o.status not in _EXCLUDED and o.coupon], now, out)
        # refunds: clawback of the order's points (orders known, or of this batch)
        status_updates: list[str] = []
        for oid, pid, at, amount, currency, why in refunds:
            if not oid:
                rejections.append({"key": f"refund:{why}", "kind": "refund", "profile_id": pid, "code": None,
                                   "order_id": None, "reason": "not_found", "at": now,
                                   "detail": "退款事件缺少 order_id / refund event without order_id"})  # fmt: skip
                continue
            if oid in new:
                o = new[oid]
                if o.status in _EXCLUDED:
                    continue
                o.status, pts, owner = "refunded", o.points, o.profile_id
            elif oid in known:
                owner, pts, status = known[oid]
                if status in _EXCLUDED:
                    continue
                known[oid] = (owner, pts, "refunded")
                status_updates.append(oid)
            else:  # the refund came first: the order is recorded as refunded and will not earn
                new[oid] = _Order(oid, pid, -1, (at - _EPOCH) // timedelta(microseconds=1), amount, currency, None, None, "event", None, "refunded", 0,
                                  ts(at), None)  # fmt: skip
                continue
            out.refunds += 1
            if prog.clawback and pts > 0:
                rows.append((f"refund:{oid}", owner, "adjust", -pts, "退款扣回积分 / refund clawback", "refund", None,
                             None, oid, None, None, ts(at)))  # fmt: skip
        if prog.enabled:  # bonus events: one grant per key (per event, day, week … once)
            for mid, pid, _idx, at, name, props in b.bonuses:
                for bonus in prog.bonuses:
                    if bonus.event == name and bonus.matches(props):
                        rows.append((bonus_key(bonus, pid, mid, at, tz), pid, "earn", bonus.points, bonus.name[:200],
                                     "bonus", mid, None, None, None, ts(prog.expiry(at)), ts(at)))  # fmt: skip
        t = out._took("compute", t)
        _insert_orders(s, sorted(new.values(), key=_by_id), now)  # in key order: index pages stay warm
        t = out._took("orders", t)
        if status_updates:
            c = _ORDERS.c
            for part in _chunks(status_updates):
                s.execute(update(_ORDERS).where(c.order_id.in_(part)).values(status="refunded"))
        refunded = [oid for oid, *_ in refunds if oid]
        if refunded:  # coupons used on these orders (this batch's or earlier) may come back
            from tessera.services.coupons import return_on_refund

            out.coupons_returned += return_on_refund(s, refunded, now)
        insert_ignoring_duplicates(s, LoyaltyRejectionRow.__table__, rejections)
        # in key order, so the unique key index is filled in sequence; a member's credits of the batch
        # (bonus:…, order:…) still come before their clawbacks (refund:…)
        rows.sort(key=_first)
        posted = post_rows(s, rows, now, allow_negative=True, timings=out.timings)
        t = out._took("ledger", t)
        touched = list(dict.fromkeys([r[1] for r, _ in posted] + [o.profile_id for o in new.values()]))
        _evaluate_tiers(s, touched, now, out.notes)
        t = out._took("tiers", t)
    out._took("commit", t)
    if not text_times and len(new) >= _ANALYZE_FROM:
        # PostgreSQL plans the next batch's key lookups from statistics: a table that just grew by
        # thousands of rows, not yet analysed, is planned as tiny and scanned whole per lookup.
        began = time.perf_counter()
        with inst.operational.session() as s:
            s.execute(text("ANALYZE loyalty_orders, points_ledger, points_accounts"))
        out._took("analyze", began)
    out.events_read += b.events_read
    out.orders_read += b.orders_read
    out.orders_new += len(new)
    out.points += sum(r[3] for r, _ in posted if r[2] == "earn")
    out.bonuses += sum(1 for r, _ in posted if r[5] == "bonus")
    out.rejections += len(rejections)
    out.profiles += len(touched)
    return b.more


def _first(r: Row) -> str:
    return r[0]


def _by_id(o: _Order) -> str:
    return o.order_id


def _insert_orders(s: Session, orders: Sequence[_Order], now: datetime) -> None:
    created = db_time(s)(now)
    bulk_insert(s, "loyalty_orders", _ORDER_COLUMNS, [
        (o.order_id, o.profile_id, o.amount, o.currency, o.channel[:50] if o.channel else None, o.at_db,
         o.coupon[:40] if o.coupon else None, o.points, o.status, o.source, o.message_id, created)
        for o in orders
    ])  # fmt: skip


def _evaluate_tiers(s: Session, pids: Sequence[str], now: datetime, notes: list[str]) -> None:
    if not pids:
        return
    try:
        from tessera.services.tiers import evaluate_in_session
    except ImportError:
        notes.append("tiers.evaluate_in_session missing: tiers not evaluated")
        return
    evaluate_in_session(s, pids, now, scheduled=False)


def rejections(inst: Instance, *, limit: int = 100) -> list[LoyaltyRejectionRow]:
    """The latest refusals met while processing orders (newest first)."""
    with inst.operational.session() as s:
        rows = list(s.scalars(select(LoyaltyRejectionRow).order_by(LoyaltyRejectionRow.id.desc()).limit(limit)))
        for r in rows:
            s.expunge(r)
    return rows
