"""`tessera import`: exit codes 0/1/2, --json, --source, mapping options, and uploading to a running server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tessera.cli.main import app
from tessera.runtime import Instance
from tests.conftest import ServerProcess, make_source
from tests.imports.support import new_data_dir, rows, write_csv

runner = CliRunner()
ORDERS = [
    {"订单号": "o1", "下单时间": "2024-01-05 10:00:00", "实付金额": "¥1,299.00", "买家留言": "尽快发货"},
    {"订单号": "o2", "下单时间": "2024-01-06 11:30:00", "实付金额": "88", "买家留言": ""},
]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return new_data_dir(tmp_path / "data")


def invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def stored(data_dir: Path, sql: str) -> list[tuple[object, ...]]:
    inst = Instance(data_dir)
    try:
        return rows(inst.analytic, sql)
    finally:
        inst.close()


def test_import_ok_prints_a_summary(data_dir: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "订单.csv", ORDERS)
    code, out, _ = invoke("import", "orders", str(path), "--data-dir", str(data_dir))
    assert code == 0, out
    assert "stored" in out and "订单.csv" in out
    assert stored(data_dir, "SELECT order_id, total FROM orders ORDER BY 1")[0][0] == "o1"


def test_json_report_and_reimport(data_dir: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "orders.csv", ORDERS)
    code, out, _ = invoke("import", "orders", str(path), "-d", str(data_dir), "--json")
    assert code == 0
    first = json.loads(out)
    assert (first["rows_read"], first["rows_stored"], first["status"], first["kind"]) == (2, 2, "ok", "orders")
    code, out, _ = invoke("import", "orders", str(path), "-d", str(data_dir), "--json")
    again = json.loads(out)
    assert (code, again["rows_stored"], again["rows_duplicate"]) == (0, 0, 2)


def test_bad_file_exits_1_with_line_and_column(data_dir: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "orders.csv", [*ORDERS, {"订单号": "o3", "下单时间": "不知道", "实付金额": "1"}])
    code, out, err = invoke("import", "orders", str(path), "-d", str(data_dir))
    assert code == 1
    assert "line 4, column 下单时间 (ordered_at): cannot parse '不知道' as a timestamp" in " ".join(err.split())
    code, out, _ = invoke("import", "orders", str(path), "-d", str(data_dir), "--json", "--max-rejects", "0")
    report = json.loads(out)
    assert code == 1 and report["status"] == "failed" and "line 4" in report["error"]
    assert Path(report["rejects_path"]).is_file()
    assert stored(data_dir, "SELECT count(*) FROM orders") == [(0,)]
    rejects = tmp_path / "bad-rows.csv"
    code, out, _ = invoke(
        "import", "orders", str(path), "-d", str(data_dir), "--max-rejects", "1", "--rejects", str(rejects), "--json"
    )
    assert code == 0 and json.loads(out)["rows_rejected"] == 1 and rejects.read_bytes().startswith(b"\xef\xbb\xbf")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["import", "nonsense", "{file}"], "unknown kind 'nonsense'"),
        (["import", "orders", "{missing}"], "no such file"),
        (["import", "orders", "{file}", "--map", "nope=order_id"], "no column 'nope'"),
        (["import", "orders", "{file}", "--map", "订单号=not_a_field"], "not a field of orders"),
        (["import", "orders", "{file}", "--map", "broken"], "FILE_COLUMN=field"),
        (["import", "orders", "{file}", "--source", "没有这个"], "no source named"),
        (["import", "orders", "{file}", "--encoding", "klingon"], "unknown encoding"),
        (["import", "orders", "{file}", "--format", "xml"], "unknown format"),
        (["import", "orders", "{file}", "--mapping", "{missing}"], "cannot read"),
    ],
)
def test_usage_errors_exit_2(data_dir: Path, tmp_path: Path, args: list[str], needle: str) -> None:
    path = write_csv(tmp_path / "orders.csv", ORDERS)
    filled = [a.format(file=path, missing=tmp_path / "missing.csv") for a in args]
    code, _, err = invoke(*filled, "-d", str(data_dir))
    assert code == 2, err
    assert needle in " ".join(err.split())


def test_source_mapping_file_and_flags(data_dir: Path, tmp_path: Path) -> None:
    make_source(data_dir, name="天猫旗舰店", kind="tmall")
    mapping = tmp_path / "tmall.yaml"
    mapping.write_text("columns:\n  买家留言: attributes.note\ndefaults:\n  channel: tmall\n", encoding="utf-8")
    path = write_csv(tmp_path / "orders.csv", ORDERS)
    code, out, err = invoke(
        "import", "orders", str(path), "-d", str(data_dir), "--source", "天猫旗舰店", "--mapping", str(mapping),
        "--default", "currency=CNY", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert stored(data_dir, "SELECT order_id, source_id, channel, currency, attributes FROM orders ORDER BY 1") == [
        ("o1", 1, "tmall", "CNY", '{"note":"尽快发货"}'),
        ("o2", 1, "tmall", "CNY", None),
    ]
    assert stored(data_dir, "SELECT source_id FROM import_runs") == [(1,)]


@pytest.fixture
def server(data_dir: Path) -> Iterator[ServerProcess]:
    data_dir.mkdir(parents=True, exist_ok=True)
    proc = ServerProcess(data_dir).start()
    yield proc
    proc.stop()


def test_with_a_running_server_the_cli_uploads_the_file(server: ServerProcess, data_dir: Path, tmp_path: Path) -> None:
    path = write_csv(tmp_path / "订单.csv", ORDERS)
    code, out, err = invoke("import", "orders", str(path), "-d", str(data_dir), "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["rows_stored"], report["file_name"]) == (2, "订单.csv")
    bad = write_csv(tmp_path / "bad.csv", [{"订单号": "o9", "下单时间": "?", "实付金额": "1"}])
    code, out, err = invoke("import", "orders", str(bad), "-d", str(data_dir))
    assert code == 1 and "line 2, column 下单时间 (ordered_at)" in " ".join(err.split())
    code, _, err = invoke("import", "orders", str(path), "-d", str(data_dir), "--map", "nope=order_id")
    assert code == 2 and "no column 'nope'" in err
    assert server.alive()
    stats = server.admin("GET", "/v1/admin/stats").json()
    assert stats["totals"]["orders"] == 2
    assert not list(data_dir.glob(".import-upload-*")), "uploads are deleted after the import"
