"""What is stored: counts per source and in total (``tessera stats``, ``GET /admin/stats``)."""

from __future__ import annotations

from typing import Any

import duckdb

from tessera.services.sources import Source

_PER_SOURCE = {
    "events": "SELECT source_id, count(*) FROM events GROUP BY ALL",
    "dead_letters": "SELECT source_id, count(*) FROM dead_letters GROUP BY ALL",
    "profiles": "SELECT source_id, count(DISTINCT profile_idx) FROM profile_identifiers GROUP BY ALL",
    "customers": "SELECT source_id, count(*) FROM customers GROUP BY ALL",
    "orders": "SELECT source_id, count(*) FROM orders GROUP BY ALL",
}
_TOTALS = {
    "events": "SELECT count(*) FROM events",
    "dead_letters": "SELECT count(*) FROM dead_letters",
    "profiles": "SELECT count(*) FROM profiles",
    "customers": "SELECT count(*) FROM customers",
    "orders": "SELECT count(*) FROM orders",
    "order_items": "SELECT count(*) FROM order_items",
    "products": "SELECT count(*) FROM products",
    "reviews": "SELECT count(*) FROM reviews",
    "event_names": "SELECT count(*) FROM event_names",
    "imports": "SELECT count(*) FROM import_runs WHERE status = 'completed'",
}


def collect_stats(
    *, cur: duckdb.DuckDBPyConnection, sources: list[Source], wal_backlog_bytes: int = 0
) -> dict[str, Any]:
    per: dict[int | None, dict[str, int]] = {}
    for metric, sql in _PER_SOURCE.items():
        for source_id, n in cur.execute(sql).fetchall():
            per.setdefault(source_id, {})[metric] = int(n)
    rows = []
    known = set()
    for s in sources:
        known.add(s.id)
        counts = per.get(s.id, {})
        rows.append({"id": s.id, "name": s.name, "kind": s.kind, **{m: counts.get(m, 0) for m in _PER_SOURCE}})
    # Data without a known source (file imports without --source) is listed as one row.
    other = {m: sum(v.get(m, 0) for k, v in per.items() if k not in known) for m in _PER_SOURCE}
    if any(other.values()):
        rows.append({"id": None, "name": "(no source)", "kind": "import", **other})
    totals: dict[str, int] = {}
    for metric, sql in _TOTALS.items():
        row = cur.execute(sql).fetchone()
        totals[metric] = int(row[0]) if row else 0
    return {"sources": rows, "totals": totals, "wal_backlog_bytes": wal_backlog_bytes}
