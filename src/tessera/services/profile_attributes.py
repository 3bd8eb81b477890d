"""Profile attributes (用户属性): traits merged by policy, and computed basics.

A profile's trait values come from its identify events (``events.traits``, at the event time) and
its customer records (the columns in :data:`CUSTOMER_TRAIT_COLUMNS` and the keys of
``attributes``, at ``coalesce(updated_at, registered_at)``). Top-level keys only; null values are
ignored. Conflicting values never raise: per trait, ``rules.traits`` picks one (合并策略):

* ``latest`` (the default): the value with the greatest time;
* ``first``: the value with the least time;
* ``source_priority``: the value from the source ranked highest in ``source_priority``
  (unknown sources last), the latest among equals;
* ``sum``: the sum of the values that read as a finite number (JSON numbers and numeric strings;
  booleans and the rest are ignored); a whole sum is stored as an integer.

Values without a time lose to values with one; values still tied are decided by the greatest
JSON text, so the result never depends on row order. Basics: first/last seen (events and orders),
channels (source names of events and orders, and ``orders.channel``), event and order counts,
total spend (orders not cancelled or refunded), first and last order time.

:func:`refresh_attributes` writes ``profile_attributes`` in bulk; :func:`compute_one` gives the
same result live for one profile. Both run the one query :func:`_statement` builds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal

import duckdb
import orjson
import sqlglot
from pydantic import BaseModel, ConfigDict, Field
from sqlglot import exp

from tessera.domain.identity import IdentityRules, TraitMerge
from tessera.stores import analytic

#: Columns of ``customers`` that are traits (under the same names).
CUSTOMER_TRAIT_COLUMNS = (
    "name", "gender", "birthday", "phone", "email", "province", "city",
    "member_level", "points", "registered_at", "channel",
)  # fmt: skip
#: Order statuses (compared case-insensitively) that do not count towards the total spend.
EXCLUDED_STATUSES = ("cancelled", "refunded")
#: Whole sums below this (2^53) are stored as JSON integers.
_EXACT_INT = 9_007_199_254_740_992

_COLUMNS = (
    "profile_idx", "traits", "first_seen", "last_seen", "channels", "event_count",
    "order_count", "total_spend", "first_order_at", "last_order_at",
)  # fmt: skip

# Filled in by :func:`_statement`: per scope, :targets (a condition on profile_idx) and :obs (on the
# identity_idx of a row table); :customer_fields (the customer columns as key/value
# pairs), :excluded, :exact_int; and the functions trait_policy(key), source_rank(source_id) and
# source_name(source_id), from the rules and the source names.
_TEMPLATE = sqlglot.parse_one(
    """
    WITH links AS (
        SELECT obs_idx, profile_idx FROM identity_links WHERE :targets
    ), linked AS NOT MATERIALIZED (
        -- Every event (kind 0) and order (1) of the profiles; doc = an identify event's traits.
        -- The type test stays out of WHERE: a filter on identity_idx alone can use an index.
        SELECT l.profile_idx, 0 AS kind, e."timestamp" AS t, e.source_id,
            CAST(NULL AS DECIMAL(18, 2)) AS total, CAST(NULL AS VARCHAR) AS status, CAST(NULL AS VARCHAR) AS channel,
            CASE WHEN e.type = 'identify' THEN e.traits END AS doc
        FROM events AS e JOIN links AS l ON l.obs_idx = e.identity_idx WHERE :obs
        UNION ALL
        SELECT l.profile_idx, 1, o.ordered_at, o.source_id, o.total, o.status, o.channel, NULL
        FROM orders AS o JOIN links AS l ON l.obs_idx = o.identity_idx WHERE :obs
    ), customer AS NOT MATERIALIZED (
        SELECT l.profile_idx, c.*, coalesce(c.updated_at, c.registered_at) AS t
        FROM customers AS c JOIN links AS l ON l.obs_idx = c.identity_idx WHERE :obs
    ), docs AS (
        -- Trait objects: identify events and customers' attributes.
        SELECT profile_idx, doc, t, source_id FROM linked WHERE doc IS NOT NULL
        UNION ALL
        SELECT profile_idx, attributes, t, source_id FROM customer
    ), pairs AS (
        -- (Kept apart: an unnest feeding the lateral json_each would make DuckDB join the docs back.)
        SELECT d.profile_idx, j.key, j.value, j.type, d.t, d.source_id
        FROM docs AS d, json_each(CASE WHEN json_type(d.doc) = 'OBJECT' THEN d.doc END) AS j
        UNION ALL
        SELECT profile_idx, f.key, f.value, json_type(f.value), t, source_id
        FROM (SELECT profile_idx, unnest(:customer_fields) AS f, t, source_id FROM customer AS c)
    ), basics AS (
        SELECT profile_idx,
            count_if(kind = 0) AS event_count,
            count_if(kind = 1) AS order_count,
            min(t) AS first_seen,
            max(t) AS last_seen,
            min(CASE WHEN kind = 1 THEN t END) AS first_order_at,
            max(CASE WHEN kind = 1 THEN t END) AS last_order_at,
            sum(CASE WHEN kind = 1 AND (status IS NULL OR lower(status) NOT IN :excluded) THEN total END) AS spend
        FROM linked GROUP BY profile_idx
    ), channels AS (
        SELECT profile_idx, list_sort(list(name)) AS channels
        FROM (
            SELECT DISTINCT profile_idx, unnest([source_name(source_id), channel]) AS name
            FROM (SELECT DISTINCT profile_idx, source_id, channel FROM linked)
        ) WHERE name IS NOT NULL GROUP BY profile_idx
    ), inputs AS (
        SELECT profile_idx, key, value, type, t, trait_policy(key) AS policy, source_rank(source_id) AS rank
        FROM pairs WHERE type <> 'NULL'
    ), scored AS (
        -- The value with the greatest sort key wins: (source rank, has a time, ±time, JSON text).
        SELECT profile_idx, key, policy,
            struct_pack(
                p := CASE WHEN policy = 'source_priority' THEN -rank ELSE 0 END,
                h := CASE WHEN t IS NULL THEN 0 ELSE 1 END,
                e := coalesce(CASE WHEN policy = 'first' THEN -epoch_us(t) ELSE epoch_us(t) END, 0),
                v := CAST(value AS VARCHAR)
            ) AS sort_key,
            CASE WHEN policy = 'sum' AND type IN ('BIGINT', 'UBIGINT', 'DOUBLE', 'VARCHAR')
                THEN TRY_CAST(json_extract_string(value, '$') AS DOUBLE) END AS num
        FROM inputs
    ), merged AS (
        SELECT profile_idx, key, policy, max(sort_key).v AS pick, sum(CASE WHEN isfinite(num) THEN num END) AS total
        FROM scored GROUP BY profile_idx, key, policy
    ), traits AS (
        SELECT profile_idx, json_group_object(key, value) AS traits
        FROM (
            SELECT profile_idx, key, CASE
                WHEN policy <> 'sum' THEN CAST(pick AS JSON)
                WHEN abs(total) < :exact_int AND total = trunc(total) THEN to_json(CAST(total AS BIGINT))
                WHEN isfinite(total) THEN to_json(total) END AS value
            FROM merged
        ) WHERE value IS NOT NULL GROUP BY profile_idx
    )
    SELECT
        p.profile_idx,
        coalesce(tr.traits, CAST('{}' AS JSON)) AS traits,
        b.first_seen,
        b.last_seen,
        coalesce(ch.channels, CAST([] AS VARCHAR[])) AS channels,
        coalesce(b.event_count, 0) AS event_count,
        coalesce(b.order_count, 0) AS order_count,
        CAST(coalesce(b.spend, 0) AS DECIMAL(18, 2)) AS total_spend,
        b.first_order_at,
        b.last_order_at
    FROM (SELECT profile_idx FROM profiles WHERE :targets) AS p
    LEFT JOIN basics AS b ON b.profile_idx = p.profile_idx
    LEFT JOIN traits AS tr ON tr.profile_idx = p.profile_idx
    LEFT JOIN channels AS ch ON ch.profile_idx = p.profile_idx
    ORDER BY p.profile_idx
    """,
    read="duckdb",
)


class ProfileAttributes(BaseModel):
    """A profile's attributes (用户属性): traits after the merge policies, and computed basics (times in UTC)."""

    model_config = ConfigDict(extra="forbid")

    traits: dict[str, Any] = Field(default_factory=dict)
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    channels: list[str] = Field(default_factory=list)
    event_count: int = 0
    order_count: int = 0
    total_spend: Decimal = Field(Decimal("0.00"), description="sum of order totals (a decimal string in JSON)")
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None


# -- the query ---------------------------------------------------------------------------------
#: (default policy, per-trait policies, source priority) and (source id, name) pairs: the cache keys.
_Policies = tuple[TraitMerge, tuple[tuple[str, TraitMerge], ...], tuple[str, ...]]
_Sources = tuple[tuple[int, str], ...]
_Scope = Literal["all", "listed", "one"]


def _param(name: str) -> exp.Expr:
    return exp.Parameter(this=exp.var(name))


def _case(subject: exp.Expr, cases: Mapping[Any, exp.Expr], default: exp.Expr) -> exp.Expr:
    """``CASE subject WHEN k THEN v … ELSE default END`` (just ``default`` when there are no cases)."""
    if not cases:
        return default
    ifs = [exp.If(this=_literal(k), true=v) for k, v in cases.items()]
    return exp.Case(this=subject, ifs=ifs, default=default)


def _literal(value: int | str) -> exp.Expr:
    return exp.Literal.number(value) if isinstance(value, int) else exp.Literal.string(value)


def _policy(policies: _Policies, key: exp.Expr) -> exp.Expr:
    default, per_trait, _ = policies
    per: dict[str, exp.Expr] = {k: exp.Literal.string(v) for k, v in per_trait if v != default}
    return _case(key, per, exp.Literal.string(default))


def _rank(policies: _Policies, sources: _Sources, source_id: exp.Expr) -> exp.Expr:
    priority = policies[2]
    ranks = {sid: exp.Literal.number(priority.index(name)) for sid, name in sources if name in priority}
    return _case(source_id, ranks, _literal(len(priority)))


def _source_name(sources: _Sources, source_id: exp.Expr) -> exp.Expr:
    names: dict[int, exp.Expr] = {sid: exp.Literal.string(name) for sid, name in sources}
    return _case(source_id, names, exp.cast(exp.null(), "VARCHAR"))


def _customer_fields() -> exp.Expr:
    """``[{key: 'name', value: to_json(c.name)}, …]``: the customer columns as trait key/value pairs."""

    def field(col: str) -> exp.Expr:
        return exp.Struct(
            expressions=[
                exp.PropertyEQ(this=exp.to_identifier("key"), expression=exp.Literal.string(col)),
                exp.PropertyEQ(this=exp.to_identifier("value"), expression=exp.func("to_json", exp.column(col, "c"))),
            ]
        )

    return exp.Array(expressions=[field(col) for col in CUSTOMER_TRAIT_COLUMNS])


_LISTED = exp.column("profile_idx").isin(
    query=exp.select(exp.Unnest(expressions=[exp.cast(_param("ids"), "INTEGER[]")]))
)
#: Per scope: which profiles (a condition on ``profile_idx``) and which rows (on ``identity_idx``).
_SCOPES: dict[_Scope, tuple[exp.Expr, exp.Expr]] = {
    "all": (exp.true(), exp.true()),
    "listed": (_LISTED, exp.true()),
    # The profile's observations are read first: the row tables are filtered by them alone.
    "one": (
        exp.column("profile_idx").eq(_param("profile_idx")),
        exp.In(
            this=exp.column("identity_idx"),
            query=exp.select(exp.Unnest(expressions=[_param("obs")])).subquery(),
        ),
    ),
}


@lru_cache(maxsize=64)
def _statement(scope: _Scope, policies: _Policies, sources: _Sources) -> str:
    """The attributes query of ``one`` profile ($profile_idx, $obs), or the insert of ``all`` or the
    ``listed`` ($ids) profiles ($now)."""
    targets, obs = _SCOPES[scope]
    values: dict[str, exp.Expr] = {
        "targets": targets,
        "obs": obs,
        "customer_fields": _customer_fields(),
        "excluded": exp.Tuple(expressions=[exp.Literal.string(s) for s in EXCLUDED_STATUSES]),
        "exact_int": exp.Literal.number(_EXACT_INT),
    }
    functions: dict[str, Callable[[exp.Expr], exp.Expr]] = {
        "trait_policy": lambda key: _policy(policies, key),
        "source_rank": lambda source_id: _rank(policies, sources, source_id),
        "source_name": lambda source_id: _source_name(sources, source_id),
    }

    def fill(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Placeholder) and node.name in values:
            return values[node.name].copy()
        if isinstance(node, exp.Anonymous) and node.name in functions:
            return functions[node.name](node.expressions[0].copy())
        return node

    query = _TEMPLATE.transform(fill)
    assert isinstance(query, exp.Query)
    if scope == "one":
        return query.sql("duckdb")
    rows = exp.select(*_COLUMNS, exp.cast(_param("now"), "TIMESTAMP")).from_(query.subquery("a"))
    return exp.insert(rows, "profile_attributes", columns=[*_COLUMNS, "updated_at"]).sql("duckdb")


def _sql(scope: _Scope, rules: IdentityRules, source_names: Mapping[int, str]) -> str:
    t = rules.traits
    policies: _Policies = (t.default, tuple(sorted(t.per_trait.items())), tuple(t.source_priority))
    return _statement(scope, policies, tuple(sorted((int(k), v) for k, v in source_names.items())))


# -- reading and writing -----------------------------------------------------------------------
def _utc(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def _from_row(row: Sequence[Any]) -> ProfileAttributes:
    d = dict(zip(_COLUMNS, row, strict=True))
    return ProfileAttributes(
        traits=orjson.loads(d["traits"]) if d["traits"] else {},
        first_seen=_utc(d["first_seen"]),
        last_seen=_utc(d["last_seen"]),
        channels=list(d["channels"] or []),
        event_count=d["event_count"] or 0,
        order_count=d["order_count"] or 0,
        total_spend=d["total_spend"] if d["total_spend"] is not None else Decimal("0.00"),
        first_order_at=_utc(d["first_order_at"]),
        last_order_at=_utc(d["last_order_at"]),
    )


def compute_one(
    cur: duckdb.DuckDBPyConnection, *, profile_idx: int, rules: IdentityRules, source_names: Mapping[int, str]
) -> ProfileAttributes:
    """The attributes of one profile, computed live (the 360° view); raises LookupError when it does not exist.

    Reads the profile's observations first, then only the rows whose ``identity_idx`` is one of them.
    """
    rows = cur.execute(
        "SELECT l.obs_idx FROM profiles AS p LEFT JOIN identity_links AS l ON l.profile_idx = p.profile_idx "
        "WHERE p.profile_idx = $profile_idx",
        {"profile_idx": int(profile_idx)},
    ).fetchall()
    if not rows:
        raise LookupError(f"no profile {profile_idx}")
    obs = sorted({int(r[0]) for r in rows if r[0] is not None})
    result = cur.execute(_sql("one", rules, source_names), {"profile_idx": int(profile_idx), "obs": obs}).fetchall()
    if not result:  # deleted between the two statements
        raise LookupError(f"no profile {profile_idx}")
    return _from_row(result[0])


def read_attributes(cur: duckdb.DuckDBPyConnection, *, profile_idx: int) -> ProfileAttributes | None:
    """The stored ``profile_attributes`` row of a profile (None when there is none)."""
    rows = cur.execute(
        exp.select(*_COLUMNS)
        .from_("profile_attributes")
        .where(exp.column("profile_idx").eq(_param("profile_idx")))
        .sql("duckdb"),
        {"profile_idx": int(profile_idx)},
    ).fetchall()
    return _from_row(rows[0]) if rows else None


def refresh_attributes(
    cur: duckdb.DuckDBPyConnection,
    *,
    rules: IdentityRules,
    source_names: Mapping[int, str],
    profile_idxs: Sequence[int] | None = None,
    now: datetime,
) -> int:
    """Recompute ``profile_attributes`` of ``profile_idxs`` (None = every profile); returns rows written.

    Old rows of those profiles are replaced; a listed profile that no longer exists loses its row
    (a full refresh drops the rows of every vanished profile). Runs in the caller's transaction.
    """
    stamp = now.astimezone(UTC).replace(tzinfo=None) if now.tzinfo else now
    if profile_idxs is None:
        cur.execute("DELETE FROM profile_attributes").fetchall()
        written = cur.execute(_sql("all", rules, source_names), {"now": stamp}).fetchall()
    else:
        ids = {"ids": sorted({int(i) for i in profile_idxs})}
        delete = exp.delete("profile_attributes", where=_LISTED).sql("duckdb")
        cur.execute(delete, ids).fetchall()
        written = cur.execute(_sql("listed", rules, source_names), {"now": stamp, **ids}).fetchall()
    analytic.changed(cur, "profile_attributes")
    return int(written[0][0]) if written else 0
