"""Storing the parsed rows: upserts by key for entities, append-once for events, profiles, the run.

All statements run on the caller's cursor, inside the caller's transaction, and read the temp table
``_imp_parsed`` that :mod:`.parsing` built. Every statement is a SQLGlot tree; the import id, the
time and the source id enter as literals SQLGlot quotes.

* **Entities** (customers, products, orders, order items, reviews): rows repeating a key inside
  the file — the last one wins; rows whose key is stored already update it when a value differs
  (only the columns the file has; ``attributes`` are merged) and count as duplicates when nothing
  differs; the rest are inserted.
* **Events**: de-duplicated on ``(source_id, message_id)`` — inside the file (the first wins) and
  against what is stored; event names go through the ``event_names`` dictionary; profiles are
  linked like the collection loader links them.
* **Customers** link a profile by ``user_id`` = ``customer_id`` (the brand's user id).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import duckdb
from sqlglot import exp

from tessera.domain.identity import IdentityRules
from tessera.domain.messages import EVENT_COLUMNS
from tessera.importing.kinds import Kind
from tessera.importing.parsing import ROW, cast, col, lit
from tessera.services import identity
from tessera.services.identity_sources import CUSTOMER_ID_COLUMNS, ORDER_ID_COLUMNS, entity_candidates, event_candidates

PARSED = "_imp_parsed"
#: Columns of ``events`` in table order; ``event_id`` comes from the dictionary, ``source_id`` from the import.
EVENT_TABLE_COLUMNS = tuple("event_id" if c == "event" else c for c in EVENT_COLUMNS)


@dataclass
class StoreCounts:
    stored: int = 0
    updated: int = 0
    duplicate: int = 0


def _count(cur: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = next(iter(cur.execute(sql).fetchall()), None)
    return int(row[0]) if row and row[0] is not None else 0


def _ts(value: datetime) -> exp.Expr:
    return cast(lit(value.isoformat(sep=" ")), "TIMESTAMP")


def _temp(name: str, query: exp.Query, *, view: bool = False) -> str:
    return exp.Create(
        this=exp.to_table(name),
        kind="VIEW" if view else "TABLE",
        expression=query,
        properties=exp.Properties(expressions=[exp.TemporaryProperty()]),
        replace=True,
    ).sql("duckdb")


def _key_match(key: tuple[str, ...], left: str, right: str) -> exp.Expr:
    return exp.and_(*(exp.column(k, table=left, quoted=True).eq(exp.column(k, table=right, quoted=True)) for k in key))


def _good_rows(
    cur: duckdb.DuckDBPyConnection,
    key: tuple[str, ...],
    fields: list[str],
    *,
    keep_last: bool,
    numbered: tuple[str, str] | None = None,
) -> tuple[str, int]:
    """``_imp_rows``: rows that passed, one per key; returns its name and the in-file duplicates.

    ``numbered`` = (field, partition) numbers rows 1, 2 … per partition in file order (counting the
    rejected rows too, so a line keeps its number when a fixed file is imported again).
    """
    source: exp.Expr = exp.to_table(PARSED)
    if numbered is not None:
        number = exp.Window(
            this=exp.RowNumber(),
            partition_by=[col(numbered[1])],
            order=exp.Order(expressions=[exp.Ordered(this=exp.column("rowid"))]),
        )
        source = (
            exp.select("*", exp.column("rowid").as_(ROW), cast(number, "INTEGER").as_(numbered[0]))
            .from_(PARSED)
            .subquery("_numbered")
        )
    row = col(ROW) if numbered is not None else exp.column("rowid").as_(ROW)
    good = exp.select(*(col(f) for f in fields), row).from_(source).where(exp.not_(exp.column("_bad")))
    key_expr: exp.Expr = col(key[0]) if len(key) == 1 else exp.Tuple(expressions=[col(k) for k in key])
    counted = exp.select(exp.func("count", exp.Star()) - exp.func("count", exp.Distinct(expressions=[key_expr])))
    dups = _count(cur, counted.from_(good.subquery("_g")).sql("duckdb"))
    if dups == 0:
        cur.execute(_temp("_imp_rows", good, view=numbered is None))
        return "_imp_rows", 0
    order = exp.Ordered(this=col(ROW), desc=keep_last)
    number = exp.Window(
        this=exp.RowNumber(), partition_by=[col(k) for k in key], order=exp.Order(expressions=[order])
    )  # fmt: skip
    deduped = exp.select("*").from_(good.subquery("_g")).qualify(number.eq(lit(1)))
    cur.execute(_temp("_imp_rows", deduped))
    return "_imp_rows", dups


def store_entities(
    cur: duckdb.DuckDBPyConnection,
    *,
    kind: Kind,
    fields: list[str],
    import_id: str,
    source_id: int | None,
    now: datetime,
    numbered: tuple[str, str] | None = None,
    rules: IdentityRules,
) -> StoreCounts:
    """Upsert the rows of ``_imp_parsed`` into ``kind.table`` by ``kind.key``; link customers' and
    orders' identifiers (OneID) and stamp their ``identity_idx``."""
    table = kind.table
    if numbered is not None:
        fields = [*fields, numbered[0]]
    rows, in_file = _good_rows(cur, kind.key, fields, keep_last=True, numbered=numbered)
    counts = StoreCounts(duplicate=in_file)
    # OneID first: the rows' observation becomes one more field, stored (and compared) with them.
    if kind.name in ("customers", "orders") and _link_entities(
        cur, kind=kind, rows=rows, fields=fields, import_id=import_id, source_id=source_id, now=now, rules=rules
    ):
        rows = "_imp_rows_id"
        fields = [*fields, "identity_idx"]
    stamp: dict[str, exp.Expr] = {"import_id": lit(import_id)}
    if kind.has_updated_at:
        stamp["updated_at"] = _ts(now)
    if kind.has_source and source_id is not None:
        stamp["source_id"] = lit(source_id)
    values = [f for f in fields if f not in kind.key]
    target_has_rows = _count(cur, exp.select(exp.func("count", exp.Star())).from_(
        exp.select("1").from_(table).limit(1).subquery("_t")).sql("duckdb"))  # fmt: skip
    total = _count(cur, exp.select(exp.func("count", exp.Star())).from_(rows).sql("duckdb"))
    matched = 0
    if target_has_rows:
        differs: list[exp.Expr] = []
        for f in values:
            new, old = exp.column(f, table="n", quoted=True), exp.column(f, table="t", quoted=True)
            if f == kind.extras:
                merged = exp.func("json_merge_patch", exp.func("coalesce", old, lit("{}")), new)
                differs.append(exp.and_(new.is_(exp.null()).not_(), exp.NullSafeEQ(this=merged, expression=old).not_()))
            else:
                differs.append(exp.NullSafeEQ(this=new, expression=old).not_())
        if "source_id" in stamp:
            old_source = exp.column("source_id", table="t", quoted=True)
            differs.append(exp.NullSafeEQ(this=old_source, expression=stamp["source_id"]).not_())
        changes = exp.or_(*differs) if differs else exp.false()
        joined = exp.select().from_(exp.alias_(exp.to_table(rows), "n"))
        joined = joined.join(exp.alias_(exp.to_table(table), "t"), on=_key_match(kind.key, "n", "t"))
        # One pass tells how many rows are stored already and how many of those differ.
        tally = joined.select(exp.func("count", exp.Star()), exp.func("count_if", changes))
        got = cur.execute(tally.sql("duckdb")).fetchall()[0]
        matched, counts.updated = int(got[0]), int(got[1] or 0)
        counts.duplicate += matched - counts.updated
        if counts.updated:
            changed = joined.select(*(exp.column(f, table="n", quoted=True) for f in fields)).where(changes)
            cur.execute(_temp("_imp_changed", changed))
            if counts.updated:
                sets: dict[str, exp.Expr] = {}
                for f in values:
                    new = exp.column(f, table="c", quoted=True)
                    if f == kind.extras:
                        old = exp.column(f, table=table, quoted=True)
                        merged = exp.func("json_merge_patch", exp.func("coalesce", old, lit("{}")), new)
                        sets[f] = exp.Case(ifs=[exp.If(this=new.is_(exp.null()), true=old)], default=merged)
                    else:
                        sets[f] = new
                sets.update(stamp)
                update = exp.update(
                    table,
                    dict(sets),
                    where=_key_match(kind.key, table, "c"),
                    from_=exp.From(this=exp.alias_(exp.to_table("_imp_changed"), "c")),
                )
                cur.execute(update.sql("duckdb"))
    if matched == total:  # nothing new (a re-import): no insert to run
        fresh = None
    elif matched:
        fresh = (
            exp.select(*(col(f) for f in fields), *(v.as_(k) for k, v in stamp.items()))
            .from_(exp.alias_(exp.to_table(rows), "n"))
            .where(
                exp.not_(
                    exp.Exists(
                        this=exp.select("1")
                        .from_(exp.alias_(exp.to_table(table), "t"))
                        .where(_key_match(kind.key, "n", "t"))
                    )
                )
            )
        )
    else:
        fresh = exp.select(*(col(f) for f in fields), *(v.as_(k) for k, v in stamp.items())).from_(rows)
    if fresh is not None:
        insert = exp.insert(fresh, exp.to_table(table), columns=[*fields, *stamp])
        counts.stored = _count(cur, insert.sql("duckdb"))
    return counts


def _origin(import_id: str) -> exp.Expr:
    """``import:<id>:row:<n>`` — the data row of the file (1-based) a link came from."""
    row = exp.cast(col(ROW) + lit(1), "VARCHAR")
    return exp.DPipe(this=lit(f"import:{import_id}:row:"), expression=row, safe=True)


def _link_entities(
    cur: duckdb.DuckDBPyConnection,
    *,
    kind: Kind,
    rows: str,
    fields: list[str],
    import_id: str,
    source_id: int | None,
    now: datetime,
    rules: IdentityRules,
) -> bool:
    """Link the rows' identifiers; ``_imp_rows_id`` = the rows plus their ``identity_idx``. False when
    the rows carry no identifier column (nothing linked, no table made)."""
    columns = CUSTOMER_ID_COLUMNS if kind.name == "customers" else ORDER_ID_COLUMNS
    if not any(c in fields for c in columns):
        return False
    time_col = "registered_at" if kind.name == "customers" else "ordered_at"
    seen = exp.func("coalesce", col(time_col), _ts(now)) if time_col in fields else _ts(now)
    candidates = entity_candidates(
        rows,
        columns=columns,
        present=fields,
        row_key=col(ROW),
        seen_at=seen,
        source_id=lit(source_id) if source_id is not None else exp.null(),
        origin=_origin(import_id),
    )
    identity.link(cur, candidates, rules=rules, now=now)
    with_idx = (
        exp.select(exp.Star(), exp.column("obs_idx", table="m").as_("identity_idx"))
        .from_(exp.alias_(exp.to_table(rows), "r"))
        .join(exp.alias_(exp.to_table(identity.ROWS_TABLE), "m"),
              on=exp.column("row_key", table="m").eq(exp.column(ROW, table="r", quoted=True)), join_type="LEFT")
    )  # fmt: skip
    cur.execute(_temp("_imp_rows_id", with_idx))
    cur.execute(f"DROP TABLE {identity.ROWS_TABLE}")
    return True


def store_events(
    cur: duckdb.DuckDBPyConnection,
    *,
    fields: list[str],
    source_id: int,
    rules: IdentityRules,
    now: datetime,
    sort: bool = False,
) -> StoreCounts:
    """Append the events of ``_imp_parsed`` that ``(source_id, message_id)`` does not know yet."""
    rows, in_file = _good_rows(cur, ("message_id",), fields, keep_last=False)
    counts = StoreCounts(duplicate=in_file)
    source = lit(source_id)
    known = exp.select("1").from_(exp.alias_(exp.to_table("events"), "e"))
    known_for_source = known.where(exp.column("source_id", table="e").eq(source))
    if _count(cur, exp.select(exp.Exists(this=known_for_source)).sql("duckdb")):
        fresh = exp.select("*").from_(exp.alias_(exp.to_table(rows), "r")).where(
            exp.not_(exp.Exists(this=known_for_source.copy().where(
                exp.column("message_id", table="e").eq(exp.column("message_id", table="r")), append=True)))
        )  # fmt: skip
        cur.execute(_temp("_imp_fresh", fresh))
        fresh_name = "_imp_fresh"
        before = _count(cur, exp.select(exp.func("count", exp.Star())).from_(rows).sql("duckdb"))
        after = _count(cur, "SELECT count(*) FROM _imp_fresh")
        counts.duplicate += before - after
    else:
        fresh_name = rows
    if "event" in fields:
        missing = (
            exp.select(col("event"))
            .distinct()
            .from_(exp.alias_(exp.to_table(fresh_name), "f"))
            .where(exp.and_(
                col("event").is_(exp.null()).not_(),
                exp.not_(exp.Exists(this=exp.select("1").from_(exp.alias_(exp.to_table("event_names"), "n")).where(
                    exp.column("name", table="n").eq(exp.column("event", table="f"))))),
            ))
        )  # fmt: skip
        cur.execute(exp.insert(missing, exp.to_table("event_names"), columns=["name"]).sql("duckdb"))
    present = set(fields)
    projections: list[exp.Expr] = []
    for name in EVENT_TABLE_COLUMNS:
        if name == "source_id":
            value: exp.Expr = source
        elif name == "event_id":
            value = exp.column("event_id", table="n") if "event" in present else exp.null()
        elif name == "type":
            value = exp.cast(exp.column("type", table="f", quoted=True), exp.DataType.build("message_type", udt=True))
        elif name in present:
            value = exp.column(name, table="f", quoted=True)
        else:
            value = exp.null()
        projections.append(value.as_(exp.to_identifier(name, quoted=True)))
    identity.link(
        cur, event_candidates(fresh_name, rules, present=present, row_key=ROW, source_id=source), rules=rules, now=now
    )
    projections.append(exp.column("obs_idx", table="m").as_("identity_idx"))
    select = exp.select(*projections).from_(exp.alias_(exp.to_table(fresh_name), "f"))
    select = select.join(
        exp.alias_(exp.to_table(identity.ROWS_TABLE), "m"),
        on=exp.column("row_key", table="m").eq(exp.column(ROW, table="f", quoted=True)),
        join_type="LEFT",
    )
    if "event" in present:
        select = select.join(
            exp.alias_(exp.to_table("event_names"), "n"),
            on=exp.column("name", table="n").eq(exp.column("event", table="f")),
            join_type="LEFT",
        )
    if sort:
        select = select.order_by(exp.column("timestamp", table="f", quoted=True))
    columns = [*EVENT_TABLE_COLUMNS, "identity_idx"]
    counts.stored = _count(cur, exp.insert(select, exp.to_table("events"), columns=columns).sql("duckdb"))
    cur.execute(f"DROP TABLE {identity.ROWS_TABLE}")
    return counts


def record_run(
    cur: duckdb.DuckDBPyConnection,
    *,
    import_id: str,
    kind: str,
    file_name: str,
    file_sha256: str,
    file_format: str,
    source_id: int | None,
    started_at: datetime,
    finished_at: datetime,
    rows_read: int,
    rows_stored: int,
    rows_updated: int,
    rows_duplicate: int,
    rows_rejected: int,
    status: str,
    rejects_path: str | None = None,
    error: str | None = None,
) -> None:
    """The ``import_runs`` row (in the same transaction as the rows, for a stored import).

    ``rows_updated``, ``rejects_path`` and ``error`` are written once the table has those columns
    (a proposed schema version); until then they are left out.
    """
    values: dict[str, object] = {
        "import_id": import_id, "kind": kind, "file_name": file_name, "file_sha256": file_sha256,
        "file_format": file_format, "source_id": source_id, "started_at": started_at, "finished_at": finished_at,
        "rows_read": rows_read, "rows_stored": rows_stored, "rows_updated": rows_updated,
        "rows_duplicate": rows_duplicate, "rows_rejected": rows_rejected, "status": status,
        "rejects_path": rejects_path, "error": error,
    }  # fmt: skip
    existing = {
        r[0]
        for r in cur.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'import_runs'"
        ).fetchall()
    }
    names = [n for n in values if n in existing]
    insert = exp.insert(
        exp.select(*(exp.Placeholder() for _ in names)),
        exp.to_table("import_runs"),
        columns=[exp.to_identifier(n, quoted=True) for n in names],
    )
    cur.execute(insert.sql("duckdb"), [values[n] for n in names])
