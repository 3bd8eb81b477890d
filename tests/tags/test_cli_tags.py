"""`tessera tag …` without a server (the API in-process) and through a real server process."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner, Result

from tessera.cli.main import app
from tests.conftest import ServerProcess
from tests.tags.test_static_tags import INTERESTS, TIER, make_people

runner = CliRunner()
RULE = {"key": "has_phone", "name": "有手机号", "name_en": "Has phone", "category": "basic", "kind": "rule",
        "value_type": "bool", "status": "active",
        "rules": [{"value": True, "condition": {"type": "has_identifier", "id_types": ["phone"]}}]}  # fmt: skip


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    make_people(root)
    return root


def tessera(data: Path, *args: str) -> Result:
    return runner.invoke(app, [*args, "--data-dir", str(data)])


def ok(data: Path, *args: str) -> str:
    r = tessera(data, *args)
    assert r.exit_code == 0, r.output
    return r.output


def test_catalogue_and_static_values_in_process(data: Path, tmp_path: Path) -> None:
    assert "preference" in ok(data, "tag", "category", "list")
    made = json.loads(ok(data, "tag", "category", "create", "outdoor", "户外", "--name-en", "Outdoor",
                         "--parent", "preference", "--json"))  # fmt: skip
    assert made["parent"] == "preference"
    ok(data, "tag", "create", json.dumps({**TIER, "status": "draft"}, ensure_ascii=False))
    definition = tmp_path / "interests.json"
    definition.write_text(json.dumps(INTERESTS, ensure_ascii=False), encoding="utf-8")
    ok(data, "tag", "create", "--file", str(definition))
    assert {t["key"] for t in json.loads(ok(data, "tag", "list", "--json"))} == {"member_tier", "interests"}
    assert [t["key"] for t in json.loads(ok(data, "tag", "list", "--category", "value", "--json"))] == ["member_tier"]
    assert "标签 Tags" in ok(data, "tag", "list")
    assert json.loads(ok(data, "tag", "update", "member_tier", "--status", "active", "--json"))["version"] == 2
    assert json.loads(ok(data, "tag", "show", "member_tier"))["status"] == "active"
    taken = tessera(data, "tag", "create", "--file", str(definition))
    assert taken.exit_code == 2 and "a tag 'interests' exists" in taken.output
    neither = tessera(data, "tag", "create")
    assert neither.exit_code == 2 and "--file" in neither.output

    assert "1 added, 0 removed" in ok(data, "tag", "set", "member_tier", "金卡", "--phone", "138 0013 8000")
    assert "1 added, 1 removed" in ok(data, "tag", "set", "member_tier", "银卡", "--phone", "+8613800138000")
    bad = tessera(data, "tag", "set", "member_tier", "白金", "--phone", "13800138000")
    assert bad.exit_code == 2 and "value: '白金' is not one of" in bad.output
    nobody = tessera(data, "tag", "set", "member_tier", "金卡", "--email", "nobody@example.com")
    assert nobody.exit_code == 2 and "no profile has email nobody@example.com" in nobody.output
    two = tessera(data, "tag", "set", "member_tier", "金卡", "--email", "a@b.cn", "--phone", "13800138000")
    assert two.exit_code == 2 and "name one profile" in two.output
    got = json.loads(ok(data, "tag", "set", "interests", "跑步", "露营", "-i", "user_id:u2", "--json"))
    assert got["run"]["added"] == 2 and got["run"]["trigger"] == "api"
    assert "1 removed" in ok(data, "tag", "remove", "interests", "跑步", "--identifier", "user_id:u2")
    assert "1 removed" in ok(data, "tag", "remove", "interests", "-i", "user_id:u2")

    csv = tmp_path / "兴趣.csv"
    csv.write_bytes("手机号,标签值\n13800138000,咖啡|摄影\n12345,咖啡\n13900139000,冲浪\n".encode("gbk"))
    out = ok(data, "tag", "import", "interests", str(csv), "--encoding", "gbk")
    assert "not a valid phone number" in out and "'冲浪' is not one of" in out
    got = json.loads(ok(data, "tag", "import", "interests", str(csv), "--encoding", "gbk", "--json"))
    assert [p["line"] for p in got["invalid"]] == [3, 4] and got["applied"] == 1
    undecodable = tessera(data, "tag", "import", "interests", str(csv))
    assert undecodable.exit_code == 2 and "encoding=gbk" in undecodable.output

    key = json.loads(ok(data, "tag", "api-key", "create", "CRM 系统", "--read", "preference,value",
                        "--write", "outdoor", "--json"))  # fmt: skip
    assert key["key"].startswith("tsk_") and key["read"] == ["preference", "value"]
    assert "shown once:\ntsk_" in ok(data, "tag", "api-key", "create", "BI", "--read", "*")
    listed = json.loads(ok(data, "tag", "api-key", "list", "--json"))
    assert [k["name"] for k in listed] == ["CRM 系统", "BI"] and all("key" not in k for k in listed)
    assert "revoked tag API key" in ok(data, "tag", "api-key", "revoke", str(key["id"]))
    missing = tessera(data, "tag", "api-key", "create", "x", "--read", "nope")
    assert missing.exit_code == 2 and "read[0]: no category 'nope'" in missing.output

    assert json.loads(ok(data, "tag", "archive", "interests", "--json"))["status"] == "archived"
    archived = tessera(data, "tag", "set", "interests", "咖啡", "--phone", "13800138000")
    assert archived.exit_code == 2 and "archived" in archived.output
    assert tessera(data, "tag", "category", "delete", "outdoor").exit_code == 0
    busy = tessera(data, "tag", "category", "delete", "value")
    assert busy.exit_code == 2 and "member_tier" in busy.output


def test_computed_tags_history_and_quality_in_process(data: Path, tmp_path: Path) -> None:
    rule = tmp_path / "rule.json"
    rule.write_text(json.dumps(RULE, ensure_ascii=False), encoding="utf-8")
    preview = json.loads(ok(data, "tag", "preview", "--file", str(rule), "--json"))
    assert preview["holders"] == 3  # u1, u2, u4 have phones
    assert "样例 Sample" in ok(data, "tag", "preview", f"@{rule}")
    ok(data, "tag", "create", "--file", str(rule))
    runs = json.loads(ok(data, "tag", "run", "has_phone", "--json"))
    assert [(r["status"], r["added"]) for r in runs] == [("succeeded", 3)]
    assert "manual" in ok(data, "tag", "runs", "has_phone")
    assert json.loads(ok(data, "tag", "quality", "has_phone", "--json"))["holders"] == 3
    assert "has_phone" in ok(data, "tag", "quality")
    held = json.loads(ok(data, "tag", "holders", "has_phone", "--at", "2999-01-01T00:00:00+00:00", "--json"))
    assert held["profiles"] == 3
    assert "profiles had has_phone" in ok(data, "tag", "holders", "has_phone", "--on", "2999-01-01")
    trend = json.loads(ok(data, "tag", "trend", "has_phone", "--since", "2999-01-01", "--until", "2999-01-02",
                          "--json"))  # fmt: skip
    assert [d["profiles"] for d in trend["days"]] == [3, 3]
    neither = tessera(data, "tag", "holders", "has_phone")
    assert neither.exit_code == 2 and "--on DATE or --at DATETIME" in neither.output
    static = tessera(data, "tag", "set", "has_phone", "true", "-i", "user_id:u3")
    assert static.exit_code == 2 and "computed" in static.output


@pytest.mark.slow
def test_through_a_real_server_with_the_open_api(data: Path) -> None:
    server = ServerProcess(data).start()
    try:
        ok(data, "tag", "category", "create", "outdoor", "户外", "--name-en", "Outdoor", "--parent", "preference")
        gear = {"key": "camp_gear", "name": "露营装备", "name_en": "Camping gear", "category": "outdoor",
                "value_type": "string", "multi": True, "status": "active"}  # fmt: skip
        ok(data, "tag", "create", json.dumps(gear, ensure_ascii=False))
        assert "1 added" in ok(data, "tag", "set", "camp_gear", "帐篷", "--phone", "138 0013 8000")
        key = json.loads(ok(data, "tag", "api-key", "create", "CRM", "--read", "preference", "--write", "outdoor",
                            "--json"))["key"]  # fmt: skip
        h = {"Authorization": f"Bearer {key}"}
        r = httpx.post(f"{server.url}/v1/tags/camp_gear/values", headers=h, timeout=60,
                       json={"items": [{"phone": "13800138000", "value": "睡袋"}]})  # fmt: skip
        assert r.status_code == 200, r.text
        r = httpx.get(
            f"{server.url}/v1/tags/profiles", headers=h, params={"id_type": "phone", "id_value": "13800138000"}
        )
        assert [(t["key"], t["values"]) for t in r.json()["tags"]] == [("camp_gear", ["帐篷", "睡袋"])]
        assert httpx.get(f"{server.url}/v1/admin/tags", headers=h).status_code == 403
        runs = json.loads(ok(data, "tag", "runs", "camp_gear", "--json"))
        assert [r["trigger"] for r in runs] == ["open_api", "api"]
    finally:
        assert server.stop() == 0
