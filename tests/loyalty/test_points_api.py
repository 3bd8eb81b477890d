"""The points API and CLI: the programme (every problem with its path), balances and history,
earn / spend / adjust with refusals (409 insufficient_points, 404 unknown_member, 422 invalid),
replays, the jobs, and the ``tessera points`` commands (exit 2 naming field and reason)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from tessera.api.app import create_app
from tessera.cli.main import app as cli
from tessera.clock import FrozenClock
from tessera.runtime import Instance
from tests.loyalty.test_points import START, add_profiles

TOKEN = "points-tests"
BASE = "/v1/admin/loyalty"


@pytest.fixture
def data(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    inst = Instance(d, clock=FrozenClock(START))
    add_profiles(inst)
    _ = inst.operational
    inst.close()
    return d


@pytest.fixture
def client(data: Path) -> Iterator[TestClient]:
    inst = Instance(data, clock=FrozenClock(START))
    yield TestClient(create_app(inst, local_token=TOKEN))  # no lifespan: no pipeline needed
    inst.close()


def call(c: TestClient, method: str, path: str, status: int = 200, **kw: Any) -> Any:
    r = c.request(method, BASE + path, headers={"Authorization": f"Bearer {TOKEN}"}, **kw)
    assert r.status_code == status, r.text
    return r.json()


def test_program_validation_and_versions(client: TestClient) -> None:
    got = call(client, "GET", "/points/program")
    assert got["version"] == 0 and got["program"]["rates"] == [{"currency": "CNY", "points_per_unit": "1"}]
    bad = call(client, "PUT", "/points/program", 422, json={
        "rounding": "up", "multipliers": [{"key": "m", "name": "m", "factor": 0},
                                          {"key": "c", "name": "c", "factor": 2, "condition": {"type": "attribute"}}]})  # fmt: skip
    fields = {p["field"] for p in bad["problems"]}
    assert {"rounding", "multipliers[0].factor"} <= fields and bad["reason"] == "invalid"
    good = call(client, "PUT", "/points/program", json={"lifetime_days": 180, "multipliers": [
        {"key": "mini", "name": "小程序双倍", "factor": 2, "channels": ["miniprogram"]}]})  # fmt: skip
    assert good["version"] == 1 and good["program"]["lifetime_days"] == 180
    assert call(client, "GET", "/points/program")["version"] == 1


def test_earn_spend_adjust_history(client: TestClient) -> None:
    body = {"member": "p_alice", "points": 100, "reason": "注册礼", "key": "a1", "campaign": "welcome"}
    got = call(client, "POST", "/points/earn", json=body)
    assert (got["balance"], got["replayed"], got["entry"]["kind"]) == (100, False, "earn")
    assert call(client, "POST", "/points/earn", json={**body, "points": 5})["replayed"] is True
    refused = call(client, "POST", "/points/spend", 409, json={**body, "points": 500, "key": "s1"})
    assert (refused["field"], refused["reason"]) == ("points", "insufficient_points")
    assert call(client, "POST", "/points/spend", json={**body, "points": 40, "key": "s2"})["balance"] == 60
    assert call(client, "POST", "/points/adjust", json={**body, "points": -10, "key": "j1"})["balance"] == 50
    assert call(client, "POST", "/points/earn", 404, json={**body, "member": "p_nobody"})["reason"] == "unknown_member"
    assert call(client, "POST", "/points/earn", 422, json={**body, "points": 0, "key": "z"})["field"] == "points"
    acct = call(client, "GET", "/points/p_alice")
    assert (acct["balance"], acct["earned"], acct["spent"], acct["adjusted"]) == (50, 100, 40, -10)
    assert [(lot["points"], lot["remaining"]) for lot in acct["lots"]] == [(100, 50)] and acct["next_expiry"]
    hist = call(client, "GET", "/points/p_alice/history", params={"limit": 2})
    assert [h["key"] for h in hist] == ["j1", "s2"]
    older = call(client, "GET", "/points/p_alice/history", params={"before": hist[-1]["id"]})
    assert [h["key"] for h in older] == ["a1"]
    assert call(client, "POST", "/points/expire") == {"profiles": 0, "entries": 0, "points": 0}
    assert call(client, "POST", "/points/notices") == {"notices": 0}
    assert call(client, "POST", "/orders/process")["orders_new"] == 0
    assert call(client, "GET", "/rejections") == []


def test_cli(data: Path, tmp_path: Path) -> None:
    run = CliRunner().invoke
    d = ["--data-dir", str(data)]
    r = run(cli, ["points", "earn", "p_bob", "80", "--reason", "活动", "--key", "c1", *d])
    assert r.exit_code == 0, r.output
    assert "balance 80" in r.output
    r = run(cli, ["points", "spend", "p_bob", "100", "--reason", "兑换", "--key", "c2", *d])
    assert r.exit_code == 2 and "insufficient_points" in r.output and "points" in r.output
    r = run(cli, ["points", "balance", "p_bob", "--json", *d])
    assert r.exit_code == 0 and json.loads(r.output)["balance"] == 80
    r = run(cli, ["points", "history", "p_bob", "--json", *d])
    assert r.exit_code == 0 and [e["key"] for e in json.loads(r.output)] == ["c1"]
    f = tmp_path / "program.json"
    f.write_text(
        json.dumps({"rates": [{"currency": "CNY", "points_per_unit": 2}], "rounding": "down"}), encoding="utf-8"
    )
    r = run(cli, ["points", "program", "set", str(f), *d])
    assert r.exit_code == 2 and "rounding" in r.output
    f.write_text(json.dumps({"rates": [{"currency": "CNY", "points_per_unit": 2}]}), encoding="utf-8")
    assert run(cli, ["points", "program", "set", str(f), *d]).exit_code == 0
    r = run(cli, ["points", "program", "show", *d])
    assert r.exit_code == 0 and json.loads(r.output)["version"] == 1
    for cmd in (["expire"], ["notices"], ["process-orders"]):
        r = run(cli, ["points", *cmd, *d])
        assert r.exit_code == 0, (cmd, r.output)
    r = run(cli, ["points", "adjust", "p_bob", "--reason", "纠正", "--key", "c3", *d, "--", "-5"])  # a negative number
    assert r.exit_code == 0 and "balance 75" in r.output, r.output
