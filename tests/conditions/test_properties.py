"""Properties of the condition language over random worlds and random definitions.

The main one: for a random dataset, definition, clock and time zone, the compiled SQL selects
exactly the profiles the reference evaluator (the module text, read literally) selects — leaf by
leaf with their negations, and nested — and so do the fast count's in-memory columns. The rest
hold without a compiler: definitions survive a JSON round trip and ``not`` is plain negation.

One store (DuckDB in memory) serves every example: each writes its dataset after clearing the last.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera.domain.conditions import And, Condition, EvalContext, Not, Or, condition_json, parse_condition
from tessera.stores.analytic import AnalyticStore
from tests.conditions.dataset import Dataset, clear, write
from tests.conditions.harness import (
    assert_same_members,
    assert_same_members_everywhere,
    compiler_available,
    fast_count_available,
    fast_members,
)
from tests.conditions.reference import Audiences, evaluate
from tests.conditions.strategies import (
    audience_definitions,
    conditions,
    datasets,
    eval_context,
    leaves,
    profile_leaves,
)

#: One example writes a dataset and checks this many leaves, or definitions, against it.
LEAVES_PER_DATASET = 12
DEFINITIONS_PER_DATASET = 4

_SETTINGS = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def store() -> Iterator[AnalyticStore]:
    s = AnalyticStore(":memory:", threads=1)
    yield s
    s.close()


def _store_world(data: st.DataObject, store: AnalyticStore, **sizes: int) -> tuple[Dataset, Audiences, EvalContext]:
    if not compiler_available():
        pytest.fail("tessera.compiler has no compile_members yet: the comparison with the reference cannot run")
    ds = data.draw(datasets(**sizes), label="dataset")
    audiences = data.draw(audience_definitions(ds), label="audiences")
    clear(store)
    write(store, ds)
    return ds, audiences, eval_context(ds)


@settings(_SETTINGS, max_examples=60)
@given(data=st.data())
def test_compiled_leaves_select_the_profiles_the_spec_selects(store: AnalyticStore, data: st.DataObject) -> None:
    """Each kind of leaf, and its negation: SQL == reference (so no SQL NULL leaks through a NOT)."""
    ds, audiences, ctx = _store_world(data, store)
    some_leaf = leaves(ds, list(audiences)).map(parse_condition)
    for n in range(LEAVES_PER_DATASET):
        leaf = data.draw(some_leaf, label=f"leaf {n}")
        assert_same_members(store, leaf, ds, ctx, audiences)
        assert_same_members(store, Not(type="not", child=leaf), ds, ctx, audiences)


@settings(_SETTINGS, max_examples=30)
@given(data=st.data())
def test_compiled_definitions_select_the_profiles_the_spec_selects(store: AnalyticStore, data: st.DataObject) -> None:
    """Nested and/or/not definitions: the whole, and every leaf of it on its own."""
    ds, audiences, ctx = _store_world(data, store)
    definitions = conditions(ds, list(audiences))
    for n in range(DEFINITIONS_PER_DATASET):
        cond = data.draw(definitions, label=f"definition {n}")
        assert_same_members_everywhere(store, cond, ds, ctx, audiences)


@settings(_SETTINGS, max_examples=30)
@given(data=st.data())
def test_the_fast_count_selects_the_profiles_the_spec_selects(store: AnalyticStore, data: st.DataObject) -> None:
    """The in-memory columns of the fast count (attribute, tag, identifier, bucket, audience leaves)."""
    if not fast_count_available():
        pytest.fail("tessera.compiler.columnar (the fast count) is not importable")
    from tessera.stores.profile_columns import ProfileColumns

    ds, audiences, ctx = _store_world(data, store, max_events=5)
    columns = ProfileColumns(store)
    static = {a: d for a, d in audiences.items() if d is None}  # dynamic ones may read events
    definitions = conditions(ds, list(static), leaf=profile_leaves(ds, list(static)))
    for n in range(DEFINITIONS_PER_DATASET * 2):
        cond = data.draw(definitions, label=f"definition {n}")
        expected = evaluate(cond, ds, ctx, static)
        got = fast_members(store, columns, cond, ctx, static)
        assert got == expected, (
            f"FAST COUNT DISAGREES WITH THE SPEC: {condition_json(cond)} at {ctx.now} {ctx.timezone}: "
            f"only the columns select {sorted((got or set()) - expected)}, only the reference {sorted(expected - (got or set()))}"
        )


@settings(_SETTINGS, max_examples=80)
@given(data=st.data())
def test_definitions_survive_a_json_round_trip(data: st.DataObject) -> None:
    ds = data.draw(datasets(max_profiles=6, max_events=15), label="dataset")
    audiences = data.draw(audience_definitions(ds), label="audiences")
    cond = data.draw(conditions(ds, list(audiences)), label="definition")
    text = json.dumps(condition_json(cond), ensure_ascii=False)
    assert parse_condition(json.loads(text)) == cond
    assert condition_json(parse_condition(condition_json(cond))) == condition_json(cond)


def _not(c: Condition) -> Not:
    return Not(type="not", child=c)


@settings(_SETTINGS, max_examples=60)
@given(data=st.data())
def test_negation_is_plain_negation(data: st.DataObject) -> None:
    """``not not c`` is ``c``; ``c and not c`` is nobody; ``c or not c`` is everyone; De Morgan."""
    ds = data.draw(datasets(max_profiles=10, max_events=25), label="dataset")
    audiences = data.draw(audience_definitions(ds), label="audiences")
    ctx = eval_context(ds)
    definitions = conditions(ds, list(audiences), depth=2)
    a, b = data.draw(definitions, label="a"), data.draw(definitions, label="b")

    def members(c: Condition) -> set[int]:
        return evaluate(c, ds, ctx, audiences)

    assert members(_not(_not(a))) == members(a)
    assert members(And(type="and", children=[a, _not(a)])) == set()
    assert members(Or(type="or", children=[a, _not(a)])) == ds.everyone
    assert members(_not(And(type="and", children=[a, b]))) == members(Or(type="or", children=[_not(a), _not(b)]))
    assert members(_not(Or(type="or", children=[a, b]))) == members(And(type="and", children=[_not(a), _not(b)]))
