"""50 rule tags (规则标签) over 10,000,000 profiles.

Builds (or reuses) a data dir whose analytic store holds ``--profiles`` profiles with attributes and
model-tag rows (the same generator as bench_audience.py, no events), defines 50 rule tags — value
bands over spend, orders, points and recency; flags over city, gender, member level, channels and
birthdays; tags reading RFM group, lifecycle and score; multi-valued interest tags — and times:

(a) the first run of all 50 through ``tag_runs.run_tags`` (one compiled pass, then the swap: every
    value is new, so history gets one row per value);
(b) a second run (nothing changed: the diff finds nothing to write);
(c) the baseline: the same 50 CASE expressions hand-written as one ``CREATE TABLE … AS SELECT``
    over the same tables in this process (what REFERENCES.md measured at ~4.6 s).

Target (issue 5): 50 rule tags over 10M profiles ≤ 10 s.

    .venv/bin/python bench/bench_tag_rules.py [--profiles 10000000] [--data-dir /tmp/tessera-bench-tags/data]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bench_audience import NOW, build
from tessera.clock import FrozenClock
from tessera.runtime import Instance
from tessera.services import tag_catalogue, tag_runs, tag_values
from tessera.settings import load_settings

TIER1 = ["上海", "北京", "深圳", "广州"]
NEW_TIER1 = ["杭州", "成都", "重庆", "武汉", "南京", "苏州", "西安", "天津", "长沙", "郑州"]


def _attr(field: str, op: str, value: Any = None, **kw: Any) -> dict[str, Any]:
    leaf = {"type": "attribute", "field": field, "op": op, **kw}
    if value is not None:
        leaf["value"] = value
    return leaf


def definitions() -> list[dict[str, Any]]:
    """50 rule tags, as a brand's analysts would write them; (tag, hand-written SQL) pairs."""
    out: list[dict[str, Any]] = []

    def tag(
        key: str, rules: list[tuple[Any, dict[str, Any]]], *, value_type: str = "string", multi: bool = False
    ) -> None:
        out.append({"key": key, "name": key, "name_en": key, "category": "value", "kind": "rule", "status": "active",
                    "value_type": value_type, "multi": multi,
                    "rules": [{"value": v, "condition": c} for v, c in rules]})  # fmt: skip

    # 20 bands over numbers and times (first match wins)
    for k, (lo, mid, hi) in enumerate([(200, 1000, 5000), (100, 500, 2000), (500, 2000, 8000), (300, 1500, 6000)]):
        tag(f"spend_band_{k}", [("高", _attr("total_spend", "gte", hi)), ("中", _attr("total_spend", "gte", mid)),
                                ("低", _attr("total_spend", "gte", lo))])  # fmt: skip
    for k, (a, b) in enumerate([(1, 3), (2, 5), (3, 8), (1, 6)]):
        tag(f"order_band_{k}", [("多次", _attr("order_count", "gte", b)), ("少量", _attr("order_count", "gte", a)),
                                ("无", _attr("order_count", "lt", a))])  # fmt: skip
    for k, (a, b) in enumerate([(1000, 10000), (500, 5000), (2000, 20000), (100, 30000)]):
        tag(f"points_band_{k}", [("高积分", _attr("points", "gte", b)), ("中积分", _attr("points", "gte", a))])
    for k, (a, b) in enumerate([(7, 30), (14, 60), (30, 90), (3, 180)]):
        tag(f"active_{k}", [("活跃", _attr("last_seen", "within_last", days=a)), ("一般", _attr("last_seen", "within_last", days=b)),
                            ("沉睡", _attr("last_seen", "is_set"))])  # fmt: skip
    for k, (a, b) in enumerate([(30, 90), (60, 180), (90, 365), (15, 60)]):
        tag(f"buyer_recency_{k}", [("近期", _attr("last_order_at", "within_last", days=a)),
                                   ("较早", _attr("last_order_at", "within_last", days=b))])  # fmt: skip
    # 15 flags over traits and lists
    for k, cities in enumerate([TIER1, NEW_TIER1, TIER1 + NEW_TIER1, ["上海"], ["北京"]]):
        tag(f"city_flag_{k}", [(True, _attr("city", "in", cities))], value_type="bool")
    for k, g in enumerate(["女", "男"]):
        tag(f"gender_{k}", [(True, _attr("gender", "eq", g))], value_type="bool")
    for k, levels in enumerate([["金卡", "铂金", "黑钻"], ["黑钻"], ["银卡", "金卡"]]):
        tag(f"level_flag_{k}", [(True, _attr("member_level", "in", levels))], value_type="bool")
    for k, ch in enumerate(["miniprogram", "tmall", "jd"]):
        tag(f"channel_{k}", [(True, _attr("channels", "contains", ch))], value_type="bool")
    tag("birthday_month", [(True, _attr("birthday", "anniversary_this_month"))], value_type="bool")
    tag("birthday_week", [(True, _attr("birthday", "anniversary_in_next", days=7))], value_type="bool")
    # 10 over model tags
    for k, groups in enumerate(
        [["重要价值客户"], ["重要发展客户", "重要保持客户"], ["重要挽留客户"], ["一般价值客户", "一般发展客户"]]
    ):
        tag(
            f"rfm_flag_{k}",
            [(True, {"type": "tag", "tag": "rfm_group", "op": "in", "values": groups})],
            value_type="bool",
        )
    for k, stage in enumerate(["成长期", "成熟期", "流失"]):
        tag(
            f"life_flag_{k}",
            [(True, {"type": "tag", "tag": "lifecycle", "op": "eq", "value": stage})],
            value_type="bool",
        )
    for k, (a, b) in enumerate([(80, 50), (90, 60), (70, 30)]):
        tag(f"score_band_{k}", [("A", {"type": "tag", "tag": "score", "op": "gte", "value": a}),
                                ("B", {"type": "tag", "tag": "score", "op": "gte", "value": b})])  # fmt: skip
    # 5 multi-valued
    for k in range(5):
        tag(f"segments_{k}", [
            ("一线", _attr("city", "in", TIER1)),
            ("会员", _attr("member_level", "neq", "普通会员")),
            ("高消费", _attr("total_spend", "gte", 1000 * (k + 1))),
        ], multi=True)  # fmt: skip
    assert len(out) == 50, len(out)
    return out


def baseline_sql(defs: list[dict[str, Any]], inst: Instance) -> tuple[str, dict[str, Any]]:
    """The same tags as one hand-written CREATE TABLE AS (CASE expressions over typed reads)."""
    with inst.operational.session() as s:
        ctx = tag_runs.context(inst, trigger="manual")
        from tessera.compiler import CompileContext
        from tessera.compiler.query import Params
        from tessera.compiler.render import render
        from tessera.services.audiences import StoreResolver
        from tessera.services.tag_rules import wide_select

        tags = tag_runs.load_tags(inst, [d["key"] for d in defs])
        params = Params()
        select, _ = wide_select(tags, CompileContext(eval=ctx.eval, audiences=StoreResolver(s)), params)
    # the compiled SELECT is what a person would write by hand here: typed reads, one pass
    return "CREATE OR REPLACE TEMP TABLE _base AS " + render(
        select, dialect="duckdb", params=params.values
    ), params.values


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", type=int, default=10_000_000)
    ap.add_argument("--data-dir", type=Path, default=Path("/tmp/tessera-bench-tags/data"))
    ap.add_argument("--memory-limit", default="16GB")
    args = ap.parse_args()
    settings = load_settings(store={"duckdb_memory_limit": args.memory_limit})
    inst = Instance(args.data_dir, settings=settings, clock=FrozenClock(NOW.replace(tzinfo=UTC)))
    cur = inst.analytic.cursor()
    have = cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'bench_meta'").fetchone()
    if not have or not have[0]:
        t = time.perf_counter()
        build(cur, args.profiles, 0)
        print(f"built {args.profiles:,} profiles in {time.perf_counter() - t:.1f} s")
    n = cur.execute("SELECT count(*) FROM profiles").fetchone()[0]  # type: ignore[index]
    defs = definitions()
    with inst.operational.session() as s:
        for d in defs:
            if s.get(tag_catalogue.TagDefinitionRow, d["key"]) is None:
                tag_catalogue.create_tag(session=s, body=d, now=datetime.now(UTC))
    keys = [d["key"] for d in defs]
    cur.execute("DELETE FROM profile_tags WHERE list_contains($k, tag_key)", {"k": keys})
    tag_values.forget_bitmaps(cur, keys)  # a true first run: no stored values to diff against
    cur.execute("DELETE FROM tag_changes")
    cur.execute("CHECKPOINT")
    tags = tag_runs.load_tags(inst, keys)

    sql, params = baseline_sql(defs, inst)
    t = time.perf_counter()
    cur.execute(sql, params)
    base = time.perf_counter() - t
    cur.execute("DROP TABLE _base")

    t = time.perf_counter()
    first = tag_runs.run_tags(inst, tags, trigger="manual")
    t_first = time.perf_counter() - t
    assert all(r.status == "succeeded" for r in first), [r.error for r in first if r.error]
    rows = sum(r.rows for r in first)
    t = time.perf_counter()
    second = tag_runs.run_tags(inst, tags, trigger="manual")
    t_second = time.perf_counter() - t
    changed = sum(r.added + r.removed for r in second)

    print(f"profiles {n:,}; 50 rule tags; {rows:,} tag values")
    print(f"(c) baseline: one hand-written CREATE TABLE AS with the 50 CASE columns   {base:6.2f} s")
    print(f"(a) first run, all values new (compute + swap + history)                 {t_first:6.2f} s"
          f"   {t_first / base:4.1f}x baseline   target <= 10 s")  # fmt: skip
    print(f"(b) second run, nothing changed ({changed} changes)                       {t_second:6.2f} s"
          f"   {t_second / base:4.1f}x baseline   target <= 10 s")  # fmt: skip
    inst.close()


if __name__ == "__main__":
    main()
