"""Audiences end to end on the demo brand (远山户外): the three kinds, using them, refusals.

Counts are checked against hand-written SQL over the same store, so a wrong compiler cannot pass.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.audiences.conftest import Api

SHANGHAI_REPEAT = {
    "type": "and",
    "children": [
        {"type": "attribute", "field": "city", "op": "in", "value": ["上海", "北京"]},
        {"type": "order", "measure": "count", "op": "gte", "value": 2, "window": {"last": 365}},
    ],
}
# The same question, hand-written.
SHANGHAI_REPEAT_SQL = """
SELECT count(*) FROM profile_attributes a
WHERE json_extract_string(a.traits, '$.city') IN ('上海', '北京')
  AND a.profile_idx IN (
    SELECT l.profile_idx FROM orders o JOIN identity_links l ON l.obs_idx = o.identity_idx
    WHERE lower(coalesce(o.status, '')) NOT IN ('cancelled', 'refunded')
      AND o.ordered_at >= now()::TIMESTAMP - INTERVAL 365 DAY
    GROUP BY 1 HAVING count(*) >= 2)
"""


def _sql(api: Api, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    return api.inst.analytic.cursor().execute(sql, params or []).fetchall()


def _create(api: Api, name: str, definition: dict[str, Any], **kw: Any) -> dict[str, Any]:
    got: dict[str, Any] = api.call(
        "POST", "/v1/admin/audiences", 201, json={"name": name, "definition": definition, **kw}
    )  # type: ignore[assignment]
    return got


def test_dynamic_audience_counts_what_hand_written_sql_counts(api: Api) -> None:
    expected = _sql(api, SHANGHAI_REPEAT_SQL)[0][0]
    assert expected > 5
    est = api.call("POST", "/v1/admin/audiences/estimate", json={"definition": SHANGHAI_REPEAT})
    assert est["members"] == expected and est["engine"] == "sql"  # type: ignore[index]
    aud = _create(api, "京沪复购会员", SHANGHAI_REPEAT, name_en="Beijing/Shanghai repeat buyers")
    assert aud["kind"] == "dynamic" and aud["id"].startswith("aud_")
    assert api.call("GET", f"/v1/admin/audiences/{aud['id']}/count")["members"] == expected  # type: ignore[index]
    # Paging walks every member once.
    seen: list[str] = []
    after = None
    while True:
        page: Any = api.call("GET", f"/v1/admin/audiences/{aud['id']}/members",
                             params={"limit": 7, **({"after": after} if after else {})})  # fmt: skip
        seen += [m["profile_id"] for m in page["members"]]
        assert all(m["city"] in ("上海", "北京") for m in page["members"])
        after = page["next_after"]
        if after is None:
            break
    assert len(seen) == len(set(seen)) == expected
    # A sample is a subset, the same for the same seed.
    s1: Any = api.call("GET", f"/v1/admin/audiences/{aud['id']}/sample", params={"size": 5, "seed": "a"})
    s2: Any = api.call("GET", f"/v1/admin/audiences/{aud['id']}/sample", params={"size": 5, "seed": "a"})
    assert [m["profile_id"] for m in s1] == [m["profile_id"] for m in s2]
    assert {m["profile_id"] for m in s1} <= set(seen)


def test_attribute_only_estimate_uses_memory_columns_and_agrees_with_sql(api: Api) -> None:
    definition = {"type": "or", "children": [
        {"type": "attribute", "field": "member_level", "op": "eq", "value": "金卡"},
        {"type": "and", "children": [
            {"type": "attribute", "field": "gender", "op": "eq", "value": "female"},
            {"type": "not", "child": {"type": "attribute", "field": "city", "op": "eq", "value": "北京"}},
        ]},
    ]}  # fmt: skip
    expected = _sql(
        api,
        """SELECT count(*) FROM profiles p LEFT JOIN profile_attributes a USING (profile_idx)
        WHERE coalesce(json_extract_string(a.traits, '$.member_level') = '金卡', false)
           OR (coalesce(json_extract_string(a.traits, '$.gender') = 'female', false)
               AND NOT coalesce(json_extract_string(a.traits, '$.city') = '北京', false))""",
    )[0][0]
    est: Any = api.call("POST", "/v1/admin/audiences/estimate", json={"definition": definition})
    assert est["engine"] == "columns"
    assert est["members"] == expected > 0


def test_static_audience_is_a_snapshot_while_dynamic_follows_the_data(api: Api) -> None:
    tagged = {"type": "tag", "tag": "vip_test", "op": "has"}
    pids = [r[0] for r in _sql(api, "SELECT profile_idx FROM profiles ORDER BY profile_idx LIMIT 3")]
    cur = api.inst.analytic.cursor()
    cur.executemany("INSERT INTO profile_tags VALUES (?, 'vip_test', 'yes', NULL, now())", [[p] for p in pids])
    api.inst.analytic.changed("profile_tags")
    static = _create(api, "VIP 快照", tagged, kind="static")
    dynamic = _create(api, "VIP 动态", tagged)
    assert static["member_count"] == 3
    cur.execute("INSERT INTO profile_tags SELECT profile_idx, 'vip_test', 'yes', NULL, now() FROM profiles "
                "ORDER BY profile_idx LIMIT 2 OFFSET 10")  # fmt: skip
    api.inst.analytic.changed("profile_tags")
    assert api.call("GET", f"/v1/admin/audiences/{static['id']}/count")["members"] == 3  # type: ignore[index]
    assert api.call("GET", f"/v1/admin/audiences/{dynamic['id']}/count")["members"] == 5  # type: ignore[index]
    # Changing a static audience's definition takes a new snapshot, as a new version.
    patched: Any = api.call(
        "PATCH", f"/v1/admin/audiences/{static['id']}", json={"definition": {"type": "not", "child": tagged}}
    )
    total = _sql(api, "SELECT count(*) FROM profiles")[0][0]
    assert patched["version"] == 2 and patched["member_count"] == total - 5


def test_refresh_records_changes_and_emits_events(api: Api) -> None:
    cur = api.inst.analytic.cursor()
    first = [r[0] for r in _sql(api, "SELECT profile_idx FROM profiles ORDER BY profile_idx LIMIT 4 OFFSET 20")]
    cur.executemany("INSERT INTO profile_tags VALUES (?, 'winback', 'due', NULL, now())", [[p] for p in first])
    api.inst.analytic.changed("profile_tags")
    aud = _create(api, "待召回", {"type": "tag", "tag": "winback", "op": "eq", "value": "due"})
    r1: Any = api.call("POST", f"/v1/admin/audiences/{aud['id']}/refresh")
    assert (r1["members"], r1["entered"], r1["exited"]) == (4, 4, 0)
    # Two leave, one arrives.
    cur.execute("DELETE FROM profile_tags WHERE tag_key = 'winback' AND profile_idx IN (?, ?)", first[:2])
    newcomer = _sql(api, "SELECT profile_idx FROM profiles ORDER BY profile_idx LIMIT 1 OFFSET 30")[0][0]
    cur.execute("INSERT INTO profile_tags VALUES (?, 'winback', 'due', NULL, now())", [newcomer])
    api.inst.analytic.changed("profile_tags")
    api.clock.advance(timedelta(hours=1))
    r2: Any = api.call("POST", f"/v1/admin/audiences/{aud['id']}/refresh")
    assert (r2["members"], r2["entered"], r2["exited"]) == (3, 1, 2)
    changes: Any = api.call("GET", f"/v1/admin/audiences/{aud['id']}/changes")
    assert sorted(c["change"] for c in changes if c["run_id"] == r2["run_id"]) == ["entered", "exited", "exited"]
    # The changes are events of the profiles, which journeys can trigger on.
    events = _sql(api, """SELECT event, profile_idx, json_extract_string(properties, '$.audience_id')
        FROM events_named WHERE event IN ('Audience Entered', 'Audience Exited')
          AND json_extract_string(properties, '$.run_id') = ? ORDER BY 1, 2""", [r2["run_id"]])  # fmt: skip
    assert events == [("Audience Entered", newcomer, aud["id"]),
                      *sorted(("Audience Exited", p, aud["id"]) for p in first[:2])]  # fmt: skip
    runs: Any = api.call("GET", f"/v1/admin/audiences/{aud['id']}/runs")
    assert [r["run_id"] for r in runs] == [r2["run_id"], r1["run_id"]]
    # Members who stayed keep the time they entered.
    since = _sql(api, "SELECT DISTINCT since FROM audience_members WHERE audience_id = ? AND profile_idx IN (?, ?)",
                 [aud["id"], *first[2:]])  # fmt: skip
    assert len(since) == 1


def test_schedule_refreshes_when_due_in_the_workspace_time_zone(api: Api) -> None:
    from tessera.services.audience_refresh import refresh_due

    aud = _create(api, "每月生日会员", {"type": "attribute", "field": "birthday", "op": "anniversary_this_month"},
                  schedule="0 8 1 * *")  # fmt: skip
    nxt = aud["next_refresh_at"]
    assert nxt is not None and nxt.endswith("+08:00") and "T08:00:00" in nxt
    assert refresh_due(inst=api.inst) == [] or all(r.audience_id != aud["id"] for r in refresh_due(inst=api.inst))
    api.clock.advance(timedelta(days=32))
    done = [r for r in refresh_due(inst=api.inst) if r.audience_id == aud["id"]]
    assert len(done) == 1
    after: Any = api.call("GET", f"/v1/admin/audiences/{aud['id']}")
    assert after["next_refresh_at"] > nxt and after["member_count"] == done[0].members
    runs: Any = api.call("GET", f"/v1/admin/audiences/{aud['id']}/runs")
    assert runs[0]["trigger"] == "schedule"


def test_imported_audience_matches_through_oneid_and_reports_every_row(api: Api) -> None:
    phones = [
        r[0] for r in _sql(api, "SELECT id_value FROM profile_identifiers WHERE id_type = 'phone' ORDER BY 1 LIMIT 3")
    ]
    email = _sql(api, "SELECT id_value FROM profile_identifiers WHERE id_type = 'email' ORDER BY 1 LIMIT 1")[0][0]
    local = phones[0].removeprefix("+86")
    spaced = f"{local[:3]} {local[3:7]} {local[7:]}"  # as people type it
    csv = ("手机号,邮箱\n"
           f"{spaced},\n"
           f"{phones[1]},{email.upper()}\n"
           ",\n"
           "13900000000,nobody@example.com\n"
           "12345,\n"
           f"{phones[2]},\n"
           f"{phones[2]},\n")  # fmt: skip
    got: Any = api.call("POST", "/v1/admin/audiences/import", 201, data={"name": "线下活动名单"},
                        files={"file": ("list.csv", csv.encode(), "text/csv")})  # fmt: skip
    assert got["columns"] == {"手机号": "phone", "邮箱": "email"}
    assert (got["rows"], got["matched"], got["unmatched"], got["invalid"], got["empty"]) == (7, 4, 1, 1, 1)
    assert got["members"] == 3 and got["audience"]["kind"] == "imported"
    rows: Any = api.call(
        "GET", f"/v1/admin/audiences/{got['audience']['id']}/import-rows", params={"status": "unmatched"}
    )
    assert [(r["line"], r["id_value"]) for r in rows] == [(5, "+8613900000000")]
    bad: Any = api.call("GET", f"/v1/admin/audiences/{got['audience']['id']}/import-rows", params={"status": "invalid"})
    assert bad[0]["line"] == 6 and bad[0]["reason"]
    assert api.call("GET", f"/v1/admin/audiences/{got['audience']['id']}/count")["members"] == 3  # type: ignore[index]
    # An imported audience is usable inside a condition.
    inside = {"type": "in_audience", "audience": got["audience"]["id"]}
    assert api.call("POST", "/v1/admin/audiences/estimate", json={"definition": inside})["members"] == 3  # type: ignore[index]


def test_import_refusals_name_the_problem(api: Api) -> None:
    r = api.client.post("/v1/admin/audiences/import", headers={"Authorization": "Bearer audience-tests"},
                        data={"name": "坏文件"}, files={"file": ("x.csv", b"foo,bar\n1,2\n", "text/csv")})  # fmt: skip
    assert r.status_code == 422 and r.json()["field"] == "file" and "identifier type" in r.json()["message"]
    gbk = "手机号\n13800138000\n".encode("gbk")
    r = api.client.post("/v1/admin/audiences/import", headers={"Authorization": "Bearer audience-tests"},
                        data={"name": "GBK"}, files={"file": ("x.csv", gbk, "text/csv")})  # fmt: skip
    assert r.status_code == 422 and "gbk" in r.json()["message"]
    r = api.client.post("/v1/admin/audiences/import", headers={"Authorization": "Bearer audience-tests"},
                        data={"name": "GBK", "encoding": "gbk"}, files={"file": ("x.csv", gbk, "text/csv")})  # fmt: skip
    assert r.status_code == 201, r.text


def test_explain_says_which_leaf_failed_and_what_it_saw(api: Api) -> None:
    aud = _create(api, "解释用", SHANGHAI_REPEAT)
    member: Any = api.call("GET", f"/v1/admin/audiences/{aud['id']}/members", params={"limit": 1})
    pid = member["members"][0]["profile_id"]
    yes: Any = api.call("POST", f"/v1/admin/audiences/{aud['id']}/explain", json={"profile_id": pid})
    assert yes["matched"] is True and [x["matched"] for x in yes["leaves"]] == [True, True]
    assert yes["leaves"][0]["path"] == "children[0]" and yes["leaves"][0]["value"] in ("上海", "北京")
    assert yes["leaves"][1]["value"] >= 2
    other = _sql(
        api,
        """SELECT p.profile_id FROM profiles p JOIN profile_attributes a USING (profile_idx)
                         WHERE json_extract_string(a.traits, '$.city') = '深圳' LIMIT 1""",
    )[0][0]
    no: Any = api.call("POST", f"/v1/admin/audiences/{aud['id']}/explain", json={"profile_id": other})
    assert no["matched"] is False and no["leaves"][0]["matched"] is False and no["leaves"][0]["value"] == "深圳"
    missing = api.client.post(f"/v1/admin/audiences/{aud['id']}/explain", headers={"Authorization": "Bearer audience-tests"},
                              json={"identifier": "phone:13000000001"})  # fmt: skip
    assert missing.status_code == 404


def test_insight_compares_shares_with_tgi(api: Api) -> None:
    aud = _create(api, "女性会员", {"type": "attribute", "field": "gender", "op": "eq", "value": "female"})
    got: Any = api.call(
        "GET", f"/v1/admin/audiences/{aud['id']}/insight", params={"columns": "gender,city,total_spend"}
    )
    gender = {v["value"]: v for v in got["columns"][0]["values"]}
    assert gender["female"]["share"] == 1.0
    total = _sql(api, "SELECT count(*) FROM profiles")[0][0]
    females = _sql(
        api, "SELECT count(*) FROM profile_attributes WHERE json_extract_string(traits, '$.gender') = 'female'"
    )[0][0]
    assert got["members"] == females and got["base_members"] == total
    assert gender["female"]["base_share"] == pytest.approx(females / total, abs=1e-6)
    assert gender["female"]["tgi"] == pytest.approx(100 * total / females, rel=1e-3)
    assert "male" not in gender or gender["male"]["count"] == 0
    spend = got["columns"][2]["values"]
    assert sum(v["count"] for v in spend) == females  # ranges (and no value) cover everyone once
    # Against another audience instead of everyone.
    other = _create(api, "北京会员", {"type": "attribute", "field": "city", "op": "eq", "value": "北京"})
    vs: Any = api.call(
        "GET", f"/v1/admin/audiences/{aud['id']}/insight", params={"columns": "city", "compare_to": other["id"]}
    )
    beijing = next(v for v in vs["columns"][0]["values"] if v["value"] == "北京")
    assert (
        beijing["base_share"] == 1.0
        and vs["base_members"]
        == _sql(api, "SELECT count(*) FROM profile_attributes WHERE json_extract_string(traits, '$.city') = '北京'")[0][
            0
        ]
    )


def test_refusals_name_the_field(api: Api) -> None:
    h = {"Authorization": "Bearer audience-tests"}
    bad = {"type": "and", "children": [{"type": "attribute", "field": "city", "op": "eq", "value": "上海"},
                                       {"type": "event", "event": "Signed Up", "window": {"last": 0}}]}  # fmt: skip
    r = api.client.post("/v1/admin/audiences", headers=h, json={"name": "坏", "definition": bad})
    assert r.status_code == 422 and r.json()["field"] == "definition.children[1].window.last"
    assert r.json()["message"] == "must be > 0"
    r = api.client.post("/v1/admin/audiences/estimate", headers=h, json={"definition": {"type": "nope"}})
    assert r.status_code == 422 and r.json()["field"] == "definition"
    a = _create(api, "甲", {"type": "attribute", "field": "city", "op": "eq", "value": "上海"})
    r = api.client.post("/v1/admin/audiences", headers=h, json={"name": "甲", "definition": bad["children"][0]})
    assert r.status_code == 409 and r.json()["field"] == "name"
    b = _create(api, "乙", {"type": "in_audience", "audience": a["id"]})
    # A cycle is refused, naming where.
    r = api.client.patch(f"/v1/admin/audiences/{a['id']}", headers=h,
                         json={"definition": {"type": "not", "child": {"type": "in_audience", "audience": b["id"]}}})  # fmt: skip
    assert r.status_code == 422 and r.json()["field"].startswith("definition.child") and "cycle" in r.json()["message"]
    r = api.client.post("/v1/admin/audiences", headers=h,
                        json={"name": "丙", "definition": {"type": "in_audience", "audience": "aud_missing"}})  # fmt: skip
    assert r.status_code == 422 and "aud_missing" in r.json()["message"]
    # Used audiences cannot be deleted or archived; the message names who uses them.
    r = api.client.delete(f"/v1/admin/audiences/{a['id']}", headers=h)
    assert r.status_code == 409 and "乙" in r.json()["message"]
    r = api.client.patch(f"/v1/admin/audiences/{a['id']}", headers=h, json={"status": "archived"})
    assert r.status_code == 409 and "乙" in r.json()["message"]
    r = api.client.post(
        "/v1/admin/audiences", headers=h, json={"name": "丁", "definition": bad["children"][0], "schedule": "every day"}
    )
    assert r.status_code == 422 and r.json()["field"] == "schedule"
    assert api.client.get("/v1/admin/audiences/aud_nope", headers=h).status_code == 404
    r = api.client.post(f"/v1/admin/audiences/{a['id']}/refresh", headers=h)
    assert r.status_code == 200
    static = _create(api, "戊", bad["children"][0], kind="static")
    assert api.client.post(f"/v1/admin/audiences/{static['id']}/refresh", headers=h).status_code == 409
    api.call("DELETE", f"/v1/admin/audiences/{b['id']}", 204)
    api.call("DELETE", f"/v1/admin/audiences/{a['id']}", 204)
