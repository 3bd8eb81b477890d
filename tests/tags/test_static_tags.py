"""Static tags (静态标签) through the management API: bulk set by profile id and by identifiers as
people write them, reports of what was not applied, single- and multi-valued semantics, replace,
refusals, the recorded run and history, and CSV import (gbk, Chinese headers, line numbers).

Real stores: people come in through the customer importer (the identity resolver links them)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tessera.api.app import create_app
from tessera.clock import FrozenClock
from tessera.runtime import Instance
from tessera.services.imports import import_file

TOKEN = "static-tags"
H = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

CUSTOMERS_CSV = """会员ID,姓名,手机号,邮箱,微信unionid
u1,张三,13800138000,zs@example.com,
u2,李四,13900139000,,
u3,王五,,ww@example.com,
u4,赵六,13700137000,,
u5,孙七,,,oUnion5
"""

TIER = {"key": "member_tier", "name": "会员等级", "name_en": "Member tier", "category": "value",
        "value_type": "enum", "enum_values": ["普通", "银卡", "金卡"], "status": "active"}  # fmt: skip
INTERESTS = {"key": "interests", "name": "兴趣", "name_en": "Interests", "category": "preference",
             "value_type": "enum", "enum_values": ["跑步", "露营", "咖啡", "摄影"], "multi": True,
             "status": "active"}  # fmt: skip


def make_people(root: Path, clock: FrozenClock | None = None) -> dict[str, str]:
    """A data dir with five customers (u1 … u5) linked by the importer; user id → profile id."""
    with Instance(root, clock=clock) as inst:
        f = root.parent / "customers.csv"
        f.write_text(CUSTOMERS_CSV, encoding="utf-8")
        report = import_file(store=inst.analytic, kind="customers", path=f, now=NOW)
        assert report.rows_stored == 5, report
        rows = inst.analytic.cursor().execute(
            "SELECT i.id_value, p.profile_id FROM profile_identifiers i JOIN profiles p USING (profile_idx) "
            "WHERE i.id_type = 'user_id'"
        )
        return dict(rows.fetchall())


@dataclass
class Env:
    client: TestClient
    inst: Instance
    clock: FrozenClock
    people: dict[str, str]

    def call(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        r = self.client.request(method, path, headers=H, **kw)
        assert r.status_code == status, r.text
        return r.json() if r.content else None

    def values(self, key: str) -> dict[str, list[str]]:
        """user id → the tag's values (sorted)."""
        rows = self.inst.analytic.cursor().execute(
            """SELECT i.id_value, list(t.value ORDER BY t.value) FROM profile_tags t
            JOIN profile_identifiers i ON i.profile_idx = t.profile_idx AND i.id_type = 'user_id'
            WHERE t.tag_key = ? GROUP BY 1 ORDER BY 1""",
            [key],
        )
        return dict(rows.fetchall())

    def sql(self, query: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
        return self.inst.analytic.cursor().execute(query, params or []).fetchall()


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    root = tmp_path / "data"
    clock = FrozenClock(NOW)
    people = make_people(root, clock)
    inst = Instance(root, clock=clock)
    try:
        e = Env(TestClient(create_app(inst, local_token=TOKEN)), inst, clock, people)
        e.call("POST", "/v1/admin/tags", 201, json=TIER)
        e.call("POST", "/v1/admin/tags", 201, json=INTERESTS)
        yield e
    finally:
        inst.close()


def test_bulk_set_by_profile_id_and_phones_as_written_reports_what_was_not_applied(env: Env) -> None:
    items = [
        {"id_type": "phone", "id_value": "+86 138 0013 8000", "value": "金卡"},  # u1
        {"profile_id": env.people["u2"], "value": "银卡"},
        {"phone": "13700137000", "value": "普通"},  # u4, an identifier type as the key
        {"email": "WW@example.com", "value": "白金"},  # u3: not an allowed value
        {"phone": "13600136000", "value": "金卡"},  # nobody
        {"phone": "12345", "value": "金卡"},  # not a phone
        {"wechat_unionid": "oUnion5", "value": "银卡"},  # u5
        {"phone_number": "13800138000", "value": "金卡"},  # a typo
    ]
    got = env.call("POST", "/v1/admin/tags/member_tier/values", json={"op": "add", "items": items})
    assert (got["items"], got["applied"], got["unmatched_total"], got["invalid_total"]) == (8, 4, 1, 3)
    assert env.values("member_tier") == {"u1": ["金卡"], "u2": ["银卡"], "u4": ["普通"], "u5": ["银卡"]}
    bad = {p["index"]: p for p in got["invalid"]}
    assert bad[3]["field"] == "value" and "'白金' is not one of" in bad[3]["reason"]
    assert bad[3]["reference"] == {"id_type": "email", "id_value": "ww@example.com"}
    assert bad[5]["field"] == "phone" and "not a valid phone number" in bad[5]["reason"]
    assert bad[7]["field"] == "phone_number" and "unknown field" in bad[7]["reason"]
    assert got["unmatched"] == [{"index": 4, "line": None, "field": None, "reason": "no profile has phone +8613600136000",
                                 "reference": {"id_type": "phone", "id_value": "+8613600136000"}}]  # fmt: skip
    # One recorded run (trigger api) with the counts, and one history row per value gained.
    run = got["run"]
    assert (run["trigger"], run["status"], run["added"], run["removed"]) == ("api", "succeeded", 4, 0)
    stored = env.sql("SELECT trigger, kind, added, details FROM tag_runs WHERE run_id = ?", [run["run_id"]])
    assert stored[0][:3] == ("api", "static", 4)
    details = json.loads(stored[0][3])
    mine = {"source": "api", "op": "add", "items": 8, "applied": 4, "unmatched": 1, "invalid": 3}
    assert {k: details[k] for k in mine} == mine
    changes = env.sql("SELECT value, added FROM tag_changes WHERE tag_key = 'member_tier' ORDER BY value")
    assert sorted(changes) == sorted([("金卡", True), ("银卡", True), ("普通", True), ("银卡", True)])
    # The value is readable where conditions read tags.
    assert env.sql("SELECT count(*) FROM profile_tags WHERE tag_key = 'member_tier' AND value = '银卡'") == [(2,)]


def test_single_valued_replaces_multi_valued_adds_and_removes(env: Env) -> None:
    path = "/v1/admin/tags/member_tier/values"
    env.call("POST", path, json={"items": [{"phone": "13800138000", "value": "金卡"}]})  # op defaults to add
    env.clock.advance(timedelta(minutes=1))
    got = env.call("POST", path, json={"op": "add", "items": [{"phone": "13800138000", "value": "银卡"}]})
    assert env.values("member_tier") == {"u1": ["银卡"]} and (got["run"]["added"], got["run"]["removed"]) == (1, 1)
    assert env.sql("SELECT value, added FROM tag_changes WHERE tag_key = 'member_tier' ORDER BY run_no, added") == [
        ("金卡", True), ("金卡", False), ("银卡", True)]  # fmt: skip
    # Two values for one profile of a single-valued tag: the last wins; a list is refused.
    got = env.call("POST", path, json={"op": "add", "items": [{"user_id": "u2", "value": "金卡"},
                                                              {"user_id": "u2", "value": "普通"},
                                                              {"user_id": "u3", "value": ["金卡", "银卡"]}]})  # fmt: skip
    assert env.values("member_tier") == {"u1": ["银卡"], "u2": ["普通"]}
    assert got["invalid"][0]["index"] == 2 and "single-valued" in got["invalid"][0]["reason"]

    path = "/v1/admin/tags/interests/values"
    env.call("POST", path, json={"op": "add", "items": [{"user_id": "u1", "value": ["跑步", "露营"]},
                                                        {"user_id": "u2", "value": "咖啡"}]})  # fmt: skip
    env.call("POST", path, json={"op": "add", "items": [{"user_id": "u1", "value": "咖啡"}]})
    assert env.values("interests") == {"u1": ["咖啡", "跑步", "露营"], "u2": ["咖啡"]}
    got = env.call("POST", path, json={"op": "remove", "items": [{"user_id": "u1", "value": "跑步"}]})
    assert env.values("interests") == {"u1": ["咖啡", "露营"], "u2": ["咖啡"]} and got["run"]["removed"] == 1
    env.call("POST", path, json={"op": "remove", "items": [{"user_id": "u1"}]})  # no value: every value
    assert env.values("interests") == {"u2": ["咖啡"]}
    got = env.call("POST", path, json={"op": "add", "items": [{"user_id": "u3"}]})
    assert got["invalid"][0]["reason"] == "missing: add needs a value"


def test_replace_sets_the_complete_value_set(env: Env) -> None:
    path = "/v1/admin/tags/member_tier/values"
    env.call("POST", path, json={"op": "add", "items": [{"user_id": u, "value": "普通"} for u in ("u1", "u2", "u4")]})
    got = env.call("POST", path, json={"op": "replace", "items": [
        {"user_id": "u3", "value": "金卡"}, {"user_id": "u1", "value": "银卡"},
        {"user_id": "u2", "value": "黑卡"},  # fails: u2 keeps what it had
    ]})  # fmt: skip
    assert env.values("member_tier") == {"u1": ["银卡"], "u2": ["普通"], "u3": ["金卡"]}
    assert (got["run"]["added"], got["run"]["removed"], got["invalid_total"]) == (2, 2, 1)
    assert (
        json.loads(env.sql("SELECT details FROM tag_runs WHERE run_id = ?", [got["run"]["run_id"]])[0][0])["op"]
        == "replace"
    )
    # Nothing usable: refused rather than clearing everyone; an explicit empty list clears.
    r = env.client.post(path, headers=H, json={"op": "replace", "items": [{"user_id": "u9", "value": "金卡"}]})
    assert r.status_code == 422 and r.json()["field"] == "items" and env.values("member_tier")
    env.call("POST", path, json={"op": "replace", "items": []})
    assert env.values("member_tier") == {}


def test_refusals_name_the_field(env: Env) -> None:
    rule = {"key": "shanghai", "name": "上海", "name_en": "Shanghai", "category": "basic", "kind": "rule",
            "value_type": "bool", "rules": [{"value": True, "condition": {"type": "attribute", "field": "city",
                                                                          "op": "eq", "value": "上海"}}]}  # fmt: skip
    env.call("POST", "/v1/admin/tags", 201, json=rule)
    item = {"op": "add", "items": [{"user_id": "u1", "value": True}]}
    r = env.client.post("/v1/admin/tags/shanghai/values", headers=H, json=item)
    assert r.status_code == 422 and r.json()["field"] == "kind" and "computed" in r.json()["message"]
    env.call("PATCH", "/v1/admin/tags/interests", json={"status": "archived"})
    r = env.client.post("/v1/admin/tags/interests/values", headers=H, json=item)
    assert r.status_code == 409 and r.json() | {"message": ""} == {"success": False, "error": "conflict",
                                                                   "field": "status", "message": ""}  # fmt: skip
    r = env.client.post("/v1/admin/tags/nope/values", headers=H, json=item)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    for body, field in (({"op": "merge", "items": []}, "op"), ({"items": "u1"}, "items"), ({"op": "add"}, "items"),
                        ({"items": [], "extra": 1}, "extra")):  # fmt: skip
        r = env.client.post("/v1/admin/tags/member_tier/values", headers=H, json=body)
        assert r.status_code == 422 and r.json()["field"] == field, r.text
    r = env.client.post("/v1/admin/tags/member_tier/values", headers=H,
                        json={"items": [{"user_id": "u1", "value": "普通"}] * 100_001})  # fmt: skip
    assert r.status_code == 413 and r.json()["field"] == "items" and "100000" in r.json()["message"]
    assert env.sql("SELECT count(*) FROM tag_runs") == [(0,)]


def test_typed_values_numbers_bools_and_dates(env: Env) -> None:
    for key, value_type in (("spend_score", "number"), ("opted_in", "bool"), ("joined_on", "date")):
        env.call("POST", "/v1/admin/tags", 201, json={"key": key, "name": key, "name_en": key, "category": "basic",
                                                      "value_type": value_type})  # fmt: skip
    env.call("POST", "/v1/admin/tags/spend_score/values", json={"items": [
        {"user_id": "u1", "value": 87.5}, {"user_id": "u2", "value": "12"}]})  # fmt: skip
    env.call("POST", "/v1/admin/tags/opted_in/values", json={"items": [{"user_id": "u1", "value": True}]})
    got = env.call("POST", "/v1/admin/tags/joined_on/values", json={"items": [
        {"user_id": "u1", "value": "2025-05-01"}, {"user_id": "u2", "value": "去年"}]})  # fmt: skip
    assert env.values("spend_score") == {"u1": ["87.5"], "u2": ["12"]}
    assert env.values("opted_in") == {"u1": ["true"]} and env.values("joined_on") == {"u1": ["2025-05-01"]}
    assert "not an ISO date" in got["invalid"][0]["reason"]
    assert env.sql("SELECT value_num FROM profile_tags WHERE tag_key = 'spend_score' ORDER BY 1") == [(12.0,), (87.5,)]


def test_file_import_gbk_chinese_headers_reports_bad_lines(env: Env) -> None:
    csv = (
        "手机号,邮箱,标签值\n"
        "138 0013 8000,,跑步|露营\n"  # line 2: u1
        "12345,,咖啡\n"  # line 3: not a phone
        "13900139000,,冲浪\n"  # line 4: not an allowed value
        "13600136000,,咖啡\n"  # line 5: nobody
        ",,\n"  # blank: skipped
        ",WW@EXAMPLE.COM,摄影\n"  # line 7: u3 by email
        "13700137000,,\n"
    )  # line 8: no value
    data = csv.encode("gbk")
    r = env.client.post("/v1/admin/tags/interests/import", headers=H, files={"file": ("兴趣.csv", data, "text/csv")})
    assert r.status_code == 422 and r.json()["field"] == "file" and "gbk" in r.json()["message"]
    got = env.call("POST", "/v1/admin/tags/interests/import", data={"encoding": "gbk", "op": "add"},
                   files={"file": ("兴趣.csv", data, "text/csv")})  # fmt: skip
    assert got["columns"] == {"手机号": "phone", "邮箱": "email", "标签值": "value"}
    assert env.values("interests") == {"u1": ["跑步", "露营"], "u3": ["摄影"]}
    assert (got["items"], got["applied"], got["unmatched_total"], got["invalid_total"]) == (6, 2, 1, 3)
    assert [(p["line"], p["field"]) for p in got["invalid"]] == [(3, "手机号"), (4, "标签值"), (8, "标签值")]
    assert "'冲浪' is not one of" in got["invalid"][1]["reason"] and got["invalid"][0]["index"] is None
    assert [(p["line"], p["reference"]) for p in got["unmatched"]] == [
        (5, {"id_type": "phone", "id_value": "+8613600136000"})]  # fmt: skip
    run = env.sql("SELECT trigger, details FROM tag_runs WHERE run_id = ?", [got["run"]["run_id"]])[0]
    assert run[0] == "import" and json.loads(run[1])["source"] == "兴趣.csv"
    # replace from a file with a profile_id column and a utf-8 BOM: everyone else loses the tag
    bom = f"\ufeffprofile_id,value\n{env.people['u2']},咖啡|摄影\n".encode()
    got = env.call("POST", "/v1/admin/tags/interests/import", data={"op": "replace"},
                   files={"file": ("all.csv", bom, "text/csv")})  # fmt: skip
    assert env.values("interests") == {"u2": ["咖啡", "摄影"]} and got["run"]["removed"] == 3
    # remove without a value column: every value of the listed profiles
    env.call("POST", "/v1/admin/tags/interests/import", data={"op": "remove"},
             files={"file": ("rm.csv", b"user_id\nu2\n", "text/csv")})  # fmt: skip
    assert env.values("interests") == {}


def test_file_refusals(env: Env) -> None:
    def post(data: bytes, **form: str) -> Any:
        return env.client.post("/v1/admin/tags/member_tier/import", headers=H, data=form,
                               files={"file": ("x.csv", data, "text/csv")})  # fmt: skip

    r = post(b"")
    assert r.status_code == 422 and "empty" in r.json()["message"]
    r = post(b"foo,value\n1,2\n")
    assert r.status_code == 422 and r.json()["field"] == "file" and "no column names a profile" in r.json()["message"]
    r = post("手机号,备注\n13800138000,x\n".encode())
    assert r.status_code == 422 and "no value column" in r.json()["message"]
    r = post(b"phone,value\n13800138000,x\n", op="upsert")
    assert r.status_code == 422 and r.json()["field"] == "op"
    r = post(b"phone,value\n13800138000,x\n", encoding="nope")
    assert r.status_code == 422 and r.json()["field"] == "file"
    # the tag's own key names the value column too
    got = post("手机号,member_tier\n13800138000,金卡\n".encode()).json()
    assert got["applied"] == 1 and got["columns"] == {"手机号": "phone", "member_tier": "value"}


def test_a_merged_away_profile_id_follows_the_merge(env: Env, tmp_path: Path) -> None:
    old = env.people["u1"]
    for name, csv in (("e1.csv", "type,event,anonymous_id,timestamp\ntrack,App Opened,anon-1,2026-03-01T08:00:00Z\n"),
                      ("e2.csv", "type,event,user_id,anonymous_id,timestamp\ntrack,Login,u1,anon-1,2026-03-01T09:00:00Z\n")):  # fmt: skip
        (tmp_path / name).write_text(csv, encoding="utf-8")
        assert import_file(store=env.inst.analytic, kind="events", path=tmp_path / name, now=NOW).status == "ok"
    assert env.sql("SELECT count(*) FROM profile_redirects WHERE profile_id = ?", [old]) == [(1,)]
    got = env.call("POST", "/v1/admin/tags/member_tier/values", json={"items": [{"profile_id": old, "value": "金卡"}]})
    assert got["applied"] == 1 and env.values("member_tier") == {"u1": ["金卡"]}
    shown = env.call("GET", f"/v1/tags/profiles/{old}")
    assert shown["redirected_from"] == old and shown["profile_id"] != old
    assert [(t["key"], t["values"]) for t in shown["tags"]] == [("member_tier", ["金卡"])]
