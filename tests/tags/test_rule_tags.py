"""Rule tags on the demo brand: computed through the condition compiler, swapped atomically, with
history ("who had X on date D"), quality, preview and the 360° view; checked against hand-written SQL."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tessera.services import tag_runs, tag_values
from tessera.services.tag_values import TagRunError
from tests.audiences.conftest import Api

SPEND_BAND = {
    "key": "spend_tier", "name": "消费档次", "name_en": "Spend band", "category": "value", "kind": "rule",
    "value_type": "enum", "enum_values": ["高", "中", "低"], "status": "active",
    "rules": [
        {"value": "高", "condition": {"type": "attribute", "field": "total_spend", "op": "gte", "value": 2000}},
        {"value": "中", "condition": {"type": "attribute", "field": "total_spend", "op": "gte", "value": 500}},
        {"value": "低", "condition": {"type": "attribute", "field": "order_count", "op": "gte", "value": 1}},
    ],
}  # fmt: skip
INTERESTS = {
    "key": "hobby_signals", "name": "兴趣", "name_en": "Interests", "category": "preference", "kind": "rule",
    "value_type": "string", "multi": True, "status": "active",
    "rules": [
        {"value": "逛店", "condition": {"type": "event", "event": "Product Viewed", "count": {"op": "gte", "value": 3}}},
        {"value": "买过", "condition": {"type": "order", "op": "gte", "value": 1}},
        # reads the other rule tag: it must run after spend_tier in the same call
        {"value": "大客户", "condition": {"type": "tag", "tag": "spend_tier", "op": "eq", "value": "高"}},
    ],
}  # fmt: skip
SPEND_SQL = """SELECT p.profile_idx, CASE WHEN a.total_spend >= 2000 THEN '高' WHEN a.total_spend >= 500 THEN '中'
    WHEN a.order_count >= 1 THEN '低' END AS v
    FROM profiles p LEFT JOIN profile_attributes a USING (profile_idx)"""


def _values(api: Api, key: str) -> set[tuple[int, str]]:
    rows = (
        api.inst.analytic.cursor()
        .execute("SELECT profile_idx, value FROM profile_tags WHERE tag_key = ?", [key])
        .fetchall()
    )
    return {(int(i), v) for i, v in rows}


def _sql(api: Api, sql: str, params: list[Any] | None = None) -> list[tuple[Any, ...]]:
    return api.inst.analytic.cursor().execute(sql, params or []).fetchall()


@pytest.fixture(scope="module")
def tagged(tags_api: Api) -> Api:
    tags_api.call("POST", "/v1/admin/tags", 201, json=SPEND_BAND)
    tags_api.call("POST", "/v1/admin/tags", 201, json=INTERESTS)
    runs = tags_api.call("POST", "/v1/admin/tags/hobby_signals/run")
    assert isinstance(runs, list) and [r["tag_key"] for r in runs] == ["hobby_signals"]
    tags_api.call("POST", "/v1/admin/tags/spend_tier/run")
    tags_api.call("POST", "/v1/admin/tags/hobby_signals/run")
    return tags_api


def test_first_match_wins_for_a_single_valued_tag(tagged: Api) -> None:
    expected = {(int(i), v) for i, v in _sql(tagged, SPEND_SQL) if v is not None}
    assert expected and _values(tagged, "spend_tier") == expected
    assert {v for _, v in expected} == {"高", "中", "低"}


def test_every_match_adds_a_value_to_a_multi_valued_tag(tagged: Api) -> None:
    viewed = {r[0] for r in _sql(tagged, """SELECT l.profile_idx FROM events e JOIN event_names n USING (event_id)
        JOIN identity_links l ON l.obs_idx = e.identity_idx WHERE n.name = 'Product Viewed'
        GROUP BY 1 HAVING count(*) >= 3""")}  # fmt: skip
    bought = {r[0] for r in _sql(tagged, """SELECT l.profile_idx FROM orders o JOIN identity_links l
        ON l.obs_idx = o.identity_idx WHERE lower(coalesce(o.status, '')) NOT IN ('cancelled', 'refunded')""")}  # fmt: skip
    big = {i for i, v in _values(tagged, "spend_tier") if v == "高"}
    expected = {(i, "逛店") for i in viewed} | {(i, "买过") for i in bought} | {(i, "大客户") for i in big}
    assert _values(tagged, "hobby_signals") == expected
    several = _sql(tagged, "SELECT count(*) FROM (SELECT profile_idx FROM profile_tags WHERE tag_key = 'hobby_signals' "
                           "GROUP BY 1 HAVING count(*) > 1)")[0][0]  # fmt: skip
    assert several > 0


def test_runs_are_recorded_and_a_rerun_changes_nothing(tagged: Api) -> None:
    runs = tagged.call("GET", "/v1/admin/tags/spend_tier/runs")
    assert isinstance(runs, list) and runs[0]["status"] == "succeeded" and runs[0]["trigger"] == "manual"
    first = runs[-1]
    assert first["added"] == first["rows"] == len(_values(tagged, "spend_tier")) and first["removed"] == 0
    again = tagged.call("POST", "/v1/admin/tags/spend_tier/run")
    assert isinstance(again, list) and again[0]["added"] == 0 and again[0]["removed"] == 0


def test_a_tag_reading_another_runs_after_it_in_one_call(tagged: Api) -> None:
    inst = tagged.inst
    tags = tag_runs.load_tags(inst, ["hobby_signals", "spend_tier"])  # dependent first on purpose
    results = tag_runs.run_tags(inst, tags)
    assert [r.tag_key for r in results] == ["spend_tier", "hobby_signals"]


def test_history_answers_who_had_a_value_on_a_date(tagged: Api) -> None:
    api, clock = tagged, tagged.clock
    before = _values(api, "spend_tier")
    high_before = {i for i, v in before if v == "高"}
    today = clock.now().astimezone(ZoneInfo(api.inst.settings.timezone)).date()
    # two days later the threshold for 高 rises: some 高 become 中
    clock.advance(timedelta(days=2))
    raised = {
        **SPEND_BAND,
        "rules": [
            {
                **SPEND_BAND["rules"][0],
                "condition": {  # type: ignore[dict-item]
                    "type": "attribute",
                    "field": "total_spend",
                    "op": "gte",
                    "value": 5000,
                },
            },
            *SPEND_BAND["rules"][1:],
        ],
    }  # type: ignore[misc]
    api.call("PATCH", "/v1/admin/tags/spend_tier", json={"rules": raised["rules"]})
    run = api.call("POST", "/v1/admin/tags/spend_tier/run")
    assert isinstance(run, list) and run[0]["removed"] > 0 and run[0]["added"] > 0
    high_now = {i for i, v in _values(api, "spend_tier") if v == "高"}
    assert high_now < high_before

    then = api.call("GET", "/v1/admin/tags/spend_tier/holders", params={"at": today.isoformat(), "value": "高"})
    now = api.call("GET", "/v1/admin/tags/spend_tier/holders",
                   params={"at": (today + timedelta(days=2)).isoformat(), "value": "高"})  # fmt: skip
    assert isinstance(then, dict) and isinstance(now, dict)
    assert then["profiles"] == len(high_before) and now["profiles"] == len(high_now)
    long_ago = api.call("GET", "/v1/admin/tags/spend_tier/holders", params={"at": "2020-01-01"})
    assert isinstance(long_ago, dict) and long_ago["profiles"] == 0

    # the condition language: "had tag X = V on date D", in an audience estimate
    def estimate(on: str | None) -> int:
        leaf: dict[str, Any] = {"type": "tag", "tag": "spend_tier", "op": "eq", "value": "高"}
        if on:
            leaf["on"] = on
        got = api.call("POST", "/v1/admin/audiences/estimate", json={"definition": leaf})
        assert isinstance(got, dict)
        return int(got["members"])

    assert estimate(today.isoformat()) == len(high_before)
    assert estimate(None) == len(high_now)
    lost = {"type": "and", "children": [
        {"type": "tag", "tag": "spend_tier", "op": "eq", "value": "高", "on": today.isoformat()},
        {"type": "tag", "tag": "spend_tier", "op": "neq", "value": "高"}]}  # fmt: skip
    got = api.call("POST", "/v1/admin/audiences/estimate", json={"definition": lost})
    assert isinstance(got, dict) and got["members"] == len(high_before - high_now)

    trend = api.call("GET", "/v1/admin/tags/spend_tier/trend",
                     params={"since": (today - timedelta(days=1)).isoformat(),
                             "until": (today + timedelta(days=2)).isoformat(), "value": "高"})  # fmt: skip
    assert isinstance(trend, dict)
    counts = [d["profiles"] for d in trend["days"]]
    assert counts == [0, len(high_before), len(high_before), len(high_now)]


def test_a_failed_run_is_recorded_and_changes_nothing(tagged: Api) -> None:
    inst = tagged.inst
    before = _values(tagged, "spend_tier")
    (tag,) = tag_runs.load_tags(inst, ["spend_tier"])
    cur = inst.analytic.cursor()
    tag_values.create_new_table(cur)
    # two values for one profile of a single-valued tag
    cur.execute("INSERT INTO _tag_new SELECT 'spend_tier', profile_idx, v FROM profiles, (VALUES ('高'), ('低')) t(v)")
    with pytest.raises(TagRunError, match="single-valued"), inst.analytic.transaction(cur) as tx:
        tag_values.swap(tx, [tag], trigger="manual", started_at=inst.clock.now(), now=inst.clock.now())
    assert _values(tagged, "spend_tier") == before


def test_readers_never_see_half_a_run(tagged: Api) -> None:
    inst = tagged.inst
    before = _values(tagged, "spend_tier")
    (tag,) = tag_runs.load_tags(inst, ["spend_tier"])
    cur = inst.analytic.cursor()
    tag_values.create_new_table(cur)
    cur.execute("INSERT INTO _tag_new SELECT 'spend_tier', profile_idx, '低' FROM profiles")
    reader = inst.analytic.cursor()
    with inst.analytic.transaction(cur) as tx:
        tag_values.swap(tx, [tag], trigger="manual", started_at=inst.clock.now(), now=inst.clock.now())
        mid = reader.execute("SELECT profile_idx, value FROM profile_tags WHERE tag_key = 'spend_tier'").fetchall()
        assert {(int(i), v) for i, v in mid} == before  # the other cursor still sees the old values
    after = _values(tagged, "spend_tier")
    assert {v for _, v in after} == {"低"} and len(after) == _sql(tagged, "SELECT count(*) FROM profiles")[0][0]
    tagged.call("POST", "/v1/admin/tags/spend_tier/run")  # back to the rules
    assert _values(tagged, "spend_tier") != after


def test_quality_usage_and_archiving(tagged: Api) -> None:
    q = tagged.call("GET", "/v1/admin/tags/spend_tier/quality")
    assert isinstance(q, dict)
    holders = len({i for i, _ in _values(tagged, "spend_tier")})
    total = _sql(tagged, "SELECT count(*) FROM profiles")[0][0]
    assert q["holders"] == holders and q["profiles"] == total and q["coverage"] == pytest.approx(holders / total)
    assert sum(v["profiles"] for v in q["values"]) == holders
    assert q["last_run"]["status"] == "succeeded" and q["computed_at"] is not None
    assert [u["id"] for u in q["used_by"]] == ["hobby_signals"] and not q["low_coverage"]
    # an audience uses it: archiving names both users
    aud = tagged.call("POST", "/v1/admin/audiences", 201, json={"name": "大客户群", "definition": {
        "type": "tag", "tag": "spend_tier", "op": "eq", "value": "高"}})  # fmt: skip
    assert isinstance(aud, dict)
    refused = tagged.call("PATCH", "/v1/admin/tags/spend_tier", 409, json={"status": "archived"})
    assert isinstance(refused, dict) and refused["field"] == "status"
    assert "大客户群" in refused["message"] and "hobby_signals" in refused["message"]
    # a tag below its coverage threshold is flagged
    tagged.call("PATCH", "/v1/admin/tags/hobby_signals", json={"min_coverage": 0.99})
    flags = tagged.call("GET", "/v1/admin/tags/quality")
    assert isinstance(flags, list)
    got = {f["key"]: f["low_coverage"] for f in flags if f["key"] in ("spend_tier", "hobby_signals")}
    assert got == {"spend_tier": False, "hobby_signals": True}


def test_preview_matches_the_run_and_writes_nothing(tagged: Api) -> None:
    current = tagged.call("GET", "/v1/admin/tags/spend_tier")
    assert isinstance(current, dict)
    body = {**SPEND_BAND, "key": "spend_tier_draft", "rules": current["rules"]}
    got = tagged.call("POST", "/v1/admin/tags/preview", json=body)
    assert isinstance(got, dict)
    stored = _values(tagged, "spend_tier")
    assert got["holders"] == len(stored) and len(got["sample"]) == 100
    assert {v["value"]: v["profiles"] for v in got["values"]} == {
        v: sum(1 for _, x in stored if x == v) for v in {x for _, x in stored}
    }
    assert _sql(tagged, "SELECT count(*) FROM profile_tags WHERE tag_key = 'spend_tier_draft'")[0][0] == 0
    bad = tagged.call("POST", "/v1/admin/tags/preview", 422, json={**body, "rules": [
        {"value": "高", "condition": {"type": "attribute", "field": "total_spend", "op": "gte"}}]})  # fmt: skip
    assert isinstance(bad, dict) and bad["field"].startswith("rules[0].condition")


def test_definitions_are_checked_when_saved(tags_api: Api) -> None:
    def refused(body: dict[str, Any], field: str) -> str:
        got = tags_api.call("POST", "/v1/admin/tags", 422, json=body)
        assert isinstance(got, dict) and got["field"] == field, got
        return str(got["message"])

    base = {**SPEND_BAND, "key": "band2"}
    assert "not one of" in refused({**base, "rules": [{"value": "超高", "condition": SPEND_BAND["rules"][0]["condition"]}]},  # type: ignore[index]
                                   "rules[0].value")  # fmt: skip
    refused({**base, "schedule": "every day"}, "schedule")
    refused({**base, "rules": [{"value": "高", "condition": {"type": "tag", "tag": "band2", "op": "has"}}]},
            "rules[0].condition")  # fmt: skip
    # a cycle through another rule tag
    tags_api.call("POST", "/v1/admin/tags", 201, json={**base, "key": "cyc_a", "status": "draft", "rules": [
        {"value": "高", "condition": {"type": "tag", "tag": "cyc_b", "op": "has"}}]})  # fmt: skip
    msg = refused({**base, "key": "cyc_b", "rules": [
        {"value": "高", "condition": {"type": "tag", "tag": "cyc_a", "op": "has"}}]}, "rules")  # fmt: skip
    assert "cyc_b → cyc_a → cyc_b" in msg
    refused({**base, "kind": "rule", "rules": None}, "body")
    static = tags_api.call("POST", "/v1/admin/tags", 201, json={"key": "vip_note", "name": "备注", "name_en": "Note",
                                                               "category": "basic", "value_type": "string"})  # fmt: skip
    assert isinstance(static, dict)
    got = tags_api.call("POST", "/v1/admin/tags/vip_note/run", 422)
    assert isinstance(got, dict) and "static" in got["message"]


def test_the_360_view_shows_tags_with_kind_and_computed_at(tagged: Api) -> None:
    idx, value = sorted(_values(tagged, "spend_tier"))[0]
    pid = _sql(tagged, "SELECT profile_id FROM profiles WHERE profile_idx = ?", [idx])[0][0]
    view = tagged.call("GET", f"/v1/admin/profiles/{pid}")
    assert isinstance(view, dict)
    tags = {t["key"]: t for t in view["tags"]}
    assert tags["spend_tier"]["values"] == [value] and tags["spend_tier"]["kind"] == "rule"
    assert tags["spend_tier"]["name"] == "消费档次" and tags["spend_tier"]["computed_at"] is not None


def test_scheduled_tags_run_when_due(tagged: Api) -> None:
    api, inst = tagged, tagged.inst
    api.call("PATCH", "/v1/admin/tags/spend_tier", json={"schedule": "0 3 * * *"})
    tag_runs.run_due(inst)  # may or may not be due yet: settle it
    assert not [t.key for t in tag_runs.due(inst) if t.key == "spend_tier"]
    api.clock.advance(timedelta(days=1, hours=1))
    assert "spend_tier" in [t.key for t in tag_runs.due(inst)]
    results = tag_runs.run_due(inst)
    assert [r.trigger for r in results if r.tag_key == "spend_tier"] == ["schedule"]
    assert "spend_tier" not in [t.key for t in tag_runs.due(inst)]
    q = api.call("GET", "/v1/admin/tags/spend_tier/quality")
    assert isinstance(q, dict)
    nxt = q["next_run_at"]
    assert nxt is not None and "T03:00:00+08:00" in nxt


def test_bad_history_queries_name_the_field(tagged: Api) -> None:
    got = tagged.call("GET", "/v1/admin/tags/spend_tier/holders", 422, params={"at": "yesterday"})
    assert isinstance(got, dict) and got["field"] == "at"
    got = tagged.call("GET", "/v1/admin/tags/spend_tier/trend", 422,
                      params={"since": date(2026, 2, 1).isoformat(), "until": date(2026, 1, 1).isoformat()})  # fmt: skip
    assert isinstance(got, dict) and got["field"] == "until"
    tagged.call("GET", "/v1/admin/tags/nope/holders", 404, params={"at": "2026-01-01"})
