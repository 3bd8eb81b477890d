"""The fast count (in-memory columns) against the compiled SQL, on random small worlds.

For random datasets (written into a real store with INSERTs) and random definitions made of the
leaves the columns answer — attributes (including readings the compiler never makes, which select
no one), tags, identifiers, random buckets, a static audience — under and/or/not, the columns
select exactly the profiles ``compile_members`` returns. Then: a changed table is read again once
the store is told, a transaction's change is not kept stale, the memory budget drops the least
recently used columns, and leaves on events or orders are left to SQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import duckdb
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyroaring import BitMap

from tessera.compiler import AudienceMap, AudienceRef, CompileContext, compile_members, resolve
from tessera.compiler.columnar import UNIVERSE, count_members, evaluate, requirements
from tessera.domain.conditions import COMPUTED_FIELDS, Condition, EvalContext, parse_condition
from tessera.stores import analytic
from tessera.stores.analytic import AnalyticStore
from tessera.stores.profile_columns import ProfileColumns, ValueIndex
from tests.conditions.dataset import Dataset, Profile, Tag, clear, write
from tests.conditions.strategies import (
    ID_TYPES,
    STATIC_AUDIENCE,
    TEXTS,
    attribute_leaves,
    datasets,
    eval_context,
    random_buckets,
    tag_leaves,
)

TABLES = ("profiles", "profile_attributes", "profile_tags", "profile_identifiers", "audience_members")
DEFINITIONS_PER_DATASET = 8
AUDIENCES = AudienceMap.of(AudienceRef(STATIC_AUDIENCE, "static"))


@pytest.fixture(scope="module")
def store() -> Iterator[AnalyticStore]:
    s = AnalyticStore(":memory:", threads=1)
    yield s
    s.close()


@pytest.fixture(scope="module")
def columns(store: AnalyticStore) -> ProfileColumns:
    """One cache for every dataset, as a server keeps one: staleness is the store's to tell."""
    return ProfileColumns(store)


def _sql_members(store: AnalyticStore, cond: Condition, ctx: EvalContext) -> set[int]:
    cur = store.cursor()
    try:
        rows = compile_members(cond, CompileContext(eval=ctx, audiences=AUDIENCES)).execute(cur)
    finally:
        cur.close()
    return {int(r[0]) for r in rows}


# --- definitions of the leaves the columns answer ---------------------------------------------------

_ANY_FIELD = st.sampled_from((*sorted(COMPUTED_FIELDS), "city", "traits.points", "birthday"))


@st.composite
def odd_attribute_leaves(draw: Any) -> dict[str, Any]:
    """Any operator on any field: also the readings the compiler never makes (FALSE for everyone)."""
    texts = st.sampled_from((*TEXTS[:6], "1", "2026", "官方App", "天猫"))
    numbers = st.sampled_from((0, 1, 2.5, 5, 100, 2026, -3))
    test = draw(
        st.one_of(
            st.tuples(st.sampled_from(("eq", "neq", "gt", "gte", "lt", "lte")), numbers).map(
                lambda t: {"op": t[0], "value": t[1]}
            ),
            st.tuples(st.sampled_from(("eq", "neq", "contains", "starts_with")), texts).map(
                lambda t: {"op": t[0], "value": t[1]}
            ),
            st.tuples(st.sampled_from(("in", "not_in")), st.lists(texts, min_size=1, max_size=3)).map(
                lambda t: {"op": t[0], "value": t[1]}
            ),
            st.tuples(st.sampled_from(("in", "not_in")), st.lists(numbers, min_size=1, max_size=3)).map(
                lambda t: {"op": t[0], "value": t[1]}
            ),
            st.sampled_from(
                (
                    {"op": "between", "value": [0, 5]},
                    {"op": "regex", "value": "^[0-9]+$"},
                    {"op": "regex", "value": "(?i)a"},
                )
            ),
            st.sampled_from(
                ({"op": "eq", "value": True}, {"op": "eq", "value": False}, {"op": "is_set"}, {"op": "is_not_set"})
            ),
            st.sampled_from(({"op": "before", "value": "2027-01-01"}, {"op": "after", "value": "2026-11-23T08:00:00"})),
            st.sampled_from(
                ({"op": "within_last", "days": 30}, {"op": "in_next", "days": 400}, {"op": "anniversary_this_month"})
            ),
            st.integers(1, 400).map(lambda d: {"op": "anniversary_in_next", "days": d}),
        )
    )
    return {"type": "attribute", "field": draw(_ANY_FIELD), **test}


def columnar_leaves(ds: Dataset) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        attribute_leaves(ds),
        attribute_leaves(ds),
        odd_attribute_leaves(),
        tag_leaves(ds),
        tag_leaves(ds),
        st.lists(st.sampled_from((*ID_TYPES, "douyin_id")), min_size=1, max_size=2, unique=True).map(
            lambda ts: {"type": "has_identifier", "id_types": ts}
        ),
        random_buckets(),
        st.just({"type": "in_audience", "audience": STATIC_AUDIENCE}),
    )


def columnar_definitions(ds: Dataset, depth: int = 3) -> st.SearchStrategy[dict[str, Any]]:
    leaf = columnar_leaves(ds)
    if depth == 0:
        return leaf
    sub = columnar_definitions(ds, depth - 1)
    return st.one_of(
        leaf,
        st.lists(sub, min_size=1, max_size=3).map(lambda cs: {"type": "and", "children": cs}),
        st.lists(sub, min_size=1, max_size=3).map(lambda cs: {"type": "or", "children": cs}),
        sub.map(lambda c: {"type": "not", "child": c}),
    )


@settings(
    max_examples=30,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_columns_select_what_the_sql_selects(
    store: AnalyticStore, columns: ProfileColumns, data: st.DataObject
) -> None:
    ds = data.draw(datasets(max_events=0), label="dataset")
    ctx = eval_context(ds)
    clear(store)
    write(store, ds)
    store.changed(*TABLES)
    definitions = columnar_definitions(ds).map(parse_condition)
    for n in range(DEFINITIONS_PER_DATASET):
        cond = resolve(data.draw(definitions, label=f"definition {n}"), CompileContext(eval=ctx, audiences=AUDIENCES))
        want = _sql_members(store, cond, ctx)
        assert count_members(cond, ctx, store, columns) == len(want)
        specs = requirements(cond)
        assert specs is not None
        got = columns.get(specs)
        selected = evaluate(cond, got, ctx)
        assert selected is not None
        universe = got[UNIVERSE]
        assert isinstance(universe, BitMap)
        assert set(selected & universe) == want


# --- staying current ----------------------------------------------------------------------------------

NOW = datetime(2026, 11, 23, 12, 0)
CTX = EvalContext(now=NOW.replace(tzinfo=UTC))


def _world() -> Dataset:
    cities = ["上海", "上海", "北京", "杭州", None]
    return Dataset(
        now=NOW,
        profiles=[
            Profile(idx=i, profile_id=f"p{i}", created_at=NOW, traits={"city": c} if c else {}, event_count=i)
            for i, c in enumerate(cities, start=1)
        ],
        tags=[Tag(1, "rfm", "高价值", None), Tag(2, "rfm", "流失", None), Tag(3, "score", "95", 95.0)],
    )


@pytest.fixture
def small(store: AnalyticStore) -> AnalyticStore:
    clear(store)
    write(store, _world())
    store.changed(*TABLES)
    return store


def _count(store: AnalyticStore, columns: ProfileColumns, definition: dict[str, Any]) -> int | None:
    return count_members(parse_condition(definition), CTX, store, columns)


SHANGHAI = {"type": "attribute", "field": "city", "op": "eq", "value": "上海"}


def test_a_changed_table_is_read_again_once_the_store_is_told(small: AnalyticStore) -> None:
    columns = ProfileColumns(small)
    assert _count(small, columns, SHANGHAI) == 2
    small.cursor().execute("""UPDATE profile_attributes SET traits = '{"city": "上海"}' WHERE profile_idx = 3""")
    assert _count(small, columns, SHANGHAI) == 2  # held: nobody said the table changed
    loads = columns.loads
    small.changed("profile_tags")  # another table: the city column stays
    assert _count(small, columns, SHANGHAI) == 2
    assert columns.loads == loads
    small.changed("profile_attributes")
    assert _count(small, columns, SHANGHAI) == 3
    assert columns.loads == loads + 1


def test_a_change_inside_a_transaction_is_read_again_after_the_commit(small: AnalyticStore) -> None:
    columns = ProfileColumns(small)
    with small.transaction() as cur:
        cur.execute("DELETE FROM profile_tags WHERE tag_key = 'rfm' AND profile_idx = 1")
        analytic.changed(cur, "profile_tags")  # what services holding only a cursor call
        # Read from another cursor before the commit: the old rows, which must not be kept.
        assert _count(small, columns, {"type": "tag", "tag": "rfm", "op": "has"}) == 2
    assert _count(small, columns, {"type": "tag", "tag": "rfm", "op": "has"}) == 1


def test_a_cursor_of_no_store_moves_every_store(small: AnalyticStore) -> None:
    before = small.generation("profiles")
    other = AnalyticStore(":memory:", threads=1)
    try:
        analytic.changed(other.cursor(), "profiles")
        assert small.generation("profiles") == before  # the cursor's own store only
        analytic.changed(duckdb.connect().cursor(), "profiles")
        assert small.generation("profiles") == before + 1
    finally:
        other.close()


def test_least_recently_used_columns_are_dropped_beyond_the_budget(small: AnalyticStore) -> None:
    columns = ProfileColumns(small, budget_bytes=1)
    assert _count(small, columns, SHANGHAI) == 2
    held = columns.held()
    assert _count(small, columns, {"type": "tag", "tag": "score", "op": "gte", "value": 90}) == 1
    assert not (set(held) - {UNIVERSE}) & set(columns.held())  # the city column is gone
    assert _count(small, columns, SHANGHAI) == 2


def test_leaves_on_events_or_orders_are_left_to_sql(small: AnalyticStore) -> None:
    columns = ProfileColumns(small)
    event = {"type": "event", "event": "下单", "window": {"last": 30}}
    order = {"type": "order", "measure": "total", "op": "gte", "value": 100}
    for definition in (
        event,
        order,
        {"type": "not", "child": event},
        {"type": "and", "children": [SHANGHAI, {"type": "or", "children": [SHANGHAI, order]}]},
    ):
        cond = parse_condition(definition)
        assert requirements(cond) is None
        assert count_members(cond, CTX, small, columns) is None
        assert evaluate(cond, {}, CTX) is None
    assert columns.held() == []


def test_columns_of_another_store_are_refused(small: AnalyticStore) -> None:
    other = AnalyticStore(":memory:", threads=1)
    try:
        with pytest.raises(ValueError, match="another store"):
            count_members(parse_condition(SHANGHAI), CTX, small, ProfileColumns(other))
    finally:
        other.close()


def test_a_value_index_over_many_rows_answers_ranges_exactly() -> None:
    """Buckets, heavy keys and the complement of wide ranges, against a plain filter."""
    rng = np.random.default_rng(7)
    n = 200_000
    keys = np.concatenate([np.zeros(60_000), rng.integers(1, 5_000, n - 60_000).astype(np.float64)])
    ids = rng.permutation(n).astype(np.uint32) * 3 + 1
    order = np.lexsort((ids, keys))
    ix = ValueIndex(keys[order], ids[order])
    assert ix.single and len(ix.levels) > 2
    for low, high in [(0, 0), (0, 10), (1, 4_999), (2_500, None), (None, 17), (123, 124), (None, None)]:
        p0, p1 = ix.span(low, high)
        mask = np.ones(n, dtype=bool)
        if low is not None:
            mask &= keys >= low
        if high is not None:
            mask &= keys <= high
        assert set(ix.profiles([(p0, p1)])) == set(ids[mask].tolist())
