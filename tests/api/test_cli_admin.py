"""The admin CLI: sources, tokens, stats (directly on the files, or through a running server)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from tessera.cli.main import app
from tests.conftest import ServerProcess

runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def test_source_create_list_and_bad_kind(data_dir: Path) -> None:
    code, out = cli("source", "create", "天猫旗舰店", "--kind", "tmall", "--data-dir", str(data_dir))
    assert code == 0, out
    key = out.strip().splitlines()[-1]
    assert key.startswith("wk_")
    code, out = cli("source", "list", "--json", "--data-dir", str(data_dir))
    assert code == 0 and json.loads(out) == [{"id": 1, "name": "天猫旗舰店", "kind": "tmall", "write_key": key}]
    code, out = cli("source", "create", "x", "--kind", "Not A Kind", "--data-dir", str(data_dir))
    assert code == 2 and "kind" in out
    code, out = cli("source", "create", "天猫旗舰店", "--data-dir", str(data_dir))
    assert code == 2 and "exists" in out


def test_stats_json_on_an_empty_data_dir(data_dir: Path) -> None:
    cli("source", "create", "CRM 会员系统", "--kind", "crm", "--data-dir", str(data_dir))
    code, out = cli("stats", "--json", "--data-dir", str(data_dir))
    assert code == 0, out
    data = json.loads(out)
    assert data["totals"]["events"] == 0 and data["sources"][0]["name"] == "CRM 会员系统"
    code, out = cli("stats", "--data-dir", str(data_dir))
    assert code == 0 and "CRM 会员系统" in out


@pytest.mark.slow
def test_stats_and_tokens_through_a_running_server(data_dir: Path, write_key: str) -> None:
    code, out = cli("token", "create", "--name", "ops", "--data-dir", str(data_dir))
    assert code == 0
    token = out.strip().splitlines()[-1]
    server = ServerProcess(data_dir).start()
    try:
        r = httpx.post(server.url + "/v1/track", auth=(write_key, ""), timeout=10,
                       json={"event": "Signed In", "userId": "m-001", "type": "track"})  # fmt: skip
        assert r.status_code == 200
        server.flush()
        # the running server holds the DuckDB file: the CLI asks it instead
        code, out = cli("stats", "--json", "--data-dir", str(data_dir))
        assert code == 0, out
        assert json.loads(out)["totals"]["events"] == 1
        # a created token opens the management API; a wrong one does not
        assert (
            httpx.get(server.url + "/v1/admin/stats", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        )
        r = httpx.get(server.url + "/v1/admin/stats", headers={"Authorization": "Bearer tsk_wrong"})
        assert r.status_code == 401 and r.json()["error"]
        # a second server on the same data dir is refused with a clear message
        code, out = cli("serve", "--data-dir", str(data_dir))
        assert code == 2 and "already serves" in out
    finally:
        assert server.stop() == 0
