"""Rule tags re-evaluated as events arrive (事件触发的标签更新).

The loader tells the reactor which profiles' events it has just stored; every ``interval`` the
reactor re-evaluates, for those profiles only, the active rule tags whose conditions read a
profile's own events (:func:`tessera.services.tag_rules.reacts_to_events`), in one scoped run
(trigger ``events``). Scheduled and manual runs still recompute everyone: relative windows
("in the last 30 days") move with time, not with events.
"""

from __future__ import annotations

import threading

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

    def notify(self, profile_idxs: list[int]) -> None:
        """Called by the loader after a commit (cheap: it only remembers the profiles)."""
        with self._lock:
            self._pending.update(profile_idxs)

    def tick(self) -> None:
        self.react()

    def react(self) -> list[RunResult]:
        """Re-evaluate now for the profiles gathered so far."""
        with self._lock:
            scope, self._pending = sorted(self._pending), set()
        if not scope:
            return []
        tags = reacting_tags(self.inst)
        if not tags:
            return []
        self.runs += 1
        return run_tags(self.inst, tags, trigger="events", scope=scope)
