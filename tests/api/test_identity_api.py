"""OneID through a real server: the merge log, unmerge, rules and rebuild over HTTP and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from typer.testing import CliRunner

from tessera.cli.main import app
from tests.conftest import ServerProcess

runner = CliRunner()


def _send(server: ServerProcess, write_key: str, batch: list[dict[str, object]]) -> None:
    r = httpx.post(f"{server.url}/v1/batch", json={"batch": batch}, auth=(write_key, ""), timeout=30)
    assert r.status_code == 200, r.text


def test_identity_admin_over_http_and_cli(server: ServerProcess, write_key: str, data_dir: Path) -> None:
    t = "2026-11-01T10:00:0{}Z"
    _send(server, write_key, [
        {"type": "track", "event": "Store Visit", "userId": f"M{i}", "anonymousId": f"k{i}",
         "context": {"device": {"id": "store-pad-1"}}, "timestamp": t.format(i), "messageId": f"v{i}"}
        for i in range(5)
    ] + [
        {"type": "track", "event": "Browse", "anonymousId": "k0", "timestamp": t.format(6), "messageId": "b1"},
        {"type": "identify", "userId": "null", "anonymousId": "k9", "traits": {"phone": "12345"},
         "timestamp": t.format(7), "messageId": "j1"},
    ])  # fmt: skip
    server.flush()
    log = server.admin("GET", "/v1/admin/identity/log", params={"action": "drop"}).json()
    assert len(log) == 4 and {e["id_value"] for e in log} == {"store-pad-1"}
    assert {e["origin"] for e in log} == {"v1", "v2", "v3", "v4"}
    rejected = server.admin("GET", "/v1/admin/identity/rejections").json()
    assert {(r["id_type"], r["raw_value"], r["reason"]) for r in rejected} >= {
        ("user_id", "null", "blocked value"), ("phone", "12345", "not a valid phone number")
    }  # fmt: skip
    # The pad went with the first member; unmerge it.
    r = server.admin("POST", "/v1/admin/identity/unmerge", json={"identifier": "device_id:STORE-PAD-1",
                                                                  "reason": "门店共享平板"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["identifier"] == "device_id:store-pad-1"
    r = server.admin("POST", "/v1/admin/identity/unmerge", json={"identifier": "device_id:store-pad-1"})
    assert r.status_code == 404 and r.json()["field"] == "identifier"
    r = server.admin("POST", "/v1/admin/identity/unmerge", json={"identifier": "no-type"})
    assert r.status_code == 400 and "TYPE:VALUE" in r.json()["message"]
    # Rules: a bad document names the field; a good one is saved and used at once.
    rules = server.admin("GET", "/v1/admin/identity/rules").json()
    assert rules["version"] == 0 and rules["rules"]["types"][0]["name"] == "user_id"
    bad = json.loads(json.dumps(rules["rules"]))
    bad["types"][3]["limit"] = -1
    r = server.admin("PUT", "/v1/admin/identity/rules", json=bad)
    assert r.status_code == 422 and r.json()["field"] == "types.3.limit"
    good = rules["rules"]
    good["blocked_values"].append("k4")
    r = server.admin("PUT", "/v1/admin/identity/rules", json=good)
    assert r.status_code == 200 and r.json()["version"] == 1
    r = server.admin("POST", "/v1/admin/identity/rebuild", json={"reextract": True})
    assert r.status_code == 200, r.text
    assert r.json()["profiles"] == 6  # M0..M4 and k9 (k4 now blocked)
    # The CLI goes through the running server.
    result = runner.invoke(app, ["identity", "log", "--data-dir", str(data_dir), "--json", "--action", "unmerge"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[0]["reason"] == "门店共享平板"
    result = runner.invoke(app, ["identity", "unmerge", "phone", "--data-dir", str(data_dir)])
    assert result.exit_code != 0 and "TYPE:VALUE" in result.output
    assert server.alive()
