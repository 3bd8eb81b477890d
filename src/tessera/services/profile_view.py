"""The 360° profile view (用户360视图): find a profile by any identifier, show everything about it.

Built for one profile at a time on a large store: the identifier is found through the primary key
of ``profile_identifiers``; the profile's rows are those whose ``identity_idx`` is one of its
observations (``identity_links.obs_idx``), so events and orders are scanned with that short list
and a ``LIMIT`` — never joined whole. Every user value is a bound parameter; the queries whose
shape depends on the request are SQLGlot trees.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import duckdb
from pydantic import BaseModel, Field, field_validator
from sqlglot import exp

from tessera.domain import identity
from tessera.domain.identity import IdentityRules
from tessera.services.loyalty_member import MemberLoyalty
from tessera.services.profile_attributes import ProfileAttributes, compute_one, read_attributes

_PHONE_QUERY = re.compile(r"^[\d\s+\-().]+$")
MAX_PAGE = 1000
#: The timeline's columns, in the order of :class:`TimelineEvent`'s fields, then the cursor key.
_TIMELINE_COLUMNS = [
    "e.message_id", "e.type::VARCHAR", "n.name", 'e."timestamp"', "e.source_id", "e.channel", "e.revenue::DOUBLE",
    "e.order_id", "e.product_id", "e.properties", 'epoch_us(e."timestamp")',
]  # fmt: skip


class ProfileViewError(ValueError):
    """A request the view cannot answer as asked; ``field`` names the bad input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# -- response schemas (what the management API's OpenAPI shows) ------------------------------


class _Out(BaseModel):
    """Times read from the store are naive UTC; they are answered with their zone."""

    @field_validator("*", mode="after")
    @classmethod
    def _utc(cls, value: Any) -> Any:
        return value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value


class ProfileRef(BaseModel):
    """Which profile a lookup found; ``redirected_from`` is the merged-away id that was asked for."""

    profile_idx: int
    profile_id: str
    redirected_from: str | None = None


class ProfileCore(_Out):
    """The profile record (用户档案): its stable id and the identifier that created it (anchor)."""

    profile_id: str
    profile_idx: int = Field(description="dense integer index (for bitmaps and set operations)")
    created_at: datetime
    first_seen: datetime | None
    last_seen: datetime | None
    anchor_type: str | None = Field(None, description="type of the identifier that created the profile")
    anchor_value: str | None = None


class IdentityOut(_Out):
    """One identifier (身份标识) the profile holds, normalised (phones E.164, e-mails lower-case)."""

    type: str
    value: str
    label_zh: str = ""
    label_en: str = ""
    source_id: int | None = None
    source: str | None = Field(None, description="name of the source it was first seen from")
    first_seen: datetime | None = None
    last_seen: datetime | None = Field(None, description="latest event carrying it (computed when not stored)")
    linked_at: datetime | None = None


class OrderOut(_Out):
    """An order (订单) of the profile, with how many lines and pieces it has."""

    order_id: str
    ordered_at: datetime
    status: str | None = None
    channel: str | None = None
    store_id: str | None = None
    source_id: int | None = None
    source: str | None = None
    total: Decimal
    discount: Decimal | None = None
    currency: str | None = None
    coupon_code: str | None = None
    item_count: int = Field(0, description="order lines")
    quantity: int = Field(0, description="pieces over all lines")


class TimelineEvent(_Out):
    """One event of the timeline (行为时间线)."""

    message_id: str
    type: str
    event: str | None = Field(None, description="track event name, or page/screen name")
    timestamp: datetime
    source_id: int
    source: str | None = None
    channel: str | None = None
    revenue: float | None = None
    order_id: str | None = None
    product_id: str | None = None
    properties: dict[str, Any] | None = None

    @field_validator("properties", mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value


class Timeline(BaseModel):
    """A page of the profile's events, newest first."""

    events: list[TimelineEvent]
    next_before: str | None = Field(description="pass as ?before= for the next (older) page; null at the end")


class MergeEntry(_Out):
    """A decision of identity resolution that concerns this profile (合并记录), from ``identity_log``."""

    seq: int
    logged_at: datetime
    event_time: datetime | None = None
    action: str = Field(description="merge, drop, unmerge, split or rebuild")
    profile_id: str | None = None
    other_ids: list[str] = Field(default_factory=list, description="the other profiles involved")

    @field_validator("other_ids", mode="before")
    @classmethod
    def _none_is_empty(cls, value: Any) -> Any:
        return [] if value is None else value

    id_type: str | None = None
    id_value: str | None = None
    reason: str
    origin: str | None = None
    run: str


class ProfileTag(_Out):
    """One tag of a profile: its values, what kind of tag it is and when its values were computed."""

    key: str
    name: str | None = None
    name_en: str | None = None
    category: str | None = None
    kind: str | None = Field(None, description="static | rule | sql | model (null: not in the catalogue)")
    value_type: str | None = None
    values: list[str]
    updated_at: datetime = Field(description="when this profile's value last changed")
    computed_at: datetime | None = Field(None, description="the tag's last successful run")


def profile_tags(cur: duckdb.DuckDBPyConnection, *, profile_idx: int, catalogue: Mapping[str, Any]) -> list[ProfileTag]:
    """The profile's tag values, grouped per tag, with the catalogue's names and the last run."""
    rows = cur.execute(
        """SELECT t.tag_key, list(t.value ORDER BY t.value), max(t.updated_at),
               (SELECT max(r.finished_at) FROM tag_runs r WHERE r.tag_key = t.tag_key AND r.status = 'succeeded')
        FROM profile_tags t WHERE t.profile_idx = ? GROUP BY t.tag_key ORDER BY t.tag_key""",
        [profile_idx],
    ).fetchall()
    out = []
    for key, values, updated, computed in rows:
        tag = catalogue.get(key)
        info = {f: getattr(tag, f) for f in ("name", "name_en", "category", "kind", "value_type")} if tag else {}
        out.append(ProfileTag(key=key, values=values, updated_at=updated, computed_at=computed, **info))
    return out


class Profile360(BaseModel):
    """The 360° view of one profile (用户360视图).

    ``consents``, ``tags`` and ``audiences`` are present with their final shape and empty until
    the steps that fill them land.
    """

    profile: ProfileCore
    redirected_from: str | None = Field(None, description="the merged-away profile id that was asked for")
    attributes: ProfileAttributes
    attributes_as_of: datetime | None = Field(
        None, description="when the stored attributes were computed; null = computed live for this answer"
    )
    identities: list[IdentityOut]
    consents: list[dict[str, Any]] = Field(default_factory=list, description="consents (同意); filled later")
    tags: list[ProfileTag] = Field(default_factory=list, description="tags (标签) with kind and when computed")
    audiences: list[dict[str, Any]] = Field(default_factory=list, description="audiences (人群); filled later")
    orders: list[OrderOut] = Field(description="latest orders first")
    timeline: Timeline
    merge_history: list[MergeEntry] = Field(description="newest first")
    loyalty: MemberLoyalty | None = Field(
        default=None, description="coupons, points and tier (会员权益); filled by the API from the operational store"
    )


class ProfileHit(_Out):
    """A profile found by search, with what matched."""

    profile_id: str
    profile_idx: int
    name: str | None = None
    phones: list[str] = Field(default_factory=list)
    emails: list[str] = Field(default_factory=list)
    matched: list[str] = Field(description="which of phone, email, name, profile_id matched")
    last_seen: datetime | None = None


# -- finding a profile -------------------------------------------------------------------------


def find_profile(
    cur: duckdb.DuckDBPyConnection,
    *,
    rules: IdentityRules,
    identifier: str | None = None,
    profile_id: str | None = None,
) -> ProfileRef | None:
    """The profile holding ``identifier`` (``TYPE:VALUE``, normalised first) or called ``profile_id``.

    A merged-away profile id resolves to the profile now holding its anchor identifier (one hop).
    Returns None when nothing matches; raises :class:`ProfileViewError` for malformed input.
    """
    if (identifier is None) == (profile_id is None):
        raise ProfileViewError("identifier", "give either an identifier (TYPE:VALUE) or a profile id")
    if identifier is not None:
        id_type, value = normalised_identifier(rules, identifier)
        return _by_identifier(cur, id_type, value)
    assert profile_id is not None
    pid = profile_id.strip()
    if not pid:
        raise ProfileViewError("profile_id", "empty")
    row = cur.execute("SELECT profile_idx, profile_id FROM profiles WHERE profile_id = ?", [pid]).fetchall()
    if row:
        return ProfileRef(profile_idx=row[0][0], profile_id=row[0][1])
    redirect = cur.execute(
        "SELECT anchor_type, anchor_value, merged_into FROM profile_redirects WHERE profile_id = ?", [pid]
    ).fetchall()
    if not redirect:
        return None
    anchor_type, anchor_value, merged_into = redirect[0]
    ref = _by_identifier(cur, anchor_type, anchor_value)
    if ref is None and merged_into:
        row = cur.execute("SELECT profile_idx, profile_id FROM profiles WHERE profile_id = ?", [merged_into]).fetchall()
        ref = ProfileRef(profile_idx=row[0][0], profile_id=row[0][1]) if row else None
    return ref.model_copy(update={"redirected_from": pid}) if ref else None


def normalised_identifier(rules: IdentityRules, text: str) -> tuple[str, str]:
    """``TYPE:VALUE`` → (type, normalised value); raises :class:`ProfileViewError` naming the problem."""
    try:
        return identity.normalised_identifier(rules, text)
    except ValueError as exc:
        raise ProfileViewError("identifier", str(exc)) from None


def _by_identifier(cur: duckdb.DuckDBPyConnection, id_type: str, value: str) -> ProfileRef | None:
    # Literals (quoted by SQLGlot), not parameters: DuckDB uses the unique index only for constants.
    lookup = (
        exp.select("profile_idx")
        .from_("profile_identifiers")
        .where(
            exp.and_(
                exp.column("id_type").eq(exp.Literal.string(id_type)),
                exp.column("id_value").eq(exp.Literal.string(value)),
            )
        )
    )
    found = cur.execute(lookup.sql("duckdb")).fetchall()
    if not found:
        return None
    rows = cur.execute(
        "SELECT profile_idx, profile_id FROM profiles WHERE profile_idx = ?", [int(found[0][0])]
    ).fetchall()
    return ProfileRef(profile_idx=rows[0][0], profile_id=rows[0][1]) if rows else None


# -- the view ----------------------------------------------------------------------------------


def profile_360(
    cur: duckdb.DuckDBPyConnection,
    *,
    ref: ProfileRef,
    rules: IdentityRules,
    source_names: Mapping[int, str],
    timeline_limit: int = 50,
    before: str | datetime | None = None,
    events: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    orders_limit: int = 20,
    history_limit: int = 100,
    live_attributes: bool = False,
    tag_catalogue: Mapping[str, Any] | None = None,
) -> Profile360:
    """Everything about one profile; the timeline is its first page (``timeline`` pages on).

    Attributes come from ``profile_attributes`` (refreshed by ``tessera profile refresh``, after a
    rebuild and after the demo loads) when the profile has a row there; computed live otherwise,
    when ``live_attributes`` is set or the newest event or order on the page is newer than them;
    ``attributes_as_of`` says which (null = live).
    """
    row = cur.execute(
        """SELECT profile_id, profile_idx, created_at, first_seen, last_seen, anchor_type, anchor_value
           FROM profiles WHERE profile_idx = ?""",
        [ref.profile_idx],
    ).fetchall()
    if not row:
        raise ProfileViewError("profile_id", f"profile {ref.profile_id} no longer exists")
    core = ProfileCore(**dict(zip(ProfileCore.model_fields, row[0], strict=True)))
    idx, pid = core.profile_idx, core.profile_id
    obs = observations(cur, profile_idx=idx)
    ids = identities(cur, profile_idx=idx, rules=rules, source_names=source_names, obs=obs)
    page = timeline(cur, obs=obs, source_names=source_names, limit=timeline_limit, before=before, events=events,
                    since=since, until=until)  # fmt: skip
    latest_orders = orders(cur, obs=obs, source_names=source_names, limit=orders_limit)
    # Stored attributes unless asked for live ones or something newer than them is on the page.
    attrs: ProfileAttributes | None = None
    as_of: datetime | None = None
    unfiltered = before is None and not events and since is None and until is None
    if not live_attributes and unfiltered:
        got = cur.execute("SELECT updated_at FROM profile_attributes WHERE profile_idx = ?", [idx]).fetchall()
        newest = [e.timestamp for e in page.events[:1]] + [o.ordered_at for o in latest_orders[:1]]
        if got and got[0][0] is not None and all(n is None or _naive_utc(n) <= got[0][0] for n in newest):
            attrs, as_of = read_attributes(cur, profile_idx=idx), got[0][0].replace(tzinfo=UTC)
    if attrs is None:
        attrs, as_of = compute_one(cur, profile_idx=idx, rules=rules, source_names=source_names), None
    return Profile360(
        profile=core,
        redirected_from=ref.redirected_from,
        attributes=attrs,
        attributes_as_of=as_of,
        identities=ids,
        tags=profile_tags(cur, profile_idx=idx, catalogue=tag_catalogue or {}),
        orders=latest_orders,
        timeline=page,
        merge_history=merge_history(cur, profile_id=pid, identities=ids, limit=history_limit),
    )


def observations(cur: duckdb.DuckDBPyConnection, *, profile_idx: int) -> list[int]:
    """The observations (``identity_links.obs_idx``) that belong to the profile now."""
    rows = cur.execute("SELECT obs_idx FROM identity_links WHERE profile_idx = ? ORDER BY obs_idx", [profile_idx])
    return [r[0] for r in rows.fetchall()]


def _in_obs(column: exp.Expr) -> exp.Expr:
    """``column`` is one of the observations bound as the list parameter at this place (an IN
    over the unnested list: DuckDB turns it into a hash probe inside the scan)."""
    values = exp.select(exp.Unnest(expressions=[exp.cast(exp.Placeholder(), "BIGINT[]")]))
    return exp.In(this=column, query=values.subquery())


def identities(
    cur: duckdb.DuckDBPyConnection,
    *,
    profile_idx: int,
    rules: IdentityRules,
    source_names: Mapping[int, str],
    obs: Sequence[int] | None = None,
) -> list[IdentityOut]:
    """The profile's identifiers in rule priority order; a missing ``last_seen`` is computed from events."""
    rows = cur.execute(
        """SELECT id_type, id_value, source_id, first_seen, last_seen, linked_at
           FROM profile_identifiers WHERE profile_idx = ?""",
        [profile_idx],
    ).fetchall()
    computed: dict[tuple[str, str], datetime] = {}
    if any(r[4] is None for r in rows):
        obs = observations(cur, profile_idx=profile_idx) if obs is None else obs
        if obs:
            # the latest event of each observation, then per identifier over the observations carrying it
            for id_type, value, last in cur.execute(
                """SELECT u.id_type, u.id_value, max(last) FROM (
                     SELECT unnest(l.ids) AS u, x.last
                     FROM (SELECT identity_idx, max("timestamp") AS last FROM events
                           WHERE identity_idx IN (SELECT unnest(?::BIGINT[])) GROUP BY identity_idx) x
                     JOIN identity_links l ON l.obs_idx = x.identity_idx
                     WHERE list_contains(?::BIGINT[], l.obs_idx)
                   ) GROUP BY ALL""",
                [list(obs), list(obs)],
            ).fetchall():
                computed[(id_type, value)] = last
    out = []
    for t, v, src, first, last, linked in rows:
        spec, last = rules.type_named(t), last if last is not None else computed.get((t, v))
        out.append(IdentityOut(type=t, value=v, label_zh=spec.label_zh, label_en=spec.label_en, source_id=src,
                               source=_name(source_names, src), first_seen=first, last_seen=last,
                               linked_at=linked))  # fmt: skip
    out.sort(key=lambda i: (rules.rank(i.type), i.type, i.value))
    return out


def orders(
    cur: duckdb.DuckDBPyConnection, *, obs: Sequence[int], source_names: Mapping[int, str], limit: int = 20
) -> list[OrderOut]:
    """The profile's latest orders, with line and piece counts."""
    _check_limit("orders_limit", limit)
    if not obs:
        return []
    rows = cur.execute(
        """SELECT order_id, ordered_at, status, channel, store_id, source_id, total, discount, currency, coupon_code
           FROM orders WHERE identity_idx IN (SELECT unnest(?::BIGINT[]))
           ORDER BY ordered_at DESC, order_id LIMIT ?""",
        [list(obs), limit],
    ).fetchall()
    if not rows:
        return []
    counts = {
        r[0]: (r[1], r[2])
        for r in cur.execute(
            """SELECT order_id, count(*), coalesce(sum(quantity), 0) FROM order_items
               WHERE list_contains(?::VARCHAR[], order_id) GROUP BY order_id""",
            [[r[0] for r in rows]],
        ).fetchall()
    }
    fields = ("order_id", "ordered_at", "status", "channel", "store_id", "source_id", "total", "discount")
    return [
        OrderOut(
            **dict(zip((*fields, "currency", "coupon_code"), r, strict=True)),
            source=_name(source_names, r[5]),
            item_count=counts.get(r[0], (0, 0))[0],
            quantity=counts.get(r[0], (0, 0))[1],
        )
        for r in rows
    ]


def timeline(
    cur: duckdb.DuckDBPyConnection,
    *,
    obs: Sequence[int],
    source_names: Mapping[int, str],
    limit: int = 50,
    before: str | datetime | None = None,
    events: Sequence[str] | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Timeline:
    """One page of the profile's events, newest first.

    ``before`` is the ``next_before`` cursor of the previous page (or a time: events before it);
    ``events`` keeps only these event names; ``since`` ≤ timestamp < ``until``.
    """
    _check_limit("limit", limit)
    if not obs:
        return Timeline(events=[], next_before=None)
    ts = exp.column("timestamp", table="e", quoted=True)
    mid = exp.column("message_id", table="e")
    conds: list[exp.Expr] = [_in_obs(exp.column("identity_idx", table="e"))]
    params: list[Any] = [list(obs)]
    if isinstance(before, datetime):
        conds.append(ts < exp.Placeholder())
        params.append(_naive_utc(before))
    elif before:
        ts_us, _, after_id = before.partition("|")
        if not (ts_us.isdigit() and len(ts_us) <= 18 and after_id):
            raise ProfileViewError("before", "not a cursor: pass next_before of the previous page")
        key = exp.Tuple(expressions=[exp.func("epoch_us", ts), mid])
        conds.append(exp.LT(this=key, expression=exp.Tuple(expressions=[exp.Placeholder(), exp.Placeholder()])))
        params.extend([int(ts_us), after_id])
    if events:
        # names → dictionary codes first, so the scan filters on the integer column
        codes = cur.execute(
            "SELECT event_id FROM event_names WHERE list_contains(?::VARCHAR[], name)", [[str(n) for n in events]]
        ).fetchall()
        if not codes:
            return Timeline(events=[], next_before=None)
        conds.append(
            exp.func("list_contains", exp.cast(exp.Placeholder(), "INTEGER[]"), exp.column("event_id", table="e"))
        )
        params.append([c[0] for c in codes])
    if since is not None:
        conds.append(ts >= exp.Placeholder())
        params.append(_naive_utc(since))
    if until is not None:
        conds.append(ts < exp.Placeholder())
        params.append(_naive_utc(until))
    query = (
        exp.select(*_TIMELINE_COLUMNS)
        .from_(exp.table_("events", alias="e"))
        .join(exp.table_("event_names", alias="n"), using=["event_id"], join_type="left")
        .where(exp.and_(*conds))
        .order_by(exp.Ordered(this=ts, desc=True), exp.Ordered(this=mid, desc=True))
        .limit(exp.Placeholder())
    )
    params.append(limit + 1)
    rows = cur.execute(query.sql("duckdb"), params).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    fields = ("message_id", "type", "event", "timestamp", "source_id", "channel", "revenue", "order_id")
    out = [
        TimelineEvent(
            **dict(zip((*fields, "product_id", "properties"), r[:10], strict=True)), source=_name(source_names, r[4])
        )
        for r in rows
    ]
    return Timeline(events=out, next_before=f"{rows[-1][10]}|{rows[-1][0]}" if more else None)


def merge_history(
    cur: duckdb.DuckDBPyConnection, *, profile_id: str, identities: Sequence[IdentityOut], limit: int = 100
) -> list[MergeEntry]:
    """Log entries about the profile or the profiles merged into it (whose anchors it now holds)."""
    held = [f"{i.type}:{i.value}" for i in identities]
    merged = cur.execute(
        """SELECT profile_id FROM profile_redirects
           WHERE merged_into = ? OR list_contains(?::VARCHAR[], anchor_type || ':' || anchor_value)""",
        [profile_id, held],
    ).fetchall()
    ids = [profile_id, *sorted({r[0] for r in merged} - {profile_id})]
    rows = cur.execute(
        """SELECT seq, logged_at, event_time, action, profile_id, other_ids, id_type, id_value, reason, origin, run
           FROM identity_log
           WHERE list_contains(?::VARCHAR[], profile_id) OR list_has_any(other_ids, ?::VARCHAR[])
           ORDER BY seq DESC LIMIT ?""",
        [ids, ids, limit],
    ).fetchall()
    fields = ("seq", "logged_at", "event_time", "action", "profile_id", "other_ids", "id_type", "id_value")
    return [MergeEntry(**dict(zip((*fields, "reason", "origin", "run"), r, strict=True))) for r in rows]


# -- search ------------------------------------------------------------------------------------


def search_profiles(
    cur: duckdb.DuckDBPyConnection, *, q: str, limit: int = 20, rules: IdentityRules | None = None
) -> list[ProfileHit]:
    """Profiles whose phone contains the digits of ``q``, whose e-mail or name contains ``q``
    (case-insensitively), or whose id is ``q``; at most ``limit``, most recently seen first."""
    q = q.strip()
    if len(q) < 2:
        raise ProfileViewError("q", "search for at least 2 characters")
    _check_limit("limit", limit)
    kinds = rules.types if rules is not None else []
    phone_types = [t.name for t in kinds if t.kind == "phone"] or ["phone"]
    email_types = [t.name for t in kinds if t.kind == "email"] or ["email"]
    digits = re.sub(r"\D", "", q)
    phone_like = bool(_PHONE_QUERY.match(q)) and len(digits) >= 2
    rows = cur.execute(
        _SEARCH_SQL,
        {"phone_like": phone_like, "digits": digits, "phone_types": phone_types, "email_types": email_types,
         "q": q.lower(), "exact": q, "limit": limit},
    ).fetchall()  # fmt: skip
    order = ("phone", "email", "name", "profile_id")
    return [
        ProfileHit(
            profile_idx=r[0],
            profile_id=r[1],
            last_seen=r[2],
            matched=sorted(set(r[3]), key=order.index),
            name=r[4],
            phones=r[5] or [],
            emails=r[6] or [],
        )
        for r in rows
    ]


#: Every way ``q`` can match, then the newest ``limit`` profiles with their names, phones and e-mails.
_SEARCH_SQL = """
WITH hits AS (
    SELECT profile_idx, 'phone' AS matched FROM profile_identifiers
    WHERE $phone_like AND list_contains($phone_types::VARCHAR[], id_type) AND contains(id_value, $digits)
    UNION ALL
    SELECT profile_idx, 'email' FROM profile_identifiers
    WHERE list_contains($email_types::VARCHAR[], id_type) AND contains(id_value, $q)
    UNION ALL
    SELECT l.profile_idx, 'name' FROM customers c JOIN identity_links l ON l.obs_idx = c.identity_idx
    WHERE contains(lower(c.name), $q)
    UNION ALL
    SELECT profile_idx, 'name' FROM profile_attributes WHERE contains(lower(traits ->> '$.name'), $q)
    UNION ALL
    SELECT profile_idx, 'profile_id' FROM profiles WHERE profile_id = $exact
), top AS (
    SELECT p.profile_idx, p.profile_id, p.last_seen, list(DISTINCT h.matched) AS matched
    FROM hits h JOIN profiles p USING (profile_idx)
    GROUP BY ALL ORDER BY p.last_seen DESC NULLS LAST, p.profile_idx LIMIT $limit
)
SELECT t.*,
    coalesce(any_value(a.traits ->> '$.name'), min(c.name)),
    list(DISTINCT i.id_value ORDER BY i.id_value) FILTER (WHERE list_contains($phone_types::VARCHAR[], i.id_type)),
    list(DISTINCT i.id_value ORDER BY i.id_value) FILTER (WHERE list_contains($email_types::VARCHAR[], i.id_type))
FROM top t
LEFT JOIN profile_attributes a USING (profile_idx)
LEFT JOIN profile_identifiers i ON i.profile_idx = t.profile_idx
LEFT JOIN identity_links l ON l.profile_idx = t.profile_idx
LEFT JOIN customers c ON c.identity_idx = l.obs_idx AND c.name IS NOT NULL
GROUP BY ALL ORDER BY t.last_seen DESC NULLS LAST, t.profile_idx
"""


# -- helpers -----------------------------------------------------------------------------------


def _check_limit(field: str, limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise ProfileViewError(field, f"must be between 1 and {MAX_PAGE}")


def _name(source_names: Mapping[int, str], source_id: int | None) -> str | None:
    return source_names.get(source_id) if source_id is not None else None


def _naive_utc(dt: datetime) -> datetime:
    return dt.astimezone(UTC).replace(tzinfo=None) if dt.tzinfo else dt
