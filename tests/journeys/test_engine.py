"""The pure step function: waits, splits, A/B, actions, goals, exits — with a moving logical clock."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.domain.journeys import JourneyError, parse_journey
from tessera.engine.step import Action, Converted, Event, Person, State, arm_for, enter, step

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai


def journey(nodes: list[dict[str, Any]], edges: list[tuple[str, str] | tuple[str, str, str]], **settings: Any) -> Any:
    return parse_journey({
        "nodes": nodes,
        "edges": [{"source": e[0], "target": e[1], **({"sourceHandle": e[2]} if len(e) == 3 else {})} for e in edges],
        "settings": settings,
    })  # fmt: skip


ENTRY = {"id": "in", "type": "entry", "data": {"event": {"name": "Signed Up"}}}
SMS = {"id": "sms", "type": "sms", "data": {"template": {"body": {"zh": "欢迎"}}}}


def person(**traits: Any) -> Person:
    return Person("jrn_1", "p1", "Asia/Shanghai", traits)


def run_to_end(j: Any, p: Person, now: datetime, state: State | None = None) -> tuple[State, list[Any], list[Any]]:
    """Advance through every timer, as the worker does after a long clock jump."""
    st_ = state or enter(j)
    effects, visits = [], []
    t = now
    for _ in range(50):
        out = step(j, st_, p, t)
        st_, effects, visits = out.state, effects + out.effects, visits + out.visits
        if st_.status != "waiting" or st_.due_at is None:
            break
        t = st_.due_at
    return st_, effects, visits


def test_a_duration_wait_holds_then_sends_at_the_logical_time() -> None:
    j = journey([ENTRY, {"id": "w", "type": "wait", "data": {"mode": "duration", "span": {"days": 1}}}, SMS],
                [("in", "w"), ("w", "sms")])  # fmt: skip
    out = step(j, enter(j), person(), T0)
    assert out.state.status == "waiting" and out.state.due_at == T0 + timedelta(days=1)
    assert out.effects == []
    assert step(j, out.state, person(), T0 + timedelta(hours=23)).changed is False
    late = step(j, out.state, person(), T0 + timedelta(days=3))  # the worker was late: the send is still day 1
    assert late.effects == [Action("sms", "sms", T0 + timedelta(days=1))]
    assert late.state.status == "completed"


def test_until_date_attribute_minus_a_day_at_a_local_time() -> None:
    wait = {"id": "w", "type": "wait", "data": {"mode": "until_date", "field": "event.booked_at",
                                                 "offset": {"days": -1}, "at_time": "18:00"}}  # fmt: skip
    j = journey([ENTRY, wait, SMS], [("in", "w"), ("w", "sms")])
    st_ = enter(j, trigger={"booked_at": "2026-11-25T10:30:00+08:00"})
    out = step(j, st_, person(), T0)
    assert out.state.due_at == datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # 24 Nov 18:00 Shanghai
    # a booking already within the day: no wait at all
    soon = step(j, enter(j, trigger={"booked_at": "2026-11-20T12:00:00+08:00"}), person(), T0)
    assert soon.effects and soon.state.status == "completed"
    # no date: the wait does not hold anyone
    assert step(j, enter(j), person(), T0).effects


def test_local_time_wait_uses_the_persons_time_zone_and_weekdays() -> None:
    wait = {"id": "w", "type": "wait", "data": {"mode": "local_time", "at_time": "09:30", "days_of_week": [0]}}
    j = journey([ENTRY, wait, SMS], [("in", "w"), ("w", "sms")])
    ny = Person("jrn_1", "p1", "America/New_York", {})
    out = step(j, enter(j), ny, T0)  # Thu 19 Nov 21:00 in New York → Monday 23 Nov 09:30 EST
    assert out.state.due_at == datetime(2026, 11, 23, 14, 30, tzinfo=UTC)


def test_wait_for_event_takes_the_event_exit_or_times_out() -> None:
    wait = {"id": "w", "type": "wait", "data": {"mode": "event", "timeout": {"days": 2},
                                                 "event": {"name": "Rated", "where": [{"property": "score", "op": "gte", "value": 7}]}}}  # fmt: skip
    thanks = {"id": "thanks", "type": "sms", "data": {"template": {"body": "谢谢"}}}
    sorry = {"id": "sorry", "type": "email", "data": {"template": {"body": "抱歉"}}}
    j = journey([ENTRY, wait, thanks, sorry], [("in", "w"), ("w", "thanks", "event"), ("w", "sorry", "timeout")])
    waiting = step(j, enter(j), person(), T0).state
    assert waiting.wait_event == "Rated"
    low = step(j, waiting, person(), T0 + timedelta(hours=1), Event("Rated", {"score": 5}, T0 + timedelta(hours=1)))
    assert not low.changed  # a score below 7 does not match
    before = step(j, waiting, person(), T0 + timedelta(hours=1), Event("Rated", {"score": 9}, T0 - timedelta(hours=1)))
    assert not before.changed  # happened before the person started waiting
    hit = step(j, waiting, person(), T0 + timedelta(hours=5), Event("Rated", {"score": "8"}, T0 + timedelta(hours=5)))
    assert [e.node for e in hit.effects] == ["thanks"] and hit.state.data["waited"]["w"] == {"score": "8"}
    timeout = step(j, waiting, person(), T0 + timedelta(days=2))
    assert [e.node for e in timeout.effects] == ["sorry"]
    assert [v.handle for v in timeout.visits] == ["timeout", "next"]


def test_split_paths_are_ranked_and_everyone_else_takes_else() -> None:
    cond = {"type": "attribute", "field": "city", "op": "eq", "value": "上海"}
    split = {"id": "s", "type": "split", "data": {"paths": [{"handle": "sh", "condition": cond},
                                                            {"handle": "any", "condition": cond}]}}  # fmt: skip
    j = journey([ENTRY, split, SMS, {"id": "x", "type": "exit"}], [("in", "s"), ("s", "sms", "sh"), ("s", "x", "else")])
    both = Person("jrn_1", "p1", "Asia/Shanghai", {}, lambda node, path: True)
    out = step(j, enter(j), both, T0)
    assert [(v.node, v.handle) for v in out.visits] == [("in", "next"), ("s", "sh"), ("sms", "next")]
    none = Person("jrn_1", "p1", "Asia/Shanghai", {}, lambda node, path: False)
    out = step(j, enter(j), none, T0)
    assert out.state.status == "exited" and out.visits[-1].handle == "exit"
    # the second path matches but has no edge: the person completes there
    second = Person("jrn_1", "p1", "Asia/Shanghai", {}, lambda node, path: path == 1)
    assert step(j, enter(j), second, T0).state.status == "completed"


def test_ab_assignment_is_deterministic_recorded_and_follows_the_weights() -> None:
    arms = [("a", 45.0), ("b", 45.0), ("control", 10.0)]
    got = Counter(arm_for("jrn_1", "ab", f"p{i}", arms) for i in range(20_000))
    assert abs(got["control"] / 20_000 - 0.10) < 0.01 and abs(got["a"] / 20_000 - 0.45) < 0.015
    assert arm_for("jrn_1", "ab", "p7", arms) == arm_for("jrn_1", "ab", "p7", arms)
    ab = {
        "id": "ab",
        "type": "ab",
        "data": {"arms": [{"handle": h, "weight": w, "control": h == "control"} for h, w in arms]},
    }
    j = journey([ENTRY, ab, SMS], [("in", "ab"), ("ab", "sms", "a"), ("ab", "sms", "b")])
    out = step(j, enter(j), person(), T0)
    assert out.state.data["arms"]["ab"] == arm_for("jrn_1", "ab", "p1", arms)


def test_goal_node_converts_within_the_window() -> None:
    goal = {"id": "g", "type": "goal", "data": {"event": {"name": "Order Completed"}, "within_days": 7}}
    j = journey([ENTRY, SMS, goal], [("in", "sms"), ("sms", "g")])
    waiting = step(j, enter(j), person(), T0).state
    done = step(j, waiting, person(), T0 + timedelta(days=3), Event("Order Completed", {}, T0 + timedelta(days=3)))
    assert Converted("g", T0 + timedelta(days=3)) in done.effects and done.state.status == "completed"
    missed = step(j, waiting, person(), T0 + timedelta(days=8), Event("Order Completed", {}, T0 + timedelta(days=8)))
    assert not missed.changed  # after the window the timer decides
    assert step(j, waiting, person(), T0 + timedelta(days=8)).visits[-1].handle == "timeout"


def test_validation_names_each_broken_rule() -> None:
    with pytest.raises(JourneyError) as e:
        journey([ENTRY, SMS, {"id": "sms2", "type": "sms", "data": {"template": {"body": "x"}}}],
                [("in", "sms"), ("sms", "sms2"), ("sms2", "sms"), ("sms", "nowhere")])  # fmt: skip
    text = str(e.value)
    assert "edges[3].target: no node 'nowhere'" in text
    assert "edges[2]: sms.next already leads to another node" in text or "loops" in text
    with pytest.raises(JourneyError) as e:
        journey([SMS], [])
    assert "exactly one entry" in str(e.value)
    with pytest.raises(JourneyError) as e:
        journey([ENTRY, {"id": "w", "type": "wait", "data": {"mode": "duration", "span": {"days": 1}}}],
                [("in", "w"), ("w", "in")])  # fmt: skip
    assert "nothing leads into the entry" in str(e.value)
    with pytest.raises(JourneyError) as e:
        journey([ENTRY, {"id": "x", "type": "exit"}, SMS], [("in", "x"), ("x", "sms")])
    assert "edges[1].sourceHandle" in str(e.value)
    with pytest.raises(JourneyError) as e:
        journey([ENTRY, {"id": "w", "type": "wait", "data": {"mode": "duration"}}], [("in", "w")])
    assert "nodes[1].data" in str(e.value) and "span" in str(e.value)


# --- a property: on any DAG journey the step terminates and visits follow edges ------------------------


@st.composite
def dags(draw: st.DrawFn) -> tuple[Any, dict[str, bool]]:
    n = draw(st.integers(1, 8))
    nodes: list[dict[str, Any]] = [ENTRY]
    kinds = ["wait", "split", "ab", "sms", "tag", "exit", "goal"]
    for i in range(n):
        k = draw(st.sampled_from(kinds))
        nid = f"n{i}"
        data: dict[str, Any]
        if k == "wait":
            data = {"mode": "duration", "span": {"hours": draw(st.integers(1, 72))}}
        elif k == "split":
            data = {"paths": [{"handle": "p0", "condition": {"type": "attribute", "field": "x", "op": "is_set"}}]}
        elif k == "ab":
            data = {"arms": [{"handle": "a", "weight": 1}, {"handle": "b", "weight": 1}]}
        elif k == "sms":
            data = {"template": {"body": "hi"}}
        elif k == "tag":
            data = {"key": "t", "value": "v"}
        elif k == "goal":
            data = {"event": {"name": "Order Completed"}, "within_days": 1}
        else:
            data = {}
        nodes.append({"id": nid, "type": k, "data": data})
    edges: list[tuple[str, ...]] = [("in", "n0")]
    for i, node in enumerate(nodes[1:]):
        handles = {"wait": ["next"], "split": ["p0", "else"], "ab": ["a", "b"], "sms": ["next"], "tag": ["next"],
                   "exit": [], "goal": ["converted", "timeout"]}[node["type"]]  # fmt: skip
        for h in handles:
            later = [f"n{j}" for j in range(i + 1, n)]
            if later and draw(st.booleans()):
                edges.append((node["id"], draw(st.sampled_from(later)), h))
    reached = {"in", "n0"}
    changed = True
    while changed:
        changed = False
        for e in edges:
            if e[0] in reached and e[1] not in reached:
                reached.add(e[1])
                changed = True
    nodes = [x for x in nodes if x["id"] in reached]
    edges = [e for e in edges if e[0] in reached]
    return journey(nodes, edges), {"split": draw(st.booleans())}


@settings(max_examples=150, deadline=None)
@given(dags(), st.sampled_from(["p1", "p2", "p3"]))
def test_any_dag_journey_ends_and_every_visit_follows_an_edge(case: tuple[Any, dict[str, bool]], pid: str) -> None:
    j, answers = case
    p = Person("jrn_x", pid, "Asia/Shanghai", {}, lambda node, path: answers["split"])
    final, effects, visits = run_to_end(j, p, T0)
    assert final.status in ("completed", "exited", "waiting")
    if final.status == "waiting":
        assert final.wait_event == "Order Completed" or final.due_at is None
    for a, b in zip(visits, visits[1:], strict=False):
        if a.handle != "exit":
            assert j.after(a.node, a.handle) == b.node
        assert a.at <= b.at
    assert len({e.node for e in effects if isinstance(e, Action)}) == len([e for e in effects if isinstance(e, Action)])
    again = run_to_end(j, p, T0)
    assert again[2] == visits  # deterministic: the same person takes the same path


def test_local_time_helper_never_returns_the_past() -> None:
    wait = {"id": "w", "type": "wait", "data": {"mode": "local_time", "at_time": time(10, 0).isoformat()}}
    j = journey([ENTRY, wait, SMS], [("in", "w"), ("w", "sms")])
    out = step(j, enter(j), person(), T0)  # exactly 10:00 local: the next one is tomorrow
    assert out.state.due_at == T0 + timedelta(days=1)
