"""The demo generator: determinism, scale, identifier scattering, consistency of orders and events."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

import tessera.demo.generate as generate_module
from tessera.demo import texts
from tessera.demo.catalog import CATEGORIES, COLOURS, SERIES
from tessera.demo.generate import DemoFiles, generate
from tessera.demo.orders import ORDER_ID_COLUMNS

NOW = datetime(2026, 3, 1, 4, 30, tzinfo=UTC)
USERS = 3000
PHONE = re.compile(r"^\+861[3-9]\d{9}$")
ID_COLUMNS = ("customer_id", "member_id", "phone", "email", "wechat_unionid", "tmall_id", "jd_id")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> DemoFiles:
    return generate(users=USERS, seed=11, out_dir=tmp_path_factory.mktemp("demo"), now=NOW)


@pytest.fixture(scope="module")
def db(files: DemoFiles) -> Iterator[duckdb.DuckDBPyConnection]:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    d = files.out_dir
    for name in ("customers", "products", "order_items", "reviews", "truth"):
        con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{d / name}.parquet')")
    con.execute(f"CREATE VIEW orders AS SELECT * FROM read_parquet('{d}/orders_*.parquet')")
    con.execute(
        f"CREATE VIEW events AS SELECT *, filename AS file FROM read_parquet('{d}/events_*.parquet', filename=true)"
    )
    yield con
    con.close()


def one(con: duckdb.DuckDBPyConnection, sql: str) -> object:
    row = con.execute(sql).fetchone()
    assert row is not None
    return row[0]


def all_files(files: DemoFiles) -> list[Path]:
    return sorted(p for p in files.out_dir.iterdir() if p.suffix == ".parquet")


def _generate_in_a_fresh_process(out_dir: Path, seed: int) -> None:
    """As ``tessera demo --seed`` does: a new process. (Inside a long-lived process that has run
    other work, pyarrow has been seen to compress one dictionary column's pages to different bytes
    holding the same data; the data check below covers that case.)"""
    code = (
        "import sys; from datetime import datetime; from pathlib import Path; "
        "from tessera.demo.generate import generate; "
        "generate(users=int(sys.argv[1]), seed=int(sys.argv[2]), out_dir=Path(sys.argv[3]), "
        "now=datetime.fromisoformat(sys.argv[4]))"
    )
    subprocess.run([sys.executable, "-c", code, str(USERS), str(seed), str(out_dir), NOW.isoformat()], check=True)


def test_same_seed_same_bytes_other_seed_other_data(files: DemoFiles, tmp_path: Path) -> None:
    _generate_in_a_fresh_process(tmp_path / "one", 11)
    _generate_in_a_fresh_process(tmp_path / "two", 11)
    one, two = sorted((tmp_path / "one").glob("*.parquet")), sorted((tmp_path / "two").glob("*.parquet"))
    assert [p.name for p in one] == [p.name for p in two] == [p.name for p in all_files(files)]
    for a, b in zip(one, two, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name
    assert (tmp_path / "one" / "manifest.json").read_text() == (tmp_path / "two" / "manifest.json").read_text()
    # In this process too, the same seed gives the same data.
    again = generate(users=USERS, seed=11, out_dir=tmp_path / "again", now=NOW)
    for a, b in zip(all_files(files), all_files(again), strict=True):
        assert pq.read_table(a).equals(pq.read_table(b)), a.name
    other = generate(users=USERS, seed=12, out_dir=tmp_path / "other", now=NOW)
    for name in ("customers.parquet", "events_app.parquet", "orders_tmall.parquet", "truth.parquet"):
        assert (files.out_dir / name).read_bytes() != (other.out_dir / name).read_bytes(), name


def test_counts_scale_with_users(files: DemoFiles, tmp_path: Path) -> None:
    small = generate(users=USERS // 3, seed=11, out_dir=tmp_path / "small", now=NOW)
    assert small.counts["people"] == USERS // 3 and files.counts["people"] == USERS
    for key in ("customers", "orders", "order_items", "reviews", "events", "truth"):
        assert small.counts[key] > 0
        ratio = files.counts[key] / small.counts[key]
        assert 2.2 < ratio < 3.8, (key, ratio)
    assert small.counts["products"] == files.counts["products"]  # the catalogue does not depend on users
    assert 300 <= files.counts["products"] <= 800


def test_chunks_keep_ids_unique(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generate_module, "CHUNK", 700)
    f = generate(users=2000, seed=5, out_dir=tmp_path, now=NOW)
    assert f.counts["people"] == 2000
    con = duckdb.connect()
    assert one(con, f"SELECT count(*) - count(DISTINCT order_id) FROM '{tmp_path}/orders_*.parquet'") == 0
    assert one(con, f"SELECT count(*) - count(DISTINCT message_id) FROM '{tmp_path}/events_*.parquet'") == 0
    assert one(con, f"SELECT count(*) - count(DISTINCT review_id) FROM '{tmp_path}/reviews.parquet'") == 0
    assert one(con, f"SELECT count(*) - count(DISTINCT customer_id) FROM '{tmp_path}/customers.parquet'") == 0
    assert one(con, f"SELECT count(DISTINCT person_id) FROM '{tmp_path}/truth.parquet'") > 1400
    # Phones are unique per person across chunks (only shared devices map to several people).
    multi = f"""SELECT count(*) FROM (SELECT canonical FROM '{tmp_path}/truth.parquet'
                WHERE id_type = 'phone' AND variant <> 'typo' GROUP BY canonical HAVING count(DISTINCT person_id) > 1)"""
    assert one(con, multi) == 0


def test_a_person_is_scattered_over_channels(db: duckdb.DuckDBPyConnection) -> None:
    spread = db.execute(
        """SELECT person_id, count(DISTINCT id_type) AS kinds, count(DISTINCT source) AS sources
           FROM truth GROUP BY person_id"""
    ).fetchall()
    rich = [p for p, kinds, sources in spread if kinds >= 3 and sources >= 2]
    assert len(rich) > USERS * 0.2
    kinds = {r[0] for r in db.execute("SELECT DISTINCT id_type FROM truth").fetchall()}
    assert kinds >= {
        "phone", "email", "member_id", "wechat_unionid", "wechat_openid_mp", "wechat_openid_oa", "tmall_id",
        "jd_id", "douyin_id", "device_id", "anonymous_id",
    }  # fmt: skip
    variants = {r[0] for r in db.execute("SELECT DISTINCT variant FROM truth").fetchall()}
    assert variants == {"exact", "format", "case", "typo", "second"}
    # A shared (family) device belongs to several people, and says so.
    shared = db.execute(
        """SELECT id_value, count(DISTINCT person_id), bool_and(shared) FROM truth WHERE id_type = 'device_id'
           GROUP BY id_value HAVING count(DISTINCT person_id) > 1"""
    ).fetchall()
    assert shared and all(flag for _, _, flag in shared)
    # The same unionid appears with two different openids (mini-program and official account).
    both = one(
        db,
        """SELECT count(*) FROM (SELECT person_id FROM truth WHERE id_type IN ('wechat_openid_mp', 'wechat_openid_oa')
           GROUP BY person_id HAVING count(DISTINCT id_type) = 2)""",
    )
    assert both > 0


def test_each_channel_carries_only_its_identifiers(files: DemoFiles) -> None:
    for channel, path in files.orders.items():
        table = pq.read_table(path)
        assert table.num_rows > 0, channel
        present = {c for c in ID_COLUMNS if table.column(c).null_count < table.num_rows}
        assert present <= ORDER_ID_COLUMNS[channel], (channel, present)
        assert set(table.column("channel").to_pylist()) == {channel}
    customers = pq.read_table(files.customers)
    assert customers.column("tmall_id").null_count == customers.num_rows
    assert customers.column("jd_id").null_count == customers.num_rows
    assert customers.column("member_id").null_count == 0
    app = pq.read_table(files.events["app"], columns=["anonymous_id", "device_id", "context"])
    assert app.column("anonymous_id").to_pylist() == app.column("device_id").to_pylist()
    web = pq.read_table(files.events["web"], columns=["device_id", "context"])
    assert web.column("device_id").null_count == web.num_rows
    assert all("externalIds" not in c for c in web.column("context").to_pylist()[:500])
    mini = pq.read_table(files.events["wechat_miniprogram"], columns=["anonymous_id", "device_id", "context"])
    assert all(a.startswith("oYs3M") for a in mini.column("anonymous_id").to_pylist())
    assert all("externalIds" in c for c in mini.column("context").to_pylist()[:500])


def test_identifiers_in_files_are_in_truth(db: duckdb.DuckDBPyConnection) -> None:
    for column, id_type, source in (
        ("tmall_id", "tmall_id", "orders_tmall"),
        ("jd_id", "jd_id", "orders_jd"),
        ("phone", "phone", "orders_offline_store"),
    ):
        missing = one(
            db,
            f"""SELECT count(*) FROM orders o WHERE o.{column} IS NOT NULL AND o.channel = '{source[7:]}'
                AND NOT EXISTS (SELECT 1 FROM truth t WHERE t.id_type = '{id_type}' AND t.id_value = o.{column})""",
        )
        assert missing == 0, column
    missing_anon = one(
        db,
        """SELECT count(*) FROM (SELECT DISTINCT anonymous_id FROM events) e
           WHERE NOT EXISTS (SELECT 1 FROM truth t WHERE t.id_value = e.anonymous_id)""",
    )
    assert missing_anon == 0


def test_phones_are_chinese_mobiles(db: duckdb.DuckDBPyConnection) -> None:
    exact = [
        r[0]
        for r in db.execute("SELECT id_value FROM truth WHERE id_type = 'phone' AND variant <> 'format'").fetchall()
    ]
    assert exact and all(PHONE.match(p) for p in exact)
    canonical = [r[0] for r in db.execute("SELECT canonical FROM truth WHERE id_type = 'phone'").fetchall()]
    assert all(PHONE.match(p) for p in canonical)
    written = [r[0] for r in db.execute("SELECT phone FROM customers WHERE phone IS NOT NULL").fetchall()]
    written += [r[0] for r in db.execute("SELECT phone FROM orders WHERE phone IS NOT NULL").fetchall()]
    formats = [p for p in written if not PHONE.match(p)]
    assert 0 < len(formats) < len(written) * 0.2  # a documented fraction in other formats
    for p in written:
        digits = re.sub(r"\D", "", p)
        digits = digits[2:] if len(digits) == 13 and digits.startswith("86") else digits
        assert re.fullmatch(r"1[3-9]\d{9}", digits), p


def test_order_totals_add_up(db: duckdb.DuckDBPyConnection) -> None:
    bad = one(
        db,
        """SELECT count(*) FROM orders o JOIN (SELECT order_id, sum(amount) AS items, count(*) AS n FROM order_items
           GROUP BY order_id) i USING (order_id)
           WHERE o.total <> i.items - o.discount + o.shipping OR o.total <= 0""",
    )
    assert bad == 0
    assert one(db, "SELECT count(*) FROM order_items WHERE amount <> unit_price * quantity") == 0
    assert one(db, "SELECT count(*) FROM orders WHERE order_id NOT IN (SELECT order_id FROM order_items)") == 0
    assert one(db, "SELECT count(*) FROM order_items WHERE product_id NOT IN (SELECT product_id FROM products)") == 0
    assert one(db, "SELECT count(*) FROM orders WHERE coupon_code IS NOT NULL AND discount > 0") > 0
    statuses = {r[0] for r in db.execute("SELECT DISTINCT status FROM orders").fetchall()}
    assert statuses == {"paid", "shipped", "completed", "refunded"}
    channels = {r[0] for r in db.execute("SELECT DISTINCT channel FROM orders").fetchall()}
    assert channels == {"tmall", "jd", "wechat_miniprogram", "app", "web", "offline_store"}
    repeat = one(
        db,
        "SELECT count(*) FROM (SELECT customer_id FROM orders WHERE customer_id IS NOT NULL GROUP BY 1 HAVING count(*) > 1)",
    )
    assert repeat > 0


def test_order_completed_events_match_orders(db: duckdb.DuckDBPyConnection) -> None:
    completed = db.execute(
        """SELECT e.order_id, e.revenue, o.total, o.channel = e.channel,
                  json_extract(e.properties, '$.revenue')::DECIMAL(18,2), e.user_id IS NOT DISTINCT FROM o.member_id
           FROM events e LEFT JOIN orders o USING (order_id) WHERE e.event = 'Order Completed'"""
    ).fetchall()
    assert completed
    for order_id, revenue, total, same_channel, prop_revenue, same_user in completed:
        assert total is not None, order_id
        assert revenue == total == prop_revenue and same_channel and same_user, order_id
    # Every own-channel order of the event window has its Order Completed event, once.
    expected = one(
        db,
        f"""SELECT count(*) FROM orders WHERE channel IN ('app', 'web', 'wechat_miniprogram')
            AND ordered_at >= TIMESTAMP '{(NOW - timedelta(days=181)).replace(tzinfo=None)}'
            AND ordered_at >= (SELECT min("timestamp") FROM events)""",
    )
    assert len(completed) == len({c[0] for c in completed}) == expected


def test_events_shape(db: duckdb.DuckDBPyConnection) -> None:
    names = {r[0] for r in db.execute("SELECT DISTINCT event FROM events WHERE type = 'track'").fetchall()}
    assert names >= {
        "Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Order Refunded", "Product Shared",
        "Signed In", "Signed Up", "Checked In", "Coupon Claimed", "Coupon Used", "Activity Registered",
        "Store Fitting Booked", "Products Searched", "Product List Viewed",
    }  # fmt: skip
    types = {r[0] for r in db.execute("SELECT DISTINCT type FROM events").fetchall()}
    assert types == {"track", "page", "screen", "identify"}
    lo, hi = db.execute('SELECT min("timestamp"), max("timestamp"), FROM events').fetchone() or (None, None)
    assert lo is not None and hi is not None
    assert lo >= (NOW - timedelta(days=181)).replace(tzinfo=None) and hi < NOW.replace(tzinfo=None)
    assert one(db, 'SELECT count(*) FROM events WHERE received_at < "timestamp" OR received_at > now()') == 0
    for column in ("properties", "context", "traits"):
        assert one(db, f"SELECT count(*) FROM events WHERE {column} IS NOT NULL AND NOT json_valid({column})") == 0
        assert one(db, f"SELECT count(*) FROM events WHERE {column} = '{{}}'") == 0
    assert one(db, "SELECT count(*) FROM events WHERE type = 'identify' AND traits IS NULL") == 0
    assert one(db, "SELECT count(*) FROM events WHERE utm_campaign IS NOT NULL") > 0
    assert one(db, "SELECT count(*) FROM events WHERE user_id IS NULL AND anonymous_id IS NULL") == 0
    # KOC sharers (10+ shares) and a 7-day check-in streak exist for the journey stories.
    assert (
        one(
            db,
            "SELECT count(*) FROM (SELECT anonymous_id FROM events WHERE event = 'Product Shared' GROUP BY 1 HAVING count(*) >= 10)",
        )
        > 0
    )
    assert (
        one(db, "SELECT max(json_extract(properties, '$.streak_days')::INT) FROM events WHERE event = 'Checked In'")
        >= 7
    )  # type: ignore[operator]


def test_reviews_in_two_languages_and_tones(db: duckdb.DuckDBPyConnection) -> None:
    rows = db.execute(
        """SELECT language, json_extract_string(attributes, '$.tone') AS tone, avg(rating), min(rating), max(rating), count(*)
           FROM reviews GROUP BY ALL"""
    ).fetchall()
    seen = {(lang, tone) for lang, tone, *_ in rows}
    assert {("zh", "positive"), ("zh", "negative"), ("en", "positive"), ("en", "negative")} <= seen
    for _lang, tone, _avg, lo, hi, _n in rows:
        if tone == "positive":
            assert lo >= 4
        if tone == "negative":
            assert hi <= 2
    assert (
        one(
            db,
            "SELECT count(*) FROM reviews r WHERE NOT EXISTS (SELECT 1 FROM order_items i WHERE i.order_id = r.order_id AND i.product_id = r.product_id)",
        )
        == 0
    )
    zh = one(db, "SELECT body FROM reviews WHERE language = 'zh' LIMIT 1")
    assert isinstance(zh, str) and re.search(r"[\u4e00-\u9fff]", zh)


def test_seasonality(db: duckdb.DuckDBPyConnection) -> None:
    by_month = dict(
        db.execute("SELECT month(ordered_at + INTERVAL 8 HOUR), count(*) FROM orders GROUP BY 1").fetchall()
    )
    assert by_month[11] > 1.5 * by_month[2]
    d11 = one(db, "SELECT count(*) FROM orders WHERE strftime(ordered_at + INTERVAL 8 HOUR, '%m-%d') = '11-11'")
    assert d11 > 5 * by_month[11] / 30  # the Double 11 peak day
    down = dict(
        db.execute(
            """SELECT month(o.ordered_at + INTERVAL 8 HOUR) IN (11, 12, 1), count(*) FROM orders o
               JOIN order_items i USING (order_id) JOIN products p USING (product_id) WHERE p.category = '羽绒服' GROUP BY 1"""
        ).fetchall()
    )
    assert down[True] > 2 * down[False]


def test_people_and_members(db: duckdb.DuckDBPyConnection) -> None:
    levels = {r[0] for r in db.execute("SELECT DISTINCT member_level FROM customers").fetchall()}
    assert levels <= set(texts.MEMBER_LEVELS) and len(levels) >= 3
    assert {r[0] for r in db.execute("SELECT DISTINCT gender FROM customers").fetchall()} == {"male", "female", None}
    assert 0 < one(db, "SELECT count(*) FROM customers WHERE birthday IS NULL") < USERS * 0.3  # type: ignore[operator]
    cities = {r[0] for r in db.execute("SELECT DISTINCT city FROM customers").fetchall()}
    assert {"上海", "北京", "杭州"} <= cities and cities <= {c for _, c, _ in texts.PLACES}
    english = one(db, "SELECT count(*) FROM customers WHERE regexp_matches(name, '^[A-Z][a-z]+ [A-Z]')")
    assert english > 0  # type: ignore[operator]
    assert one(db, "SELECT count(*) FROM customers WHERE email <> lower(email)") > 0


def test_vocabularies_need_no_json_escaping() -> None:
    words: list[str] = [texts.BRAND_FULL]
    for name, value in vars(texts).items():
        if name.isupper():
            words += _strings(value)
    for category in CATEGORIES:
        words += _strings(category)
    words += _strings(SERIES) + _strings(COLOURS)
    assert words
    for word in words:
        assert '"' not in word and "\\" not in word and all(ord(ch) >= 32 for ch in word), word


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(k) + _strings(v)]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def test_manifest(files: DemoFiles) -> None:
    manifest = json.loads((files.out_dir / "manifest.json").read_text())
    assert manifest["users"] == USERS and manifest["seed"] == 11 and manifest["counts"] == files.counts
    assert "truth.parquet" in manifest["files"]
    kinds = [kind for kind, _, _ in files.imports()]
    assert kinds[0] == "products" and kinds[-1] == "events" and "truth" not in kinds
