"""Rule tags re-evaluated as events arrive (事件触发的标签更新).

The loader tells the reactor the observations of the events it has just stored; every ``interval`` the
reactor re-evaluates, for those profiles only, the active rule tags whose conditions read a
profile's own events (:func:`tessera.services.tag_rules.reacts_to_events`), in one scoped run
(trigger ``events``). Scheduled and manual runs still recompute everyone: relative windows
("in the last 30 days") move with time, not with events.
"""

from __future__ import annotations

import threading

import pyarrow as pa
from sqlalchemy import select

from tessera.domain.tags import Tag
from tessera.runtime import Instance
from tessera.services.background import Periodic
from tessera.services.tag_catalogue import tag_from_row
from tessera.services.tag_rules import reacts_to_events
from tessera.services.tag_runs import run_tags
from tessera.services.tag_values import RunResult
from tessera.stores.models import TagDefinitionRow


def reacting_tags(inst: Instance) -> list[Tag]:
    with inst.operational.session() as s:
        rows = s.scalars(
            select(TagDefinitionRow).where(TagDefinitionRow.kind == "rule", TagDefinitionRow.status == "active")
        ).all()
        return [t for t in (tag_from_row(r) for r in rows) if reacts_to_events(t)]


class TagReactor(Periodic):
    """A thread of the server: gathers touched profiles, re-evaluates reacting rule tags for them."""

    name = "tag-reactor"

    def __init__(self, inst: Instance, *, interval: float = 2.0) -> None:
        super().__init__(interval=interval)
        self.inst = inst
        self.runs = 0
        self._pending: set[int] = set()
        self._lock = threading.Lock()

    def notify(self, observations: list[int]) -> None:
        """Called by the loader after a commit with the observations of the events it stored (cheap:
        it only remembers them; their profiles are looked up when there is something to react with)."""
        with self._lock:
            self._pending.update(observations)

    def tick(self) -> None:
        self.react()

    def react(self) -> list[RunResult]:
        """Re-evaluate now for the profiles gathered so far."""
        with self._lock:
            observations, self._pending = sorted(self._pending), set()
        if not observations:
            return []
        tags = reacting_tags(self.inst)
        if not tags:
            return []
        scope = profiles_of(self.inst, observations)
        if not scope:
            return []
        self.runs += 1
        return run_tags(self.inst, tags, trigger="events", scope=scope)


def profiles_of(inst: Instance, observations: list[int]) -> list[int]:
    """The profiles the observations belong to now."""
    cur = inst.analytic.cursor()
    try:
        cur.register("_react_obs", pa.table({"obs_idx": pa.array(observations, pa.int64())}))
        rows = cur.execute(
            "SELECT DISTINCT l.profile_idx FROM identity_links l SEMI JOIN _react_obs o ON o.obs_idx = l.obs_idx "
            "WHERE l.profile_idx IS NOT NULL"
        ).fetchall()
    finally:
        cur.close()
    return [r[0] for r in rows]
