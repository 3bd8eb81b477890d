"""Coupons (优惠券): templates, issuing (one member, an audience, a file), redemption, voiding, expiry.

Everything is in the operational store. Issuing takes the template's row lock first (an UPDATE of
it), so issuers of one template are serialised on SQLite and PostgreSQL alike; ``issued`` only
grows by a conditional update that keeps it within ``stock``. A coupon is redeemed by the
conditional ``UPDATE coupons SET status='redeemed' … WHERE id = :id AND status = 'issued'``: the
store, not Python, decides who wins. Every write is idempotent by key; a refusal writes nothing and
raises :class:`~tessera.services.loyalty_common.LoyaltyError` with a stable ``reason``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from pydantic import BaseModel, Field, ValidationError
from sqlalchemy import (
    Column,
    MetaData,
    String,
    Table,
    and_,
    bindparam,
    exists,
    func,
    literal,
    null,
    select,
    true,
    type_coerce,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from tessera.clock import as_utc
from tessera.domain.coupons import CouponState, CouponTemplate, discount_minor, new_codes, refusal
from tessera.domain.money import from_minor
from tessera.runtime import Instance
from tessera.services import loyalty_common
from tessera.services.loyalty_common import COUPON_EXPIRING, COUPON_ISSUED, COUPON_REDEEMED, LoyaltyError
from tessera.stores.models import CouponRow, CouponTemplateRow, LoyaltyEventRow

T: Any = CouponTemplateRow.__table__
C: Any = CouponRow.__table__
CHUNK = 900  # IN-list size (SQLite's variable limit is comfortably above)
#: terms that cannot change once coupons of a template exist (they decide what issued coupons are worth)
FROZEN_TERMS = ("kind", "amount", "percent", "cap", "threshold", "gift", "currency")
SOURCES = ("journey", "api", "import", "bulk")


# --- the interface other parts use (docs/loyalty-design.md) ---------------------------------------------


@dataclass(frozen=True)
class IssueRequest:
    profile_id: str
    key: str  # idempotency key, unique across all coupons
    source: str  # "journey" | "api" | "import" | "bulk"
    source_ref: str | None = None  # journey id/node, import file + row, audience id …
    campaign: str | None = None  # default: the template's campaign


@dataclass(frozen=True)
class Issued:
    key: str
    profile_id: str
    code: str
    template: str
    valid_from: datetime
    valid_until: datetime | None
    replayed: bool  # True when the key existed: the first call's coupon


@dataclass
class IssueResult:
    issued: list[Issued] = field(default_factory=list)  # in request order, new and replayed
    refused: list[tuple[IssueRequest, str]] = field(default_factory=list)  # out_of_stock | limit_reached | inactive


@dataclass(frozen=True)
class Redemption:
    code: str
    profile_id: str | None  # the buyer; None skips the owner check (the API always gives one)
    order_id: str | None
    amount_minor: int  # the order's amount before the coupon (for the threshold)
    currency: str
    channel: str | None
    shipping_minor: int | None = None


class CouponOut(BaseModel):
    """One coupon as the API, the CLI and the 360° view show it; money as decimal strings."""

    code: str
    key: str
    template: str
    template_name: str
    template_name_en: str | None = None
    kind: str
    summary: str = Field(description="what it takes off, e.g. 满300减30 / 30 CNY off on orders of 300 CNY+")
    currency: str
    profile_id: str
    status: str = Field(description="issued, redeemed, expired or void")
    usable: bool = Field(description="issued, already valid and not lapsed at the time asked")
    issued_at: datetime
    valid_from: datetime
    valid_until: datetime | None
    source: str
    source_ref: str | None
    campaign: str | None
    redeemed_at: datetime | None = None
    order_id: str | None = None
    order_amount: str | None = None
    discount: str | None = None
    redeem_channel: str | None = None
    expired_at: datetime | None = None


class TemplateOut(BaseModel):
    """A template as stored, with how many were issued and how many remain."""

    key: str
    name: str
    name_en: str | None
    description: str | None
    kind: str
    summary: str
    amount: str | None
    percent: str | None
    cap: str | None
    threshold: str | None
    gift: str | None
    currency: str
    valid_from: datetime | None
    valid_until: datetime | None
    valid_days: int | None
    stock: int | None
    per_person: int | None
    channels: list[str]
    code_prefix: str
    campaign: str | None
    status: str
    issued: int
    remaining: int | None = Field(description="stock − issued; null when unlimited")
    created_at: datetime
    updated_at: datetime


# --- templates ---------------------------------------------------------------------------------------


def parse_template(body: Mapping[str, Any]) -> CouponTemplate:
    """A template from JSON; every problem named by its field, messages "中文 / English"."""
    if not isinstance(body, Mapping):
        raise LoyaltyError(422, "body", "应为 JSON 对象 / the template must be a JSON object", reason="invalid")
    try:
        return CouponTemplate.model_validate(dict(body))
    except ValidationError as exc:
        problems: list[tuple[str, str]] = []
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"])
            msg = str(e["msg"]).removeprefix("Value error, ")
            if not where and ": " in msg and msg.split(": ", 1)[0].isidentifier():  # model checks name the field
                where, msg = msg.split(": ", 1)
            problems.append((where or "body", msg))
        raise LoyaltyError(422, problems[0][0], problems[0][1], problems, reason="invalid") from None


def _stored(t: CouponTemplate) -> dict[str, Any]:
    return t.model_dump(mode="json")


def template_out(row: Any) -> TemplateOut:
    t = CouponTemplate.model_validate(row["body"])
    body = t.model_dump(mode="json")
    return TemplateOut(
        **{k: body[k] for k in TemplateOut.model_fields if k in body},
        summary=t.describe(),
        issued=int(row["issued"]),
        remaining=None if t.stock is None else max(t.stock - int(row["issued"]), 0),
        created_at=as_utc(row["created_at"]),
        updated_at=as_utc(row["updated_at"]),
    )


def _template_row(s: Session, key: str) -> Any:
    row = s.execute(select(T).where(T.c.key == key)).mappings().first()
    if row is None:
        raise LoyaltyError(
            404, "template", f"没有券模板 {key!r} / no coupon template {key!r}", reason="unknown_template"
        )
    return row


def create_template(inst: Instance, body: Mapping[str, Any]) -> TemplateOut:
    """Store a new template; 409 when the key exists."""
    t = parse_template(body)
    now = inst.clock.now()
    with inst.operational.session() as s:
        if s.execute(select(T.c.key).where(T.c.key == t.key)).first() is not None:
            raise LoyaltyError(409, "key", f"券模板 {t.key!r} 已存在 / template {t.key!r} exists", reason="invalid")
        _check_public_code(s, t)
        s.execute(T.insert().values(key=t.key, body=_stored(t), status=t.status, campaign=t.campaign, stock=t.stock,
                                    issued=0, created_at=now, updated_at=now))  # fmt: skip
        return template_out(_template_row(s, t.key))


def list_templates(inst: Instance, *, status: str | None = None, campaign: str | None = None) -> list[TemplateOut]:
    query = select(T).order_by(T.c.created_at, T.c.key)
    if status is not None:
        query = query.where(T.c.status == status)
    if campaign is not None:
        query = query.where(T.c.campaign == campaign)
    with inst.operational.session() as s:
        return [template_out(r) for r in s.execute(query).mappings()]


def get_template(inst: Instance, key: str) -> TemplateOut:
    with inst.operational.session() as s:
        return template_out(_template_row(s, key))


def load_template(s: Session, key: str) -> CouponTemplate:
    return CouponTemplate.model_validate(_template_row(s, key)["body"])


def patch_template(inst: Instance, key: str, patch: Mapping[str, Any]) -> TemplateOut:
    """Change fields of a template (the key never changes): the merged body is checked whole. Once
    coupons exist, the terms (kind, amounts, gift, currency) are fixed and ``stock`` may not go
    below ``issued``."""
    if not isinstance(patch, Mapping):
        raise LoyaltyError(422, "body", "应为 JSON 对象 / the patch must be a JSON object", reason="invalid")
    now = inst.clock.now()
    with inst.operational.session() as s:
        s.execute(update(T).where(T.c.key == key).values(issued=T.c.issued))  # lock against issuers
        row = _template_row(s, key)
        if "key" in patch and patch["key"] != key:
            raise LoyaltyError(422, "key", "券模板的 key 不可修改 / a template's key cannot change", reason="invalid")
        old = CouponTemplate.model_validate(row["body"])
        merged = {**_stored(old), **dict(patch), "key": key}
        new = parse_template(merged)
        issued = int(row["issued"])
        if issued:
            for name in FROZEN_TERMS:
                if getattr(new, name) != getattr(old, name):
                    raise LoyaltyError(422, name, f"已发 {issued} 张，券面不可修改 / {issued} coupons were issued: "
                                       f"{name} cannot change; create a new template", reason="invalid")  # fmt: skip
        _check_public_code(s, new)
        if new.stock is not None and new.stock < issued:
            raise LoyaltyError(422, "stock", f"库存不能少于已发数量 {issued} / stock may not go below the {issued} "
                               "already issued", reason="invalid")  # fmt: skip
        s.execute(update(T).where(T.c.key == key).values(body=_stored(new), status=new.status, campaign=new.campaign,
                                                         stock=new.stock, updated_at=now))  # fmt: skip
        return template_out(_template_row(s, key))


def _templates_with_public_codes(s: Session) -> dict[str, tuple[Any, CouponTemplate]]:
    """Public code → (row, template), over the catalogue (templates are few)."""
    out: dict[str, tuple[Any, CouponTemplate]] = {}
    for row in s.execute(select(T)).mappings():
        code = row["body"].get("public_code")
        if code:
            out[str(code)] = (row, CouponTemplate.model_validate(row["body"]))
    return out


def _check_public_code(s: Session, t: CouponTemplate) -> None:
    if t.public_code is None:
        return
    other = _templates_with_public_codes(s).get(t.public_code)
    if other is not None and other[1].key != t.key:
        raise LoyaltyError(409, "public_code", f"通用码 {t.public_code!r} 已被券模板 {other[1].key!r} 使用 / the public "
                           f"code {t.public_code!r} belongs to template {other[1].key!r}", reason="invalid")  # fmt: skip
    if s.execute(select(C.c.id).where(C.c.code == t.public_code)).first() is not None:
        raise LoyaltyError(409, "public_code", f"{t.public_code!r} 已是一张券的券码 / is already a coupon's code",
                           reason="invalid")  # fmt: skip


def _claim_public(s: Session, r: Redemption, now: datetime) -> CouponRow | None:
    """A shared code (通用码) used on an order becomes the buyer's own coupon, issued and redeemed in
    one go (key ``public:<code>:<order id>``). Every check comes before anything is written: the
    template's terms (validity, channel, currency, threshold), then the issue's (active, per-person
    limit, stock), so a refusal leaves nothing behind. None when ``code`` is no public code."""
    code = normal_code(r.code)
    found = _templates_with_public_codes(s).get(code)
    if found is None:
        return None
    row, template = found
    if r.profile_id is None or r.order_id is None:
        raise _refuse("not_owner", "通用码需要买家和订单号 / a public code needs the buyer and the order id")
    key = f"public:{code}:{r.order_id}"
    done = s.scalars(select(CouponRow).where(CouponRow.key == key)).first()
    if done is not None:
        return done  # the same order again: its coupon, redeemed (or refused then, and so now)
    if row["status"] != "active":
        raise _refuse("inactive", f"券模板 {template.key!r} 已停用 / the template is {row['status']}")
    start, until = template.validity(now)
    virtual = CouponState(status="issued", profile_id=r.profile_id, valid_from=start, valid_until=until)
    why = refusal(virtual, template, profile_id=r.profile_id, channel=r.channel, amount_minor=r.amount_minor,
                  currency=r.currency, now=now)  # fmt: skip
    if why is not None:
        raise _refuse(*why)
    got = issue_in_session(s, template.key, [IssueRequest(profile_id=r.profile_id, key=key, source="public",
                                                          source_ref=r.order_id)], now, emit_events=False)  # fmt: skip
    if got.refused:
        reason = got.refused[0][1]
        text = {"limit_reached": "已达每人限领 / the per-person limit is reached",
                "out_of_stock": "券已领完 / out of stock"}.get(reason, reason)  # fmt: skip
        raise _refuse(reason, text)
    return s.scalars(select(CouponRow).where(CouponRow.key == key)).one()


def set_status(inst: Instance, key: str, status: str) -> TemplateOut:
    """active | paused | archived: paused and archived templates issue nothing; coupons already
    issued stay usable until they lapse."""
    return patch_template(inst, key, {"status": status})


# --- issuing ---------------------------------------------------------------------------------------------


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def _existing(s: Session, keys: Sequence[str]) -> dict[str, Issued]:
    """The coupons whose key is among ``keys`` (chunked IN-lists; a temporary table for many)."""
    out: dict[str, Issued] = {}
    if not keys:
        return out
    # times as stored (SQLite: text), parsed once per distinct value: a bulk issue shares them
    cols = (C.c.key, C.c.profile_id, C.c.code, C.c.template, type_coerce(C.c.valid_from, String),
            type_coerce(C.c.valid_until, String))  # fmt: skip
    if len(keys) >= BULK_FROM:
        # SQLite compares text by code point, as Python does: no key in the range → a first issue
        if (
            s.get_bind().dialect.name == "sqlite"
            and not s.execute(select(C.c.id).where(C.c.key.between(min(keys), max(keys))).limit(1)).first()
        ):
            return out
        ask = _temp_table(s, ("key",), [(k,) for k in keys])
        found = s.execute(select(*cols).join_from(ask, C, C.c.key == ask.c.key)).all()
        ask.drop(s.connection())
    else:
        query = select(*cols).where(C.c.key.in_(bindparam("keys", expanding=True)))
        found = [row for part in _chunks(keys) for row in s.execute(query, {"keys": list(part)})]
    times: dict[Any, datetime | None] = {None: None}
    for k, pid, code, tpl, vf, vu in found:
        for v in (vf, vu):
            if v not in times:
                times[v] = as_utc(v if isinstance(v, datetime) else datetime.fromisoformat(v))
        start = times[vf]
        assert start is not None
        out[k] = Issued(k, pid, code, tpl, start, times[vu], replayed=True)
    return out


def _temp_table(s: Session, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> Table:
    """A temporary table of text columns holding ``rows`` (sqlite3 executemany / PostgreSQL COPY);
    the caller drops it."""
    import secrets

    conn = s.connection()
    tmp = Table(f"_coupon_tmp_{secrets.token_hex(6)}", MetaData(), *(Column(c, String) for c in columns),
                prefixes=["TEMPORARY"])  # fmt: skip
    tmp.create(conn)
    raw: Any = conn.connection.dbapi_connection
    if conn.dialect.name == "postgresql":
        from psycopg import sql

        copy = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(tmp.name), sql.SQL(", ").join(
            sql.Identifier(c) for c in columns))  # fmt: skip
        with raw.cursor() as cur, cur.copy(copy) as cp:
            for r in rows:
                cp.write_row(r)
    else:
        cur = raw.cursor()
        cur.executemany(str(tmp.insert().compile(dialect=conn.dialect)), rows)
        cur.close()
    return tmp


def _held(s: Session, template: str, profiles: Sequence[str], issued_total: int) -> Counter[str]:
    """Coupons of ``template`` each profile holds (any status)."""
    held: Counter[str] = Counter()
    if issued_total == 0 or not profiles:
        return held
    if issued_total <= 4 * len(profiles):  # small template: one pass over its coupons
        wanted = set(profiles)
        q = select(C.c.profile_id, func.count()).where(C.c.template == template).group_by(C.c.profile_id)
        held.update({p: int(n) for p, n in s.execute(q) if p in wanted})
        return held
    q = (
        select(C.c.profile_id, func.count())
        .where(and_(C.c.template == template, C.c.profile_id.in_(bindparam("ids", expanding=True))))
        .group_by(C.c.profile_id)
    )
    for part in _chunks(profiles):
        held.update({p: int(n) for p, n in s.execute(q, {"ids": list(part)})})
    return held


def issue_in_session(
    s: Session,
    template_key: str,
    requests: Sequence[IssueRequest],
    now: datetime,
    *,
    emit_events: bool = True,
    valid_days: int | None = None,
) -> IssueResult:
    """Issue coupons of ``template_key`` in the caller's transaction (see the module docstring).

    Keys already present answer the first call's coupon (``replayed``); new requests are refused per
    request (``inactive``, ``limit_reached``, ``out_of_stock``), never by raising. Unknown template →
    ``LoyaltyError(404, reason="unknown_template")``. ``emit_events`` queues ``Coupon Issued`` per new
    coupon in the same transaction (bulk issues may turn it off). ``valid_days`` (a journey's coupon
    node) can shorten the template's validity: the earlier end wins."""
    locked = s.execute(update(T).where(T.c.key == template_key).values(issued=T.c.issued))
    if getattr(locked, "rowcount", 1) == 0:
        _template_row(s, template_key)  # raises unknown_template
    row = _template_row(s, template_key)
    template = CouponTemplate.model_validate(row["body"])
    if valid_days is not None:
        days = min(valid_days, template.valid_days) if template.valid_days else valid_days
        template = template.model_copy(update={"valid_days": days})
    issued_total = int(row["issued"])
    result = IssueResult()
    if not requests:
        return result
    existing = _existing(s, list(dict.fromkeys(r.key for r in requests)))
    fresh: list[int] = []  # positions of requests that would issue a new coupon
    seen: set[str] = set()
    refused: dict[int, str] = {}
    for i, r in enumerate(requests):
        if r.key in existing or r.key in seen:
            continue
        seen.add(r.key)
        fresh.append(i)
    if fresh and row["status"] != "active":
        refused.update(dict.fromkeys(fresh, "inactive"))
        fresh = []
    if fresh and template.per_person is not None:
        held = _held(s, template_key, list(dict.fromkeys(requests[i].profile_id for i in fresh)), issued_total)
        kept = []
        for i in fresh:
            pid = requests[i].profile_id
            if held[pid] >= template.per_person:
                refused[i] = "limit_reached"
            else:
                held[pid] += 1
                kept.append(i)
        fresh = kept
    if fresh and template.stock is not None:
        available = max(template.stock - issued_total, 0)
        refused.update(dict.fromkeys(fresh[available:], "out_of_stock"))
        fresh = fresh[:available]
    made: dict[str, Issued] = {}
    if fresh:
        n = len(fresh)
        grew = s.execute(
            update(T)
            .where(and_(T.c.key == template_key, (T.c.stock.is_(None)) | (T.c.issued + n <= T.c.stock)))
            .values(issued=T.c.issued + n)
        )
        if getattr(grew, "rowcount", 1) != 1:  # cannot happen under the lock; refuse rather than overissue
            refused.update(dict.fromkeys(fresh, "out_of_stock"))
            fresh = []
        made = _write(s, template, [requests[i] for i in fresh], now, emit_events=emit_events)
    answered: set[str] = set()
    for i, r in enumerate(requests):
        if i in refused:
            result.refused.append((r, refused[i]))
        elif r.key in existing:
            result.issued.append(existing[r.key])
        elif r.key in made:
            first = made[r.key]
            result.issued.append(replace(first, replayed=True) if r.key in answered else first)
            answered.add(r.key)  # a repeat later in the batch answers the same coupon, replayed
        else:  # a repeat of a refused key
            result.refused.append((r, next(refused[j] for j in refused if requests[j].key == r.key)))
    return result


def _write(s: Session, template: CouponTemplate, todo: list[IssueRequest], now: datetime, *,
           emit_events: bool) -> dict[str, Issued]:  # fmt: skip
    """Insert new coupons (codes drawn here); the few whose code collided are drawn again."""
    valid_from, valid_until = template.validity(now)
    made: dict[str, Issued] = {}
    pending = todo
    for _attempt in range(5):
        codes = new_codes(len(pending), template.code_prefix)
        default = template.campaign
        rows = [(r.key, r.profile_id, code, r.source, r.source_ref, default if r.campaign is None else r.campaign)
                for r, code in zip(pending, codes, strict=True)]  # fmt: skip
        writer = _insert_bulk if len(rows) >= BULK_FROM else _insert_rows
        went_in = writer(s, template, rows, now, valid_from, valid_until, emit_events=emit_events)
        for r, code in zip(pending, codes, strict=True):
            if r.key in went_in:
                made[r.key] = Issued(r.key, r.profile_id, code, template.key, valid_from, valid_until, replayed=False)
        pending = [] if len(went_in) == len(rows) else [r for r in pending if r.key not in went_in]
        if pending:  # a code collided (or the key was taken meanwhile by another template's issuer)
            taken = _existing(s, [r.key for r in pending])
            made.update(taken)
            pending = [r for r in pending if r.key not in taken]
        if not pending:
            return made
    raise LoyaltyError(409, "code", "无法生成唯一券码 / could not draw unique codes", reason="invalid")


#: batches from this size go through a temporary table and INSERT … SELECT (coupons and events)
BULK_FROM = 2000
_NEW_COLUMNS = ("key", "profile_id", "code", "source", "source_ref", "campaign")


def _event_props(
    template: CouponTemplate, code: str, valid_until: datetime | None, campaign: str | None
) -> dict[str, Any]:
    return {"code": code, "template": template.key, "template_name": template.name, "kind": template.kind,
            "valid_until": valid_until.isoformat() if valid_until else None, "campaign": campaign}  # fmt: skip


def _insert_rows(s: Session, template: CouponTemplate, rows: list[tuple[Any, ...]], now: datetime,
                 valid_from: datetime, valid_until: datetime | None, *, emit_events: bool) -> set[str]:  # fmt: skip
    """Core executemany INSERT … ON CONFLICT DO NOTHING; the keys that went in (a taken code or key does not)."""
    fixed = {"template": template.key, "status": "issued", "issued_at": now, "valid_from": valid_from,
             "valid_until": valid_until}  # fmt: skip
    params = [{**dict(zip(_NEW_COLUMNS, r, strict=True)), **fixed} for r in rows]
    if s.get_bind().dialect.name == "postgresql":
        went_in = {k for (k,) in s.execute(postgresql.insert(C).on_conflict_do_nothing().returning(C.c.key), params)}
    else:
        result: Any = s.execute(sqlite.insert(C).on_conflict_do_nothing(), params)
        went_in = {r[0] for r in rows} if result.rowcount == len(rows) else _present(s, rows)
    if emit_events:
        loyalty_common.emit(s, [(f"coupon-issued:{k}", pid, COUPON_ISSUED, _event_props(template, code, valid_until, camp))
                                for k, pid, code, _src, _ref, camp in rows if k in went_in], now)  # fmt: skip
    return went_in


def _present(s: Session, rows: list[tuple[Any, ...]]) -> set[str]:
    """Which rows are in the table as written (same key and code): the slow path after a conflict."""
    got: set[str] = set()
    query = select(C.c.key, C.c.code).where(C.c.key.in_(bindparam("keys", expanding=True)))
    for part in _chunks(rows):
        want = {r[0]: r[2] for r in part}
        for k, code in s.execute(query, {"keys": list(want)}):
            if want.get(k) == code:
                got.add(k)
    return got


def _insert_bulk(s: Session, template: CouponTemplate, rows: list[tuple[Any, ...]], now: datetime,
                 valid_from: datetime, valid_until: datetime | None, *, emit_events: bool) -> set[str]:  # fmt: skip
    """Many rows: load them into a temporary table (executemany / COPY), then one INSERT … SELECT
    into coupons and one into loyalty_events, both ON CONFLICT DO NOTHING."""
    conn = s.connection()
    pg = conn.dialect.name == "postgresql"
    tmp = _temp_table(s, _NEW_COLUMNS, rows)
    raw: Any = conn.connection.dbapi_connection
    if not pg:  # random codes land all over the code index: give SQLite room to keep it in memory
        cache = raw.execute("PRAGMA cache_size").fetchone()[0]
        raw.execute(f"PRAGMA cache_size = {-min(256 * 1024, max(-cache, 64 * len(rows) // 1024))}")
    ts = C.c.issued_at.type
    source = select(
        tmp.c.code, tmp.c.key, literal(template.key, String), tmp.c.profile_id, literal("issued", String),
        literal(now, ts), literal(valid_from, ts), literal(valid_until, ts), tmp.c.source, tmp.c.source_ref,
        tmp.c.campaign,
    ).where(true())  # fmt: skip
    cols = ["code", "key", "template", "profile_id", "status", "issued_at", "valid_from", "valid_until", "source",
            "source_ref", "campaign"]  # fmt: skip
    dialect_insert: Any = postgresql.insert if pg else sqlite.insert
    done: Any = s.execute(dialect_insert(C).from_select(cols, source).on_conflict_do_nothing())
    complete = done.rowcount == len(rows)
    if complete:
        went_in = {r[0] for r in rows}
    else:
        went_in = {k for (k,) in s.execute(
            select(tmp.c.key).where(exists().where(and_(C.c.key == tmp.c.key, C.c.code == tmp.c.code))))}  # fmt: skip
    if emit_events:
        build = func.json_build_object if pg else func.json_object
        props = build(
            literal("code", String), tmp.c.code, literal("template", String), literal(template.key, String),
            literal("template_name", String), literal(template.name, String), literal("kind", String),
            literal(template.kind, String), literal("valid_until", String),
            literal(valid_until.isoformat() if valid_until else None, String), literal("campaign", String),
            tmp.c.campaign,
        )  # fmt: skip
        events = select(literal("coupon-issued:", String) + tmp.c.key, tmp.c.profile_id, literal(COUPON_ISSUED, String),
                        props, literal(now, ts), null())  # fmt: skip
        if not complete:
            events = events.where(exists().where(and_(C.c.key == tmp.c.key, C.c.code == tmp.c.code)))
        else:
            events = events.where(true())
        ev: Any = LoyaltyEventRow.__table__
        s.execute(dialect_insert(ev).from_select(["key", "profile_id", "name", "properties", "created_at",
                                                  "published_at"], events).on_conflict_do_nothing())  # fmt: skip
    tmp.drop(conn)
    if not pg:
        raw.execute(f"PRAGMA cache_size = {int(cache)}")
    return went_in


def next_campaign(r: IssueRequest, template: CouponTemplate) -> str | None:
    return r.campaign if r.campaign is not None else template.campaign


# --- service entry points (own session) --------------------------------------------------------------------


def coupon_outs(s: Session, rows: Iterable[Any], now: datetime) -> list[CouponOut]:
    templates: dict[str, CouponTemplate] = {}
    out: list[CouponOut] = []
    for r in rows:
        t = templates.get(r["template"])
        if t is None:
            t = templates[r["template"]] = load_template(s, r["template"])
        valid_from, valid_until = as_utc(r["valid_from"]), as_utc(r["valid_until"]) if r["valid_until"] else None
        money = {
            k: None if r[k] is None else str(from_minor(int(r[k]), t.currency)) for k in ("order_amount", "discount")
        }
        out.append(CouponOut(
            code=r["code"], key=r["key"], template=t.key, template_name=t.name, template_name_en=t.name_en,
            kind=t.kind, summary=t.describe(), currency=t.currency, profile_id=r["profile_id"], status=r["status"],
            usable=r["status"] == "issued" and valid_from <= now and (valid_until is None or now < valid_until),
            issued_at=as_utc(r["issued_at"]), valid_from=valid_from, valid_until=valid_until, source=r["source"],
            source_ref=r["source_ref"], campaign=r["campaign"],
            redeemed_at=as_utc(r["redeemed_at"]) if r["redeemed_at"] else None, order_id=r["order_id"],
            redeem_channel=r["redeem_channel"], expired_at=as_utc(r["expired_at"]) if r["expired_at"] else None,
            **money,
        ))  # fmt: skip
    return out


def coupon_by_code(s: Session, code: str) -> Any:
    row = s.execute(select(C).where(C.c.code == normal_code(code))).mappings().first()
    if row is None:
        raise LoyaltyError(404, "code", f"没有券码 {code!r} / no coupon {code!r}", reason="not_found")
    return row


def normal_code(code: str) -> str:
    return (code or "").strip().upper()


# --- redemption ----------------------------------------------------------------------------------------

_REFUSAL_STATUS = {"not_found": 404, "already_redeemed": 409, "void": 409, "expired": 409, "not_yet_valid": 409}
_REFUSAL_FIELD = {"not_owner": "member", "wrong_channel": "channel", "currency_mismatch": "currency",
                  "threshold_not_met": "amount"}  # fmt: skip


def _refuse(reason: str, message: str) -> LoyaltyError:
    return LoyaltyError(_REFUSAL_STATUS.get(reason, 422), _REFUSAL_FIELD.get(reason, "code"), message, reason=reason)


def _state(row: Any) -> CouponState:
    return CouponState(status=row.status, profile_id=row.profile_id, valid_from=as_utc(row.valid_from),
                       valid_until=as_utc(row.valid_until) if row.valid_until else None)  # fmt: skip


def _is_replay(row: CouponRow, r: Redemption) -> bool:
    return (row.status == "redeemed" and r.order_id is not None and row.order_id == r.order_id
            and (r.profile_id is None or r.profile_id == row.profile_id))  # fmt: skip


def redeem_in_session(s: Session, r: Redemption, now: datetime) -> CouponRow:
    """Use a coupon on an order, in the caller's transaction; answers the redeemed row (discount set).

    Refusals (``not_found``, ``void``, ``expired``, ``already_redeemed``, ``not_yet_valid``,
    ``not_owner``, ``wrong_channel``, ``currency_mismatch``, ``threshold_not_met``) raise having
    written nothing. The same code again with the same ``order_id`` answers the first redemption."""
    row = s.scalars(select(CouponRow).where(CouponRow.code == normal_code(r.code))).first()
    if row is None:
        row = _claim_public(s, r, now)
    if row is None:
        raise _refuse("not_found", f"没有券码 {r.code!r} / no coupon {r.code!r}")
    if _is_replay(row, r):
        return row
    template = load_template(s, row.template)
    why = refusal(_state(row), template, profile_id=r.profile_id, channel=r.channel, amount_minor=r.amount_minor,
                  currency=r.currency, now=now)  # fmt: skip
    if why is not None:
        raise _refuse(*why)
    discount = discount_minor(template, r.amount_minor, r.shipping_minor)
    won = s.execute(
        update(C)
        .where(and_(C.c.id == row.id, C.c.status == "issued"))
        .values(status="redeemed", redeemed_at=now, order_id=r.order_id, order_amount=r.amount_minor,
                discount=discount, redeem_channel=r.channel)
    )  # fmt: skip
    s.refresh(row)
    if getattr(won, "rowcount", 0) != 1:
        if _is_replay(row, r):
            return row
        raise _refuse(*(refusal(_state(row), template, profile_id=None, channel=r.channel, amount_minor=r.amount_minor,
                                currency=r.currency, now=now) or ("already_redeemed", "优惠券已使用 / already used")))  # fmt: skip
    loyalty_common.emit(s, [(f"coupon-redeemed:{row.key}", row.profile_id, COUPON_REDEEMED, {
        "code": row.code, "template": template.key, "template_name": template.name, "kind": template.kind,
        "order_id": r.order_id, "discount": str(from_minor(discount, template.currency)),
        "amount": str(from_minor(r.amount_minor, template.currency)), "currency": template.currency,
        "campaign": row.campaign})], now)  # fmt: skip
    return row


def redeem(inst: Instance, code: str, member: str, order_id: str, amount: Any, currency: str = "CNY",
           channel: str | None = None, shipping: Any = None) -> CouponOut:  # fmt: skip
    """Redeem for the API: the member is resolved, amounts are decimals in ``currency``; the order
    id is the idempotency key (the same code and order again answers the first redemption)."""
    from tessera.domain.money import parse_amount, to_minor

    def minor(value: Any, name: str) -> int:
        try:
            got = to_minor(parse_amount(value), currency)
        except ValueError as e:
            raise LoyaltyError(422, name, f"金额无效 / {e}", reason="invalid") from None
        if got < 0:
            raise LoyaltyError(422, name, "金额不能为负 / amounts cannot be negative", reason="invalid")
        return got

    if not (order_id or "").strip():
        raise LoyaltyError(422, "order_id", "需要订单号 / give the order id", reason="invalid")
    amount_minor = minor(amount, "amount")
    shipping_minor = None if shipping is None else minor(shipping, "shipping")
    now = inst.clock.now()
    with inst.operational.session() as s:
        coupon_by_code(s, code)  # 404 before resolving the member
    profile_id = loyalty_common.resolve_member(inst, member)
    with inst.operational.session() as s:
        row = redeem_in_session(s, Redemption(code, profile_id, order_id.strip(), amount_minor, currency, channel,
                                              shipping_minor), now)  # fmt: skip
        return coupon_outs(s, [coupon_by_code(s, row.code)], now)[0]


def void(inst: Instance, code: str) -> CouponOut:
    """Void an unused coupon (作废); voiding it again answers the same. A used or lapsed coupon is
    refused (already_redeemed / expired). Stock is not given back."""
    now = inst.clock.now()
    with inst.operational.session() as s:
        row = coupon_by_code(s, code)
        s.execute(update(C).where(and_(C.c.id == row["id"], C.c.status == "issued")).values(status="void"))
        row = coupon_by_code(s, code)
        if row["status"] == "redeemed":
            raise _refuse("already_redeemed", "优惠券已使用，不能作废 / a used coupon cannot be voided")
        if row["status"] == "expired":
            raise _refuse("expired", "优惠券已过期 / the coupon has expired")
        return coupon_outs(s, [row], now)[0]


def expire_coupons(s: Session, now: datetime) -> int:
    """Issued coupons whose ``valid_until`` has passed become ``expired`` (one UPDATE); how many."""
    done: Any = s.execute(
        update(C)
        .where(and_(C.c.status == "issued", C.c.valid_until.is_not(None), C.c.valid_until <= now))
        .values(status="expired", expired_at=now)
    )
    return int(done.rowcount or 0)


def expiring_notices(s: Session, now: datetime, days: int) -> int:
    """``Coupon Expiring`` (优惠券即将过期) for each usable coupon whose ``valid_until`` falls within
    ``days`` from now: one event per coupon (key ``coupon-expiring:<coupon key>``), in the caller's
    transaction; properties: code, template, template_name, valid_until, days_left. Returns how many
    were new."""
    if days <= 0:
        return 0
    until = now + timedelta(days=days)
    rows = s.execute(
        select(C.c.key, C.c.profile_id, C.c.code, C.c.template, C.c.valid_until, C.c.campaign).where(
            and_(C.c.status == "issued", C.c.valid_until > now, C.c.valid_until <= until)
        )
    ).all()
    if not rows:
        return 0
    keys = [f"coupon-expiring:{r.key}" for r in rows]
    known: set[str] = set()
    for part in _chunks(keys):
        known.update(s.scalars(select(LoyaltyEventRow.key).where(LoyaltyEventRow.key.in_(part))))
    names = {t: load_template(s, t).name for t in {r.template for r in rows}}
    events = []
    for key, r in zip(keys, rows, strict=True):
        if key in known:
            continue
        ends = as_utc(r.valid_until)
        events.append((key, r.profile_id, COUPON_EXPIRING, {
            "code": r.code, "template": r.template, "template_name": names[r.template], "campaign": r.campaign,
            "valid_until": ends.isoformat(), "days_left": max((ends - now).days, 0)}))  # fmt: skip
    loyalty_common.emit(s, events, now)
    return len(events)


def return_on_refund(s: Session, order_ids: Sequence[str], now: datetime) -> int:
    """Coupons used on refunded orders go back to their owner (``issued``, redemption cleared) when
    their template says ``return_on_refund`` and they are still valid; in the caller's transaction.
    Returns how many came back."""
    back = 0
    returnable: dict[str, bool] = {}  # per template, read once
    for part in _chunks(list(dict.fromkeys(order_ids))):
        rows = s.execute(select(C.c.id, C.c.template, C.c.valid_until)
                         .where(and_(C.c.order_id.in_(part), C.c.status == "redeemed"))).all()  # fmt: skip
        for id_, template, until in rows:
            if template not in returnable:
                returnable[template] = load_template(s, template).return_on_refund
            if not returnable[template] or (until is not None and as_utc(until) <= now):
                continue
            done: Any = s.execute(
                update(C).where(and_(C.c.id == id_, C.c.status == "redeemed"))
                .values(status="issued", redeemed_at=None, order_id=None, order_amount=None, discount=None,
                        redeem_channel=None)
            )  # fmt: skip
            back += int(done.rowcount or 0)
    return back


def run_expiry(inst: Instance) -> int:
    with inst.operational.session() as s:
        return expire_coupons(s, inst.clock.now())


# --- reading -----------------------------------------------------------------------------------------------


def profile_coupons(s: Session, profile_id: str, now: datetime) -> list[CouponOut]:
    """A member's coupons, newest first (for the 360° view)."""
    rows = s.execute(select(C).where(C.c.profile_id == profile_id).order_by(C.c.issued_at.desc(), C.c.id.desc()))
    return coupon_outs(s, rows.mappings(), now)


def get_coupon(inst: Instance, code: str) -> CouponOut:
    with inst.operational.session() as s:
        return coupon_outs(s, [coupon_by_code(s, code)], inst.clock.now())[0]


def list_coupons(inst: Instance, *, member: str | None = None, template: str | None = None,
                 status: str | None = None, limit: int = 100) -> list[CouponOut]:  # fmt: skip
    """Coupons newest first, by member (profile id or TYPE:VALUE), template and status."""
    query = select(C).order_by(C.c.issued_at.desc(), C.c.id.desc()).limit(limit)
    if member is not None:
        query = query.where(C.c.profile_id == loyalty_common.resolve_member(inst, member))
    if template is not None:
        query = query.where(C.c.template == template)
    if status is not None:
        query = query.where(C.c.status == status)
    with inst.operational.session() as s:
        return coupon_outs(s, s.execute(query).mappings(), inst.clock.now())
