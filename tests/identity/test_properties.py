"""Invariants of identity resolution (Hypothesis).

- Where no limit is hit, the profiles do not depend on the order messages arrive in.
- Limits are never exceeded, whatever the order.
- Re-applying a message changes nothing.
- The full rebuild (replaying by event time) equals incremental linking in event-time order —
  including where limits decide — and keeps the same profile ids.
"""

from __future__ import annotations

from datetime import datetime

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera.domain.identity import IdentityRules, default_rules, observation_key
from tessera.domain.unify import Graph, Observation
from tessera.services.identity_rebuild import rebuild
from tests.identity.support import feed, observation_owners, profiles_by_id, store

RULES = default_rules()
NO_LIMITS = RULES.model_copy(update={"types": [t.model_copy(update={"limit": 10_000}) for t in RULES.types]})

_IDS = st.one_of(
    st.tuples(st.just("user_id"), st.sampled_from(["u0", "u1", "u2", "u3"])),
    st.tuples(st.just("phone"), st.sampled_from(["+8613800138000", "+8613800138001", "+8613900139000"])),
    st.tuples(st.just("email"), st.sampled_from(["a@x.cn", "b@x.cn"])),
    st.tuples(st.just("device_id"), st.sampled_from(["d0", "d1"])),
    st.tuples(st.just("anonymous_id"), st.sampled_from([f"a{i}" for i in range(8)])),
)
_OBS_IDS = st.lists(_IDS, min_size=1, max_size=4, unique=True)


def _observations(id_sets: list[list[tuple[str, str]]]) -> list[Observation]:
    """One observation per id set, event time = its position (seconds), as the loader keys them."""
    return [
        Observation(key=observation_key(ids), ids=tuple(ids), seen_at=(i + 1) * 1_000_000, origin=f"m{i}")
        for i, ids in enumerate(id_sets)
    ]


def _run(observations: list[Observation], rules: IdentityRules) -> Graph:
    counter = iter(range(1, 10_000))
    graph = Graph(rules, new_idx=lambda: next(counter))
    for obs in observations:
        graph.resolve(obs)
    return graph


def _groups(graph: Graph) -> set[frozenset[tuple[str, str]]]:
    return {frozenset(p.ids) for p in graph.profiles.values()}


@given(st.lists(_OBS_IDS, min_size=1, max_size=25), st.randoms(use_true_random=False))
def test_without_limits_the_order_of_arrival_does_not_matter(id_sets: list[list[tuple[str, str]]], rnd) -> None:  # type: ignore[no-untyped-def]
    observations = _observations(id_sets)
    shuffled = observations[:]
    rnd.shuffle(shuffled)
    assert _groups(_run(observations, NO_LIMITS)) == _groups(_run(shuffled, NO_LIMITS))


@given(st.lists(_OBS_IDS, min_size=1, max_size=30), st.randoms(use_true_random=False))
def test_limits_are_never_exceeded(id_sets: list[list[tuple[str, str]]], rnd) -> None:  # type: ignore[no-untyped-def]
    observations = _observations(id_sets)
    rnd.shuffle(observations)
    graph = _run(observations, RULES)
    for profile in graph.profiles.values():
        for id_type in {t for t, _ in profile.ids}:
            assert sum(1 for t, _ in profile.ids if t == id_type) <= RULES.limit(id_type)
    # No identifier is in two profiles, and every identifier's owner holds it.
    for ident, idx in graph.owner.items():
        assert ident in graph.profiles[idx].ids


@given(st.lists(_OBS_IDS, min_size=1, max_size=25), st.data())
def test_reapplying_a_message_changes_nothing(id_sets: list[list[tuple[str, str]]], data: st.DataObject) -> None:
    observations = _observations(id_sets)
    graph = _run(observations, RULES)
    before = ({p.profile_id: dict(p.ids) for p in graph.profiles.values()}, len(graph.merged))
    again = data.draw(st.lists(st.sampled_from(observations), min_size=1, max_size=5))
    for obs in again:
        graph.resolve(obs)
    assert ({p.profile_id: dict(p.ids) for p in graph.profiles.values()}, len(graph.merged)) == before


def test_a_windowed_limit_counts_only_recent_links() -> None:
    rules = RULES.model_copy(
        update={
            "types": [
                t.model_copy(update={"limit": 2, "window_days": 30}) if t.name == "device_id" else t
                for t in RULES.types
            ]
        }  # fmt: skip
    )
    day = 86_400_000_000
    obs = [
        Observation(key="k1", ids=(("user_id", "u"), ("device_id", "d1")), seen_at=1 * day),
        Observation(key="k2", ids=(("user_id", "u"), ("device_id", "d2")), seen_at=2 * day),
        Observation(key="k3", ids=(("user_id", "u"), ("device_id", "d3")), seen_at=3 * day),  # third in 30 days
        Observation(key="k4", ids=(("user_id", "u"), ("device_id", "d4")), seen_at=60 * day),  # the others aged out
    ]
    graph = _run(obs, rules)
    (profile,) = graph.profiles.values()
    assert {v for t, v in profile.ids if t == "device_id"} == {"d1", "d2", "d4"}
    assert [e.identifier for e in graph.log if e.action == "drop"] == [("device_id", "d3")]


_MESSAGE = st.fixed_dictionaries(
    {},
    optional={
        "user_id": st.sampled_from(["u0", "u1", "u2", "u3"]),
        "anonymous_id": st.sampled_from([f"a{i}" for i in range(8)]),
        "device_id": st.sampled_from(["d0", "d1"]),
        "traits": st.sampled_from(
            ['{"phone": "13800138000"}', '{"phone": "138 0013 8001", "email": "A@x.cn"}', '{"email": "b@x.cn"}']
        ),  # fmt: skip
    },
).filter(lambda m: "user_id" in m or "anonymous_id" in m)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_MESSAGE, min_size=1, max_size=30), st.lists(st.integers(1, 8), min_size=1, max_size=10))
def test_rebuild_equals_incremental_linking_in_event_time_order(messages: list[dict], sizes: list[int]) -> None:  # type: ignore[type-arg]
    con = store()
    for i, m in enumerate(messages):
        m["message_id"], m["ts"] = f"m{i}", i + 1
    start = 0
    for size in sizes * 30:  # arrival in event-time order, in batches of varying size
        if start >= len(messages):
            break
        feed(con, messages[start : start + size], RULES)
        start += size
    incremental = (profiles_by_id(con), observation_owners(con))
    rebuild(con, rules=RULES, now=datetime(2026, 11, 2))
    assert (profiles_by_id(con), observation_owners(con)) == incremental
    # …and from nothing but the raw links, too.
    con.execute("DELETE FROM profiles")
    con.execute("DELETE FROM profile_identifiers")
    con.execute("DELETE FROM profile_redirects")
    rebuild(con, rules=RULES, now=datetime(2026, 11, 3))
    assert (profiles_by_id(con), observation_owners(con)) == incremental


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_MESSAGE, min_size=1, max_size=25), st.randoms(use_true_random=False))
def test_without_limits_rebuild_equals_incremental_in_any_arrival_order(messages: list[dict], rnd) -> None:  # type: ignore[no-untyped-def,type-arg]
    con = store()
    for i, m in enumerate(messages):
        m["message_id"], m["ts"] = f"m{i}", i + 1
    arrival = messages[:]
    rnd.shuffle(arrival)
    for i in range(0, len(arrival), 4):
        feed(con, arrival[i : i + 4], NO_LIMITS)
    incremental = set(profiles_by_id(con).values())
    rebuild(con, rules=NO_LIMITS, now=datetime(2026, 11, 2))
    assert set(profiles_by_id(con).values()) == incremental
