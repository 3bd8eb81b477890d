"""Encodings: GBK exports fail clearly without --encoding and import with it; BOMs; UTF-16; gzip."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import pytest

from tessera.services.imports import ImportFailed, ImportReport, ImportUsageError, import_file
from tessera.stores.analytic import AnalyticStore
from tests.imports.support import NOW, counts, rows

CUSTOMERS = "客户ID,姓名,手机号,城市\nc1,王小明,+86 138 0013 8000,上海\nc2,李丽,+86 139 0000 1111,杭州\n"
EXPECTED = [("c1", "王小明", "+86 138 0013 8000", "上海"), ("c2", "李丽", "+86 139 0000 1111", "杭州")]


def run(store: AnalyticStore, path: Path, kind: str = "customers", **kw: Any) -> ImportReport:
    return import_file(store=store, kind=kind, path=path, now=NOW, rejects_dir=path.parent / "rejects", **kw)


def stored(store: AnalyticStore) -> list[tuple[Any, ...]]:
    return rows(store, "SELECT customer_id, name, phone, city FROM customers ORDER BY 1")


def test_gbk_without_encoding_fails_with_line_and_suggestion(store: AnalyticStore, tmp_path: Path) -> None:
    path = tmp_path / "会员.csv"
    path.write_bytes(CUSTOMERS.encode("gbk"))
    with pytest.raises(ImportFailed) as err:
        run(store, path)
    assert "line 1 of 会员.csv is not valid UTF-8" in err.value.message
    assert "--encoding gbk" in err.value.message
    assert counts(store)["customers"] == 0


def test_gbk_with_encoding_is_stored_correctly(store: AnalyticStore, tmp_path: Path) -> None:
    path = tmp_path / "会员.csv"
    path.write_bytes(CUSTOMERS.encode("gbk"))
    report = run(store, path, encoding="gbk")
    assert report.rows_stored == 2
    assert stored(store) == EXPECTED


def test_gbk_rows_after_the_first_megabyte_are_found_too(store: AnalyticStore, tmp_path: Path) -> None:
    ascii_rows = "".join(f"c{i:06},Name {i:06},+86 100 0000 {i % 10000:04},Shanghai\n" for i in range(25_000))
    assert len(ascii_rows) > 1 << 20
    path = tmp_path / "big.csv"
    path.write_bytes(b"customer_id,name,phone,city\n" + ascii_rows.encode() + "x1,王小明,1,上海\n".encode("gbk"))
    with pytest.raises(ImportFailed) as err:
        run(store, path)
    assert "line 25002 of big.csv is not valid UTF-8" in err.value.message and "--encoding gbk" in err.value.message
    assert counts(store)["customers"] == 0


def test_gb18030_jsonl(store: AnalyticStore, tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    path.write_bytes(
        '{"customer_id": "c1", "name": "王小明", "phone": "+86 138 0013 8000", "city": "上海"}\n'.encode("gb18030")
    )
    with pytest.raises(ImportFailed, match="--encoding gbk"):
        run(store, path)
    run(store, path, encoding="gb18030")
    assert stored(store) == EXPECTED[:1]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_utf8_byte_order_mark(store: AnalyticStore, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"c{suffix}"
    if suffix == ".csv":
        path.write_bytes(b"\xef\xbb\xbf" + CUSTOMERS.encode())
    else:
        path.write_bytes(b'\xef\xbb\xbf{"customer_id":"c1","name":"\xe7\x8e\x8b\xe5\xb0\x8f\xe6\x98\x8e"}\n')
    run(store, path)
    assert rows(store, "SELECT customer_id, name FROM customers ORDER BY 1")[0] == ("c1", "王小明")


def test_utf16_with_bom_is_recognised(store: AnalyticStore, tmp_path: Path) -> None:
    path = tmp_path / "excel-unicode.txt"
    path.write_bytes(CUSTOMERS.replace(",", "\t").encode("utf-16"))
    run(store, path)
    assert stored(store) == EXPECTED


def test_latin1(store: AnalyticStore, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes("customer_id,name,city\nc1,Zoë Müller,Zürich\n".encode("latin-1"))
    with pytest.raises(ImportFailed, match="not valid UTF-8"):
        run(store, path)
    run(store, path, encoding="latin-1")
    assert rows(store, "SELECT name, city FROM customers") == [("Zoë Müller", "Zürich")]


def test_wrong_explicit_encoding_names_the_line(store: AnalyticStore, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(b"customer_id,name\nc1,ok\nc2,\xff\xfe\xfd\n")
    with pytest.raises(ImportFailed, match=r"line 3 of c.csv is not valid gb18030"):
        run(store, path, encoding="gbk")


def test_unknown_encoding_is_a_usage_error(store: AnalyticStore, tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text(CUSTOMERS, encoding="utf-8")
    with pytest.raises(ImportUsageError, match="unknown encoding"):
        run(store, path, encoding="klingon-8")


def test_gzipped_csv(store: AnalyticStore, tmp_path: Path) -> None:
    path = tmp_path / "c.csv.gz"
    path.write_bytes(gzip.compress(CUSTOMERS.encode("gbk")))
    with pytest.raises(ImportFailed, match="--encoding gbk"):
        run(store, path)
    run(store, path, encoding="gbk")
    assert stored(store) == EXPECTED


def test_gzipped_files_report_exact_lines(store: AnalyticStore, tmp_path: Path) -> None:
    path = tmp_path / "o.csv.gz"
    path.write_bytes(gzip.compress(b'order_id,ordered_at,total\no1,2024-01-05,1\n\no2,2024-01-05,"x\ny"\n'))
    with pytest.raises(ImportFailed, match="line 4, column total: cannot parse 'x\ny'"):
        run(store, path, kind="orders")
    path = tmp_path / "r.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"review_id": "r1", "rating": 5}\n\n{"review_id": "r2", "rating": 6}\n'))
    with pytest.raises(ImportFailed, match="line 3, column rating"):
        run(store, path, kind="reviews")
