"""Running a condition both ways — the compiled SQL on a real store, and the reference — and saying
plainly where they part: which leaves disagree, for which profiles, and what those profiles hold.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

from tessera.domain.conditions import Condition, EvalContext, condition_json, leaves
from tessera.stores.analytic import AnalyticStore
from tests.conditions.dataset import Dataset
from tests.conditions.reference import Audiences, evaluate


def compiler_available() -> bool:
    try:
        from tessera.compiler import CompileContext, compile_members  # noqa: F401
    except ImportError:
        return False
    return True


def _resolver(audiences: Audiences) -> Any:
    from tessera.compiler.context import AudienceMap, AudienceRef

    refs = [
        AudienceRef(a, "static") if d is None else AudienceRef(a, "dynamic", d) for a, d in sorted(audiences.items())
    ]
    return AudienceMap.of(*refs)


def fast_count_available() -> bool:
    try:
        from tessera.compiler.columnar import count_members, evaluate, requirements  # noqa: F401
        from tessera.stores.profile_columns import ProfileColumns  # noqa: F401
    except ImportError:
        return False
    return True


def fast_members(
    store: AnalyticStore, columns: Any, cond: Condition, ctx: EvalContext, audiences: Audiences
) -> set[int] | None:
    """What the fast count's in-memory columns select (None: a leaf needs SQL)."""
    from tessera.compiler import CompileContext, resolve
    from tessera.compiler.columnar import UNIVERSE, evaluate, requirements

    resolved = resolve(cond, CompileContext(eval=ctx, audiences=_resolver(audiences)))
    specs = requirements(resolved)
    if specs is None:
        return None
    got = columns.get(specs)
    members = evaluate(resolved, got, ctx)
    assert members is not None
    return set(members & got[UNIVERSE])


def compiled_members(store: AnalyticStore, cond: Condition, ctx: EvalContext, audiences: Audiences) -> set[int]:
    """What the compiler's SQL selects on the store."""
    from tessera.compiler import CompileContext, compile_members

    query = compile_members(cond, CompileContext(eval=ctx, audiences=_resolver(audiences)))
    cur = store.cursor()
    try:
        rows = query.execute(cur)
    finally:
        cur.close()
    return {int(r[0]) for r in rows}


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def profile_story(ds: Dataset, idx: int) -> str:
    """Everything a condition could read about one profile, in a few lines."""
    p = ds.profile(idx)
    lines = [f"  profile {idx} ({p.profile_id}): {_show({k: v for k, v in asdict(p).items() if k != 'idx'})}"]
    lines += [f"    event {_show(asdict(e))}" for e in ds.events if e.profile_idx == idx]
    lines += [f"    order {_show(asdict(o))}" for o in ds.orders if o.profile_idx == idx]
    lines += [f"    tag {t.key}={t.value!r} ({t.value_num})" for t in ds.tags if t.profile_idx == idx]
    lines += [f"    id {i.id_type}:{i.id_value}" for i in ds.identifiers if i.profile_idx == idx]
    lines += [f"    member of {a}" for a, ms in ds.audience_members.items() if idx in ms]
    return "\n".join(lines)


def assert_same_members_everywhere(
    store: AnalyticStore, cond: Condition, ds: Dataset, ctx: EvalContext, audiences: Audiences | None = None
) -> None:
    """The whole definition and each of its leaves on its own (a nested leaf's mistake can be masked)."""
    assert_same_members(store, cond, ds, ctx, audiences)
    for _, leaf in leaves(cond):
        if leaf is not cond:
            assert_same_members(store, leaf, ds, ctx, audiences)


def assert_same_members(
    store: AnalyticStore, cond: Condition, ds: Dataset, ctx: EvalContext, audiences: Audiences | None = None
) -> set[int]:
    """Compiled members == reference members, or a failure that says where and for whom."""
    audiences = audiences or {}
    expected = evaluate(cond, ds, ctx, audiences)
    got = compiled_members(store, cond, ctx, audiences)
    if got == expected:
        return got
    culprits = []
    for path, leaf in leaves(cond):
        leaf_ref, leaf_sql = evaluate(leaf, ds, ctx, audiences), compiled_members(store, leaf, ctx, audiences)
        if leaf_ref != leaf_sql:
            culprits.append(
                f"  {path or '(root)'}: {_show(condition_json(leaf))}\n"
                f"    only the SQL selects {sorted(leaf_sql - leaf_ref)}; only the reference {sorted(leaf_ref - leaf_sql)}"
            )
    odd = sorted(got ^ expected)
    raise AssertionError(
        "COMPILER DISAGREES WITH THE SPEC (reference evaluator of the module text of tessera.domain.conditions)\n"
        f"definition: {_show(condition_json(cond))}\n"
        f"now: {ctx.now.isoformat()}  timezone: {ctx.timezone}\n"
        f"only the SQL selects {sorted(got - expected)}; only the reference selects {sorted(expected - got)}\n"
        "leaves that disagree on their own:\n" + ("\n".join(culprits) or "  (none: the combination does)") + "\n"
        "the profiles:\n" + "\n".join(profile_story(ds, i) for i in odd[:3])
    )
