"""SQL tags (SQL标签): an engineer's one SELECT returning (profile key, value), run safely.

:func:`check_sql` parses the text with SQLGlot (DuckDB dialect) and refuses it unless it is a
single read-only query over the documented tables (docs/schema.md, docs/sql_tags.md):

- **one statement**, a ``SELECT`` (``WITH … SELECT``, ``UNION`` …): no DDL, DML or commands
  anywhere in the tree — not in a CTE (DuckDB runs ``WITH x AS (DELETE … RETURNING …)``) nor in a
  subquery;
- **tables**: only :data:`TABLES` and the query's own CTEs, by plain name (no ``main.x``,
  ``information_schema.x``), no table functions but ``range`` / ``generate_series`` / ``unnest``,
  no file paths (DuckDB reads ``FROM '/etc/passwd'`` as a file);
- **functions**: an allow-list — DuckDB's own scalar, aggregate and window functions (the catalogue
  of a fresh in-memory database with extension auto-loading off, so no extension function that
  DuckDB would download from the network) — minus an explicit deny-list of those that read the
  system, settings, files or the network, or change state (:data:`DENIED_FUNCTIONS`,
  :data:`DENIED_PREFIXES`); functions SQLGlot knows by type pass the same deny-list on their names
  and on their DuckDB spelling;
- **no parameters** (``?``, ``$x``): values are written in the query;
- **columns**: the first is the profile key, named ``profile_idx`` or ``profile_id``; the second
  is the value (by position; any name); more columns are ignored.

Refusals are :class:`ValueError` whose message starts ``line L, column C:`` when a position is known.

The query is never pasted into SQL text: :func:`compute` embeds the parsed tree as a subquery of an
``INSERT`` built with ``sqlglot.exp`` (the tag key is a bound parameter), under a time limit
(``TESSERA_TAGS_SQL_TIMEOUT_SECONDS``, enforced with ``interrupt()``) and a row limit
(``TESSERA_TAGS_SQL_MAX_ROWS``), and checks every value against the tag's value type before the
run's swap. :func:`preview` runs the same statement in a transaction it rolls back and shows the
first rows.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from typing import TYPE_CHECKING, Any

import duckdb
import sqlglot
from sqlglot import exp
from sqlglot.errors import ErrorLevel, ParseError, TokenError
from sqlglot.tokens import Token, TokenType

from tessera.clock import as_utc
from tessera.compiler.query import run
from tessera.domain.tags import Tag, TagDraft
from tessera.services.tag_values import NEW, TagRunError, create_new_table

if TYPE_CHECKING:
    from tessera.runtime import Instance
    from tessera.services.tag_runs import ComputeContext

#: The documented tables a SQL tag may read (docs/schema.md). ``identity_links`` maps the
#: ``identity_idx`` of orders, customers and events to the profile it belongs to now.
TABLES: tuple[str, ...] = (
    "profiles", "profile_attributes", "profile_identifiers", "profile_tags", "events_named", "events",
    "event_names", "orders", "order_items", "products", "customers", "reviews", "audience_members_current",
    "tag_changes", "identity_links",
)  # fmt: skip
#: The names the first column may have: the profile key.
KEYS = ("profile_idx", "profile_id")
#: Table functions that only generate rows.
TABLE_FUNCTIONS = ("range", "generate_series", "unnest")
#: Functions refused even though DuckDB has them built in: they read the system, settings or
#: session state, write, sleep, or run SQL text.
DENIED_FUNCTIONS = frozenset(
    {
        "getenv", "current_setting", "getvariable", "current_query", "current_query_id", "nextval", "currval",
        "setval", "setseed", "write_log", "sleep_ms", "pg_sleep", "json_serialize_plan", "json_serialize_sql",
        "json_deserialize_sql", "json_execute_serialized_sql", "query", "query_table", "sql_auto_complete",
        "url", "glob", "checkpoint", "force_checkpoint", "enable_logging", "disable_logging",
        "truncate_duckdb_logs", "which_secret", "load_aws_credentials", "parse_duckdb_log_message",
        "next_value_for", "to_file",
    }
)  # fmt: skip
#: Name prefixes refused: files, other databases, the catalogue, the network, internals.
DENIED_PREFIXES = (
    "read_", "write_", "duckdb_", "pragma_", "http", "sqlite_", "postgres_", "mysql_", "iceberg_", "delta_",
    "parquet_", "ducklake_", "st_read", "load_", "install_", "__internal", "s3", "gcs_", "azure_",
)  # fmt: skip
#: Keywords that start a statement that writes or changes the session.
_WRITES = frozenset(
    {
        "INSERT", "UPDATE", "DELETE", "MERGE", "UPSERT", "REPLACE", "CREATE", "DROP", "ALTER", "TRUNCATE", "COPY",
        "ATTACH", "DETACH", "USE", "PRAGMA", "SET", "RESET", "INSTALL", "LOAD", "FORCE", "CALL", "EXPORT",
        "IMPORT", "VACUUM", "CHECKPOINT", "BEGIN", "START", "COMMIT", "ROLLBACK", "ABORT", "END", "PREPARE",
        "EXECUTE", "DEALLOCATE", "GRANT", "REVOKE", "COMMENT", "ANALYZE", "UPDATE_EXTENSIONS",
    }
)  # fmt: skip
_PARAMETER_TOKENS = frozenset(
    getattr(TokenType, n) for n in ("PLACEHOLDER", "PARAMETER", "SESSION_PARAMETER") if hasattr(TokenType, n)
)
#: Keywords a query may start with.
_STARTS = frozenset({"SELECT", "WITH", "FROM", "("})


def _statement_classes() -> tuple[tuple[type[exp.Expr], str], ...]:
    """Node classes that are statements other than a query, and the keyword that names them."""
    named = (
        ("Insert", "INSERT"), ("Update", "UPDATE"), ("Delete", "DELETE"), ("Merge", "MERGE"), ("Create", "CREATE"),
        ("Drop", "DROP"), ("Alter", "ALTER"), ("TruncateTable", "TRUNCATE"), ("Copy", "COPY"), ("Attach", "ATTACH"),
        ("Detach", "DETACH"), ("Pragma", "PRAGMA"), ("Set", "SET"), ("Use", "USE"), ("Install", "INSTALL"),
        ("LoadData", "LOAD"), ("Transaction", "BEGIN"), ("Commit", "COMMIT"), ("Rollback", "ROLLBACK"),
        ("Cache", "CACHE"), ("Uncache", "UNCACHE"), ("Refresh", "REFRESH"), ("Analyze", "ANALYZE"),
        ("Grant", "GRANT"), ("Revoke", "REVOKE"), ("Comment", "COMMENT"), ("Kill", "KILL"), ("Export", "EXPORT"),
        ("Describe", "DESCRIBE"), ("Summarize", "SUMMARIZE"), ("Show", "SHOW"), ("Into", "INTO"),
        ("Returning", "RETURNING"), ("Command", ""), ("DML", ""), ("DDL", ""),
    )  # fmt: skip
    return tuple((getattr(exp, cls), kw) for cls, kw in named if hasattr(exp, cls))


_STATEMENTS = _statement_classes()
_DENIED_NODES: tuple[type[exp.Expr], ...] = tuple(
    getattr(exp, n) for n in ("NextValueFor", "ToFile", "ReadCSV", "ReadParquet") if hasattr(exp, n)
)


@cache
def builtin_functions() -> frozenset[str]:
    """DuckDB's built-in scalar, aggregate, window and macro functions (lower-case names): the
    catalogue of a fresh in-memory database that loads no extension on its own."""
    con = duckdb.connect(config={"autoload_known_extensions": False, "autoinstall_known_extensions": False})
    try:
        rows = con.execute(
            "SELECT DISTINCT lower(function_name) FROM duckdb_functions() "
            "WHERE function_type IN ('scalar', 'aggregate', 'window', 'macro')"
        ).fetchall()
    finally:
        con.close()
    return frozenset(r[0] for r in rows)


def denied(name: str) -> bool:
    n = name.lower()
    return n in DENIED_FUNCTIONS or n.startswith(DENIED_PREFIXES)


# -- positions --------------------------------------------------------------------------------------
def _at(sql: str, offset: int | None) -> str:
    """``line L, column C: `` of a character offset (1-based, as an editor shows it)."""
    if offset is None or offset < 0:
        return ""
    offset = min(offset, len(sql))
    line = sql.count("\n", 0, offset) + 1
    col = offset - (sql.rfind("\n", 0, offset) + 1) + 1
    return f"line {line}, column {col}: "


def _refuse(sql: str, offset: int | None, message: str) -> ValueError:
    return ValueError(_at(sql, offset) + message)


def _start(node: exp.Expr) -> int | None:
    """Where a node starts in the source: its own token, else its earliest descendant's."""
    starts = [n.meta["start"] for n in node.walk() if isinstance(n.meta.get("start"), int)]
    return min(starts) if starts else None


_TEXT_TOKENS = frozenset(
    getattr(TokenType, n)
    for n in ("STRING", "BIT_STRING", "HEX_STRING", "BYTE_STRING", "NATIONAL_RAW_STRING", "NATIONAL_STRING",
              "RAW_STRING", "HEREDOC_STRING", "UNICODE_STRING")
    if hasattr(TokenType, n)
)  # fmt: skip


def _word(t: Token) -> bool:
    """A keyword or a name, not the text of a string literal."""
    return t.token_type not in _TEXT_TOKENS


def _keyword_at(tokens: Sequence[Token], keyword: str, before: int | None) -> int | None:
    """The offset of the last ``keyword`` token before ``before`` (the first one when unknown)."""
    hits = [t.start for t in tokens if _word(t) and t.text.upper() == keyword and (before is None or t.start <= before)]
    if not hits:
        return None
    return hits[-1] if before is not None else hits[0]


def _tokenize(sql: str) -> list[Token]:
    try:
        return sqlglot.tokenize(sql, read="duckdb")
    except TokenError as e:
        cause = str(e.__cause__ or "")
        m = re.search(r"Missing (\S+) from \d+:(\d+)$", cause)
        if m:  # an unterminated string or quoted name: the tokenizer says where it started
            raise _refuse(sql, int(m.group(2)), f"unterminated {m.group(1)}") from None
        raise _refuse(sql, len(sql), "the query ends inside a comment or a quoted text") from None


def _parse_error(sql: str, e: ParseError) -> ValueError:
    if not e.errors:
        return ValueError(str(e))
    err = e.errors[0]
    line, col, highlight = err.get("line"), err.get("col"), err.get("highlight") or ""
    where = ""
    if isinstance(line, int) and isinstance(col, int):
        # SQLGlot gives the column where the highlighted token ends
        start = col - len(highlight) + 1 if highlight and "\n" not in highlight else col
        where = f"line {line}, column {max(start, 1)}: "
    description = str(err.get("description") or "")
    m = re.match(r"Required keyword: '\w+' missing for <class '[\w.]*?(\w+)'>", description)
    if m:
        description = f"{m.group(1).upper()} is incomplete"
    elif description.startswith("Invalid expression / Unexpected token"):
        description = ""
    near = f" at {highlight!r}" if highlight else ""
    return ValueError(f"{where}syntax error{near}" + (f": {description}" if description else ""))


# -- the check ---------------------------------------------------------------------------------------
def check_sql(sql: str) -> exp.Query:
    """The parsed query if ``sql`` is one read-only SELECT over the documented tables returning
    (profile key, value); raises :class:`ValueError` naming what is wrong, and where."""
    if not sql or not sql.strip():
        raise ValueError("the query is empty")
    tokens = _tokenize(sql)
    statements: list[list[Token]] = [[]]
    for t in tokens:
        if t.token_type == TokenType.SEMICOLON:
            statements.append([])
        else:
            statements[-1].append(t)
    statements = [s for s in statements if s]
    if not statements:
        raise ValueError("the query is empty")
    if len(statements) > 1:
        raise _refuse(sql, statements[1][0].start, "only one statement is allowed")
    first = statements[0][0]
    word = first.text.upper()
    if word not in _STARTS:
        why = "a SQL tag only reads" if word in _WRITES else "a SQL tag is one SELECT query"
        raise _refuse(sql, first.start, f"{word} is not allowed: {why}")
    try:
        try:
            tree = sqlglot.parse_one(sql, read="duckdb")
        except ParseError as e:
            raise _parse_error(sql, e) from None
        _check_tree(sql, tree, tokens)
        if not isinstance(tree, exp.Query) or not isinstance(tree.unnest(), exp.Select | exp.SetOperation):
            raise _refuse(sql, first.start, "a SQL tag is one SELECT query")
        key_column(tree, sql=sql)
        tree.sql(dialect="duckdb")  # it renders (what a run does with it)
    except RecursionError:
        raise ValueError("the query nests too deeply: simplify it (a CTE per step)") from None
    return tree


def _check_tree(sql: str, tree: exp.Expr, tokens: Sequence[Token]) -> None:
    for node in tree.walk():
        for cls, keyword in _STATEMENTS:
            if isinstance(node, cls):
                kw = keyword or (node.name.upper() if isinstance(node, exp.Command) else type(node).__name__.upper())
                kw = kw.split()[0] if kw else type(node).__name__.upper()
                offset = _keyword_at(tokens, kw, _start(node))
                why = (
                    "a SQL tag only reads"
                    if kw in _WRITES or kw in ("INTO", "RETURNING")
                    else "a SQL tag is one SELECT query"
                )
                raise _refuse(sql, offset, f"{kw} is not allowed: {why}")
        if isinstance(node, exp.Placeholder | exp.Parameter | exp.SessionParameter):
            where = _start(node)
            if where is None:
                where = next((t.start for t in tokens if t.token_type in _PARAMETER_TOKENS), None)
            raise _refuse(sql, where, "parameters are not allowed: write the values in the query")
        if isinstance(node, exp.Table):
            _check_table(sql, node)
        elif isinstance(node, _DENIED_NODES):
            raise _refuse(sql, _start(node), f"function {_func_name(node)} is not allowed in a SQL tag")
        elif isinstance(node, exp.Anonymous):
            name = node.name.lower()
            if denied(name):
                raise _refuse(sql, _start(node), f"function {name} is not allowed in a SQL tag")
            if name not in builtin_functions():
                raise _refuse(sql, _start(node), f"function {name} is not allowed in a SQL tag (only DuckDB's "
                                                 "built-in functions; see docs/sql_tags.md)")  # fmt: skip
        elif isinstance(node, exp.Func) and not isinstance(node, exp.Connector):  # AND / OR are no calls
            name = _func_name(node)
            if denied(name) or any(denied(n) for n in type(node).sql_names()):
                raise _refuse(sql, _start(node), f"function {name} is not allowed in a SQL tag")


def _func_name(node: exp.Expr) -> str:
    """How DuckDB will see a typed function: the name SQLGlot spells it with."""
    text = node.sql(dialect="duckdb", unsupported_level=ErrorLevel.IGNORE)
    m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(", text)
    if m:
        return m.group(1).lower()
    names = type(node).sql_names() if isinstance(node, exp.Func) else []
    return (names[0] if names else type(node).__name__).lower()


def _visible_ctes(table: exp.Table) -> set[str]:
    """The CTE names a table reference can mean: those of the WITH clauses it sits under, only the
    earlier ones (and itself, when recursive) inside a CTE's own body."""
    names: set[str] = set()
    child: exp.Expr = table
    node = table.parent
    while node is not None:
        if isinstance(node, exp.With) and isinstance(child, exp.CTE):
            ctes = list(node.expressions)
            at = next(i for i, c in enumerate(ctes) if c is child)
            names.update(c.alias_or_name.lower() for c in ctes[:at])
            if node.args.get("recursive"):
                names.add(child.alias_or_name.lower())
        else:
            w = node.args.get("with_") or node.args.get("with")
            if isinstance(w, exp.With) and w is not child:
                names.update(c.alias_or_name.lower() for c in w.expressions)
        child, node = node, node.parent
    return names


def _check_table(sql: str, table: exp.Table) -> None:
    source = table.this
    if not isinstance(source, exp.Identifier):
        name = _func_name(source) if isinstance(source, exp.Func) else type(source).__name__.lower()
        if isinstance(source, exp.GenerateSeries) or name in TABLE_FUNCTIONS:
            return
        raise _refuse(sql, _start(source), f"table function {name} is not allowed: a SQL tag reads the documented "
                                           "tables only")  # fmt: skip
    qualifier = table.args.get("catalog") or table.args.get("db")
    if qualifier is not None:
        raise _refuse(sql, _start(qualifier), f"{table.sql(dialect='duckdb')}: qualified names are not allowed; "
                                              "name one of the documented tables")  # fmt: skip
    name = source.name
    if name.lower() in _visible_ctes(table):
        return
    if name.lower() not in TABLES:
        raise _refuse(sql, _start(source), f"table {name} is not one of the documented tables: {', '.join(TABLES)}")


def key_column(tree: exp.Query, *, sql: str = "") -> str:
    """``profile_idx`` or ``profile_id``: the name of the query's first column (checked)."""
    selects = tree.selects
    for s in selects[:2]:
        if s.is_star or isinstance(s, exp.Columns) or (isinstance(s, exp.Anonymous) and s.name.lower() == "columns"):
            raise _refuse(sql, _start(s) if sql else None, "name the columns (no *): the profile key "
                                                           "(profile_idx or profile_id), then the value")  # fmt: skip
    if len(selects) < 2:
        raise _refuse(sql, _start(tree) if sql else None, "the query returns (profile key, value): at least 2 "
                                                          "columns, the first named profile_idx or profile_id")  # fmt: skip
    key = selects[0].alias_or_name.lower()
    if key not in KEYS:
        shown = selects[0].sql(dialect="duckdb")
        raise _refuse(sql, _start(selects[0]) if sql else None,
                      f"the first column is the profile key and must be named profile_idx or profile_id (got {shown})")  # fmt: skip
    return key


# -- running ------------------------------------------------------------------------------------------
_U, _KEY, _VALUE, _P = "u", "_tessera_key", "_tessera_value", "p"


def _insert(query: exp.Query, *, target: str, scope: str | None, keep_unknown: bool = False) -> exp.Insert:
    """``INSERT INTO target (tag_key, profile_idx, value) SELECT $tag_key, …, CAST(u.value AS VARCHAR)
    FROM (<query>) AS u(key, value) [JOIN profiles p …] WHERE … LIMIT $row_cap``.

    ``keep_unknown`` (the preview): a ``profile_id`` that is no profile gives a row without a
    profile_idx instead of none."""
    body = query.copy()
    for node in body.walk():  # comments carry nothing DuckDB needs
        node.comments = None
    body = body.transform(_clock)  # type: ignore[assignment]
    alias = exp.TableAlias(this=exp.to_identifier(_U), columns=[exp.to_identifier(_KEY), exp.to_identifier(_VALUE)])
    source = exp.Subquery(this=body, alias=alias)
    key = exp.column(_KEY, table=_U)
    value = exp.column(_VALUE, table=_U)
    if key_column(query) == "profile_id":
        idx: exp.Expr = exp.column("profile_idx", table=_P)
    else:
        idx = exp.cast(key.copy(), "INTEGER")
    select = exp.select(exp.Placeholder(this="tag_key"), idx, exp.cast(value.copy(), "VARCHAR")).from_(source)
    if key_column(query) == "profile_id":
        on = exp.EQ(this=exp.column("profile_id", table=_P), expression=exp.cast(key.copy(), "VARCHAR"))
        select = select.join(exp.table_("profiles", alias=_P), on=on, join_type="left" if keep_unknown else None)
    conds: list[exp.Expr] = [exp.not_(exp.Is(this=key.copy(), expression=exp.null())),
                             exp.not_(exp.Is(this=value.copy(), expression=exp.null()))]  # fmt: skip
    if scope is not None:
        conds.append(exp.In(this=idx.copy(), query=exp.select("profile_idx").from_(scope).subquery()))
    select = select.where(exp.and_(*conds)).limit(exp.Placeholder(this="row_cap"))
    return exp.insert(select, target, columns=["tag_key", "profile_idx", "value"])


_NOW_FUNCTIONS = {"now", "get_current_timestamp", "transaction_timestamp", "current_localtimestamp"}
_TODAY_FUNCTIONS = {"today"}


def _clock(node: exp.Expr) -> exp.Expr:
    """``now()``, ``current_timestamp``, ``current_date`` … read the injected clock (UTC, like the
    stored times), bound as ``$clock_now``: runs and tests see the time the product sees."""
    name = node.name.lower() if isinstance(node, exp.Anonymous) else ""
    if isinstance(node, exp.CurrentTimestamp) or name in _NOW_FUNCTIONS:
        return exp.cast(exp.Placeholder(this="clock_now"), "TIMESTAMP")
    if isinstance(node, exp.CurrentDate) or name in _TODAY_FUNCTIONS:
        return exp.cast(exp.Placeholder(this="clock_now"), "DATE")
    return node


@contextmanager
def _time_limit(cur: duckdb.DuckDBPyConnection, seconds: float, what: str) -> Iterator[None]:
    """Interrupt ``cur`` after ``seconds``; an interrupted (or overrunning) block is a TagRunError."""
    fired = threading.Event()

    def stop() -> None:
        fired.set()
        cur.interrupt()

    def done() -> None:
        timer.cancel()
        timer.join()  # no interrupt may land on the statements that follow

    timed_out = f"{what}timed out after {seconds:g} s (TESSERA_TAGS_SQL_TIMEOUT_SECONDS)"
    timer = threading.Timer(seconds, stop)
    timer.daemon = True
    timer.start()
    try:
        yield
    except duckdb.Error:
        done()
        if fired.is_set():  # the interruption (whatever DuckDB calls it)
            raise TagRunError(timed_out) from None
        raise
    finally:
        done()
    if fired.is_set():  # it finished, but after the limit
        raise TagRunError(timed_out)


def _duckdb_message(sql: str, e: duckdb.Error) -> str:
    """DuckDB's message without its position in the statement we built; the user's line and
    column instead when the message quotes a name the query contains."""
    text = str(e).split("\n\nLINE ")[0]
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    m = re.search(r'"([^"]+)"', text)
    if m:
        name = m.group(1).lower()
        try:
            tokens = sqlglot.tokenize(sql, read="duckdb")
        except TokenError:
            tokens = []
        hit = next((t for t in tokens if _word(t) and t.text.lower() == name), None)
        if hit is not None:
            return _at(sql, hit.start) + text
    return text


def _fill(
    cur: duckdb.DuckDBPyConnection, sql: str, key: str, *, target: str, scope: str | None, timeout: float,
    max_rows: int, what: str, now: datetime, keep_unknown: bool = False,
) -> int:  # fmt: skip
    """Run the checked query into ``target`` under the limits; the number of rows it gave."""
    try:
        query = check_sql(sql)
    except ValueError as e:
        raise TagRunError(f"{what}{e}") from None
    statement = _insert(query, target=target, scope=scope, keep_unknown=keep_unknown)
    try:
        with _time_limit(cur, timeout, what):
            run(cur, statement, {"tag_key": key, "row_cap": max_rows + 1, "clock_now": now.replace(tzinfo=None)})
    except duckdb.Error as e:
        raise TagRunError(what + _duckdb_message(sql, e)) from None
    except RecursionError:
        raise TagRunError(f"{what}the query nests too deeply: simplify it (a CTE per step)") from None
    count = exp.select(exp.Count(this=exp.Star())).from_(target).where(_key_is())
    return int(run(cur, count, {"tag_key": key})[0][0])


def _key_is(table: str | None = None) -> exp.Expr:
    return exp.EQ(this=exp.column("tag_key", table=table), expression=exp.Placeholder(this="tag_key"))


def _bad_value(tag: TagDraft, v: exp.Expr) -> tuple[exp.Expr, dict[str, Any], str]:
    """A predicate true for a (trimmed, not null) value text that does not fit the tag's type,
    its parameters, and what a fitting value looks like."""
    blank = exp.EQ(this=v.copy(), expression=exp.Literal.string(""))
    t = tag.value_type
    if t == "bool":
        bad: exp.Expr = exp.not_(
            exp.In(this=v.copy(), expressions=[exp.Literal.string("true"), exp.Literal.string("false")])
        )
        return bad, {}, "true or false (a BOOLEAN column)"
    if t == "number":
        finite = exp.Anonymous(
            this="isfinite", expressions=[exp.TryCast(this=v.copy(), to=exp.DataType.build("DOUBLE"))]
        )
        return exp.not_(exp.Coalesce(this=finite, expressions=[exp.false()])), {}, "a finite number"
    if t == "enum":
        member = exp.Anonymous(this="list_contains", expressions=[exp.Placeholder(this="enum_values"), v.copy()])
        return exp.or_(blank, exp.not_(member)), {"enum_values": list(tag.enum_values or ())}, \
            f"one of {', '.join(tag.enum_values or ())}"  # fmt: skip
    if t == "date":
        iso = exp.Anonymous(this="regexp_full_match", expressions=[v.copy(), exp.Literal.string(r"\d{4}-\d{2}-\d{2}")])
        real = exp.not_(exp.Is(this=exp.TryCast(this=v.copy(), to=exp.DataType.build("DATE")), expression=exp.null()))
        return exp.not_(exp.Coalesce(this=exp.and_(iso, real), expressions=[exp.false()])), {}, \
            "an ISO date YYYY-MM-DD (a DATE column)"  # fmt: skip
    return blank, {}, "non-blank text"


def bad_values(cur: duckdb.DuckDBPyConnection, table: str, tag: TagDraft, key: str, *, examples: int = 5) -> dict[str, Any] | None:  # fmt: skip
    """The rows of ``key`` in ``table`` whose value does not fit ``tag``'s type: how many, some of
    them (profile id, value) and what fits; None when every value fits."""
    v = exp.Trim(this=exp.column("value", table="t"))
    bad, params, fits = _bad_value(tag, v)
    q = (
        exp.select(
            exp.Window(this=exp.Count(this=exp.Star())), exp.column("profile_idx", table="t"),
            exp.column("profile_id", table="p"), exp.column("value", table="t"),
        )
        .from_(exp.table_(table, alias="t"))
        .join(exp.table_("profiles", alias="p"), using=["profile_idx"], join_type="left")
        .where(exp.and_(_key_is("t"), exp.not_(exp.Is(this=exp.column("value", table="t"), expression=exp.null())),
                        exp.not_(exp.Is(this=exp.column("profile_idx", table="t"), expression=exp.null())), bad))
        .order_by(exp.column("profile_idx", table="t"), exp.column("value", table="t"))
        .limit(examples)
    )  # fmt: skip
    rows = run(cur, q, {"tag_key": key, **params})
    if not rows:
        return None
    return {
        "rows": int(rows[0][0]),
        "value_type": tag.value_type,
        "expected": fits,
        "examples": [{"profile_idx": r[1], "profile_id": r[2], "value": r[3]} for r in rows],
    }


def _describe_bad(bad: dict[str, Any]) -> str:
    first = bad["examples"][0]
    who = first["profile_id"] or f"profile_idx {first['profile_idx']}"
    return (f"{bad['rows']} row(s) have values that do not fit the {bad['value_type']} type "
            f"(expected {bad['expected']}): the first, profile {who}, got {first['value']!r}")  # fmt: skip


def compute(cur: duckdb.DuckDBPyConnection, tags: Sequence[Tag], ctx: ComputeContext) -> dict[str, dict[str, Any]]:
    """The computer of SQL tags (see :mod:`tessera.services.tag_runs`): each tag's query fills
    ``ctx.target`` under the limits; raises :class:`TagRunError` naming the tag when one times out,
    returns too many rows, fails in DuckDB or gives values that do not fit its type."""
    limits = ctx.inst.settings.tags
    details: dict[str, dict[str, Any]] = {}
    for tag in tags:
        what = f"tag {tag.key!r}: "
        if tag.kind != "sql" or not tag.sql:
            raise TagRunError(f"{what}not a SQL tag")
        rows = _fill(cur, tag.sql, tag.key, target=ctx.target, scope=ctx.scope, timeout=limits.sql_timeout_seconds,
                     max_rows=limits.sql_max_rows, what=what, now=as_utc(ctx.now))  # fmt: skip
        if rows > limits.sql_max_rows:
            raise TagRunError(f"{what}the query returned more than {limits.sql_max_rows:,} rows, the limit "
                              "(TESSERA_TAGS_SQL_MAX_ROWS)")  # fmt: skip
        bad = bad_values(cur, ctx.target, tag, tag.key)
        if bad is not None:
            raise TagRunError(what + _describe_bad(bad))
        details[tag.key] = {"rows": rows}
    return details


def preview(inst: Instance, sql: str, *, tag: TagDraft | None = None, limit: int = 100) -> dict[str, Any]:
    """Run ``sql`` as a SQL tag would (same checks and limits) without saving anything, for the
    editor: ``key`` (the key column), ``columns``, the first ``limit`` (at most 1000) ``rows`` as
    ``[profile_id, value]`` by profile id, ``total_rows`` (rows with a key and a value, counted up
    to the row limit), ``row_limit``, ``limit_exceeded``, ``unknown_profiles`` (rows whose key is
    no profile: a run drops them) and, when ``tag`` is given, ``bad_values`` if some values do not
    fit its type (a run would fail).

    Raises :class:`ValueError` saying what is wrong: a refused query (with line and column), a
    DuckDB error, a time-out."""
    query = check_sql(sql)
    key = key_column(query)
    value_name = query.selects[1].alias_or_name or "value"
    limits = inst.settings.tags
    cur = inst.analytic.cursor()
    try:
        cur.execute("BEGIN TRANSACTION")  # rolled back: a preview leaves nothing behind
        try:
            create_new_table(cur)
            try:
                total = _fill(cur, sql, "preview", target=NEW, scope=None, timeout=limits.sql_timeout_seconds,
                              max_rows=limits.sql_max_rows, what="", now=as_utc(inst.clock.now()),
                              keep_unknown=True)  # fmt: skip
            except TagRunError as e:
                raise ValueError(str(e)) from None
            t = exp.table_(NEW, alias="t")
            shown = (
                exp.select(exp.column("profile_id", table="p"), exp.column("value", table="t"))
                .from_(t)
                .join(exp.table_("profiles", alias="p"), using=["profile_idx"])
                .order_by(exp.column("profile_id", table="p"), exp.column("value", table="t"))
                .limit(exp.Placeholder(this="lim"))
            )
            rows = run(cur, shown, {"lim": min(max(0, limit), 1000)})
            idx = exp.column("profile_idx", table="t")
            known = exp.In(this=idx.copy(), query=exp.select("profile_idx").from_("profiles").subquery())
            unknown = (
                exp.select(exp.Count(this=exp.Star()))
                .from_(t.copy())
                .where(exp.or_(exp.Is(this=idx, expression=exp.null()), exp.not_(known)))
            )
            out: dict[str, Any] = {
                "key": key,
                "columns": ["profile_id", value_name],
                "rows": [[pid, value] for pid, value in rows],
                "total_rows": min(total, limits.sql_max_rows),
                "row_limit": limits.sql_max_rows,
                "limit_exceeded": total > limits.sql_max_rows,
                "unknown_profiles": int(run(cur, unknown, {})[0][0]),
            }
            if tag is not None:
                bad = bad_values(cur, NEW, tag, "preview")
                if bad is not None:
                    out["bad_values"] = bad | {"message": _describe_bad(bad)}
            return out
        finally:
            cur.execute("ROLLBACK")
    finally:
        cur.close()
