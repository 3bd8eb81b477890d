"""Profiles (用户档案) of the Foundation step: one profile per primary identifier.

This is the seam the OneID step replaces with real identity resolution: everything that creates
profiles calls :func:`link_primary_identifiers` with one primary identifier per record.
"""

from __future__ import annotations

from collections.abc import Collection

import duckdb
from sqlglot import exp

#: Columns of the query passed to :func:`link_primary_identifiers`.
LINK_COLUMNS = ("id_type", "id_value", "seen_at", "source_id")


def primary_identity(
    relation: str, *, present: Collection[str] = ("user_id", "anonymous_id"), source_id: exp.Expr | None = None
) -> exp.Select:
    """The link rows of event-shaped rows in ``relation``: ``user_id`` when set, else ``anonymous_id``.

    ``present`` names which of the two id columns the relation has; ``source_id`` overrides its
    ``source_id`` column. Shared by the collection loader and the file importer.
    """
    ids = [exp.column(n) for n in ("user_id", "anonymous_id") if n in present]
    if not ids:
        raise ValueError("events need a user_id or an anonymous_id column")
    id_value = exp.func("coalesce", *ids) if len(ids) > 1 else ids[0]
    id_type: exp.Expr = exp.Literal.string(ids[0].name)
    if len(ids) > 1:
        id_type = exp.Case(
            ifs=[exp.If(this=exp.column("user_id").is_(exp.null()).not_(), true=exp.Literal.string("user_id"))],
            default=exp.Literal.string("anonymous_id"),
        )
    source = source_id if source_id is not None else exp.column("source_id")
    return exp.select(
        id_type.as_("id_type"),
        id_value.as_("id_value"),
        exp.column("timestamp", quoted=True).as_("seen_at"),
        exp.cast(source, "INTEGER").as_("source_id"),
    ).from_(exp.to_table(relation))


def link_primary_identifiers(cur: duckdb.DuckDBPyConnection, rows: exp.Query) -> int:
    """Create profiles for identifiers not seen before; refresh first/last seen of known ones.

    ``rows`` is a query with the columns :data:`LINK_COLUMNS` (id_type VARCHAR, id_value VARCHAR,
    seen_at TIMESTAMP, source_id INTEGER). Runs inside the caller's transaction. Returns how many
    profiles were created.
    """
    cur.execute(
        exp.Create(
            this=exp.to_table("_link_input"),
            kind="VIEW",
            expression=rows,
            properties=exp.Properties(expressions=[exp.TemporaryProperty()]),
            replace=True,
        ).sql("duckdb")
    )
    cur.execute(
        """
        CREATE OR REPLACE TEMP TABLE _link_new AS
        SELECT id_type, id_value, min(seen_at) AS first_seen, max(seen_at) AS last_seen,
               any_value(source_id) AS source_id
        FROM _link_input
        WHERE id_value IS NOT NULL AND id_value <> ''
        GROUP BY id_type, id_value
        """
    )
    cur.execute(
        """
        UPDATE profile_identifiers p
        SET first_seen = least(p.first_seen, n.first_seen), last_seen = greatest(p.last_seen, n.last_seen)
        FROM _link_new n
        WHERE p.id_type = n.id_type AND p.id_value = n.id_value
          AND (n.first_seen < p.first_seen OR n.last_seen > p.last_seen)
        """
    )
    cur.execute(
        """
        CREATE OR REPLACE TEMP TABLE _link_fresh AS
        SELECT n.*, nextval('profile_idx_seq')::INTEGER AS profile_idx
        FROM _link_new n ANTI JOIN profile_identifiers p USING (id_type, id_value)
        """
    )
    row = cur.execute("SELECT count(*) FROM _link_fresh").fetchone()
    created = int(row[0]) if row else 0
    if created:
        cur.execute(
            """
            INSERT INTO profiles (profile_idx, profile_id, created_at, first_seen, last_seen, traits)
            SELECT profile_idx, 'p_' || substr(md5(id_type || ':' || id_value), 1, 20),
                   now()::TIMESTAMP, first_seen, last_seen, NULL
            FROM _link_fresh
            """
        )
        cur.execute(
            """
            INSERT INTO profile_identifiers
            SELECT id_type, id_value, profile_idx, source_id, first_seen, last_seen FROM _link_fresh
            """
        )
    cur.execute(
        """
        UPDATE profiles pr SET last_seen = greatest(pr.last_seen, x.last_seen),
                               first_seen = least(pr.first_seen, x.first_seen)
        FROM (SELECT p.profile_idx, min(n.first_seen) AS first_seen, max(n.last_seen) AS last_seen
              FROM _link_new n JOIN profile_identifiers p USING (id_type, id_value)
              GROUP BY p.profile_idx) x
        WHERE pr.profile_idx = x.profile_idx
          AND (x.last_seen > pr.last_seen OR x.first_seen < pr.first_seen)
        """
    )
    cur.execute("DROP TABLE IF EXISTS _link_new")
    cur.execute("DROP TABLE IF EXISTS _link_fresh")
    cur.execute("DROP VIEW _link_input")
    return created
