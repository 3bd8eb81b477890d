"""Typing every field of an import in one vectorised DuckDB query, built as a SQLGlot tree.

Pure: nothing here touches a database. :func:`build_parse` turns a :class:`ColumnPlan` and the
raw column types into a SELECT over the raw relation (``_imp_raw``) whose result has one column
per field (typed as the target table wants it), a few ``"p.<field>"`` flags ("the file had a
value here") and ``_bad``; and a list of :class:`Check` — the conditions that reject a row, with
the reason each one gives.

File column names and mapping defaults are user values: columns enter only as quoted identifiers
(``exp.column(name, quoted=True)``), defaults and JSON keys only as literals SQLGlot quotes. The
parse templates below are constant SQL with a placeholder ``__v`` that is replaced in the tree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cache
from typing import Any

from sqlglot import exp, parse_one

from tessera.importing.kinds import TYPE_NOUNS
from tessera.importing.mapping import ColumnPlan

#: The row number (0-based position of the row in the file): ``rowid`` of ``_imp_parsed``, which is
#: created in file order by projections only (no window, no join), named so where it is selected.
ROW = "_tessera_row"
#: The relation the reader leaves behind.
RAW = "_imp_raw"

_TS_FORMATS = (
    "['%Y年%m月%d日 %H:%M:%S', '%Y年%m月%d日 %H:%M', '%Y年%m月%d日', '%Y.%m.%d %H:%M:%S', '%Y.%m.%d', "
    "'%Y%m%d %H%M%S', '%Y%m%d%H%M%S', '%Y%m%d']"
)
# Kept apart from the formats above: in one list with them, an offset parsed on one row leaks into the
# next rows that match a format without one (seen with DuckDB 1.4/2.0), and naive results would be UTC.
_TS_OFFSET_FORMATS = "['%Y-%m-%d %H:%M:%S %z', '%Y/%m/%d %H:%M:%S %z']"
_DATE_FORMATS = "['%Y年%m月%d日', '%Y.%m.%d', '%Y%m%d', '%Y年%m月']"

#: Constant SQL (DuckDB dialect); ``__v`` is the value being parsed.
_TEMPLATES = {
    # text: trimmed, empty → NULL
    "text": "CASE WHEN STARTS_WITH(__v, ' ') OR ENDS_WITH(__v, ' ') THEN NULLIF(TRIM(__v), '') ELSE NULLIF(__v, '') END",
    # ISO 8601 (any offset), 'YYYY-MM-DD HH:MM:SS', 'YYYY/MM/DD', Chinese dates, epoch s / ms;
    # a time without an offset is in the session time zone (the import's --timezone, UTC by default).
    "timestamp": (
        "COALESCE(TRY_CAST(__v AS TIMESTAMPTZ), "
        f"CAST(TRY_STRPTIME(__v, {_TS_FORMATS}) AS TIMESTAMPTZ), TRY_STRPTIME(__v, {_TS_OFFSET_FORMATS}), "
        r"CASE WHEN REGEXP_FULL_MATCH(__v, '\d{9,11}(\.\d+)?') THEN TO_TIMESTAMP(CAST(__v AS DOUBLE)) "
        r"WHEN REGEXP_FULL_MATCH(__v, '\d{12,14}') THEN TO_TIMESTAMP(CAST(__v AS DOUBLE) / 1000) END"
        ") AT TIME ZONE 'UTC'"
    ),
    # In UTC, a time written without an offset casts straight to TIMESTAMP (4x cheaper than TIMESTAMPTZ;
    # but that cast would drop an offset silently, so only text ending in a digit with no +/- after the date).
    "timestamp_utc": (
        "COALESCE(CASE WHEN RIGHT(__v, 1) BETWEEN '0' AND '9' AND NOT CONTAINS(SUBSTR(__v, 11), '+') "
        "AND NOT CONTAINS(SUBSTR(__v, 11), '-') THEN TRY_CAST(__v AS TIMESTAMP) END, __ts)"
    ),
    "epoch": (
        "CASE WHEN ABS(__v) >= 1e17 THEN TO_TIMESTAMP(__v / 1e9) WHEN ABS(__v) >= 1e14 THEN TO_TIMESTAMP(__v / 1e6) "
        "WHEN ABS(__v) >= 1e11 THEN TO_TIMESTAMP(__v / 1e3) ELSE TO_TIMESTAMP(__v) END AT TIME ZONE 'UTC'"
    ),
    "local_timestamp": "CAST(__v AS TIMESTAMPTZ) AT TIME ZONE 'UTC'",
    "utc_timestamp": "__v AT TIME ZONE 'UTC'",
    "date": (
        f"COALESCE(TRY_CAST(__v AS DATE), CAST(TRY_STRPTIME(__v, {_DATE_FORMATS}) AS DATE), "
        "CAST(TRY_CAST(__v AS TIMESTAMP) AS DATE))"
    ),
    # money: '1,234.50', '¥1 234', '￥99元', 'RMB 12' → DECIMAL(18,2)
    "money": (
        "COALESCE(TRY_CAST(__v AS DECIMAL(18, 2)), "
        r"TRY_CAST(REGEXP_REPLACE(__v, '[¥￥$,，\s]|元|RMB|CNY', '', 'g') AS DECIMAL(18, 2)))"
    ),
    "number_money": "TRY_CAST(__v AS DECIMAL(18, 2))",
    # whole numbers: '3', '1,200', '3.0' (but not '3.5')
    "int": r"CASE WHEN REGEXP_FULL_MATCH(__v, '[+-]?[0-9][0-9,]*(\.0*)?') THEN TRY_CAST(REPLACE(__v, ',', '') AS INTEGER) END",
    "number_int": "CASE WHEN __v = TRUNC(__v) THEN TRY_CAST(__v AS INTEGER) END",
    "rating": "CASE WHEN __v BETWEEN 1 AND 5 THEN CAST(__v AS TINYINT) END",
    "json": "CASE WHEN JSON_TYPE(TRY_CAST(__v AS JSON)) = 'OBJECT' THEN TRY_CAST(__v AS JSON) END",
    "json_value": "CASE WHEN JSON_TYPE(__v) = 'OBJECT' THEN __v END",
    "json_text": "NULLIF(TRIM(__v ->> '$'), '')",
    "message_type": (
        "CASE WHEN LOWER(__v) IN ('track', 'identify', 'page', 'screen', 'group', 'alias') THEN LOWER(__v) END"
    ),
    # a JSON object without null members, NULL when empty (RFC 7386 merge drops nulls)
    "compact_json": "NULLIF(JSON_MERGE_PATCH('{}', __v), '{}')",
    "quoted_value": "COALESCE('''' || LEFT(CAST(__v AS VARCHAR), 80) || '''', 'an empty value')",
}


@cache
def _parsed_template(name: str) -> exp.Expr:
    return parse_one(_TEMPLATES[name], read="duckdb")


def apply(template: str, value: exp.Expr) -> exp.Expr:
    """The template with ``__v`` replaced by ``value`` (a fresh tree each call)."""

    def swap(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and node.name == "__v" and not node.table:
            return value.copy()
        return node

    return _parsed_template(template).copy().transform(swap, copy=False)


def _put(placeholder: str, value: exp.Expr) -> Callable[[exp.Expr], exp.Expr]:
    def swap(node: exp.Expr) -> exp.Expr:
        if isinstance(node, exp.Column) and node.name == placeholder and not node.table:
            return value.copy()
        return node

    return swap


def col(name: str) -> exp.Column:
    return exp.column(name, quoted=True)


def lit(value: Any) -> exp.Expr:
    if value is None:
        return exp.null()
    if isinstance(value, bool):
        return exp.Boolean(this=value)
    if isinstance(value, int | float):
        return exp.Literal.number(value)
    return exp.Literal.string(str(value))


def cast(value: exp.Expr, to: str) -> exp.Expr:
    return exp.cast(value, exp.DataType.build(to, dialect="duckdb"))


def raw_class(duckdb_type: str) -> str:
    """Group a DuckDB column type: varchar, json, integer, float, decimal, timestamp, timestamptz, date,
    nested or other."""
    t = duckdb_type.upper()
    if t == "VARCHAR":
        return "varchar"
    if t == "JSON":
        return "json"
    if t in ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT"):
        return "integer"
    if t in ("FLOAT", "DOUBLE", "REAL"):
        return "float"
    if t.startswith("DECIMAL"):
        return "decimal"
    if t in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ"):
        return "timestamptz"
    if t.startswith("TIMESTAMP"):
        return "timestamp"
    if t == "DATE":
        return "date"
    if t.startswith(("STRUCT", "MAP")) or t.endswith("]"):
        return "nested"
    return "other"


def text_of(column: exp.Expr, rclass: str) -> exp.Expr:
    """The column as trimmed text, NULL when empty."""
    if rclass == "varchar":
        return apply("text", column)
    if rclass == "json":
        return apply("json_text", column)
    if rclass == "nested":
        return cast(exp.func("to_json", column), "VARCHAR")
    return apply("text", cast(column, "VARCHAR"))


def value_class(rclass: str) -> str:
    """The class of :func:`value_of`'s result: ``text`` for text-like columns, else the raw class."""
    return "text" if rclass in ("varchar", "json", "other") else rclass


def value_of(column: exp.Expr, rclass: str) -> exp.Expr:
    """What :func:`parse_field` starts from: trimmed text for text-like columns, else the typed value."""
    return text_of(column, rclass) if value_class(rclass) == "text" else column


def parse_field(ftype: str, value: exp.Expr, vclass: str, *, local_tz: bool) -> exp.Expr:
    """``value`` (of class ``vclass``, see :func:`value_class`) parsed as ``ftype``; NULL where it
    cannot be parsed."""
    numeric = vclass in ("integer", "float", "decimal")
    text = value if vclass == "text" else text_of(value, vclass)
    if ftype == "text":
        return text
    if ftype == "money":
        return apply("number_money", value) if numeric else apply("money", text)
    if ftype in ("int", "rating"):
        if vclass == "integer":
            number = cast(value, "BIGINT")
        elif numeric:
            number = apply("number_int", value)
        else:
            number = apply("int", text)
        return apply("rating", number) if ftype == "rating" else cast(number, "INTEGER")
    if ftype == "timestamp":
        if vclass == "timestamptz":
            return apply("utc_timestamp", value)
        if vclass in ("timestamp", "date"):
            stamp = cast(value, "TIMESTAMP")
            return apply("local_timestamp", stamp) if local_tz else stamp
        if numeric:
            return apply("epoch", value)
        general = apply("timestamp", text)
        return general if local_tz else apply("timestamp_utc", text).transform(_put("__ts", general), copy=False)
    if ftype == "date":
        if vclass == "date":
            return value
        if vclass in ("timestamp", "timestamptz"):
            return cast(value, "DATE")
        return apply("date", text)
    if ftype == "json":
        if vclass == "nested":
            return cast(exp.func("to_json", value), "JSON")
        return apply("json", text)
    if ftype == "message_type":
        return apply("message_type", text)
    raise ValueError(f"unknown field type {ftype!r}")


def display_of(column: exp.Expr, rclass: str) -> exp.Expr:
    """A raw value as the user wrote it (a JSON string without its quotes)."""
    if rclass == "json":
        return exp.JSONExtractScalar(this=column, expression=lit("$"))
    return cast(column, "VARCHAR")


def json_value_of(column: exp.Expr, rclass: str) -> exp.Expr:
    """A file column as a member of a JSON object (``attributes`` / ``properties``)."""
    if rclass in ("varchar", "other"):
        return text_of(column, rclass)
    return column


@dataclass(frozen=True)
class Check:
    """One way a row is rejected: ``condition`` over the parsed table, ``reason`` over the raw row."""

    column: str
    field: str
    condition: exp.Expr
    reason: exp.Expr


@dataclass
class ParsePlan:
    select: exp.Select
    checks: list[Check]
    #: target fields present in the parsed table (what an import writes)
    fields: list[str]
    #: the kind's JSON column when the import fills it
    extras: str | None
    #: (field, partition): a field numbered 1, 2 … per partition in file order when stored (order lines)
    numbered: tuple[str, str] | None = None


class _Stages:
    """Projections stacked as nested sub-selects; each names its columns and carries others on."""

    def __init__(self, first: exp.Select, names: list[str]) -> None:
        self.query = first
        self.names = list(names)

    def add(self, columns: dict[str, exp.Expr], *, drop: tuple[str, ...] = ()) -> None:
        keep = [n for n in self.names if n not in columns and n not in drop]
        projections = [col(n) for n in keep] + [
            e.as_(exp.to_identifier(n, quoted=True), copy=False) for n, e in columns.items()
        ]
        self.query = exp.select(*projections, copy=False).from_(self.query.subquery("_s", copy=False), copy=False)
        self.names = keep + list(columns)


def _reason_cannot_parse(raw: exp.Expr, ftype: str) -> exp.Expr:
    return exp.func(
        "concat", lit("cannot parse "), apply("quoted_value", raw), lit(f" as {TYPE_NOUNS[ftype]}")
    )  # fmt: skip


def build_parse(
    plan: ColumnPlan,
    raw_types: dict[str, str],
    *,
    local_tz: bool = False,
    now_literal: exp.Expr | None = None,
) -> ParsePlan:
    """The query that types the raw relation for ``plan.kind``, and the checks that reject rows."""
    kind = plan.kind
    classes = {c: raw_class(t) for c, t in raw_types.items()}
    first: dict[str, exp.Expr] = {}
    checks: list[Check] = []
    fields: list[str] = []
    defaulted: dict[str, exp.Expr] = {}

    def label(name: str) -> str:
        source = plan.fields.get(name)
        return f"{source} ({name})" if source and source != name else (source or name)

    # Stage 1: text fields trimmed, the values of the others made ready to parse (trimmed once).
    # Stage 2: those parsed, with a flag where a value was present (so "cannot parse" can be told
    # from "empty").
    parse: dict[str, exp.Expr] = {}
    for f in kind.fields:
        source = plan.fields.get(f.name)
        default = plan.defaults.get(f.name)
        if source is None and default is None:
            continue
        fields.append(f.name)
        parsed_default = None
        if default is not None:
            parsed_default = parse_field(f.type, lit(str(default).strip()), "text", local_tz=local_tz)
        if source is None:
            assert parsed_default is not None
            first[f.name] = parsed_default
        else:
            rclass = classes[source]
            if f.type == "text":
                first[f.name] = text_of(col(source), rclass)
                other = plan.secondary.get(f.name)
                if other is not None:
                    first[f.name] = exp.func("coalesce", first[f.name], text_of(col(other), classes[other]))
            else:
                first[f"t.{f.name}"] = value_of(col(source), rclass)
                parse[f.name] = parse_field(f.type, col(f"t.{f.name}"), value_class(rclass), local_tz=local_tz)
                parse[f"p.{f.name}"] = col(f"t.{f.name}").is_(exp.null()).not_()
                before_default = f"v.{f.name}" if parsed_default is not None else f.name
                unparsed: exp.Expr = col(before_default).is_(exp.null())
                if f.type == "json":  # decided before later stages merge extras in and empty '{}' to NULL
                    parse[f"ok.{f.name}"] = parse[f.name].copy().is_(exp.null()).not_()
                    unparsed = exp.not_(col(f"ok.{f.name}"))
                checks.append(
                    Check(
                        column=label(f.name),
                        field=f.name,
                        condition=exp.and_(col(f"p.{f.name}"), unparsed),
                        reason=_reason_cannot_parse(display_of(col(source), rclass), f.type),
                    )
                )
            if parsed_default is not None:
                defaulted[f.name] = parsed_default
        must = f.required or (f.name in kind.generated and source is not None and f.name != "message_id")
        if must:
            present = col(f"p.{f.name}") if f"p.{f.name}" in parse else exp.false()
            checks.append(
                Check(
                    column=label(f.name),
                    field=f.name,
                    condition=exp.and_(exp.not_(present), col(f.name).is_(exp.null())),
                    reason=lit("a value is required here"),
                )
            )

    extras_pairs: list[exp.Expr] = []
    for i, (key, source) in enumerate(plan.extras):
        first[f"x.{i}"] = json_value_of(col(source), classes[source])
        extras_pairs += [lit(key), col(f"x.{i}")]
    carried = tuple(f"x.{i}" for i in range(len(plan.extras)))

    stages = _Stages(exp.select(*(e.as_(exp.to_identifier(n, quoted=True)) for n, e in first.items())).from_(RAW),
                     list(first))  # fmt: skip
    if parse:
        stages.add(parse, drop=tuple(n for n in first if n.startswith("t.")))
    if defaulted:  # a default fills empty cells; the value before it still decides "cannot parse"
        with_defaults: dict[str, exp.Expr] = {}
        for name, value in defaulted.items():
            with_defaults[f"v.{name}"] = col(name)
            with_defaults[name] = exp.func("coalesce", col(name), value)
        stages.add(with_defaults)
    extras_col: str | None = None
    numbered: tuple[str, str] | None = None
    if kind.name == "events":
        _event_stages(stages, plan, fields, checks, extras_pairs, carried, now_literal or exp.func("now"))
        extras_col = "properties"
    else:
        if extras_pairs or kind.extras in fields:
            base = col(kind.extras) if kind.extras in fields else None
            extra = exp.func("json_object", *extras_pairs) if extras_pairs else None
            stages.add({kind.extras: _merge_json(base, extra)}, drop=carried)
            if kind.extras not in fields:
                fields.append(kind.extras)
            extras_col = kind.extras
        if "line_no" in kind.generated and "line_no" not in fields:
            numbered = ("line_no", "order_id")  # numbered when stored: a window here would reorder the rows
        if kind.name == "order-items" and "amount" not in fields and {"unit_price", "quantity"} <= set(fields):
            stages.add({"amount": cast(col("unit_price") * col("quantity"), "DECIMAL(18, 2)")})
            fields.append("amount")

    bad = exp.or_(*(c.condition for c in checks)) if checks else exp.false()
    stages.add({"_bad": exp.func("coalesce", bad, exp.false())})
    return ParsePlan(select=stages.query, checks=checks, fields=fields, extras=extras_col, numbered=numbered)


def _merge_json(base: exp.Expr | None, extra: exp.Expr | None) -> exp.Expr:
    """``base`` (a JSON column of the file) with ``extra`` merged in; null members dropped."""
    if base is not None and extra is not None:
        return apply("compact_json", exp.func("json_merge_patch", exp.func("coalesce", base, lit("{}")), extra))
    merged = base if base is not None else extra
    assert merged is not None
    return apply("compact_json", merged)


_PROPERTY_FIELDS = ("revenue", "currency", "order_id", "product_id", "category")
_CONTEXT_FIELDS = {
    "channel": "$.channel",
    "ip": "$.ip",
    "device_id": "$.device.id",
    "utm_source": "$.campaign.source",
    "utm_medium": "$.campaign.medium",
    "utm_campaign": "$.campaign.name",
    "utm_term": "$.campaign.term",
    "utm_content": "$.campaign.content",
}


def _event_stages(
    stages: _Stages,
    plan: ColumnPlan,
    fields: list[str],
    checks: list[Check],
    extras_pairs: list[exp.Expr],
    carried: tuple[str, ...],
    now: exp.Expr,
) -> None:
    """Events: typed copies of common properties, properties JSON, the type, a message id."""
    have = set(fields)

    def from_json(doc: str, path: str) -> exp.Expr:
        return apply("text", exp.JSONExtractScalar(this=col(doc), expression=lit(path)))

    # Typed copies: a column wins, else the member of properties / context (as the collection API reads).
    derived: dict[str, exp.Expr] = {}
    for name in _PROPERTY_FIELDS:
        fallback: exp.Expr | None = None
        if "properties" in have:
            text = from_json("properties", f"$.{name}")
            fallback = apply("money", text) if name == "revenue" else text
        if name in have and fallback is not None:
            derived[name] = exp.func("coalesce", col(name), fallback)
        elif fallback is not None:
            derived[name] = fallback
    if "properties" in have and "revenue" in derived and "event" in have:
        total = apply("money", from_json("properties", "$.total"))
        order_completed = exp.If(this=col("event").eq(lit("Order Completed")), true=total)
        derived["revenue"] = exp.func("coalesce", derived["revenue"], exp.Case(ifs=[order_completed]))
    if "context" in have:
        for name, path in _CONTEXT_FIELDS.items():
            fallback = from_json("context", path)
            derived[name] = exp.func("coalesce", col(name), fallback) if name in have else fallback
    # Properties: the file's properties, leftover columns, and typed fields that came from columns.
    pairs = list(extras_pairs)
    for name in _PROPERTY_FIELDS:
        if name in have:
            pairs += [lit(name), col(name)]
    extra = exp.func("json_object", *pairs) if pairs else None
    if "properties" in have or extra is not None:
        derived["properties"] = _merge_json(col("properties") if "properties" in have else None, extra)
    stages.add(derived, drop=carried)
    have |= set(derived)

    # Type: a track when only an event name is given; names are cut to 200 characters.
    final: dict[str, exp.Expr] = {}
    if "event" in have:
        final["event"] = exp.func("left", col("event"), lit(200))
    event_col = col("event") if "event" in have else exp.null()
    implied = exp.Case(ifs=[exp.If(this=event_col.is_(exp.null()).not_(), true=lit("track"))])
    final["type"] = exp.func("coalesce", col("type"), implied) if "type" in have else implied
    if "type" in have:  # "cannot parse 'click' as a message type" looks at the type before it was implied
        final["v.type"] = col("type")
        for i, c in enumerate(checks):
            if c.field == "type":
                checks[i] = replace(c, condition=c.condition.transform(_put("type", col("v.type"))))
    final["original_timestamp"] = (
        exp.func("coalesce", col("original_timestamp"), col("timestamp"))
        if "original_timestamp" in have
        else col("timestamp")
    )  # fmt: skip
    final["received_at"] = exp.func("coalesce", col("received_at"), now) if "received_at" in have else now
    stages.add(final)
    have |= set(final)

    # message_id: the file's, else derived from what the row says (so the same row dedups on re-import).
    parts: list[exp.Expr] = [col("type")]
    for name in ("event", "user_id", "anonymous_id", "group_id", "previous_id"):
        parts.append(col(name) if name in have else lit(""))
    parts.append(cast(exp.func("epoch_us", col("timestamp")), "VARCHAR"))
    for name in ("properties", "traits", "context"):
        parts.append(cast(col(name), "VARCHAR") if name in have else lit(""))
    parts = [exp.func("coalesce", p, lit("")) for p in parts]
    digest = exp.DPipe(this=lit("imp-"), expression=exp.func("md5", exp.func("concat_ws", lit("\x1f"), *parts)))
    message_id = exp.func("coalesce", col("message_id"), digest) if "message_id" in have else digest
    stages.add({"message_id": message_id})
    have.add("message_id")
    fields.extend(sorted(n for n in have - set(fields) if "." not in n))

    def row_check(column: str, condition: exp.Expr, reason: str) -> None:
        checks.append(Check(column=column, field=column, condition=condition, reason=lit(reason)))

    type_source = plan.fields.get("type")
    if "p.type" not in stages.names:
        row_check(
            type_source or "type",
            col("type").is_(exp.null()),
            "a row needs a type (track, identify, page …) or an event name",
        )  # fmt: skip
    else:
        row_check(
            type_source or "type",
            exp.and_(exp.not_(col("p.type")), col("type").is_(exp.null())),
            "a row needs a type (track, identify, page …) or an event name",
        )
    row_check(
        plan.fields.get("event", "event"),
        exp.and_(col("type").eq(lit("track")), event_col.is_(exp.null())),
        "a track event needs an event name",
    )
    ids = [col(n) for n in ("user_id", "anonymous_id") if n in have]
    row_check(
        plan.fields.get("user_id") or plan.fields.get("anonymous_id") or "user_id",
        exp.and_(*(i.is_(exp.null()) for i in ids)) if ids else exp.true(),
        "a row needs a user_id or an anonymous_id",
    )
