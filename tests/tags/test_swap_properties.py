"""Invariants of the tag value swap, under random sequences of changes (Hypothesis):

* ``profile_tags`` always holds exactly what a plain Python model of the operations says;
* the stored bitmaps (what the next run diffs against) always equal ``profile_tags``;
* the history answers "who had X = V after run k" with the model's state after run k;
* a run's added / removed counts are the model's differences; a failed run changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera.clock import FrozenClock
from tessera.runtime import Instance
from tessera.services import tag_catalogue, tag_runs, tag_values
from tessera.services.tag_values import TagRunError

PROFILES = 12
VALUES = ["a", "b", "c"]
START = datetime(2026, 3, 1, tzinfo=UTC)

Op = tuple[str, str, list[tuple[int, str | None]]]  # (tag, op, rows)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    root: Path = tmp_path_factory.mktemp("swap") / "data"
    with Instance(root, clock=FrozenClock(START)) as inst:
        inst.analytic.cursor().execute(
            f"""INSERT INTO profiles (profile_idx, profile_id, created_at)
            SELECT i, 'p' || i, TIMESTAMP '2026-01-01' FROM range(1, {PROFILES + 1}) t(i)"""
        )
        with inst.operational.session() as s:
            for key, multi in (("one", False), ("many", True)):
                tag_catalogue.create_tag(session=s, now=START, body={
                    "key": key, "name": key, "name_en": key, "category": "basic", "value_type": "enum",
                    "enum_values": VALUES, "multi": multi})  # fmt: skip
        yield inst


def _rows(draw: st.DrawFn, single: bool, op: str) -> list[tuple[int, str | None]]:
    n = draw(st.integers(0, 6))
    out = []
    for _ in range(n):
        idx = draw(st.integers(1, PROFILES + 1))  # PROFILES + 1 does not exist: dropped
        value = draw(st.sampled_from([*VALUES, None])) if op == "remove" else draw(st.sampled_from(VALUES))
        out.append((idx, value))
    if single and op == "replace":  # one value per profile (two would be refused, tested below)
        out = list({i: (i, v) for i, v in out}.values())
    return out


@st.composite
def operations(draw: st.DrawFn) -> list[Op]:
    ops: list[Op] = []
    for _ in range(draw(st.integers(1, 8))):
        tag = draw(st.sampled_from(["one", "many"]))
        op = draw(st.sampled_from(["add", "remove", "replace"]))
        ops.append((tag, op, _rows(draw, tag == "one", op)))
    return ops


def _apply_model(state: dict[str, set[tuple[int, str]]], tag: str, op: str, rows: list[tuple[int, str | None]]) -> None:
    rows = [(i, v) for i, v in rows if i <= PROFILES]
    cur = state[tag]
    if op == "replace":
        state[tag] = {(i, v) for i, v in rows if v is not None}
        return
    for i, v in rows:
        if op == "remove":
            state[tag] = cur = {(j, w) for j, w in cur if not (j == i and (v is None or w == v))}
        elif tag == "one":
            state[tag] = cur = {(j, w) for j, w in cur if j != i} | {(i, v)}  # type: ignore[arg-type]
        else:
            state[tag] = cur = cur | {(i, v)}  # type: ignore[arg-type]


def _stored(inst: Instance, tag: str) -> set[tuple[int, str]]:
    rows = inst.analytic.cursor().execute("SELECT profile_idx, value FROM profile_tags WHERE tag_key = ?", [tag])
    return {(int(i), v) for i, v in rows.fetchall()}


def _bitmaps(inst: Instance, tag: str) -> set[tuple[int, str]]:
    got = tag_values._read_old(inst.analytic.cursor(), [tag])[tag]
    return {(i, v) for v, bm in got.items() for i in bm}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations())
def test_swaps_keep_values_bitmaps_and_history_consistent(store: Instance, ops: list[Op]) -> None:
    inst = store
    assert isinstance(inst.clock, FrozenClock)
    tags = {t.key: t for t in tag_runs.load_tags(inst, ["one", "many"])}
    state = {k: _stored(inst, k) for k in tags}
    snapshots: list[tuple[datetime, str, set[tuple[int, str]]]] = []
    for tag, op, rows in ops:
        inst.clock.advance(timedelta(hours=1))
        before = set(state[tag])
        _apply_model(state, tag, op, rows)
        cur = inst.analytic.cursor()
        scoped = tag_values.stage_assignment(cur, tags[tag], rows, op)  # type: ignore[arg-type]
        with inst.analytic.transaction(cur) as tx:
            (result,) = tag_values.swap(tx, [tags[tag]], trigger="test", started_at=inst.clock.now(),
                                        now=inst.clock.now(), scoped=scoped)  # fmt: skip
        assert _stored(inst, tag) == state[tag]
        assert _bitmaps(inst, tag) == state[tag]
        assert (result.added, result.removed) == (len(state[tag] - before), len(before - state[tag]))
        snapshots.append((inst.clock.now(), tag, set(state[tag])))
    cur = inst.analytic.cursor()
    for at, tag, expected in snapshots:
        for value in VALUES:
            total, _ = tag_values.holders_at(cur, tag, at + timedelta(minutes=1), value=value, limit=0)
            assert total == len({i for i, v in expected if v == value})


def test_a_single_valued_tag_with_two_values_for_a_profile_fails_and_changes_nothing(store: Instance) -> None:
    (one,) = tag_runs.load_tags(store, ["one"])
    before = _stored(store, "one")
    cur = store.analytic.cursor()
    tag_values.stage_assignment(cur, one, [(1, "a"), (1, "b")], "replace")
    with pytest.raises(TagRunError, match="single-valued"), store.analytic.transaction(cur) as tx:
        tag_values.swap(tx, [one], trigger="test", started_at=store.clock.now(), now=store.clock.now())
    assert _stored(store, "one") == before and _bitmaps(store, "one") == before
