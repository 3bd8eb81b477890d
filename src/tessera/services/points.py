"""The points ledger (积分流水) and accounts (积分账户) in the operational store.

Every change is an append-only ledger entry with a unique ``key`` (earn > 0, spend < 0, expire < 0,
adjust ≠ 0); ``points_accounts.balance`` is the sum of the member's entries, moved in the entry's
transaction. :func:`post_in_session` is the one writer:

1. keys already in the ledger are *replayed*: their stored entries are answered, nothing changes;
2. a member with a debit (and not ``allow_negative``) first has their due lots expired (FIFO,
   :func:`tessera.domain.points.lots`), then one conditional ``UPDATE points_accounts SET balance =
   balance - :n … WHERE profile_id = :p AND balance >= :n`` decides — the store, not Python, so
   concurrent spends never overdraw; no row → ``LoyaltyError(409, reason="insufficient_points")``
   and nothing is written;
3. everyone else is one ``INSERT … ON CONFLICT (profile_id) DO UPDATE SET balance = balance +
   excluded.balance`` (executemany), then the new balances are read back;
4. each entry gets its ``balance_after`` and all are inserted with one executemany.

A key posted twice concurrently makes the second transaction fail on the unique key: the entry
points that own their session (:func:`earn`, :func:`spend`, :func:`adjust`) catch that and answer
the replay. ``Points Earned`` events are emitted by those single grants (and by journeys), never by
order accrual in bulk (one event per order would flood the journey inbox; ``Order Completed`` is
already there).

Jobs: :func:`expire_points` (lots past their expiry → ``expire`` entries), :func:`expiring_notices`
(``Points Expiring`` events ``notice_days`` ahead, once per member and expiry date),
:func:`grant_birthdays` (the ``birthday`` bonus, once a year).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from tessera.clock import as_utc
from tessera.domain.points import BIRTHDAY, LedgerItem, Lots, PointsProgram, ProgramError, lots, parse_program
from tessera.runtime import Instance
from tessera.services.loyalty_common import (
    POINTS_EARNED,
    POINTS_EXPIRING,
    LoyaltyError,
    cursor,
    emit,
    get_config,
    put_config,
    resolve_member,
    set_cursor,
)
from tessera.stores.models import LoyaltyEventRow, PointsAccountRow, PointsEntryRow

Kind = Literal["earn", "spend", "expire", "adjust"]
SOURCES = ("order", "journey", "api", "import", "bonus", "expiry", "merge", "refund")
CONFIG_NAME = "points"
EXPIRY_CURSOR = "points_expiry"
_CHUNK = 500  # keys / profile ids per IN (…) list
_LEDGER: Any = PointsEntryRow.__table__
_ACCOUNTS: Any = PointsAccountRow.__table__
_COLUMNS = ("key", "profile_id", "kind", "points", "balance_after", "reason", "source", "source_ref", "campaign",
            "order_id", "lot_id", "expires_at", "occurred_at", "created_at")  # fmt: skip


@dataclass(frozen=True)
class NewEntry:
    """A ledger entry to post; ``key`` makes it idempotent."""

    key: str
    profile_id: str
    kind: Kind
    points: int  # signed: earn > 0, spend < 0, expire < 0, adjust ≠ 0
    reason: str
    source: str  # "order" | "journey" | "api" | "import" | "bonus" | "expiry" | "merge" | "refund"
    source_ref: str | None = None
    campaign: str | None = None
    order_id: str | None = None
    occurred_at: datetime | None = None
    expires_at: datetime | None = None  # credits: default occurred time + programme lifetime
    lot_id: int | None = None  # expire entries: the credit they expire


@dataclass(frozen=True, slots=True)
class Entry:
    """A stored ledger entry (the columns of ``points_ledger``, times aware UTC)."""

    id: int
    key: str
    profile_id: str
    kind: str
    points: int
    balance_after: int
    reason: str
    source: str
    source_ref: str | None
    campaign: str | None
    order_id: str | None
    lot_id: int | None
    expires_at: datetime | None
    occurred_at: datetime
    created_at: datetime


@dataclass
class PostResult:
    entries: list[Entry]  # written or replayed, in request order
    replayed: int


@dataclass(frozen=True)
class Posted:
    """The answer of a single grant, spend or adjustment: the entry, the balance now, replayed or not."""

    entry: Entry
    balance: int
    replayed: bool


# --- the programme -------------------------------------------------------------------------------------------


def program(s: Session) -> PointsProgram:
    """The stored programme, or the default (CNY 1 point per ¥1, points live 365 days)."""
    return program_version(s)[0]


def program_version(s: Session) -> tuple[PointsProgram, int]:
    data, version = get_config(s, CONFIG_NAME)
    return (parse_program(data) if data is not None else PointsProgram()), version


def check_program(inst: Instance, s: Session, body: Any) -> PointsProgram:
    """Validate a programme: every problem with its field path (conditions resolved against the store)."""
    from tessera.compiler import CompileError, resolve
    from tessera.domain.conditions import ConditionError, parse_condition
    from tessera.services.audiences import compile_context

    try:
        prog = parse_program(body)
    except ProgramError as e:
        raise LoyaltyError(422, e.errors[0][0], e.errors[0][1], e.errors, reason="invalid") from None
    problems: list[tuple[str, str]] = []
    for i, m in enumerate(prog.multipliers):
        if m.condition is None:
            continue
        try:
            resolve(parse_condition(m.condition), compile_context(inst, s))
        except (ConditionError, CompileError) as e:
            problems += [(f"multipliers[{i}].condition" + (f".{p}" if p else ""), msg) for p, msg in e.errors]
    if problems:
        raise LoyaltyError(422, problems[0][0], problems[0][1], problems, reason="invalid")
    return prog


def set_program(inst: Instance, body: Any, now: datetime | None = None) -> tuple[PointsProgram, int]:
    """Validate and store a new version of the programme; returns it and its version."""
    when = now or inst.clock.now()
    with inst.operational.session() as s:
        prog = check_program(inst, s, body)
        version = put_config(s, CONFIG_NAME, prog.model_dump(mode="json"), when)
    return prog, version


# --- reading -------------------------------------------------------------------------------------------------


def _entry(r: Any) -> Entry:
    return Entry(r.id, r.key, r.profile_id, r.kind, int(r.points), int(r.balance_after), r.reason, r.source,
                 r.source_ref, r.campaign, r.order_id, r.lot_id, as_utc(r.expires_at) if r.expires_at else None,
                 as_utc(r.occurred_at), as_utc(r.created_at))  # fmt: skip


def _chunks(items: Sequence[Any], n: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), n):
        yield items[i : i + n]


def entries_by_key(s: Session, keys: Sequence[str]) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for part in _chunks(list(dict.fromkeys(keys))):
        for r in s.execute(select(_LEDGER).where(_LEDGER.c.key.in_(part))):
            out[r.key] = _entry(r)
    return out


def balance(s: Session, profile_id: str) -> int:
    got = s.scalar(select(_ACCOUNTS.c.balance).where(_ACCOUNTS.c.profile_id == profile_id))
    return int(got) if got is not None else 0


def balances(s: Session, profile_ids: Iterable[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in _chunks(list(set(profile_ids)), 2000):
        for pid, bal in s.execute(select(_ACCOUNTS.c.profile_id, _ACCOUNTS.c.balance)
                                  .where(_ACCOUNTS.c.profile_id.in_(part))):  # fmt: skip
            out[pid] = int(bal)
    return out


def history(s: Session, profile_id: str, *, limit: int = 50, before: int | None = None) -> list[Entry]:
    """The member's entries, newest first; ``before``: only entries with a smaller id (paging)."""
    q = select(_LEDGER).where(_LEDGER.c.profile_id == profile_id)
    if before is not None:
        q = q.where(_LEDGER.c.id < before)
    return [_entry(r) for r in s.execute(q.order_by(_LEDGER.c.id.desc()).limit(limit))]


def ledger_items(s: Session, profile_ids: Sequence[str]) -> dict[str, list[LedgerItem]]:
    """What :func:`tessera.domain.points.lots` needs of the members' ledgers, in id order."""
    out: dict[str, list[LedgerItem]] = defaultdict(list)
    cols = (_LEDGER.c.profile_id, _LEDGER.c.id, _LEDGER.c.kind, _LEDGER.c.points, _LEDGER.c.occurred_at,
            _LEDGER.c.expires_at, _LEDGER.c.lot_id)  # fmt: skip
    for part in _chunks(list(dict.fromkeys(profile_ids))):
        for pid, id_, kind, pts, at, exp, lot in s.execute(select(*cols).where(_LEDGER.c.profile_id.in_(part))
                                                             .order_by(_LEDGER.c.id)):  # fmt: skip
            out[pid].append(LedgerItem(id_, kind, int(pts), as_utc(at), as_utc(exp) if exp else None, lot))
    return out


def member_lots(s: Session, profile_id: str, now: datetime) -> Lots:
    return lots(ledger_items(s, [profile_id]).get(profile_id, []), now)


@dataclass
class Summary:
    """A member's points (积分概览): balance, totals by kind, open lots, the next expiry."""

    profile_id: str
    balance: int
    earned: int
    spent: int
    expired: int
    adjusted: int
    lots: Lots
    next_expiry: datetime | None
    next_expiry_points: int


def summary(s: Session, profile_id: str, now: datetime) -> Summary:
    acc = s.get(PointsAccountRow, profile_id)
    got = member_lots(s, profile_id, now)
    upcoming = [lot for lot in got.open if lot.expires_at is not None]
    nxt = upcoming[0].expires_at if upcoming else None
    pts = sum(lot.remaining for lot in upcoming if lot.expires_at == nxt) if nxt else 0
    if acc is None:
        return Summary(profile_id, 0, 0, 0, 0, 0, got, nxt, pts)
    return Summary(profile_id, acc.balance, acc.earned, acc.spent, acc.expired, acc.adjusted, got, nxt, pts)


# --- writing -------------------------------------------------------------------------------------------------

#: a ledger row to write: key, profile_id, kind, points, reason, source, source_ref, campaign, order_id,
#: lot_id, expires_at, occurred_at — the times already as the store takes them (:func:`db_time`)
Row = tuple[str, str, str, int, str, str, str | None, str | None, str | None, int | None, Any, Any]


def _check(e: NewEntry) -> None:
    need = {"earn": "> 0", "spend": "< 0", "expire": "< 0", "adjust": "≠ 0"}.get(e.kind)
    ok = {"earn": e.points > 0, "spend": e.points < 0, "expire": e.points < 0, "adjust": e.points != 0}.get(e.kind)
    if need is None:
        raise LoyaltyError(422, "kind", f"类型无效 / kind must be one of earn, spend, expire, adjust: {e.kind!r}",
                           reason="invalid")  # fmt: skip
    if not ok:
        raise LoyaltyError(
            422, "points", f"积分数无效 / {e.kind} points must be {need}, got {e.points}", reason="invalid"
        )
    if not e.key or len(e.key) > 200:
        raise LoyaltyError(
            422, "key", "幂等键必填且不超过 200 字符 / key is required (at most 200 characters)", reason="invalid"
        )
    if e.source not in SOURCES:
        raise LoyaltyError(422, "source", f"来源无效 / source must be one of {', '.join(SOURCES)}", reason="invalid")
    if not e.reason or len(e.reason) > 200:
        raise LoyaltyError(
            422, "reason", "原因必填且不超过 200 字符 / reason is required (at most 200 characters)", reason="invalid"
        )


def _sqlite(s: Session) -> bool:
    return bool(s.get_bind().dialect.name == "sqlite")


def sqlite_time(d: datetime | None) -> str | None:
    """A time as SQLAlchemy stores it in SQLite (UTC text with microseconds; compared as text)."""
    if d is None:
        return None
    text = str(d.astimezone(UTC).replace(tzinfo=None) if d.tzinfo is not UTC else d.replace(tzinfo=None))
    return text if len(text) > 19 else text + ".000000"


def db_time(s: Session) -> Callable[[datetime | None], Any]:
    """How a time goes into the bulk statements below: SQLite text, PostgreSQL the datetime itself."""
    return sqlite_time if _sqlite(s) else (lambda d: d)


def _marks(s: Session, n: int) -> str:
    mark = "?" if s.get_bind().dialect.paramstyle == "qmark" else "%s"
    return ", ".join([mark] * n)


def _dbapi(s: Session) -> Any:
    """A DB-API cursor on the session's connection (inside its transaction): bulk reads and writes
    without per-row result processing."""
    return s.connection().connection.cursor()


def bulk_insert(s: Session, name: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
    """One executemany INSERT of positional ``rows`` (fixed table and column names, values bound)."""
    if rows:
        sql = f"INSERT INTO {name} ({', '.join(columns)}) VALUES ({_marks(s, len(columns))})"  # noqa: S608 - fixed names
        s.connection().exec_driver_sql(sql, list(rows))  # a duplicate key raises SQLAlchemy's IntegrityError


def present(s: Session, name: str, col: str, values: Sequence[str], *, also: str = "") -> list[tuple[Any, ...]]:
    """Rows ``(col, also…)`` of ``name`` whose ``col`` is one of ``values`` (fixed names, values bound)."""
    out: list[tuple[Any, ...]] = []
    uniq = list(dict.fromkeys(values))
    sel = f"{col}, {also}" if also else col
    cur = _dbapi(s)
    try:
        for i in range(0, len(uniq), _CHUNK):
            part = tuple(uniq[i : i + _CHUNK])
            sql = f"SELECT {sel} FROM {name} WHERE {col} IN ({_marks(s, len(part))})"  # noqa: S608 - fixed names
            cur.execute(sql, part)
            out.extend(cur.fetchall())
    finally:
        cur.close()
    return out


_UPSERT = ("INSERT INTO points_accounts (profile_id, balance, earned, spent, expired, adjusted, updated_at) "
           "VALUES {values} ON CONFLICT (profile_id) DO UPDATE SET balance = points_accounts.balance + excluded.balance, "
           "earned = points_accounts.earned + excluded.earned, spent = points_accounts.spent + excluded.spent, "
           "expired = points_accounts.expired + excluded.expired, "
           "adjusted = points_accounts.adjusted + excluded.adjusted, updated_at = excluded.updated_at "
           "RETURNING profile_id, balance")  # fmt: skip


def _upsert(s: Session, rows: Sequence[tuple[Any, ...]]) -> dict[str, int]:
    """Add the deltas to the accounts (created when missing), 400 rows a statement; the new balances."""
    out: dict[str, int] = {}
    one = f"({_marks(s, 7)})"
    cur = _dbapi(s)
    try:
        for i in range(0, len(rows), 400):
            part = rows[i : i + 400]
            cur.execute(_UPSERT.format(values=", ".join([one] * len(part))), [v for r in part for v in r])
            out.update((pid, int(b)) for pid, b in cur.fetchall())
    finally:
        cur.close()
    return out


def _debit(s: Session, pid: str, d: list[int], now: datetime) -> int | None:
    """The conditional update of one member's net debit ``-d[0]``: the new balance, or None (refused)."""
    a = _ACCOUNTS.c
    got = s.execute(
        update(_ACCOUNTS)
        .where(a.profile_id == pid, a.balance >= -d[0])
        .values(balance=a.balance + d[0], earned=a.earned + d[1], spent=a.spent + d[2], expired=a.expired + d[3],
                adjusted=a.adjusted + d[4], updated_at=now)
        .returning(a.balance)
    ).first()  # fmt: skip
    return int(got[0]) if got is not None else None


def _undo(s: Session, done: list[tuple[str, list[int]]], now: datetime) -> None:
    a = _ACCOUNTS.c
    for pid, d in done:
        s.execute(update(_ACCOUNTS).where(a.profile_id == pid)
                  .values(balance=a.balance - d[0], earned=a.earned - d[1], spent=a.spent - d[2],
                          expired=a.expired - d[3], adjusted=a.adjusted - d[4], updated_at=now))  # fmt: skip


def _due_expiries(s: Session, pids: Sequence[str], now: datetime) -> list[NewEntry]:
    """``expire`` entries for the members' lots whose expiry has come (key ``expire:<lot id>``)."""
    out = []
    for pid, items in ledger_items(s, pids).items():
        for lot in lots(items, now).due(now):
            assert lot.expires_at is not None
            out.append(NewEntry(key=f"expire:{lot.id}", profile_id=pid, kind="expire", points=-lot.remaining,
                                reason="积分过期 / points expired", source="expiry", lot_id=lot.id,
                                occurred_at=lot.expires_at))  # fmt: skip
    return out


def post_in_session(
    s: Session, entries: Sequence[NewEntry], now: datetime, *, allow_negative: bool = False
) -> PostResult:
    """Post ``entries`` in the caller's transaction (see the module text); a debit beyond the balance
    → ``LoyaltyError(409, reason="insufficient_points")`` with nothing written."""
    if not entries:
        return PostResult([], 0)
    for e in entries:
        _check(e)
    stored = entries_by_key(s, [e.key for e in entries])
    fresh: dict[str, NewEntry] = {}
    for e in entries:
        if e.key not in stored and e.key not in fresh:
            fresh[e.key] = e
    if fresh:
        stored.update(_write(s, list(fresh.values()), now, allow_negative=allow_negative))
    return PostResult([stored[e.key] for e in entries], len(entries) - len(fresh))


def _write(s: Session, fresh: list[NewEntry], now: datetime, *, allow_negative: bool) -> dict[str, Entry]:
    debtors = [] if allow_negative else list(dict.fromkeys(e.profile_id for e in fresh if e.points < 0))
    if debtors:  # lots past their expiry go first: a spend never uses expired points
        taken = {e.key for e in fresh}
        fresh = [e for e in _due_expiries(s, debtors, now) if e.key not in taken] + fresh
    prog = program(s) if any(e.points > 0 and e.expires_at is None for e in fresh) else None
    ts = db_time(s)
    times: list[tuple[datetime, datetime | None]] = []
    rows: list[Row] = []
    for e in fresh:
        at = e.occurred_at or now
        exp = e.expires_at if e.expires_at is not None or e.points < 0 or prog is None else prog.expiry(at)
        times.append((at, exp))
        rows.append((e.key, e.profile_id, e.kind, e.points, e.reason, e.source, e.source_ref, e.campaign, e.order_id,
                     e.lot_id, ts(exp), ts(at)))  # fmt: skip
    after = _apply(s, rows, now, allow_negative=allow_negative)
    ids = dict(present(s, "points_ledger", "key", [r[0] for r in rows], also="id"))
    return {e.key: Entry(int(ids[e.key]), e.key, e.profile_id, e.kind, e.points, bal, e.reason, e.source, e.source_ref,
                         e.campaign, e.order_id, e.lot_id, exp, at, now)
            for e, bal, (at, exp) in zip(fresh, after, times, strict=True)}  # fmt: skip


def post_rows(s: Session, rows: Sequence[Row], now: datetime, *, allow_negative: bool = True,
              timings: dict[str, float] | None = None) -> list[tuple[Row, int]]:  # fmt: skip
    """The bulk form of :func:`post_in_session` for the order processor: rows already in the store's
    form (:data:`Row`, no checks beyond the keys); replayed keys are left out; returns the written
    rows with their ``balance_after``."""
    if not rows:
        return []
    started = time.perf_counter()
    known = {r[0] for r in present(s, "points_ledger", "key", [r[0] for r in rows])}
    if timings is not None:
        timings["ledger_keys"] = round(timings.get("ledger_keys", 0.0) + time.perf_counter() - started, 3)
    fresh: dict[str, Row] = {}
    for r in rows:
        if r[0] not in known and r[0] not in fresh:
            fresh[r[0]] = r
    todo = list(fresh.values())
    return list(zip(todo, _apply(s, todo, now, allow_negative=allow_negative, timings=timings), strict=True))


def _apply(s: Session, rows: list[Row], now: datetime, *, allow_negative: bool,
           timings: dict[str, float] | None = None) -> list[int]:  # fmt: skip
    """Move the accounts (conditional debits, upserts) and insert the ledger rows; their balance_after."""
    deltas: dict[str, list[int]] = {}
    for r in rows:
        d = deltas.get(r[1])
        if d is None:
            d = deltas[r[1]] = [0, 0, 0, 0, 0]
        pts = r[3]
        d[0] += pts
        kind = r[2]
        if kind == "earn":
            d[1] += pts
        elif kind == "spend":
            d[2] -= pts
        elif kind == "expire":
            d[3] -= pts
        else:
            d[4] += pts
    final: dict[str, int] = {}
    done: list[tuple[str, list[int]]] = []
    ts = db_time(s)
    when = ts(now)
    rest: list[tuple[Any, ...]] = []
    for pid, d in deltas.items():
        if d[0] < 0 and not allow_negative:
            got = _debit(s, pid, d, now)
            if got is None:
                _undo(s, done, now)
                asked = -sum(r[3] for r in rows if r[1] == pid and r[2] != "expire")
                usable = balance(s, pid) + sum(r[3] for r in rows if r[1] == pid and r[2] == "expire")
                raise LoyaltyError(409, "points", f"积分不足 / not enough points: balance {usable}, asked {asked}",
                                   reason="insufficient_points")  # fmt: skip
            final[pid] = got
            done.append((pid, d))
        else:
            rest.append((pid, d[0], d[1], d[2], d[3], d[4], when))
    started = time.perf_counter()
    if rest:
        rest.sort()  # one lock order for every writer (PostgreSQL row locks)
        final.update(_upsert(s, rest))
    if timings is not None:
        timings["accounts"] = round(timings.get("accounts", 0.0) + time.perf_counter() - started, 3)
    after = [0] * len(rows)
    for i in range(len(rows) - 1, -1, -1):  # walk back from each member's new balance
        r = rows[i]
        after[i] = final[r[1]]
        final[r[1]] -= r[3]
    bulk_insert(s, "points_ledger", _COLUMNS,
                [(*r[:4], bal, *r[4:], when) for r, bal in zip(rows, after, strict=True)])  # fmt: skip
    return after


def emit_earned(s: Session, entries: Sequence[Entry], now: datetime) -> None:
    """``Points Earned`` for single grants (API, journeys): key ``earned:<entry key>``."""
    emit(s, [(f"earned:{e.key}", e.profile_id, POINTS_EARNED,
              {"points": e.points, "balance": e.balance_after, "reason": e.reason, "campaign": e.campaign,
               "source": e.source, "expires_at": e.expires_at.isoformat() if e.expires_at else None})
             for e in entries if e.points > 0], now)  # fmt: skip


# --- single operations (own session) ---------------------------------------------------------------------------


def _post_one(inst: Instance, entry: NewEntry, now: datetime, *, allow_negative: bool = False,
              announce: bool = False) -> Posted:  # fmt: skip
    for attempt in (0, 1):
        try:
            with inst.operational.session() as s:
                res = post_in_session(s, [entry], now, allow_negative=allow_negative)
                got = res.entries[0]
                if announce and not res.replayed:
                    emit_earned(s, [got], now)
                return Posted(got, balance(s, got.profile_id), bool(res.replayed))
        except IntegrityError:  # a concurrent twin with the same key committed first: answer its entry
            if attempt:
                raise
    raise AssertionError("unreachable")


def _positive(points: int) -> None:
    if points <= 0:
        raise LoyaltyError(422, "points", f"积分必须大于 0 / points must be > 0, got {points}", reason="invalid")


def earn(inst: Instance, *, member: str, points: int, reason: str, key: str, campaign: str | None = None,
         source_ref: str | None = None, source: str = "api", expires_at: datetime | None = None,
         now: datetime | None = None) -> Posted:  # fmt: skip
    """Grant ``points`` (发放积分) to a member (profile id or ``TYPE:VALUE``); emits ``Points Earned``."""
    _positive(points)
    pid = resolve_member(inst, member)
    entry = NewEntry(key=key, profile_id=pid, kind="earn", points=points, reason=reason, source=source,
                     source_ref=source_ref, campaign=campaign, expires_at=expires_at)  # fmt: skip
    return _post_one(inst, entry, now or inst.clock.now(), announce=True)


def spend(inst: Instance, *, member: str, points: int, reason: str, key: str, campaign: str | None = None,
          source_ref: str | None = None, source: str = "api", order_id: str | None = None,
          now: datetime | None = None) -> Posted:  # fmt: skip
    """Use ``points`` (积分消费); refused with ``insufficient_points`` beyond the balance."""
    _positive(points)
    pid = resolve_member(inst, member)
    entry = NewEntry(key=key, profile_id=pid, kind="spend", points=-points, reason=reason, source=source,
                     source_ref=source_ref, campaign=campaign, order_id=order_id)  # fmt: skip
    return _post_one(inst, entry, now or inst.clock.now())


def adjust(inst: Instance, *, member: str, points: int, reason: str, key: str, campaign: str | None = None,
           source_ref: str | None = None, source: str = "api", allow_negative: bool = False,
           now: datetime | None = None) -> Posted:  # fmt: skip
    """Correct a balance by hand (积分调整), up or down; a positive adjustment is a lot that expires."""
    if points == 0:
        raise LoyaltyError(422, "points", "调整积分不能为 0 / points must not be 0", reason="invalid")
    pid = resolve_member(inst, member)
    entry = NewEntry(key=key, profile_id=pid, kind="adjust", points=points, reason=reason, source=source,
                     source_ref=source_ref, campaign=campaign)  # fmt: skip
    return _post_one(inst, entry, now or inst.clock.now(), allow_negative=allow_negative, announce=points > 0)


# --- jobs ----------------------------------------------------------------------------------------------------


@dataclass
class ExpiryRun:
    profiles: int = 0
    entries: int = 0
    points: int = 0


def expire_points(inst: Instance, now: datetime) -> ExpiryRun:
    """Expire what is left of every lot whose ``expires_at <= now`` (``expire`` entries, key
    ``expire:<lot id>``). Looks only at members with credits expiring since the last run (cursor
    ``points_expiry``: its time, and the last ledger id seen for credits written with a past expiry);
    the cursor moves in the same transaction."""
    out = ExpiryRun()
    with inst.operational.session() as s:
        last_id, last_at = cursor(s, EXPIRY_CURSOR)
        top = int(s.scalar(select(func.coalesce(func.max(_LEDGER.c.id), 0))) or 0)
        c = _LEDGER.c
        due = (c.points > 0) & c.expires_at.is_not(None) & (c.expires_at <= now)
        q: Any = select(c.profile_id).where(due)
        if last_at is not None:
            q = q.where((c.id > last_id) | (c.expires_at > last_at))
        pids = sorted(set(s.scalars(q)))
        for part in _chunks(pids):
            batch = _due_expiries(s, part, now)
            if batch:
                post_in_session(s, batch, now, allow_negative=True)
                out.entries += len(batch)
                out.points -= sum(e.points for e in batch)
                out.profiles += len({e.profile_id for e in batch})
        set_cursor(s, EXPIRY_CURSOR, top, now, at=now)
    return out


def expiring_notices(inst: Instance, now: datetime) -> int:
    """``Points Expiring`` for lots expiring in (now, now + notice_days] with points left: one event
    per member and local expiry date (key ``expiring:<profile>:<date>``, properties points,
    expires_at, balance), emitted once. Returns how many were new."""
    tz = ZoneInfo(inst.settings.timezone)
    with inst.operational.session() as s:
        prog = program(s)
        if prog.notice_days <= 0:
            return 0
        until = now + timedelta(days=prog.notice_days)
        c = _LEDGER.c
        pids = sorted(
            set(s.scalars(select(c.profile_id).where(c.points > 0, c.expires_at > now, c.expires_at <= until)))
        )
        events: list[tuple[str, str, str, Mapping[str, Any]]] = []
        for part in _chunks(pids):
            items = ledger_items(s, part)
            bals = balances(s, part)
            for pid in part:
                days: dict[str, list[Any]] = {}
                for lot in lots(items.get(pid, []), now).expiring(now, until):
                    assert lot.expires_at is not None
                    day = lot.expires_at.astimezone(tz).date().isoformat()
                    got = days.setdefault(day, [0, lot.expires_at])
                    got[0] += lot.remaining
                    got[1] = min(got[1], lot.expires_at)
                for day, (pts, first) in days.items():
                    events.append((f"expiring:{pid}:{day}", pid, POINTS_EXPIRING,
                                   {"points": pts, "expires_at": first.isoformat(), "expires_on": day,
                                    "balance": bals.get(pid, 0)}))  # fmt: skip
        known: set[str] = set()
        for part in _chunks([e[0] for e in events]):
            known.update(s.scalars(select(LoyaltyEventRow.key).where(LoyaltyEventRow.key.in_(part))))
        new = [e for e in events if e[0] not in known]
        emit(s, new, now)
    return len(new)


def birthdays_today(inst: Instance, now: datetime) -> list[tuple[str, int]]:
    """Members whose birthday (trait ``birthday``, ``YYYY-MM-DD`` or ``MM-DD``) is today in their
    time zone (trait ``timezone``, else the workspace's): (profile id, local year). Reads the stored
    profile attributes: the daily job refreshes stale ones first."""
    from tessera.domain.guards import person_timezone

    default = inst.settings.timezone
    days = {(now + timedelta(days=k)).strftime("%m-%d") for k in (-1, 0, 1)}  # every zone's today is among these
    cur = inst.analytic.cursor()
    try:
        rows = cur.execute(
            """SELECT p.profile_id, json_extract_string(t.traits, '$.birthday'), json_extract_string(t.traits, '$.timezone')
            FROM (SELECT p.profile_idx, coalesce(a.traits, p.traits) AS traits FROM profiles p
                  LEFT JOIN profile_attributes a ON a.profile_idx = p.profile_idx) t
            JOIN profiles p ON p.profile_idx = t.profile_idx
            WHERE right(json_extract_string(t.traits, '$.birthday'), 5) IN (SELECT unnest($days))""",
            {"days": sorted(days)},
        ).fetchall()
    finally:
        cur.close()
    out: list[tuple[str, int]] = []
    for pid, birthday, zone in rows:
        local = now.astimezone(ZoneInfo(person_timezone({"timezone": zone} if zone else {}, default)))
        if str(birthday)[-5:] == local.strftime("%m-%d"):
            out.append((str(pid), local.year))
    return out


def grant_birthdays(inst: Instance, now: datetime, people: Sequence[tuple[str, int]] | None = None) -> int:
    """The ``birthday`` bonus for members whose birthday is today (:func:`birthdays_today`, or
    ``people``), once a year (key ``birthday:<bonus>:<profile>:<year>``). Returns how many were granted."""
    with inst.operational.session() as s:
        prog = program(s)
    bonuses = [b for b in prog.bonuses if b.event == BIRTHDAY]
    if not prog.enabled or not bonuses:
        return 0
    grants = [
        NewEntry(key=f"birthday:{b.key}:{pid}:{year}", profile_id=pid, kind="earn", points=b.points, reason=b.name,
                 source="bonus", source_ref=BIRTHDAY)
        for pid, year in (birthdays_today(inst, now) if people is None else people) for b in bonuses
    ]  # fmt: skip
    if not grants:
        return 0
    with inst.operational.session() as s:
        known = set(entries_by_key(s, [g.key for g in grants]))
        res = post_in_session(s, [g for g in grants if g.key not in known], now)
        emit_earned(s, res.entries, now)
    return len(res.entries)
