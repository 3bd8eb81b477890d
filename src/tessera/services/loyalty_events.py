"""Publishing loyalty events (``Tier Changed``, ``Points Expiring`` …) as system events.

A loyalty change queues its event in ``loyalty_events`` in the change's own operational
transaction (:func:`tessera.services.loyalty_common.emit`). :func:`publish` then stores the queued
events in DuckDB as system events (``source_id`` 0, message id ``loyalty:<key>``, the profile's
first observation), feeding the journeys' inbox in that same DuckDB transaction when a live journey
watches the name, and marks them published in the operational store afterwards.

A crash between the two commits publishes the same rows again; message ids already stored are
skipped, so every event is stored exactly once.
"""

from __future__ import annotations

from datetime import datetime

import orjson
from sqlalchemy import select, update

from tessera.runtime import Instance
from tessera.services.audience_refresh import SYSTEM_SOURCE_ID
from tessera.stores.models import LoyaltyEventRow

PREFIX = "loyalty:"

_STAGE = "CREATE TEMP TABLE _loyalty_pub (message_id VARCHAR, profile_id VARCHAR, name VARCHAR, happened TIMESTAMP, props VARCHAR)"
# The staged events not stored yet (a re-publish after a crash finds them stored).
_NEW = """
CREATE TEMP TABLE _loyalty_new AS
SELECT p.* FROM _loyalty_pub AS p
WHERE NOT EXISTS (
    SELECT 1 FROM events AS e
    WHERE e.source_id = $source AND e.message_id = p.message_id AND e.received_at >= $since
)
"""
# Addressed to the profile's first observation (a profile unknown to DuckDB is skipped).
_EMIT = """
INSERT INTO events (message_id, source_id, type, event_id, "timestamp", received_at, properties, identity_idx)
SELECT p.message_id, $source, 'track', n.event_id, p.happened, $now, p.props::JSON, o.obs_idx
FROM _loyalty_new AS p
JOIN event_names AS n ON n.name = p.name
JOIN profiles AS f ON f.profile_id = p.profile_id
JOIN (
    SELECT profile_idx, min(obs_idx) AS obs_idx FROM identity_links
    WHERE profile_idx IN (SELECT f2.profile_idx FROM profiles AS f2 JOIN _loyalty_new AS q ON q.profile_id = f2.profile_id)
    GROUP BY profile_idx
) AS o ON o.profile_idx = f.profile_idx
"""
_INBOX = """
INSERT INTO journey_inbox (message_id, event_id, obs_idx, "timestamp", received_at, properties)
SELECT e.message_id, e.event_id, e.identity_idx, e."timestamp", e.received_at, e.properties
FROM events AS e JOIN event_names AS n ON n.event_id = e.event_id
WHERE e.received_at = $now AND e.source_id = $source
  AND e.message_id IN (SELECT message_id FROM _loyalty_new)
  AND n.name IN (SELECT name FROM journey_watch)
"""


def publish(inst: Instance, now: datetime | None = None, *, limit: int = 20_000) -> int:
    """Store queued loyalty events as system events; returns how many were published."""
    now = now or inst.clock.now()
    total = 0
    while True:
        with inst.operational.session() as s:
            rows = s.execute(
                select(LoyaltyEventRow.id, LoyaltyEventRow.key, LoyaltyEventRow.profile_id, LoyaltyEventRow.name,
                       LoyaltyEventRow.properties, LoyaltyEventRow.created_at)
                .where(LoyaltyEventRow.published_at.is_(None))
                .order_by(LoyaltyEventRow.id)
                .limit(limit)
            ).all()  # fmt: skip
        if not rows:
            return total
        stamp = now.replace(tzinfo=None)
        since = min(r.created_at for r in rows).replace(tzinfo=None)
        staged = [
            (
                PREFIX + r.key,
                r.profile_id,
                r.name,
                r.created_at.replace(tzinfo=None),
                orjson.dumps(r.properties).decode(),
            )
            for r in rows
        ]
        cur = inst.analytic.cursor()
        try:
            with inst.analytic.transaction(cur) as tx:
                for name in sorted({r.name for r in rows}):
                    tx.execute("INSERT INTO event_names (name) VALUES (?) ON CONFLICT (name) DO NOTHING", [name])
                tx.execute("DROP TABLE IF EXISTS _loyalty_pub")
                tx.execute(_STAGE)
                tx.executemany("INSERT INTO _loyalty_pub VALUES (?, ?, ?, ?, ?)", staged)
                tx.execute("DROP TABLE IF EXISTS _loyalty_new")
                tx.execute(_NEW, {"source": SYSTEM_SOURCE_ID, "since": since})
                tx.execute(_EMIT, {"source": SYSTEM_SOURCE_ID, "now": stamp})
                tx.execute(_INBOX, {"source": SYSTEM_SOURCE_ID, "now": stamp})
                tx.execute("DROP TABLE _loyalty_pub")
                tx.execute("DROP TABLE _loyalty_new")
                inst.analytic.changed("events")
        finally:
            cur.close()
        with inst.operational.session() as s:
            ids = [r.id for r in rows]
            for i in range(0, len(ids), 900):
                s.execute(
                    update(LoyaltyEventRow).where(LoyaltyEventRow.id.in_(ids[i : i + 900])).values(published_at=now)
                )
        total += len(rows)
        if len(rows) < limit:
            return total
