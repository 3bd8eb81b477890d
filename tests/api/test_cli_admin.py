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


def test_admin_api_validation_errors_name_the_field(data_dir: Path) -> None:
    from fastapi.testclient import TestClient

    from tessera.api.app import create_app
    from tessera.runtime import Instance

    with Instance(data_dir) as inst, TestClient(create_app(inst, local_token="t")) as client:
        auth = {"Authorization": "Bearer t"}
        r = client.get("/v1/admin/events", params={"type": "purchase", "limit": 5}, headers=auth)
        assert r.status_code == 422
        assert r.json()["error"] == "invalid_request" and r.json()["field"] == "query.type"
        r = client.get("/v1/admin/events", params={"limit": 0}, headers=auth)
        assert r.status_code == 422 and r.json()["field"] == "query.limit"
        r = client.post("/v1/admin/sources", json={"kind": "app"}, headers=auth)
        assert r.status_code == 422 and r.json()["field"] == "name"
        r = client.post("/v1/admin/sources", json={"name": "京东自营", "kind": "Bad Kind"}, headers=auth)
        assert r.status_code == 422 and r.json()["field"] == "kind"
        assert client.get("/healthz").status_code == 200
