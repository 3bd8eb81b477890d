"""Audience export: projected members to CSV / Parquet through DuckDB's COPY, and in batches for pushes."""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from sqlglot import exp

from tessera.compiler.projection import project
from tessera.compiler.query import Params, Query
from tessera.services.audience_export import export_members, iter_batches
from tessera.stores.analytic import AnalyticStore
from tests.compiler.test_projection import EVIL_TRAIT, T, fill

COLUMNS = ["name", "city", "会员等级", "note", "total_spend", "last_order_at", "id:phone", "tag:interest",
           f"traits.{EVIL_TRAIT}"]  # fmt: skip


@pytest.fixture
def cur(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    store = AnalyticStore(tmp_path / "analytic.duckdb")
    c = store.cursor()
    fill(c)
    yield c
    c.close()
    store.close()


def query(*idxs: int, columns: list[str] | None = None, hash_identifiers: bool = False) -> Query:
    params = Params()
    members = exp.select("profile_idx").from_("profiles").where(exp.column("profile_idx").isin(*map(params.add, idxs)))
    return project(members, COLUMNS if columns is None else columns, params, hash_identifiers=hash_identifiers)


def test_csv_is_utf8_with_a_header_and_reads_back(cur: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / '人群包 o\'neil "高价值"; DROP TABLE profiles.csv'  # the path is a parameter too
    assert export_members(cur, query(1, 2, 3), path, "csv") == 3
    raw = path.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf")
    with path.open(encoding="utf-8", newline="") as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == ["profile_id", *COLUMNS]
    one, two, three = got
    assert one["name"] == "王小明" and one["city"] == "上海" and one["会员等级"] == "钻石"
    assert one["total_spend"] == "1288.50" and one["last_order_at"] == "2026-03-01 08:00:00"
    assert one["id:phone"] == "+8613900139000" and one["tag:interest"] == "咖啡|瑜伽|跑步"
    assert one[f"traits.{EVIL_TRAIT}"] == "evil-but-harmless"
    assert two["note"] == '逗号,引号"和\n换行'  # quoted properly, survives the round trip
    assert three == {"profile_id": "p_3", **dict.fromkeys(COLUMNS, "")}  # unknown values are empty
    assert not list(tmp_path.glob("*.part"))
    assert cur.execute("SELECT count(*) FROM profiles").fetchone() == (4,)


def test_csv_with_a_byte_order_mark_for_excel(cur: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "excel.csv"
    assert export_members(cur, query(1, 2), path, "csv", bom=True) == 2
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfprofile_id,") and raw.count(b"\xef\xbb\xbf") == 1
    with path.open(encoding="utf-8-sig", newline="") as f:
        got = list(csv.DictReader(f))
    assert list(got[0])[:2] == ["profile_id", "name"] and got[0]["name"] == "王小明"


def test_parquet_keeps_types_and_names(cur: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "members.parquet"
    assert export_members(cur, query(2, 1, columns=[*COLUMNS, "order_count", "channels"]), path, "parquet") == 2
    table = pq.read_table(path)
    assert table.column_names == ["profile_id", *COLUMNS, "order_count", "channels"]
    got = table.to_pylist()
    assert [r["profile_id"] for r in got] == ["p_1", "p_2"]
    assert got[0]["total_spend"] == Decimal("1288.50") and got[0]["last_order_at"] == T
    assert got[0]["order_count"] == 3 and got[0]["channels"] == "天猫|微信小程序"
    assert got[1]["note"] == '逗号,引号"和\n换行' and got[1]["last_order_at"] is None


def test_hashed_identifiers_in_an_export(cur: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "ads.csv"
    export_members(cur, query(1, 2, columns=["id:phone", "id:email"], hash_identifiers=True), path, "csv")
    with path.open(encoding="utf-8", newline="") as f:
        got = list(csv.DictReader(f))
    assert got[0]["id:phone"] == hashlib.sha256(b"8613900139000").hexdigest()
    assert got[0]["id:email"] == hashlib.sha256(b"xm.wang@qq.com").hexdigest() and got[1]["id:email"] == ""


def test_no_members_gives_a_header_only(cur: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    assert export_members(cur, query(99, columns=["city"]), path, "csv") == 0
    assert path.read_text(encoding="utf-8").splitlines() == ["profile_id,city"]


def test_a_failed_export_leaves_the_previous_file(cur: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "members.csv"
    export_members(cur, query(1, columns=["city"]), path, "csv")
    before = path.read_bytes()
    broken = project(exp.select("profile_idx").from_("no_such_table"), ["city"], Params())
    with pytest.raises(duckdb.CatalogException):
        export_members(cur, broken, path, "csv")
    assert path.read_bytes() == before and not list(tmp_path.glob("*.part"))
    with pytest.raises(ValueError, match="format"):
        export_members(cur, query(1), tmp_path / "x.xlsx", "xlsx")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="byte-order mark"):
        export_members(cur, query(1), tmp_path / "x.parquet", "parquet", bom=True)


def test_batches_for_a_push(cur: duckdb.DuckDBPyConnection) -> None:
    q = query(3, 2, 1, 4, columns=["city", "total_spend", "tag:interest"])
    batches = list(iter_batches(cur, q, size=3))
    assert [len(b) for b in batches] == [3, 1]
    flat = [r for b in batches for r in b]
    assert [r["profile_id"] for r in flat] == ["p_1", "p_2", "p_3", "p_4"]
    assert flat[0] == {
        "profile_id": "p_1",
        "city": "上海",
        "total_spend": Decimal("1288.50"),
        "tag:interest": "咖啡|瑜伽|跑步",
    }
    assert flat[3]["city"] == "深圳"
    assert list(iter_batches(cur, query(99), size=10)) == []
    with pytest.raises(ValueError, match="at least 1"):
        next(iter_batches(cur, q, size=0))


def test_many_members_stream_through_copy(cur: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    cur.execute(
        """INSERT INTO profiles (profile_idx, profile_id, created_at)
           SELECT i, 'bulk_' || i, TIMESTAMP '2025-01-01' FROM range(1000, 51000) AS r(i)"""
    )
    cur.execute(
        """INSERT INTO profile_attributes (profile_idx, traits, total_spend, updated_at)
           SELECT i, json_object('city', CASE WHEN i % 2 = 0 THEN '杭州' ELSE '成都' END), i / 100, now()
           FROM range(1000, 51000) AS r(i)"""
    )
    members = exp.select("profile_idx").from_("profile_attributes")
    path = tmp_path / "bulk.parquet"
    assert export_members(cur, project(members, ["city", "total_spend"], Params()), path, "parquet") == 50_003
    counts = cur.execute(
        "SELECT city, count(*) FROM read_parquet($path) GROUP BY city ORDER BY city", {"path": str(path)}
    ).fetchall()
    assert counts == [("上海", 1), ("北京", 1), ("成都", 25_000), ("杭州", 25_000), ("深圳", 1)]
