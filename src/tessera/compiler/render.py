"""Phase 4, render (按方言输出): print a compiled tree as the SQL text of one dialect.

Syntax only — every decision is made before. Each dialect-neutral node of :mod:`nodes` becomes
that dialect's functions (JSON reading, ISO text to a time, list membership, the md5 bucket), and
placeholders are spelled the dialect's way: ``$p1`` (DuckDB), ``:p1`` (Spark) and ``{p1:Type}``
(ClickHouse, the type read from the bound Python value). DuckDB is executed; Spark and ClickHouse
are rendered for the scale-out engines and kept as golden snapshots.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlglot import exp

from tessera.compiler import nodes
from tessera.compiler.query import DIALECTS

Spell = Callable[[nodes.Neutral], exp.Expr]
ISO_LOCAL, ISO_OFFSET, NUMBER = nodes.LOCAL_TIME_TEXT, nodes.OFFSET_TIME_TEXT, nodes.NUMBER_TEXT


def _lit(text: str) -> exp.Literal:
    return exp.Literal.string(text)


def _fn(name: str, *args: exp.Expr) -> exp.Anonymous:
    return exp.Anonymous(this=name, expressions=list(args))


def _case(*whens: tuple[exp.Expr, exp.Expr]) -> exp.Case:
    return exp.Case(ifs=[exp.If(this=c, true=v) for c, v in whens])


def _lambda(body: exp.Expr) -> exp.Lambda:
    return exp.Lambda(this=body, expressions=[exp.to_identifier(nodes.ELEMENT)])


# -- DuckDB --------------------------------------------------------------------------------------
def _pointer(node: nodes.Neutral) -> exp.Literal:
    """A JSON pointer to the key (``~`` and ``/`` escaped): dots and quotes in keys mean nothing."""
    key = nodes.json_key(node)
    return _lit("/" + key.replace("~", "~0").replace("/", "~1"))


def _duckdb(node: nodes.Neutral) -> exp.Expr:
    this = node.this
    if isinstance(node, nodes.JsonRaw):
        return _fn("json_extract", this, _pointer(node))
    if isinstance(node, nodes.JsonText):
        text = _fn("json_extract_string", this, _pointer(node))
        if not node.args.get("scalar"):
            return text
        kind = _fn("json_type", this.copy(), _pointer(node))
        container = exp.In(this=kind, expressions=[_lit("OBJECT"), _lit("ARRAY")])
        return _case((exp.not_(container), text))
    if isinstance(node, nodes.JsonBool):
        kind = _fn("json_type", this, _pointer(node))
        value = _fn("json_extract_string", this.copy(), _pointer(node)).eq(_lit("true"))
        return _case((kind.eq(_lit("BOOLEAN")), value))
    if isinstance(node, nodes.JsonPresent):
        return exp.NEQ(this=_fn("json_type", this, _pointer(node)), expression=_lit("NULL"))
    if isinstance(node, nodes.TextNumber):
        looks = _fn("regexp_full_match", this, _lit(NUMBER))
        if node.args.get("exact"):
            return _case((looks, exp.TryCast(this=this.copy(), to=exp.DataType.build("DECIMAL(38, 10)"))))
        double = exp.TryCast(this=this.copy(), to=exp.DataType.build("DOUBLE"))
        return _case((exp.and_(looks, _fn("isfinite", double)), double.copy()))
    if isinstance(node, nodes.TextTime):
        utc = exp.AtTimeZone(this=exp.TryCast(this=this.copy(), to=exp.DataType.build("TIMESTAMPTZ")), zone=_lit("UTC"))
        return _case(
            (
                _fn("regexp_full_match", this, _lit(ISO_LOCAL)),
                exp.TryCast(this=this.copy(), to=exp.DataType.build("TIMESTAMP")),
            ),
            (_fn("regexp_full_match", this.copy(), _lit(ISO_OFFSET)), utc),
        )
    if isinstance(node, nodes.MonthDay):
        return exp.cast(_fn("strftime", this, _lit("%m%d")), "INTEGER")
    if isinstance(node, nodes.InValues):
        return exp.In(this=this, query=exp.select(exp.Unnest(expressions=[node.expression])).subquery())
    if isinstance(node, nodes.ListHasAny):
        return _fn("list_has_any", this, node.expression)
    if isinstance(node, nodes.ListSome):
        return exp.GT(
            this=exp.Length(this=_fn("list_filter", this, _lambda(node.expression))), expression=exp.Literal.number(0)
        )
    if isinstance(node, nodes.Bucket):
        hex8 = exp.DPipe(
            this=_lit("0x"), expression=exp.Left(this=exp.MD5(this=this), expression=exp.Literal.number(8))
        )
        return exp.Mod(this=exp.cast(hex8, "BIGINT"), expression=node.expression)
    if isinstance(node, nodes.ToJson):
        return exp.cast(_fn("to_json", this), "VARCHAR")
    if isinstance(node, nodes.JsonList):
        values = exp.ArrayAgg(this=exp.Distinct(expressions=[this]))
        return exp.cast(_fn("to_json", _fn("list_sort", values)), "VARCHAR")
    raise TypeError(f"no DuckDB spelling for {type(node).__name__}")


# -- Spark ---------------------------------------------------------------------------------------
def _json_path(node: nodes.Neutral) -> exp.Literal:
    key = nodes.json_key(node)
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return _lit(f"$.{key}")
    return _lit("$['" + key.replace("\\", "\\\\").replace("'", "\\'") + "']")


def _spark(node: nodes.Neutral) -> exp.Expr:
    this = node.this
    if isinstance(node, nodes.JsonRaw | nodes.JsonText):
        return _fn("get_json_object", this, _json_path(node))
    if isinstance(node, nodes.JsonBool):
        raw = _fn("get_json_object", this, _json_path(node))
        return _case((exp.In(this=raw, expressions=[_lit("true"), _lit("false")]), raw.copy().eq(_lit("true"))))
    if isinstance(node, nodes.JsonPresent):
        return nodes.not_null(_fn("get_json_object", this, _json_path(node)))
    if isinstance(node, nodes.TextNumber):
        looks = exp.RegexpLike(this=this, expression=_lit(f"^{NUMBER}$"))
        read = exp.TryCast(
            this=this.copy(), to=exp.DataType.build("DECIMAL(38, 10)" if node.args.get("exact") else "DOUBLE")
        )
        return _case((looks, read))
    if isinstance(node, nodes.TextTime):
        return _case(
            (
                exp.RegexpLike(this=this, expression=_lit(f"^({ISO_LOCAL}|{ISO_OFFSET})$")),
                _fn("try_to_timestamp", this.copy()),
            )
        )
    if isinstance(node, nodes.MonthDay):
        return exp.cast(_fn("date_format", this, _lit("MMdd")), "INT")
    if isinstance(node, nodes.InValues):
        return exp.ArrayContains(this=node.expression, expression=this)
    if isinstance(node, nodes.ListHasAny):
        return _fn("arrays_overlap", this, node.expression)
    if isinstance(node, nodes.ListSome):
        return _fn("exists", this, _lambda(node.expression))
    if isinstance(node, nodes.Bucket):
        hex8 = exp.Substring(this=exp.MD5(this=this), start=exp.Literal.number(1), length=exp.Literal.number(8))
        number = exp.cast(_fn("conv", hex8, exp.Literal.number(16), exp.Literal.number(10)), "BIGINT")
        return exp.Mod(this=number, expression=node.expression)
    if isinstance(node, nodes.ToJson):
        return _fn("to_json", _fn("array", this))
    if isinstance(node, nodes.JsonList):
        return _fn("to_json", _fn("sort_array", _fn("collect_set", this)))
    raise TypeError(f"no Spark spelling for {type(node).__name__}")


# -- ClickHouse ----------------------------------------------------------------------------------
def _clickhouse(node: nodes.Neutral) -> exp.Expr:
    this = node.this
    key = _lit(nodes.json_key(node)) if "key" in node.args else _lit("")
    if isinstance(node, nodes.JsonRaw):
        return _fn("JSONExtractRaw", this, key)
    if isinstance(node, nodes.JsonText):
        kind = _fn("JSONType", this, key)
        text = _case((kind.eq(_lit("String")), _fn("JSONExtractString", this.copy(), key.copy())))
        scalars = [_lit(k) for k in ("Int64", "UInt64", "Double", "Bool")]
        raw = _fn("JSONExtractRaw", this.copy(), key.copy())
        text.append("ifs", exp.If(this=exp.In(this=kind.copy(), expressions=scalars), true=raw))
        return text
    if isinstance(node, nodes.JsonBool):
        kind = _fn("JSONType", this, key)
        return _case((kind.eq(_lit("Bool")), _fn("JSONExtractBool", this.copy(), key.copy())))
    if isinstance(node, nodes.JsonPresent):
        return exp.NEQ(this=_fn("JSONType", this, key), expression=_lit("Null"))
    if isinstance(node, nodes.TextNumber):
        looks = _fn("match", this, _lit(f"^{NUMBER}$"))
        if node.args.get("exact"):
            return _case((looks, _fn("toDecimal128OrNull", this.copy(), exp.Literal.number(10))))
        number = _fn("toFloat64OrNull", this.copy())
        return _case((exp.and_(looks, _fn("isFinite", number)), number.copy()))
    if isinstance(node, nodes.TextTime):
        iso = _fn("match", this, _lit(f"^({ISO_LOCAL}|{ISO_OFFSET})$"))
        return _case((iso, _fn("parseDateTime64BestEffortOrNull", this.copy(), exp.Literal.number(6), _lit("UTC"))))
    if isinstance(node, nodes.MonthDay):
        return _fn("toUInt16", _fn("formatDateTime", this, _lit("%m%d")))
    if isinstance(node, nodes.InValues):
        return _fn("has", node.expression, this)
    if isinstance(node, nodes.ListHasAny):
        return _fn("hasAny", this, node.expression)
    if isinstance(node, nodes.ListSome):
        return _fn("arrayExists", _lambda(node.expression), this)
    if isinstance(node, nodes.Bucket):
        # SQLGlot spells MD5 for ClickHouse as its lower-case hex text, as in the other dialects
        hex8 = exp.Substring(this=exp.MD5(this=this), start=exp.Literal.number(1), length=exp.Literal.number(8))
        number = _fn("reinterpretAsUInt32", _fn("reverse", _fn("unhex", hex8)))
        return exp.Mod(this=number, expression=node.expression)
    if isinstance(node, nodes.ToJson):
        return _fn("toJSONString", this)
    if isinstance(node, nodes.JsonList):
        return _fn("toJSONString", _fn("arraySort", _fn("groupUniqArray", this)))
    raise TypeError(f"no ClickHouse spelling for {type(node).__name__}")


_SPELLERS: dict[str, Spell] = {"duckdb": _duckdb, "spark": _spark, "clickhouse": _clickhouse}


# -- placeholders --------------------------------------------------------------------------------
def clickhouse_type(value: Any) -> str:
    """The ClickHouse type of a bound Python value (``{p1:Type}``)."""
    if isinstance(value, bool):
        return "Bool"
    if isinstance(value, int):
        return "Int64"
    if isinstance(value, float):
        return "Float64"
    if isinstance(value, Decimal):
        return "Decimal(38, 6)"
    if isinstance(value, datetime):
        return "DateTime64(6)"
    if isinstance(value, date):
        return "Date"
    if isinstance(value, list | tuple):
        return f"Array({clickhouse_type(value[0]) if value else 'String'})"
    return "String"


def spell(tree: exp.Expr, dialect: str) -> exp.Expr:
    """A copy of ``tree`` with every dialect-neutral node replaced by the dialect's spelling."""
    speller = _SPELLERS[dialect]
    tree = tree.copy()
    # Deepest first: a node is spelled after the nodes inside it.
    for node in reversed(list(tree.find_all(nodes.Neutral, bfs=False))):
        spelled = speller(node)
        if node is tree:
            tree = spelled
        else:
            node.replace(spelled)
    return tree


def render(tree: exp.Expr, *, dialect: str, params: Mapping[str, Any]) -> str:
    """The SQL text of ``tree`` in ``dialect`` (one of :data:`DIALECTS`)."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r} (one of {', '.join(DIALECTS)})")
    tree = spell(tree, dialect)
    if dialect == "clickhouse":
        for ph in tree.find_all(exp.Placeholder):
            if ph.name in params:
                ph.set("kind", exp.DataType.build(clickhouse_type(params[ph.name]), dialect="clickhouse"))
    return tree.sql(dialect=dialect)
