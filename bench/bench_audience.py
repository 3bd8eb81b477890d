"""Audience counts (群组计数) on 10,000,000 profiles and 100,000,000 events.

Builds (or reuses, ``--reuse PATH``) an analytic store in DuckDB SQL — profiles with realistic
attributes (city from ~300 Chinese cities, gender, member level, points, birthday as traits;
first/last seen, channels, event/order counts, total spend, order times as computed columns),
tags (``rfm_group`` 8 values, ``lifecycle`` 5, a numeric ``score``, a multi-valued ``interest``),
identifiers (phone, WeChat, email) and events (~20 names over 180 days, in time order as the loader
appends them) — then times, as p50/p99 over repeated runs, each next to a baseline from this run:

(a) a 5-leaf nested AND/OR/NOT attribute + tag count through the in-memory columns
    (``count_members``, warm; the cold first load is printed too) against hand-written DuckDB SQL
    for the same question — over the tables as stored (JSON traits, tag rows) and over a typed,
    flattened copy (the best case for DuckDB) — and the compiled SQL (``compile_count``);
(b) three behavioural conditions through ``compile_count(...).execute`` against hand-written SQL;
(c) explain for one profile (``compile_explain``) over 50 random profiles.

Targets (from the issue): (a) p50 ≤ 20 ms; (b) ≤ 1.5x the hand-written SQL; (c) ≤ 100 ms.

    .venv/bin/python bench/bench_audience.py [--profiles 10000000] [--events 100000000] [--reuse PATH]
                                             [--runs 30] [--memory-limit 8GB]
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import duckdb

from tessera.compiler import CompileContext, compile_count, compile_explain, resolve
from tessera.compiler.columnar import count_members
from tessera.domain.conditions import Condition, EvalContext, parse_condition
from tessera.stores.analytic import AnalyticStore
from tessera.stores.profile_columns import ProfileColumns

NOW = datetime(2026, 1, 15, 4, 0)  # naive UTC, as stored
TIMEZONE = "Asia/Shanghai"

# ~300 prefecture-level cities, biggest first (the draw is skewed towards the front).
_CITY_TEXT = """
上海 北京 深圳 广州 杭州 成都 重庆 武汉 南京 苏州 西安 天津 长沙 郑州 东莞 青岛 宁波 佛山 合肥 济南 厦门 福州 昆明
沈阳 大连 无锡 温州 哈尔滨 长春 石家庄 南宁 南昌 贵阳 太原 乌鲁木齐 兰州 海口 呼和浩特 银川 西宁 拉萨 三亚 珠海 中山
惠州 泉州 常州 南通 徐州 嘉兴 绍兴 金华 台州 烟台 潍坊 临沂 唐山 保定 廊坊 洛阳 襄阳 宜昌 芜湖 赣州 桂林 柳州 绵阳
扬州 盐城 镇江 泰州 淮安 连云港 宿迁 湖州 衢州 舟山 丽水 漳州 莆田 三明 南平 龙岩 宁德 淄博 枣庄 东营 济宁 泰安
威海 日照 德州 聊城 滨州 菏泽 邯郸 邢台 承德 沧州 衡水 秦皇岛 张家口 大同 阳泉 长治 晋城 朔州 晋中 运城 忻州 临汾
吕梁 包头 乌海 赤峰 通辽 鄂尔多斯 呼伦贝尔 巴彦淖尔 乌兰察布 鞍山 抚顺 本溪 丹东 锦州 营口 阜新 辽阳 盘锦 铁岭 朝阳
葫芦岛 吉林 四平 辽源 通化 白山 松原 白城 齐齐哈尔 鸡西 鹤岗 双鸭山 大庆 伊春 佳木斯 七台河 牡丹江 黑河 绥化 蚌埠
淮南 马鞍山 淮北 铜陵 安庆 黄山 滁州 阜阳 宿州 六安 亳州 池州 宣城 景德镇 萍乡 九江 新余 鹰潭 吉安 宜春 抚州 上饶
开封 平顶山 安阳 鹤壁 新乡 焦作 濮阳 许昌 漯河 三门峡 南阳 商丘 信阳 周口 驻马店 黄石 十堰 鄂州 荆门 孝感 荆州 黄冈
咸宁 随州 株洲 湘潭 衡阳 邵阳 岳阳 常德 张家界 益阳 郴州 永州 怀化 娄底 韶关 汕头 江门 湛江 茂名 肇庆 梅州 汕尾
河源 阳江 清远 潮州 揭阳 云浮 梧州 北海 防城港 钦州 贵港 玉林 百色 贺州 河池 来宾 崇左 儋州 自贡 攀枝花 泸州 德阳
广元 遂宁 内江 乐山 南充 眉山 宜宾 广安 达州 雅安 巴中 资阳 六盘水 遵义 安顺 毕节 铜仁 曲靖 玉溪 保山 昭通 丽江 普洱
临沧 大理 日喀则 昌都 铜川 宝鸡 咸阳 渭南 延安 汉中 榆林 安康 商洛 嘉峪关 金昌 白银 天水 武威 张掖 平凉 酒泉 庆阳
定西 陇南 海东 石嘴山 吴忠 固原 中卫 克拉玛依 吐鲁番 哈密 香港 澳门
"""
CITIES = _CITY_TEXT.split()
RFM = [
    "重要价值客户",
    "重要发展客户",
    "重要保持客户",
    "重要挽留客户",
    "一般价值客户",
    "一般发展客户",
    "一般保持客户",
    "一般挽留客户",
]
LIFECYCLE = ["新客", "成长期", "成熟期", "沉睡期", "流失"]
INTERESTS = ["登山", "徒步", "露营", "滑雪", "骑行", "跑步", "攀岩", "钓鱼", "摄影", "自驾", "潜水", "冲浪"]
# (event name, share of events)
EVENTS = [
    ("Page Viewed", 0.26), ("Product Viewed", 0.22), ("Product List Viewed", 0.10), ("Products Searched", 0.07),
    ("Product Added", 0.06), ("Cart Viewed", 0.05), ("Product Favorited", 0.04), ("Push Opened", 0.035),
    ("Signed In", 0.03), ("Product Removed", 0.025), ("Checkout Started", 0.025), ("Coupon Claimed", 0.02),
    ("Email Opened", 0.02), ("Payment Info Entered", 0.018), ("Order Completed", 0.015), ("Share", 0.012),
    ("Coupon Applied", 0.01), ("Review Submitted", 0.006), ("Store Visited", 0.006), ("Signed Up", 0.003),
]  # fmt: skip


def _u(k: int) -> str:
    """A uniform [0, 1) draw per row ``i``, the ``k``-th (deterministic: hash of the row and k)."""
    return f"((hash(i, {k}) % 1000000) / 1000000.0)"


def build(cur: duckdb.DuckDBPyConnection, n: int, m: int) -> None:
    """Fill a migrated store: ``n`` profiles with attributes, tags and identifiers, ``m`` events."""
    now = NOW
    cur.execute(
        """INSERT INTO profiles (profile_idx, profile_id, created_at, anchor_type, anchor_value, created_key)
        SELECT i, 'p_' || substr(md5('anonymous_id:a' || i), 1, 20),
               TIMESTAMP '2023-01-01' + to_seconds(CAST(hash(i, 1) % (1000 * 86400) AS BIGINT)),
               'anonymous_id', 'a' || i, 'anonymous_id:a' || i
        FROM range(1, $n + 1) t(i)""",
        {"n": n},
    )
    cur.execute(
        f"""INSERT INTO profile_attributes
        SELECT i,
            json_object(
                'city', $cities[1 + CAST(floor(pow({_u(11)}, 2.2) * len($cities)) AS INTEGER)],
                'gender', CASE WHEN {_u(12)} < 0.55 THEN '女' WHEN {_u(12)} < 0.95 THEN '男' ELSE '未知' END,
                'member_level', CASE WHEN {_u(13)} < 0.6 THEN '普通会员' WHEN {_u(13)} < 0.8 THEN '银卡'
                    WHEN {_u(13)} < 0.92 THEN '金卡' WHEN {_u(13)} < 0.98 THEN '铂金' ELSE '黑钻' END,
                'points', CAST(floor(pow({_u(14)}, 3) * 50000) AS INTEGER),
                'birthday', CASE WHEN {_u(15)} < 0.85
                    THEN strftime(DATE '1960-01-01' + CAST(floor({_u(16)} * 16000) AS INTEGER), '%Y-%m-%d') END
            ),
            last_seen - to_days(CAST(floor({_u(17)} * 700) AS INTEGER)),
            last_seen,
            list_concat(
                CASE WHEN {_u(18)} < 0.7 THEN ['app'] ELSE [] END, CASE WHEN {_u(19)} < 0.5 THEN ['miniprogram'] ELSE [] END,
                CASE WHEN {_u(20)} < 0.3 THEN ['tmall'] ELSE [] END, CASE WHEN {_u(21)} < 0.15 THEN ['jd'] ELSE [] END,
                CASE WHEN {_u(22)} < 0.1 THEN ['store'] ELSE [] END),
            CAST(floor(pow({_u(23)}, 2) * 2 * $per) AS BIGINT),
            orders,
            CAST(orders * (80 + {_u(24)} * 600) AS DECIMAL(18, 2)),
            CASE WHEN orders > 0 THEN last_seen - to_days(CAST(floor({_u(25)} * 700) AS INTEGER)) END,
            CASE WHEN orders > 0 THEN last_seen - to_days(CAST(floor({_u(26)} * 30) AS INTEGER)) END,
            $now
        FROM (
            SELECT i, $now - to_seconds(CAST(pow({_u(27)}, 2) * 365 * 86400 AS BIGINT)) AS last_seen,
                   CAST(floor(pow({_u(28)}, 3) * 12) AS BIGINT) AS orders
            FROM range(1, $n + 1) t(i))""",
        {"n": n, "cities": CITIES, "per": max(1, m // max(n, 1)), "now": now},
    )
    interest = " UNION ".join(
        f"SELECT i, 'interest', $interests[1 + CAST(hash(i, {40 + k}) % 12 AS BIGINT)], NULL FROM range(1, $n + 1) t(i) "
        f"WHERE hash(i, {50 + k}) % 100 < {share}"
        for k, share in enumerate((70, 40, 15))
    )
    cur.execute(
        f"""INSERT INTO profile_tags (profile_idx, tag_key, value, value_num, updated_at)
        SELECT *, $now FROM (
            SELECT i, 'rfm_group', $rfm[1 + CAST(floor(pow({_u(31)}, 1.3) * 8) AS INTEGER)], NULL
            FROM range(1, $n + 1) t(i) WHERE hash(i, 32) % 100 < 95
            UNION ALL
            SELECT i, 'lifecycle', $life[1 + CAST(floor({_u(33)} * 5) AS INTEGER)], NULL FROM range(1, $n + 1) t(i)
            UNION ALL
            SELECT i, 'score', CAST(s AS VARCHAR), s
            FROM (SELECT i, CAST(floor({_u(34)} * 101) AS INTEGER) AS s FROM range(1, $n + 1) t(i) WHERE hash(i, 35) % 100 < 90)
            UNION ALL
            ({interest}))""",
        {"n": n, "rfm": RFM, "life": LIFECYCLE, "interests": INTERESTS, "now": now},
    )
    cur.execute(
        """INSERT INTO profile_identifiers (id_type, id_value, profile_idx, source_id, first_seen, linked_at)
        SELECT t, v, i, 1, $now, $now FROM (
            SELECT i, 'phone' AS t, '+86139' || lpad(CAST(i AS VARCHAR), 8, '0') AS v FROM range(1, $n + 1) r(i)
            WHERE hash(i, 61) % 100 < 60
            UNION ALL SELECT i, 'wechat_openid', 'oWx' || substr(md5('w' || i), 1, 24) FROM range(1, $n + 1) r(i)
            WHERE hash(i, 62) % 100 < 45
            UNION ALL SELECT i, 'email', 'u' || i || '@163.com' FROM range(1, $n + 1) r(i) WHERE hash(i, 63) % 100 < 25)""",
        {"n": n, "now": now},
    )
    cur.execute(
        """INSERT INTO identity_links (obs_idx, key_hash, ids_key, ids, first_seen, source_id, origin, profile_idx)
        SELECT i, CAST(i AS UHUGEINT), 'anonymous_id:a' || i, [], $now, 1, 'bench', i FROM range(1, $n + 1) t(i)""",
        {"n": n, "now": now},
    )
    cur.executemany(
        "INSERT INTO event_names (event_id, name) VALUES (?, ?)", [[k + 1, e] for k, (e, _) in enumerate(EVENTS)]
    )
    # Event id by a uniform draw against the cumulative shares.
    cases, acc = [], 0.0
    for k, (_, share) in enumerate(EVENTS[:-1]):
        acc += share
        cases.append(f"WHEN u < {acc:.4f} THEN {k + 1}")
    event_id = f"CASE {' '.join(cases)} ELSE {len(EVENTS)} END"
    order_id = 1 + [e for e, _ in EVENTS].index("Order Completed")
    span_us = 180 * 86400 * 1_000_000
    chunk = 20_000_000
    for start in range(0, m, chunk):
        cur.execute(
            f"""INSERT INTO events (message_id, source_id, type, event_id, "timestamp", received_at, revenue, identity_idx)
            SELECT 'e' || i, 1, 'track', eid, ts, ts,
                   CASE WHEN eid = {order_id} THEN CAST(30 + {_u(71)} * 1200 AS DECIMAL(18, 2)) END,
                   1 + CAST(floor(pow({_u(72)}, 1.6) * $n) AS BIGINT)
            FROM (
                SELECT i, {event_id} AS eid,
                       $start_ts + to_microseconds(CAST(i * ($span / $m) AS BIGINT)) AS ts
                FROM (SELECT i, {_u(73)} AS u FROM range($lo, $hi) t(i)))""",
            {"n": n, "m": max(m, 1), "lo": start, "hi": min(m, start + chunk), "span": span_us,
             "start_ts": now - timedelta(days=180)},
        )  # fmt: skip
    cur.execute("CREATE TABLE bench_meta AS SELECT $n AS profiles, $m AS events", {"n": n, "m": m})
    cur.execute("CHECKPOINT")


def build_flat(cur: duckdb.DuckDBPyConnection) -> None:
    """The best case for hand-written DuckDB SQL: traits and single-valued tags as typed columns."""
    cur.execute(
        """CREATE TABLE IF NOT EXISTS bench_flat AS
        SELECT p.profile_idx, p.profile_id,
               json_extract_string(a.traits, '$.city') AS city,
               json_extract_string(a.traits, '$.gender') AS gender,
               json_extract_string(a.traits, '$.member_level') AS member_level,
               TRY_CAST(json_extract_string(a.traits, '$.points') AS DOUBLE) AS points,
               a.last_seen, CAST(a.total_spend AS DOUBLE) AS total_spend,
               rfm.value AS rfm_group, lc.value AS lifecycle, sc.value_num AS score
        FROM profiles p LEFT JOIN profile_attributes a USING (profile_idx)
        LEFT JOIN (SELECT profile_idx, value FROM profile_tags WHERE tag_key = 'rfm_group') rfm USING (profile_idx)
        LEFT JOIN (SELECT profile_idx, value FROM profile_tags WHERE tag_key = 'lifecycle') lc USING (profile_idx)
        LEFT JOIN (SELECT profile_idx, value_num FROM profile_tags WHERE tag_key = 'score') sc USING (profile_idx)"""
    )


# --- the questions ------------------------------------------------------------------------------

BIG_CITIES = ["上海", "北京", "深圳", "杭州", "广州"]
TOP_RFM = ["重要价值客户", "重要发展客户"]

A_DEFINITION: dict[str, Any] = {
    "type": "and",
    "children": [
        {"type": "attribute", "field": "city", "op": "in", "value": BIG_CITIES},
        {"type": "or", "children": [
            {"type": "tag", "tag": "rfm_group", "op": "in", "values": TOP_RFM},
            {"type": "attribute", "field": "points", "op": "gte", "value": 2000},
        ]},
        {"type": "not", "child": {"type": "tag", "tag": "lifecycle", "op": "eq", "value": "流失"}},
        {"type": "attribute", "field": "last_seen", "op": "within_last", "days": 90},
    ],
}  # fmt: skip
A_STORED_SQL = """
SELECT count(*) FROM profiles p JOIN profile_attributes a USING (profile_idx)
WHERE json_extract_string(a.traits, '$.city') IN ('上海', '北京', '深圳', '杭州', '广州')
  AND (p.profile_idx IN (SELECT profile_idx FROM profile_tags WHERE tag_key = 'rfm_group'
                         AND value IN ('重要价值客户', '重要发展客户'))
       OR TRY_CAST(json_extract_string(a.traits, '$.points') AS DOUBLE) >= 2000)
  AND p.profile_idx NOT IN (SELECT profile_idx FROM profile_tags WHERE tag_key = 'lifecycle' AND value = '流失')
  AND a.last_seen BETWEEN $lo AND $now"""
A_FLAT_SQL = """
SELECT count(*) FROM bench_flat
WHERE city IN ('上海', '北京', '深圳', '杭州', '广州')
  AND (rfm_group IN ('重要价值客户', '重要发展客户') OR points >= 2000)
  AND lifecycle IS DISTINCT FROM '流失'
  AND last_seen BETWEEN $lo AND $now"""

# A second shape: a numeric tag range, a decimal column, a multi-valued tag, a holdout bucket.
A2_DEFINITION: dict[str, Any] = {
    "type": "and",
    "children": [
        {"type": "tag", "tag": "score", "op": "between", "values": [60, 100]},
        {"type": "or", "children": [
            {"type": "attribute", "field": "total_spend", "op": "gte", "value": 1000},
            {"type": "attribute", "field": "member_level", "op": "in", "value": ["金卡", "铂金", "黑钻"]},
        ]},
        {"type": "tag", "tag": "interest", "op": "in", "values": ["滑雪", "露营"]},
        {"type": "not", "child": {"type": "random_bucket", "salt": "holdout-2026", "buckets": 100, "low": 0, "high": 10}},
    ],
}  # fmt: skip
A2_FLAT_SQL = """
SELECT count(*) FROM bench_flat f
WHERE score BETWEEN 60 AND 100
  AND (total_spend >= 1000 OR member_level IN ('金卡', '铂金', '黑钻'))
  AND profile_idx IN (SELECT profile_idx FROM profile_tags WHERE tag_key = 'interest' AND value IN ('滑雪', '露营'))
  AND CAST('0x' || left(md5(profile_id || ':holdout-2026'), 8) AS UBIGINT) % 100 >= 10"""

_EVENT_ROWS = """
    SELECT l.profile_idx FROM events e JOIN identity_links l ON l.obs_idx = e.identity_idx
    WHERE e.event_id = (SELECT event_id FROM event_names WHERE name = '{name}')
      AND e."timestamp" >= $now - INTERVAL {days} DAY AND e."timestamp" <= $now AND l.profile_idx IS NOT NULL"""
BEHAVIOUR: list[tuple[str, dict[str, Any], str]] = [
    (
        "(b1) Product Viewed >= 3 times, last 30 days",
        {"type": "event", "event": "Product Viewed", "window": {"last": 30}, "count": {"op": "gte", "value": 3}},
        "SELECT count(*) FROM (" + _EVENT_ROWS.format(name="Product Viewed", days=30)
        + " GROUP BY l.profile_idx HAVING count(*) >= 3)",
    ),
    (
        "(b2) revenue of Order Completed >= 2000, last 90 days",
        {"type": "event", "event": "Order Completed", "window": {"last": 90},
         "aggregate": {"fn": "sum", "property": "revenue", "op": "gte", "value": 2000}},
        "SELECT count(*) FROM (SELECT profile_idx FROM (" + _EVENT_ROWS.format(name="Order Completed", days=90).replace(
            "SELECT l.profile_idx", "SELECT l.profile_idx, e.revenue", 1) + ") GROUP BY profile_idx HAVING sum(revenue) >= 2000)",
    ),
    (
        "(b3) no Order Completed in 14 days AND 金卡",
        {"type": "and", "children": [
            {"type": "event", "event": "Order Completed", "window": {"last": 14}, "count": {"op": "eq", "value": 0}},
            {"type": "attribute", "field": "member_level", "op": "eq", "value": "金卡"},
        ]},
        "SELECT count(*) FROM profile_attributes a WHERE json_extract_string(a.traits, '$.member_level') = '金卡'"
        " AND a.profile_idx NOT IN (" + _EVENT_ROWS.format(name="Order Completed", days=14) + ")",
    ),
]  # fmt: skip


# --- timing -------------------------------------------------------------------------------------


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, float, Any]:
    """p50 and p99 in ms over ``runs`` calls (after one warm-up call), and the last result."""
    result = fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        result = fn()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, round(0.99 * (len(times) - 1)))], result


def sql_count(cur: duckdb.DuckDBPyConnection, sql: str, params: dict[str, Any]) -> int:
    return int(cur.execute(sql, params).fetchall()[0][0])


def compiled_count(cur: duckdb.DuckDBPyConnection, cond: Condition, ctx: CompileContext) -> int:
    return int(compile_count(cond, ctx).execute(cur)[0][0])


def compiled_sql(cond: Condition, ctx: CompileContext) -> str:
    return compile_count(cond, ctx).render("duckdb")


def _row(name: str, p50: float, p99: float, base: float | None = None, note: str = "") -> None:
    ratio = f"{p50 / base:6.2f}x" if base else " " * 7
    print(f"  {name:<52} {p50:9.1f} {p99:9.1f}   {ratio}   {note}")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", type=int, default=10_000_000)
    ap.add_argument("--events", type=int, default=100_000_000)
    ap.add_argument("--reuse", type=Path, help="a store file to reuse (built there first if missing)")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--explains", type=int, default=50)
    ap.add_argument("--memory-limit", default="8GB")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = args.reuse or Path(tmp) / "audience.duckdb"
        store = AnalyticStore(path, memory_limit=args.memory_limit)
        cur = store.cursor()
        have = cur.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'bench_meta'").fetchall()[0][0]
        if have:
            n, m = cur.execute("SELECT profiles, events FROM bench_meta").fetchall()[0]
            print(f"reusing {path}: {n:,} profiles, {m:,} events")
        else:
            n, m = args.profiles, args.events
            t = time.perf_counter()
            build(cur, n, m)
            print(
                f"built {n:,} profiles (attributes, 4 tags, identifiers) and {m:,} events in {time.perf_counter() - t:.0f} s"
            )
        t = time.perf_counter()
        build_flat(cur)
        print(f"typed flat copy (bench_flat) for the best-case SQL baseline: {time.perf_counter() - t:.1f} s")
        ectx = EvalContext(now=NOW.replace(tzinfo=UTC), timezone=TIMEZONE)
        cctx = CompileContext(eval=ectx)
        window = {"lo": NOW - timedelta(days=90), "now": NOW}
        runs = args.runs

        print(f"\n{'':2}{'':52} {'p50 ms':>9} {'p99 ms':>9}   {'vs base':>7}")
        # (a) attribute + tag counts
        summary: list[str] = []
        for label, definition, flat_sql, stored_sql, params in (
            ("(a) 5 leaves: city, rfm_group|points, not lifecycle, last_seen", A_DEFINITION, A_FLAT_SQL, A_STORED_SQL, window),
            ("(a2) 5 leaves: score range, spend|level, interest, holdout", A2_DEFINITION, A2_FLAT_SQL, None, {}),
        ):  # fmt: skip
            cond = resolve(parse_condition(definition), cctx)
            print(label)
            flat50, flat99, flat_n = timed(partial(sql_count, cur, flat_sql, params), runs)
            columns = ProfileColumns(store)
            t = time.perf_counter()
            cold_n = count_members(cond, ectx, store, columns)
            cold = time.perf_counter() - t
            fast50, fast99, fast_n = timed(partial(count_members, cond, ectx, store, columns), runs)
            sql50, sql99, sql_n = timed(partial(compiled_count, cur, cond, cctx), max(5, runs // 3))
            _row("baseline: hand-written SQL, typed flat table", flat50, flat99, note=f"{flat_n:,} members")
            if stored_sql is not None:
                st50, st99, st_n = timed(partial(sql_count, cur, stored_sql, params), max(5, runs // 3))
                _row("hand-written SQL, tables as stored (JSON traits)", st50, st99, flat50, f"{st_n:,}")
                assert st_n == flat_n
            _row("compiled SQL (compile_count)", sql50, sql99, flat50, f"{sql_n:,}")
            _row("in-memory columns (count_members), warm", fast50, fast99, flat50, f"{fast_n:,}")
            print(f"  {'cold: first count, columns read from the store':<52} {cold * 1000:9.0f}"
                  f"{'':24}{len(columns.held())} columns, {columns.nbytes / 2**20:.0f} MiB held")  # fmt: skip
            assert fast_n == cold_n == sql_n == flat_n, (fast_n, cold_n, sql_n, flat_n)
            verdict = "met" if fast50 <= 20 else f"missed by {fast50 - 20:.1f} ms"
            summary.append(f"{label.split()[0]} columns p50 {fast50:.1f} ms (target <= 20 ms: {verdict}); "
                           f"{flat50 / fast50:.1f}x faster than typed DuckDB SQL")  # fmt: skip

        # (b) behavioural conditions
        for label, behaviour, hand_sql in BEHAVIOUR:
            cond = parse_condition(behaviour)
            print(label)
            b50, b99, b_n = timed(partial(sql_count, cur, hand_sql, {"now": NOW}), max(5, runs // 3))
            c50, c99, c_n = timed(partial(compiled_count, cur, cond, cctx), max(5, runs // 3))
            _row("baseline: hand-written SQL", b50, b99, note=f"{b_n:,} members")
            r50, r99, _ = timed(partial(compiled_sql, cond, cctx), max(5, runs // 3))
            _row("compiled SQL (compile_count)", c50, c99, b50, f"{c_n:,}")
            _row("  of which compiling and rendering the SQL", r50, r99)
            assert b_n == c_n, (b_n, c_n)
            ratio = c50 / b50
            verdict = "met" if ratio <= 1.5 else f"missed ({ratio:.2f}x)"
            summary.append(f"{label.split()[0]} compiled/hand-written p50 {ratio:.2f}x (target <= 1.5x: {verdict})")

        # (c) explain for one profile
        explain_cond = parse_condition({"type": "and", "children": [A_DEFINITION, BEHAVIOUR[0][1], BEHAVIOUR[1][1]]})
        picks = [random.Random(7).randrange(1, n + 1) for _ in range(args.explains)]
        times = []
        for idx in picks:
            t = time.perf_counter()
            rows = compile_explain(explain_cond, cctx, profile_idx=idx).execute(cur)
            times.append((time.perf_counter() - t) * 1000)
            assert len(rows) == 1
        times.sort()
        e50, e99 = statistics.median(times), times[min(len(times) - 1, round(0.99 * (len(times) - 1)))]
        print("(c) explain one profile: 7 leaves (a + b1 + b2)")
        _row(f"compile_explain, {len(picks)} random profiles", e50, e99)
        summary.append(f"(c) explain p50 {e50:.0f} ms p99 {e99:.0f} ms (target <= 100 ms: "
                       f"{'met' if e99 <= 100 else 'p99 missed' if e50 <= 100 else 'missed'})")  # fmt: skip

        print(f"\npeak RSS {_rss_mb():,.0f} MiB; {n:,} profiles, {m:,} events")
        for line in summary:
            print("SUMMARY", line)
        cur.close()
        store.close()


if __name__ == "__main__":
    main()
