"""`tessera audience …` without a server (the API in-process) and through a real server process,
where a behaviour trigger sent with a real Segment client shows up in an audience and its events."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from segment.analytics.client import Client as SegmentClient
from typer.testing import CliRunner

from tessera.cli.main import app
from tests.conftest import ServerProcess, make_source

runner = CliRunner()
SHANGHAI = '{"type":"attribute","field":"city","op":"eq","value":"上海"}'


@pytest.fixture
def data(demo_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(demo_dir, root)
    return root


def test_cli_without_a_server(data: Path, tmp_path: Path) -> None:
    d = ["--data-dir", str(data)]
    est = runner.invoke(app, ["audience", "estimate", "--definition", SHANGHAI, "--json", *d])
    assert est.exit_code == 0, est.output
    assert json.loads(est.output)["members"] > 0
    bad = runner.invoke(
        app, ["audience", "estimate", "--definition", '{"type":"event","event":"x","window":{"last":0}}', *d]
    )
    assert bad.exit_code == 2 and "definition.window.last: must be > 0" in bad.output
    notjson = runner.invoke(app, ["audience", "estimate", "--definition", "{nope", *d])
    assert notjson.exit_code == 2 and "--definition: not JSON" in notjson.output
    made = runner.invoke(app, ["audience", "create", "上海会员", "--definition", SHANGHAI, "--json", *d])
    assert made.exit_code == 0, made.output
    aud = json.loads(made.output)["id"]
    listed = runner.invoke(app, ["audience", "list", "--json", *d])
    assert aud in {a["id"] for a in json.loads(listed.output)}
    out = tmp_path / "members.csv"
    exported = runner.invoke(app, ["audience", "export", aud, "-o", str(out), "--columns", "name,city", *d])
    assert exported.exit_code == 0, exported.output
    lines = out.read_text(encoding="utf-8-sig").splitlines()
    assert lines[0].split(",")[:3] == ["profile_id", "name", "city"] and all(
        line.endswith(",上海") for line in lines[1:]
    )
    missing = runner.invoke(app, ["audience", "show", "aud_nope", *d])
    assert missing.exit_code == 2 and "aud_nope" in missing.output


@pytest.mark.slow
def test_through_a_real_server_a_tracked_event_enters_a_dynamic_audience(data: Path) -> None:
    key = make_source(data, name="测试App", kind="app")
    server = ServerProcess(data).start()
    try:
        d = ["--data-dir", str(data)]
        definition = '{"type":"event","event":"Test Drive Booked","window":{"last":7}}'
        made = runner.invoke(app, ["audience", "create", "预约试驾", "--definition", definition, "--json", *d])
        assert made.exit_code == 0, made.output
        aud = json.loads(made.output)["id"]
        client = SegmentClient(key, host=server.url, sync_mode=True, max_retries=0)
        client.track(user_id="试驾用户-1", event="Test Drive Booked", properties={"model": "远山 X7"})
        client.flush()
        refreshed = runner.invoke(app, ["audience", "refresh", aud, "--json", *d])
        assert refreshed.exit_code == 0, refreshed.output
        run = json.loads(refreshed.output)
        assert run["entered"] == 1
        changes = runner.invoke(app, ["audience", "changes", aud, "--json", *d])
        assert [c["change"] for c in json.loads(changes.output)] == ["entered"]
        r = server.admin("GET", "/v1/admin/events", params={"event": "Audience Entered", "limit": 1000})
        mine = [e for e in r.json()["events"] if e["message_id"].startswith(f"audience:{run['run_id']}:")]
        assert r.status_code == 200 and len(mine) == 1
    finally:
        server.stop()
