"""SQL tags (SQL标签): one read-only SELECT (profile key, value), refused unless safe, run under a
time and a row limit, values checked against the tag's type, failures recorded with nothing swapped."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pytest

from tessera.clock import FrozenClock
from tessera.domain.tags import Tag, TagDraft
from tessera.runtime import Instance
from tessera.services import sql_tags, tag_runs
from tessera.services import tag_catalogue as cat
from tessera.services.sql_tags import TABLES, check_sql
from tessera.services.tag_catalogue import CatalogueError

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
PROFILES = 40
#: 近90天客单价 (average order value over the last 90 days), through the member id the orders carry.
AOV_90D = """SELECT i.profile_idx, round(avg(o.total), 2) AS value
FROM orders o
JOIN profile_identifiers i ON i.id_type = 'member_id' AND i.id_value = o.member_id
WHERE o.ordered_at >= TIMESTAMP '2026-11-23' - INTERVAL 90 DAY
GROUP BY 1"""


@pytest.fixture
def inst(tmp_path: Path) -> Iterator[Instance]:
    """A fresh store: 40 profiles p_001 … p_040, member ids m001 … m040, 60 orders of the first 20."""
    with Instance(tmp_path / "data", clock=FrozenClock(NOW)) as inst:
        cur = inst.analytic.cursor()
        cur.execute(
            f"""INSERT INTO profiles (profile_idx, profile_id, created_at)
            SELECT i, printf('p_%03d', i), TIMESTAMP '2026-01-01' FROM range(1, {PROFILES + 1}) t(i)"""
        )
        cur.execute(
            f"""INSERT INTO profile_identifiers (id_type, id_value, profile_idx)
            SELECT 'member_id', printf('m%03d', i), i FROM range(1, {PROFILES + 1}) t(i)"""
        )
        cur.execute(
            """INSERT INTO orders (order_id, member_id, ordered_at, total, status)
            SELECT printf('o%03d', j), printf('m%03d', j % 20 + 1), TIMESTAMP '2026-11-20' - INTERVAL (j * 3) DAY,
                   100 + j, 'completed'
            FROM range(1, 61) t(j)"""
        )
        cur.close()
        yield inst


def _create(inst: Instance, key: str, sql: str, **fields: Any) -> Tag:
    body = {"key": key, "name": "近90天客单价", "name_en": "AOV (90 days)", "category": "value", "kind": "sql",
            "value_type": "number", "status": "active", "sql": sql, **fields}  # fmt: skip
    with inst.operational.session() as s:
        return cat.create_tag(session=s, body=body, now=NOW)


def _update(inst: Instance, key: str, **changes: Any) -> Tag:
    with inst.operational.session() as s:
        return cat.update_tag(session=s, key=key, changes=changes, now=NOW)


def _values(inst: Instance, key: str) -> dict[int, str]:
    rows = inst.analytic.cursor().execute("SELECT profile_idx, value FROM profile_tags WHERE tag_key = ?", [key])
    return {int(i): v for i, v in rows.fetchall()}


def _multi(inst: Instance, key: str) -> set[tuple[int, str]]:
    rows = inst.analytic.cursor().execute("SELECT profile_idx, value FROM profile_tags WHERE tag_key = ?", [key])
    return {(int(i), v) for i, v in rows.fetchall()}


def _runs(inst: Instance, key: str) -> list[tuple[str, str | None]]:
    cur = inst.analytic.cursor()
    return [(s, e) for s, e in cur.execute("SELECT status, error FROM tag_runs WHERE tag_key = ? ORDER BY run_no", [key]).fetchall()]  # fmt: skip


def _counts(inst: Instance) -> dict[str, int]:
    cur = inst.analytic.cursor()
    return {t: int(cur.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]) for t in ("profiles", "orders", "profile_identifiers")}  # fmt: skip


def _refusal(sql: str) -> str:
    with pytest.raises(ValueError) as err:
        check_sql(sql)
    return str(err.value)


# -- what the check accepts and refuses -----------------------------------------------------------------
@pytest.mark.parametrize(
    "sql",
    [
        AOV_90D,
        "SELECT profile_idx, 1 AS value FROM profiles;",
        "select Profile_ID, traits->>'$.gender' from profiles",
        "FROM profiles SELECT profile_idx, profile_id",
        "(SELECT profile_idx, 'a' FROM profiles)",
        "SELECT profile_idx, 'a' FROM profiles UNION ALL SELECT profile_idx, 'b' FROM profile_tags",
        "WITH t AS (SELECT profile_idx, count(*) AS n FROM events_named GROUP BY 1) SELECT profile_idx, n > 3 FROM t",
        "WITH a AS (SELECT 1 AS x), b AS (SELECT x FROM a) SELECT p.profile_idx, b.x FROM profiles p, b",
        "WITH RECURSIVE r AS (SELECT 1 AS profile_idx, 1 AS v UNION ALL SELECT profile_idx, v + 1 FROM r WHERE v < 3) "
        "SELECT profile_idx, v FROM r",
        "WITH orders AS (SELECT * FROM orders WHERE status = 'completed') SELECT l.profile_idx, count(*) FROM orders o "
        "JOIN identity_links l ON l.obs_idx = o.identity_idx GROUP BY 1",
        "SELECT profile_idx, x FROM profiles, range(3) t(x)",
        "SELECT profile_idx, x FROM profiles, unnest(['a', 'b']) t(x)",
        "SELECT profile_idx, list_filter([1, 2, 3], x -> x > 1) FROM profiles",
        "SELECT profile_idx, date_diff('day', max(changed_at), now()) FROM tag_changes GROUP BY ALL",
        "SELECT profile_idx, 'x'';DROP TABLE profiles;--' AS v, 3 AS ignored FROM profiles",
        'SELECT profile_idx, 1 FROM "Profiles"',
    ],
)
def test_read_only_queries_over_the_documented_tables_pass(sql: str) -> None:
    check_sql(sql)


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        # DDL and DML, also where DuckDB would run them inside a query
        ("CREATE TABLE x AS SELECT 1", "CREATE is not allowed: a SQL tag only reads"),
        ("DROP TABLE profiles", "DROP is not allowed: a SQL tag only reads"),
        ("ALTER TABLE profiles ADD COLUMN x INT", "ALTER is not allowed: a SQL tag only reads"),
        ("INSERT INTO profiles SELECT * FROM profiles", "INSERT is not allowed: a SQL tag only reads"),
        ("UPDATE profiles SET traits = NULL", "UPDATE is not allowed: a SQL tag only reads"),
        ("DELETE FROM profiles", "DELETE is not allowed: a SQL tag only reads"),
        ("WITH x AS (DELETE FROM profiles RETURNING *) SELECT profile_idx, 1 FROM x", "DELETE is not allowed"),
        ("WITH x AS (SELECT 1) INSERT INTO profile_tags SELECT * FROM x", "INSERT is not allowed"),
        ("SELECT profile_idx, 1 INTO stolen FROM profiles", "INTO is not allowed: a SQL tag only reads"),
        ("TRUNCATE profiles", "TRUNCATE is not allowed"),
        # more than one statement
        ("SELECT profile_idx, 1 FROM profiles; DROP TABLE profiles", "only one statement is allowed"),
        ("SELECT profile_idx, 1 FROM profiles; SELECT 2", "only one statement is allowed"),
        # files, other databases, extensions, the session
        ("SELECT * FROM read_csv('/etc/passwd')", "table function read_csv is not allowed"),
        ("SELECT profile_idx, content FROM read_text('/etc/passwd')", "table function read_text is not allowed"),
        ("SELECT profile_idx, 1 FROM read_parquet('x.parquet')", "table function read_parquet is not allowed"),
        ("SELECT profile_idx, 1 FROM read_json_auto('x.json')", "table function read_json_auto is not allowed"),
        ("SELECT profile_idx, 1 FROM glob('/*')", "table function glob is not allowed"),
        ("SELECT profile_idx, 1 FROM query('DROP TABLE profiles')", "table function query is not allowed"),
        ("SELECT profile_idx, read_text('/etc/passwd') FROM profiles", "function read_text is not allowed"),
        ("SELECT profile_idx, read_csv('/etc/passwd') FROM profiles", "function read_csv is not allowed"),
        ("SELECT profile_idx, 1 FROM '/etc/passwd'", "table /etc/passwd is not one of the documented tables"),
        ('SELECT profile_idx, 1 FROM "/tmp/x.csv"', "table /tmp/x.csv is not one of the documented tables"),
        ("COPY profiles TO '/tmp/profiles.csv'", "COPY is not allowed: a SQL tag only reads"),
        ("EXPORT DATABASE '/tmp/all'", "EXPORT is not allowed: a SQL tag only reads"),
        ("ATTACH '/tmp/other.duckdb' AS other", "ATTACH is not allowed: a SQL tag only reads"),
        ("INSTALL httpfs", "INSTALL is not allowed: a SQL tag only reads"),
        ("LOAD httpfs", "LOAD is not allowed: a SQL tag only reads"),
        ("PRAGMA database_list", "PRAGMA is not allowed: a SQL tag only reads"),
        ("SET threads = 1", "SET is not allowed: a SQL tag only reads"),
        ("CALL pragma_version()", "CALL is not allowed: a SQL tag only reads"),
        ("DESCRIBE profiles", "DESCRIBE is not allowed: a SQL tag is one SELECT query"),
        ("SELECT profile_idx, getenv('HOME') FROM profiles", "function getenv is not allowed"),
        ("SELECT profile_idx, current_setting('threads') FROM profiles", "function current_setting is not allowed"),
        ("SELECT profile_idx, nextval('tag_run_seq') FROM profiles", "function nextval is not allowed"),
        ("SELECT profile_idx, main.setval('tag_run_seq', 1) FROM profiles", "function setval is not allowed"),
        ("SELECT profile_idx, sleep_ms(100000) FROM profiles", "function sleep_ms is not allowed"),
        ("SELECT profile_idx, http_get('http://x') FROM profiles", "function http_get is not allowed"),
        ("SELECT profile_idx, no_such_thing(1) FROM profiles", "function no_such_thing is not allowed in a SQL tag"),
        # the catalogue and tables that are not documented
        ("SELECT profile_idx, 1 FROM information_schema.tables", "information_schema.tables: qualified names"),
        ("SELECT profile_idx, 1 FROM main.profiles", "main.profiles: qualified names are not allowed"),
        ("SELECT profile_idx, 1 FROM pg_catalog.pg_class", "qualified names are not allowed"),
        ("SELECT profile_idx, 1 FROM duckdb_tables()", "table function duckdb_tables is not allowed"),
        ("SELECT profile_idx, 1 FROM duckdb_settings", "table duckdb_settings is not one of the documented"),
        ("SELECT profile_idx, 1 FROM secrets", "table secrets is not one of the documented tables"),
        ("SELECT profile_idx, 1 FROM tag_runs", "table tag_runs is not one of the documented tables"),
        ("SELECT profile_idx, (SELECT count(*) FROM secrets) FROM profiles", "table secrets is not one of"),
        ("SELECT profile_idx, 1 FROM profiles UNION SELECT profile_idx, 2 FROM secrets", "table secrets"),
        # a CTE's name means the CTE only inside the query it belongs to
        ("SELECT x.profile_idx, 1 FROM (WITH x AS (SELECT 1) SELECT * FROM x) y, x", "table x is not one of"),
        # parameters and the shape of the answer
        ("SELECT profile_idx, $1 FROM profiles", "parameters are not allowed"),
        ("SELECT profile_idx, ? FROM profiles", "parameters are not allowed"),
        ("SELECT * FROM profiles", "name the columns (no *)"),
        ("SELECT profile_idx FROM profiles", "at least 2 columns"),
        ("SELECT count(*), profile_idx FROM profiles", "must be named profile_idx or profile_id (got COUNT(*))"),
        ("SELECT customer_id, 1 FROM orders", "must be named profile_idx or profile_id (got customer_id)"),
        ("VALUES (1, 2)", "VALUES is not allowed: a SQL tag is one SELECT query"),
        ("SELECT profile_idx, " + "lower(" * 300 + "'a'" + ")" * 300 + " FROM profiles", "the query nests too deeply"),
        ("   ", "the query is empty"),
    ],
)
def test_refusals_name_what_is_wrong(sql: str, message: str) -> None:
    assert message in _refusal(sql)


def test_errors_carry_line_and_column() -> None:
    tables = ", ".join(TABLES)
    assert _refusal("SELECT profile_idx,\n       1 AS value\nFROM secrets") == (
        f"line 3, column 6: table secrets is not one of the documented tables: {tables}"
    )
    assert _refusal(
        "WITH gone AS (\n  DELETE FROM profiles RETURNING profile_idx\n)\nSELECT profile_idx, 1 FROM gone"
    ) == ("line 2, column 3: DELETE is not allowed: a SQL tag only reads")
    assert _refusal("SELECT profile_idx, 1 FROM profiles;\nDROP TABLE profiles") == (
        "line 2, column 1: only one statement is allowed"
    )
    assert _refusal("SELECT profile_idx,\n  -- 近90天\n  read_text('/etc/passwd') FROM profiles") == (
        "line 3, column 3: function read_text is not allowed in a SQL tag"
    )
    assert _refusal("SELECT profile_idx, 'abc") == "line 1, column 21: unterminated '"
    assert _refusal("SELECT profile_idx,\n  total\nFROM orders WHERE") == (
        "line 3, column 13: syntax error at 'WHERE': WHERE is incomplete"
    )


def test_the_refusals_matter_duckdb_itself_would_run_them(tmp_path: Path) -> None:
    """What the check refuses is not hypothetical: plain DuckDB deletes inside a CTE and reads a
    file named as a table."""
    secret = tmp_path / "secret.csv"
    secret.write_text("profile_idx,value\n1,top-secret\n")
    con = duckdb.connect()
    try:
        con.execute("CREATE TABLE profiles AS SELECT 1 AS profile_idx")
        assert con.execute("WITH x AS (DELETE FROM profiles RETURNING *) SELECT * FROM x").fetchall() == [(1,)]
        assert con.execute("SELECT count(*) FROM profiles").fetchall() == [(0,)]
        read = f"SELECT profile_idx, value FROM '{secret}'"
        assert con.execute(read).fetchall() == [(1, "top-secret")]
    finally:
        con.close()
    assert "is not one of the documented tables" in _refusal(read)
    assert "DELETE is not allowed" in _refusal(
        "WITH x AS (DELETE FROM profiles RETURNING *) SELECT profile_idx, 1 FROM x"
    )


def test_extension_functions_are_not_in_the_allow_list() -> None:
    builtin = sql_tags.builtin_functions()
    assert {"sum", "avg", "date_diff", "json_extract_string", "list_filter", "row_number"} <= builtin
    assert not {"read_csv", "read_text", "st_read", "http_get", "sqlite_scan"} & builtin


# -- the catalogue ------------------------------------------------------------------------------------
def test_the_catalogue_refuses_unsafe_sql_on_field_sql(inst: Instance) -> None:
    with pytest.raises(CatalogueError) as err:
        _create(inst, "bad_sql", "SELECT profile_idx, 1 FROM profiles;\nDELETE FROM profiles")
    assert err.value.status == 422 and err.value.field == "sql"
    assert err.value.message == "line 2, column 1: only one statement is allowed"
    _create(inst, "aov_90d", AOV_90D)
    with pytest.raises(CatalogueError) as err:
        _update(inst, "aov_90d", sql="SELECT profile_idx, getenv('HOME') FROM profiles")
    assert err.value.field == "sql" and err.value.message.startswith("line 1, column 21: function getenv")


# -- running --------------------------------------------------------------------------------------------
def test_a_sql_tag_runs_and_its_values_are_swapped_in(inst: Instance) -> None:
    _create(inst, "aov_90d", AOV_90D)
    [result] = tag_runs.run_keys(inst, ["aov_90d"], trigger="manual")
    assert result.status == "succeeded", result.error
    expected = {
        int(i): v
        for i, v in inst.analytic.cursor()
        .execute(f"SELECT profile_idx, CAST(value AS VARCHAR) FROM ({AOV_90D})")
        .fetchall()
    }
    assert expected and _values(inst, "aov_90d") == expected
    assert result.rows == len(expected) and result.details == {"rows": len(expected)}
    assert _values(inst, "aov_90d")[1] == "120.0"  # the text DuckDB casts the value to
    assert inst.analytic.cursor().execute("SELECT value_num FROM profile_tags WHERE profile_idx = 1").fetchall() == [
        (120.0,)
    ]
    # a second run with the data changed: only the difference moves
    inst.analytic.cursor().execute("DELETE FROM orders WHERE member_id = 'm001'")
    [again] = tag_runs.run_keys(inst, ["aov_90d"], trigger="manual")
    assert (again.status, again.removed, again.added) == ("succeeded", 1, 0)
    assert 1 not in _values(inst, "aov_90d")


def test_the_key_may_be_the_profile_id_and_unknown_profiles_are_dropped(inst: Instance) -> None:
    _create(inst, "vip", "SELECT profile_id, 'VIP' AS value FROM profiles WHERE profile_idx <= 3 "
                         "UNION ALL SELECT 'p_nobody', 'VIP'", value_type="string")  # fmt: skip
    [result] = tag_runs.run_keys(inst, ["vip"], trigger="manual")
    assert result.status == "succeeded" and _values(inst, "vip") == {1: "VIP", 2: "VIP", 3: "VIP"}


def test_null_values_mean_no_value_and_sql_booleans_become_true_false(inst: Instance) -> None:
    _create(inst, "early", "SELECT profile_idx, CASE WHEN profile_idx <= 4 THEN profile_idx % 2 = 0 END AS value "
                           "FROM profiles", value_type="bool")  # fmt: skip
    [result] = tag_runs.run_keys(inst, ["early"], trigger="manual")
    assert result.status == "succeeded" and _values(inst, "early") == {1: "false", 2: "true", 3: "false", 4: "true"}


def test_a_multi_valued_tag_takes_several_rows_per_profile(inst: Instance) -> None:
    _create(inst, "channels", "SELECT profile_idx, c FROM profiles, unnest(['小程序', '天猫']) t(c) WHERE profile_idx <= 2",
            value_type="string", multi=True)  # fmt: skip
    [result] = tag_runs.run_keys(inst, ["channels"], trigger="manual")
    assert result.status == "succeeded"
    assert _multi(inst, "channels") == {(1, "小程序"), (1, "天猫"), (2, "小程序"), (2, "天猫")}


def test_injection_attempts_stay_literals(inst: Instance) -> None:
    before = _counts(inst)
    sql = (
        "SELECT profile_idx, -- */; DROP TABLE profiles; /*\n"
        "  'x''; DROP TABLE profiles; --' AS \"v\"\"; DELETE FROM orders; --\"\n"
        "FROM profiles WHERE profile_idx <= 2 /* '; DROP TABLE orders; */"
    )
    _create(inst, "sneaky", sql, value_type="string")
    [result] = tag_runs.run_keys(inst, ["sneaky"], trigger="manual")
    assert result.status == "succeeded", result.error
    assert _values(inst, "sneaky") == {1: "x'; DROP TABLE profiles; --", 2: "x'; DROP TABLE profiles; --"}
    assert _counts(inst) == before


def test_a_query_refused_at_run_time_fails_the_run(inst: Instance) -> None:
    """A definition saved before the rules tightened is checked again when it runs."""
    tag = Tag.model_validate({"key": "old", "name": "旧", "name_en": "Old", "category": "value", "kind": "sql",
                              "value_type": "string", "sql": "SELECT profile_idx, 'x' FROM secrets", "version": 1,
                              "created_at": NOW, "updated_at": NOW})  # fmt: skip
    [result] = tag_runs.run_tags(inst, [tag], trigger="manual")
    assert result.status == "failed"
    assert result.error is not None and result.error.startswith("tag 'old': line 1, column 30: table secrets is not")
    assert _runs(inst, "old") == [("failed", result.error)]


def test_values_of_the_wrong_type_fail_the_run_and_nothing_is_swapped(inst: Instance) -> None:
    _create(inst, "aov_90d", AOV_90D)
    assert tag_runs.run_keys(inst, ["aov_90d"], trigger="manual")[0].status == "succeeded"
    before = _values(inst, "aov_90d")
    _update(
        inst,
        "aov_90d",
        sql="SELECT profile_idx, CASE WHEN profile_idx IN (3, 5) THEN '很多' ELSE '1' END FROM profiles",
    )
    [failed] = tag_runs.run_keys(inst, ["aov_90d"], trigger="manual")
    assert failed.status == "failed"
    assert failed.error == (
        "tag 'aov_90d': 2 row(s) have values that do not fit the number type (expected a finite number): "
        "the first, profile p_003, got '很多'"
    )
    assert _values(inst, "aov_90d") == before
    assert _runs(inst, "aov_90d") == [("succeeded", None), ("failed", failed.error)]


@pytest.mark.parametrize(
    ("fields", "sql", "bad"),
    [
        ({"value_type": "enum", "enum_values": ["高", "中", "低"]},
         "SELECT profile_idx, CASE WHEN profile_idx < 3 THEN '高' ELSE '极高' END FROM profiles", "got '极高'"),
        ({"value_type": "bool"}, "SELECT profile_idx, 'yes' FROM profiles", "expected true or false"),
        ({"value_type": "date"}, "SELECT profile_idx, TIMESTAMP '2026-01-01 10:00:00' FROM profiles",
         "got '2026-01-01 10:00:00'"),
        ({"value_type": "date"}, "SELECT profile_idx, '2026-02-30' FROM profiles", "an ISO date"),
        ({"value_type": "number"}, "SELECT profile_idx, 'Infinity'::DOUBLE FROM profiles", "a finite number"),
        ({"value_type": "string"}, "SELECT profile_idx, '  ' FROM profiles", "expected non-blank text"),
    ],
)  # fmt: skip
def test_each_value_type_is_checked(inst: Instance, fields: dict[str, Any], sql: str, bad: str) -> None:
    _create(inst, "typed", sql, **fields)
    [result] = tag_runs.run_keys(inst, ["typed"], trigger="manual")
    assert result.status == "failed" and result.error is not None and bad in result.error, result.error
    assert _values(inst, "typed") == {}


def test_fitting_dates_enums_and_numbers_are_stored(inst: Instance) -> None:
    _create(inst, "first_day", "SELECT profile_idx, DATE '2026-01-01' + profile_idx FROM profiles WHERE profile_idx = 1",
            value_type="date")  # fmt: skip
    _create(inst, "band", "SELECT profile_idx, '高' FROM profiles WHERE profile_idx = 1", value_type="enum",
            enum_values=["高", "低"])  # fmt: skip
    _create(inst, "ratio", "SELECT profile_idx, profile_idx / 4 FROM profiles WHERE profile_idx = 1")
    results = tag_runs.run_keys(inst, ["first_day", "band", "ratio"], trigger="manual")
    assert [r.status for r in results] == ["succeeded"] * 3, [r.error for r in results]
    assert (_values(inst, "first_day"), _values(inst, "band"), _values(inst, "ratio")) == (
        {1: "2026-01-02"}, {1: "高"}, {1: "0.25"},
    )  # fmt: skip


def test_a_query_that_runs_too_long_is_interrupted(inst: Instance) -> None:
    _create(inst, "aov_90d", AOV_90D)
    assert tag_runs.run_keys(inst, ["aov_90d"], trigger="manual")[0].status == "succeeded"
    before = _values(inst, "aov_90d")
    _update(inst, "aov_90d", sql="SELECT p.profile_idx, sum(r.x) FROM profiles p, range(1000000000) r(x) GROUP BY 1")
    inst.settings.tags.sql_timeout_seconds = 0.3
    started = time.monotonic()
    [failed] = tag_runs.run_keys(inst, ["aov_90d"], trigger="manual")
    assert time.monotonic() - started < 20
    assert failed.status == "failed"
    assert failed.error == "tag 'aov_90d': timed out after 0.3 s (TESSERA_TAGS_SQL_TIMEOUT_SECONDS)"
    assert _values(inst, "aov_90d") == before
    # the store is fine afterwards: the next run goes through
    inst.settings.tags.sql_timeout_seconds = 60
    _update(inst, "aov_90d", sql=AOV_90D)
    assert tag_runs.run_keys(inst, ["aov_90d"], trigger="manual")[0].status == "succeeded"


def test_more_rows_than_the_limit_fail_the_run(inst: Instance) -> None:
    inst.settings.tags.sql_max_rows = 10
    _create(inst, "everyone", "SELECT profile_idx, 'x' FROM profiles", value_type="string")
    [failed] = tag_runs.run_keys(inst, ["everyone"], trigger="manual")
    assert failed.status == "failed"
    assert failed.error == "tag 'everyone': the query returned more than 10 rows, the limit (TESSERA_TAGS_SQL_MAX_ROWS)"
    assert _values(inst, "everyone") == {}
    inst.settings.tags.sql_max_rows = PROFILES
    assert tag_runs.run_keys(inst, ["everyone"], trigger="manual")[0].status == "succeeded"


def test_a_duckdb_error_is_reported_at_the_users_line_and_column(inst: Instance) -> None:
    _create(inst, "typo", "SELECT profile_idx,\n       totl AS value\nFROM profiles", value_type="string")
    [failed] = tag_runs.run_keys(inst, ["typo"], trigger="manual")
    assert failed.status == "failed" and failed.error is not None
    assert failed.error.startswith("tag 'typo': line 2, column 8: Binder Error: Referenced column \"totl\" not found")


def test_a_scoped_run_computes_only_the_scope(inst: Instance) -> None:
    _create(inst, "aov_90d", AOV_90D)
    tag = tag_runs.load_tags(inst, ["aov_90d"])
    [result] = tag_runs.run_tags(inst, tag, trigger="events", scope=[1, 2, 39])
    assert result.status == "succeeded" and set(_values(inst, "aov_90d")) == {1, 2}


# -- preview --------------------------------------------------------------------------------------------
def test_preview_shows_the_first_rows_and_saves_nothing(inst: Instance) -> None:
    before = _counts(inst)
    got = sql_tags.preview(inst, AOV_90D, limit=3)
    assert got["key"] == "profile_idx" and got["columns"] == ["profile_id", "value"]
    assert got["rows"] == [["p_001", "120.0"], ["p_002", "111.0"], ["p_003", "112.0"]]
    assert (got["total_rows"], got["limit_exceeded"], got["unknown_profiles"]) == (20, False, 0)
    assert "bad_values" not in got
    assert _counts(inst) == before
    cur = inst.analytic.cursor()
    assert cur.execute("SELECT count(*) FROM profile_tags").fetchall() == [(0,)]
    assert cur.execute("SELECT count(*) FROM tag_runs").fetchall() == [(0,)]
    assert cur.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchall() == [(0,)]


def test_preview_counts_keys_that_are_no_profile(inst: Instance) -> None:
    got = sql_tags.preview(inst, "SELECT 'c_42' AS profile_id, 'x' UNION ALL SELECT profile_id, 'y' FROM profiles "
                                 "WHERE profile_idx = 1")  # fmt: skip
    assert (got["rows"], got["total_rows"], got["unknown_profiles"]) == ([["p_001", "y"]], 2, 1)


def test_preview_reports_values_that_do_not_fit_a_draft(inst: Instance) -> None:
    draft = TagDraft(key="band", name="消费档次", name_en="Spend band", category="value", kind="sql",
                     value_type="enum", enum_values=["高", "低"], sql="SELECT 1 AS profile_idx, 1")  # fmt: skip
    sql = "SELECT profile_id, CASE WHEN profile_idx < 30 THEN '高' ELSE '中' END AS band FROM profiles"
    got = sql_tags.preview(inst, sql, tag=draft)
    assert got["key"] == "profile_id" and got["columns"] == ["profile_id", "band"]
    assert len(got["rows"]) == PROFILES and got["total_rows"] == PROFILES
    bad = got["bad_values"]
    assert bad["rows"] == 11 and bad["examples"][0] == {"profile_idx": 30, "profile_id": "p_030", "value": "中"}
    assert bad["message"] == (
        "11 row(s) have values that do not fit the enum type (expected one of 高, 低): the first, profile p_030, got '中'"
    )


def test_preview_applies_the_limits_and_refusals(inst: Instance) -> None:
    inst.settings.tags.sql_max_rows = 5
    got = sql_tags.preview(inst, "SELECT profile_idx, 'x' FROM profiles")
    assert (got["total_rows"], got["limit_exceeded"], len(got["rows"])) == (5, True, 6)
    with pytest.raises(ValueError, match=r"^line 1, column 28: table secrets is not one"):
        sql_tags.preview(inst, "SELECT profile_idx, 1 FROM secrets")
    inst.settings.tags.sql_timeout_seconds = 0.2
    with pytest.raises(ValueError, match=r"^timed out after 0.2 s"):
        sql_tags.preview(inst, "SELECT p.profile_idx, sum(r.x) FROM profiles p, range(1000000000) r(x) GROUP BY 1")
    with pytest.raises(ValueError, match=r'^line 1, column 21: Binder Error: Referenced column "nope"'):
        sql_tags.preview(inst, "SELECT profile_idx, nope FROM profiles")
    assert inst.analytic.cursor().execute("SELECT count(*) FROM profiles").fetchall() == [(PROFILES,)]


# -- on the demo brand ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    root = tmp_path_factory.mktemp("sql_tags") / "data"
    shutil.copytree(demo_dir, root)
    with Instance(root, clock=FrozenClock(datetime.now(UTC))) as inst:
        yield inst


def test_aov_over_the_last_90_days_on_the_demo_brand(demo: Instance) -> None:
    """近90天客单价 through the identity links the orders carry, as the docs write it."""
    sql = """SELECT l.profile_idx, round(avg(o.total), 2) AS value
FROM orders o
JOIN identity_links l ON l.obs_idx = o.identity_idx
WHERE o.status IN ('paid', 'shipped', 'completed')
  AND o.ordered_at >= now() - INTERVAL 90 DAY
GROUP BY 1"""
    with demo.operational.session() as s:
        cat.create_tag(session=s, now=NOW, body={"key": "aov_90d", "name": "近90天客单价", "name_en": "AOV (90 days)",
                                                 "category": "value", "kind": "sql", "value_type": "number",
                                                 "status": "active", "sql": sql})  # fmt: skip
    [result] = tag_runs.run_keys(demo, ["aov_90d"], trigger="manual")
    assert result.status == "succeeded", result.error
    cur = demo.analytic.cursor()
    expected = {
        int(i): v for i, v in cur.execute(f"SELECT profile_idx, CAST(value AS VARCHAR) FROM ({sql})").fetchall()
    }
    assert len(expected) > 50
    got = {
        int(i): v
        for i, v in cur.execute("SELECT profile_idx, value FROM profile_tags WHERE tag_key = 'aov_90d'").fetchall()
    }
    assert got == expected


def test_now_reads_the_products_clock(inst: Instance) -> None:
    """``now()`` / ``current_date`` in a SQL tag are the injected clock, so a moved clock moves them."""
    sql = """SELECT i.profile_idx, count(*) AS value FROM orders o
    JOIN profile_identifiers i ON i.id_type = 'member_id' AND i.id_value = o.member_id
    WHERE o.ordered_at >= now() - INTERVAL 10 DAY AND CAST(o.ordered_at AS DATE) <= current_date GROUP BY 1"""
    _create(inst, "recent_orders", sql)
    tag_runs.run_keys(inst, ["recent_orders"])
    # orders on 11-17, 11-14 (j = 1, 2) are within 10 days of 2026-11-23 09:30
    assert sum(int(v) for v in _values(inst, "recent_orders").values()) == 2
    assert isinstance(inst.clock, FrozenClock)
    inst.clock.set(datetime(2026, 11, 1, tzinfo=UTC))  # back in time: only orders up to 11-01
    tag_runs.run_keys(inst, ["recent_orders"])
    # 10-22 … 11-01: the orders of 10-24, 10-27 and 10-30
    assert sum(int(v) for v in _values(inst, "recent_orders").values()) == 3
