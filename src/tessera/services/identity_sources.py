"""Where identifiers come from: SQLGlot queries that list the candidate identifiers of rows.

Each query yields :data:`CANDIDATE_COLUMNS` — one row per (row, identifier type, raw value) —
for :func:`tessera.services.identity.link`. Events give ``userId``, ``anonymousId``,
``context.device.id``, ``alias``'s ``previousId`` (as an anonymous id), traits and
``context.traits`` (the keys each identifier type lists) and ``context.externalIds``; imported
customers and orders give their identifier columns.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlglot import exp

from tessera.domain.identity import IdentityRules

CANDIDATE_COLUMNS = ("row_key", "id_type", "raw", "seen_at", "source_id", "origin")

#: Entity columns that carry identifiers: column → identifier type.
CUSTOMER_ID_COLUMNS = {
    "customer_id": "user_id", "member_id": "member_id", "phone": "phone", "email": "email",
    "wechat_unionid": "wechat_unionid", "wechat_openid": "wechat_openid", "tmall_id": "tmall_id",
    "jd_id": "jd_id", "douyin_id": "douyin_id",
}  # fmt: skip
ORDER_ID_COLUMNS = {
    "customer_id": "user_id", "member_id": "member_id", "phone": "phone", "email": "email",
    "wechat_unionid": "wechat_unionid", "tmall_id": "tmall_id", "jd_id": "jd_id",
}  # fmt: skip
_EXTERNAL_IDS_TYPE = '[{"id": "VARCHAR", "type": "VARCHAR"}]'


def _lit(value: str) -> exp.Expr:
    return exp.Literal.string(value)


def _col(name: str, table: str | None = None) -> exp.Column:
    return exp.column(name, table=table, quoted=True)


def _select(
    relation: str, *, row_key: exp.Expr, id_type: exp.Expr, raw: exp.Expr, seen_at: exp.Expr,
    source_id: exp.Expr, origin: exp.Expr, where: exp.Expr | None = None,
) -> exp.Select:  # fmt: skip
    q = exp.select(
        exp.cast(row_key, "BIGINT").as_("row_key"),
        id_type.as_("id_type"),
        exp.cast(raw, "VARCHAR").as_("raw"),
        exp.cast(seen_at, "TIMESTAMP").as_("seen_at"),
        exp.cast(source_id, "INTEGER").as_("source_id"),
        exp.cast(origin, "VARCHAR").as_("origin"),
    ).from_(exp.to_table(relation))
    return q.where(where) if where is not None else q


def _union(parts: list[exp.Select]) -> exp.Query:
    query: exp.Query = parts[0]
    for part in parts[1:]:
        query = exp.union(query, part, distinct=False)
    return query


def _trait_paths(rules: IdentityRules, prefix: str) -> tuple[list[str], list[str]]:
    types, paths = [], []
    for t in rules.types:
        for key in t.trait_keys:
            types.append(t.name)
            paths.append(f"{prefix}.{key}")
    return types, paths


def event_candidates(
    relation: str,
    rules: IdentityRules,
    *,
    present: Collection[str],
    row_key: str = "_row",
    source_id: exp.Expr | None = None,
) -> exp.Query:
    """Candidate identifiers of event-shaped rows in ``relation`` (columns named as in ``events``).

    ``present`` names the columns the relation has; ``source_id`` overrides its ``source_id``.
    """
    key = _col(row_key)
    seen = _col("timestamp")
    source = source_id if source_id is not None else _col("source_id")
    origin = _col("message_id") if "message_id" in present else exp.null()
    common = {"row_key": key, "seen_at": seen, "source_id": source, "origin": origin}
    parts: list[exp.Select] = []
    for column, id_type in (("user_id", "user_id"), ("anonymous_id", "anonymous_id"), ("device_id", "device_id"),
                            ("previous_id", "anonymous_id")):  # fmt: skip
        if column in present:
            parts.append(_select(relation, id_type=_lit(id_type), raw=_col(column),
                                 where=_col(column).is_(exp.null()).not_(), **common))  # fmt: skip
    types, paths = _trait_paths(rules, "$")
    if types and "traits" in present:
        parts.append(_zip_paths(relation, "traits", types, paths, common))
    if "context" in present:
        ctx = _col("context")
        if types:
            ctx_types, ctx_paths = _trait_paths(rules, "$.traits")
            has_traits = exp.Like(this=ctx, expression=_lit('%"traits"%'))
            parts.append(_zip_paths(relation, "context", ctx_types, ctx_paths, common, where=has_traits))
        external = exp.Unnest(
            expressions=[
                exp.func(
                    "from_json",
                    exp.func("json_extract", ctx, _lit("$.externalIds")),
                    _lit(_EXTERNAL_IDS_TYPE),
                )
            ]
        )
        inner = (
            exp.select(key.as_("k"), seen.as_("s"), source.as_("src"), origin.as_("o"), external.as_("x"))
            .from_(exp.to_table(relation))
            .where(exp.Like(this=ctx, expression=_lit('%"externalIds"%')))
        )
        x = exp.column("x")
        parts.append(
            exp.select(
                exp.cast(exp.column("k"), "BIGINT").as_("row_key"),
                exp.func("lower", exp.func("trim", exp.Dot(this=x, expression=exp.to_identifier("type")))).as_(
                    "id_type"
                ),
                exp.cast(exp.Dot(this=x, expression=exp.to_identifier("id")), "VARCHAR").as_("raw"),
                exp.cast(exp.column("s"), "TIMESTAMP").as_("seen_at"),
                exp.cast(exp.column("src"), "INTEGER").as_("source_id"),
                exp.cast(exp.column("o"), "VARCHAR").as_("origin"),
            )
            .from_(inner.subquery("_ext"))
            .where(exp.Dot(this=x, expression=exp.to_identifier("type")).is_(exp.null()).not_())
        )
    if not parts:
        raise ValueError("events need a user_id or an anonymous_id column")
    return _union(parts)


def _zip_paths(
    relation: str,
    column: str,
    types: list[str],
    paths: list[str],
    common: dict[str, exp.Expr],
    where: exp.Expr | None = None,
) -> exp.Select:
    """One row per (row, path) with a value: a single JSON parse per row extracts every path."""
    values = exp.func("json_extract_string", _col(column), exp.Array(expressions=[_lit(p) for p in paths]))
    inner = (
        exp.select(
            common["row_key"].as_("k"),
            common["seen_at"].as_("s"),
            common["source_id"].as_("src"),
            common["origin"].as_("o"),
            exp.Unnest(expressions=[exp.Array(expressions=[_lit(t) for t in types])]).as_("t"),
            exp.Unnest(expressions=[values]).as_("v"),
        )
        .from_(exp.to_table(relation))
        .where(_col(column).is_(exp.null()).not_())
    )
    if where is not None:
        inner = inner.where(where, append=True)
    return (
        exp.select(
            exp.cast(exp.column("k"), "BIGINT").as_("row_key"),
            exp.column("t").as_("id_type"),
            exp.cast(exp.column("v"), "VARCHAR").as_("raw"),
            exp.cast(exp.column("s"), "TIMESTAMP").as_("seen_at"),
            exp.cast(exp.column("src"), "INTEGER").as_("source_id"),
            exp.cast(exp.column("o"), "VARCHAR").as_("origin"),
        )
        .from_(inner.subquery("_zip"))
        .where(exp.column("v").is_(exp.null()).not_())
    )


def entity_candidates(
    relation: str,
    *,
    columns: dict[str, str],
    present: Collection[str],
    row_key: exp.Expr,
    seen_at: exp.Expr,
    source_id: exp.Expr,
    origin: exp.Expr,
) -> exp.Query:
    """Candidate identifiers of imported customers / orders rows: one per identifier column present."""
    common = {"row_key": row_key, "seen_at": seen_at, "source_id": source_id, "origin": origin}
    parts = [
        _select(relation, id_type=_lit(id_type), raw=_col(column), where=_col(column).is_(exp.null()).not_(), **common)
        for column, id_type in columns.items()
        if column in present
    ]
    if not parts:
        raise ValueError("rows carry no identifier column")
    return _union(parts)
