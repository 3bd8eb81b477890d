"""The identity graph and the resolution of one observation (the Segment Unify model, made visible).

An *observation* is the set of identifiers one message or one imported row carries. Resolving it:

1. no profile holds any of them → a new profile with all of them;
2. one profile does → the new identifiers are linked to it;
3. several do → they are merged into the oldest (the one created by the earliest observation);

unless that would give a profile more identifiers of a type than the rules allow (counting only
those linked within the type's window), e.g. two different ``user_id``s. Then the lowest-priority
identifier of the observation is dropped, the decision logged, and matching retried.

Pure: no I/O. The incremental loader fills a :class:`Graph` with the part of the stored graph a
batch touches; the full rebuild uses it for the components where limits decide.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from tessera.domain.identity import IdentityRules

#: (id_type, id_value), normalised.
Identifier = tuple[str, str]
_DAY_US = 86_400_000_000


def profile_id_for(anchor: Identifier) -> str:
    """The profile id a profile gets from its anchor (the identifier that created it)."""
    return "p_" + hashlib.md5(f"{anchor[0]}:{anchor[1]}".encode()).hexdigest()[:20]


@dataclass(frozen=True, slots=True)
class Observation:
    key: str
    ids: tuple[Identifier, ...]
    #: Event time in microseconds since the epoch (UTC).
    seen_at: int
    origin: str | None = None

    def order(self) -> tuple[int, str]:
        """The replay order: event time, then the key (a deterministic tie-break)."""
        return (self.seen_at, self.key)


@dataclass(slots=True)
class Profile:
    idx: int
    profile_id: str
    anchor: Identifier
    #: ``Observation.order()`` of the observation that created it; the smallest survives a merge.
    created: tuple[int, str]
    #: identifier → when it was linked (event time, microseconds).
    ids: dict[Identifier, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class LogEntry:
    """A decision of the resolver (the append-only merge log)."""

    action: str  # "merge" | "drop"
    profile_id: str | None
    other_ids: tuple[str, ...]
    identifier: Identifier | None
    reason: str
    origin: str | None
    event_time: int


class Graph:
    """The identity graph (or the part of it a batch touches) and the resolver over it."""

    def __init__(
        self,
        rules: IdentityRules,
        *,
        new_idx: Callable[[], int],
        taken: Callable[[str], bool] = lambda _pid: False,
        reuse: dict[Identifier, tuple[int, str]] | None = None,
        suppressed: Iterable[Identifier] = (),
    ) -> None:
        self.rules = rules
        self._rank = {t.name: i for i, t in enumerate(rules.types)}
        self._limit = {t.name: t.limit for t in rules.types}
        self.new_idx = new_idx
        self.taken = taken
        #: anchor → (profile_idx, profile_id) to reuse when that anchor creates a profile again.
        self.reuse = dict(reuse or {})
        self.suppressed = set(suppressed)
        self.owner: dict[Identifier, int] = {}
        self.profiles: dict[int, Profile] = {}
        self.log: list[LogEntry] = []
        #: loser idx → survivor idx, for every merge done here.
        self.merged: dict[int, int] = {}
        self.created: set[int] = set()
        #: profiles merged away here (idx → the profile as it was), for redirects.
        self.removed: dict[int, Profile] = {}
        self._ids_in_use: set[str] = set()

    # -- filling from a store --------------------------------------------------------------
    def add(self, profile: Profile) -> None:
        self.profiles[profile.idx] = profile
        self._ids_in_use.add(profile.profile_id)
        for ident in profile.ids:
            self.owner[ident] = profile.idx

    # -- resolving ---------------------------------------------------------------------------
    def resolve(self, obs: Observation) -> int | None:
        """Apply one observation; returns the profile it belongs to (None when it has no identifiers)."""
        ranks, other = self._rank, len(self._rank)
        ids = sorted(set(obs.ids), key=lambda i: (ranks.get(i[0], other), i))
        if len(ids) > 1:
            for ident in [i for i in ids if i in self.suppressed]:
                ids.remove(ident)
                self._log("drop", None, (), ident, "unmerged: this identifier links to nothing", obs)
        if not ids:
            return None
        while True:
            profiles = list(dict.fromkeys(self.owner[i] for i in ids if i in self.owner))
            fresh = [i for i in ids if i not in self.owner]
            over = self._over_limit(profiles, fresh, obs.seen_at)
            if over is None:
                break
            reason, types = over
            # Drop the lowest-priority identifier taking part: one that pulls a profile in, or a
            # new one of a type over its limit. The others stay on the message.
            culprits = [i for i in ids if i in self.owner or i[0] in types]
            dropped = culprits[-1]
            ids.remove(dropped)
            holder = self.owner.get(dropped, profiles[0] if profiles else None)
            self._log(
                "drop", self.profiles[holder].profile_id if holder is not None else None, (), dropped, reason, obs
            )
        if not profiles:
            return self._create(ids, obs)
        survivor = min(profiles, key=lambda p: (self.profiles[p].created, p))
        target = self.profiles[survivor]
        others: list[str] = []
        for loser_idx in profiles:
            if loser_idx == survivor:
                continue
            loser = self.profiles.pop(loser_idx)
            others.append(loser.profile_id)
            for ident, linked in loser.ids.items():
                target.ids[ident] = linked
                self.owner[ident] = survivor
            self.removed[loser_idx] = loser
            self.merged[loser_idx] = survivor  # earlier losers reach the survivor through survivor_of
        if others:
            seen = ", ".join(f"{t}:{v}" for t, v in ids)
            self._log("merge", target.profile_id, tuple(others), None, f"seen together: {seen}", obs)
        for ident in fresh:
            target.ids[ident] = obs.seen_at
            self.owner[ident] = survivor
        return survivor

    def _over_limit(self, profiles: list[int], fresh: list[Identifier], at: int) -> tuple[str, set[str]] | None:
        """Why linking ``fresh`` and merging ``profiles`` would break a limit, and the types over it
        (None when it would not)."""
        if len(profiles) <= 1 and not fresh:
            return None
        if not profiles and len(fresh) == 1:
            return None  # one new identifier on its own never breaks a limit
        counts: dict[str, int] = {}
        for ident in fresh:
            counts[ident[0]] = counts.get(ident[0], 0) + 1
        merging = len(profiles) > 1
        types = set(counts)
        if merging:
            types |= {i[0] for p in profiles for i in self.profiles[p].ids}
        over: set[str] = set()
        reason: str | None = None
        for t in sorted(types, key=self.rules.rank):
            window = self.rules.window(t)
            since = at - window.days * _DAY_US if window is not None else None
            held = 0
            for p in profiles:
                held += sum(
                    1 for i, linked in self.profiles[p].ids.items() if i[0] == t and (since is None or linked >= since)
                )
            total = held + counts.get(t, 0)
            limit = self._limit.get(t) or self.rules.limit(t)
            if total > limit:
                over.add(t)
                if reason is None:
                    span = f" within {window.days} days" if window is not None else ""
                    if merging:
                        reason = f"merging {len(profiles)} profiles would give {total} {t} (limit {limit}{span})"
                    else:
                        reason = f"linking would give the profile {total} {t} (limit {limit}{span})"
        return (reason, over) if reason is not None else None

    def _create(self, ids: list[Identifier], obs: Observation) -> int:
        anchor = ids[0]
        reused = self.reuse.pop(anchor, None)
        if reused is not None:
            idx, pid = reused
        else:
            idx = self.new_idx()
            base = profile_id_for(anchor)
            pid, n = base, 1
            while pid in self._ids_in_use or self.taken(pid):
                n += 1
                pid = f"{base}_{n}"
        profile = Profile(idx=idx, profile_id=pid, anchor=anchor, created=obs.order())
        for ident in ids:
            profile.ids[ident] = obs.seen_at
            self.owner[ident] = idx
        self.profiles[idx] = profile
        self._ids_in_use.add(pid)
        self.created.add(idx)
        return idx

    def _log(
        self,
        action: str,
        profile_id: str | None,
        other: tuple[str, ...],
        ident: Identifier | None,
        reason: str,
        obs: Observation,
    ) -> None:
        self.log.append(LogEntry(action, profile_id, other, ident, reason, obs.origin, obs.seen_at))

    def renumber(self, real: Callable[[int], int]) -> None:
        """Replace provisional (negative) profile indexes by their real numbers."""
        self.profiles = {real(i): p for i, p in self.profiles.items()}
        for p in self.profiles.values():
            p.idx = real(p.idx)
        self.owner = {k: real(v) for k, v in self.owner.items()}
        self.merged = {real(k): real(v) for k, v in self.merged.items()}
        self.removed = {real(k): v for k, v in self.removed.items()}
        for p in self.removed.values():
            p.idx = real(p.idx)
        self.created = {real(i) for i in self.created}

    def survivor_of(self, idx: int) -> int:
        """The live profile a (possibly merged-away) profile ended in; compresses the path it walked."""
        path = []
        while idx in self.merged:
            path.append(idx)
            idx = self.merged[idx]
        for p in path[:-1]:
            self.merged[p] = idx
        return idx

    def partition(self) -> dict[str, frozenset[Identifier]]:
        """profile_id → its identifiers (for tests and comparisons)."""
        return {p.profile_id: frozenset(p.ids) for p in self.profiles.values()}
