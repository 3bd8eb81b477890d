"""Every kind of tag works end to end on the demo brand: defined, computed (or imported), recorded,
readable in conditions, on the 360° view and in quality."""

from __future__ import annotations

from typing import Any

from tessera.demo.tags import TAGS
from tests.audiences.conftest import Api

RFM = {"重要价值", "重要发展", "重要保持", "重要挽留", "一般价值", "一般发展", "一般保持", "一般挽留"}


def _values(api: Api, key: str) -> dict[str, int]:
    rows = (
        api.inst.analytic.cursor()
        .execute("SELECT value, count(*) FROM profile_tags WHERE tag_key = ? GROUP BY 1", [key])
        .fetchall()
    )
    return {v: int(n) for v, n in rows}


def test_every_demo_tag_ran_and_holds_values(tags_api: Api) -> None:
    runs = (
        tags_api.inst.analytic.cursor()
        .execute("SELECT tag_key, status, trigger, rows, details FROM tag_runs ORDER BY run_no")
        .fetchall()
    )
    by_key = {k: (status, trigger, rows) for k, status, trigger, rows, _ in runs}
    assert set(by_key) == {t["key"] for t in TAGS}
    assert all(status == "succeeded" and rows > 0 for status, _, rows in by_key.values()), by_key
    kinds = {t["key"]: t.get("kind", "static") for t in TAGS}
    assert {kinds[k] for k in by_key} == {"rule", "sql", "model", "static"}
    assert set(_values(tags_api, "rfm_group")) <= RFM and len(_values(tags_api, "rfm_group")) >= 4
    assert set(_values(tags_api, "lifecycle_stage")) <= {"导入期", "成长期", "成熟期", "休眠期", "流失期"}
    assert set(_values(tags_api, "review_sentiment")) <= {"正面", "中性", "负面"}
    assert sum(_values(tags_api, "favourite_store").values()) == 300
    details = tags_api.call("GET", "/v1/admin/tags/purchase_propensity/runs")
    assert isinstance(details, list) and 0.5 < details[0]["details"]["auc"] <= 1


def test_demo_tags_drive_an_audience_and_show_on_the_profile(tags_api: Api) -> None:
    definition: dict[str, Any] = {"type": "and", "children": [
        {"type": "tag", "tag": "rfm_group", "op": "in", "values": ["重要挽留", "重要保持"]},
        {"type": "tag", "tag": "churn_risk", "op": "gte", "value": 0.5},
    ]}  # fmt: skip
    got = tags_api.call("POST", "/v1/admin/audiences/estimate", json={"definition": definition})
    expected = (
        tags_api.inst.analytic.cursor()
        .execute(
            """SELECT count(*) FROM profiles p WHERE p.profile_idx IN (SELECT profile_idx FROM profile_tags
           WHERE tag_key = 'rfm_group' AND value IN ('重要挽留', '重要保持'))
           AND p.profile_idx IN (SELECT profile_idx FROM profile_tags WHERE tag_key = 'churn_risk' AND value_num >= 0.5)"""
        )
        .fetchall()[0][0]
    )
    assert isinstance(got, dict) and got["members"] == expected > 0
    pid = (
        tags_api.inst.analytic.cursor()
        .execute(
            "SELECT p.profile_id FROM profiles p JOIN profile_tags t USING (profile_idx) WHERE t.tag_key = 'rfm_group' "
            "ORDER BY p.profile_id LIMIT 1"
        )
        .fetchall()[0][0]
    )
    view = tags_api.call("GET", f"/v1/admin/profiles/{pid}")
    assert isinstance(view, dict)
    shown = {t["key"]: t for t in view["tags"]}
    assert shown["rfm_group"]["kind"] == "model" and shown["rfm_group"]["name"] == "RFM分群"
    assert shown["rfm_group"]["computed_at"] is not None
    quality = tags_api.call("GET", "/v1/admin/tags/quality")
    assert isinstance(quality, list) and {q["key"] for q in quality} == {t["key"] for t in TAGS}


def test_review_scores_are_kept_between_runs(tags_api: Api) -> None:
    cur = tags_api.inst.analytic.cursor()
    stored = cur.execute("SELECT count(*) FROM tag_sentiment_scores").fetchall()[0][0]
    before = _values(tags_api, "review_sentiment")
    assert stored > 0
    runs = tags_api.call("POST", "/v1/admin/tags/review_sentiment/run")
    assert isinstance(runs, list) and runs[0]["status"] == "succeeded" and runs[0]["added"] == runs[0]["removed"] == 0
    # nothing scored twice: the second run read every score back
    assert cur.execute("SELECT count(*) FROM tag_sentiment_scores").fetchall()[0][0] == stored
    assert _values(tags_api, "review_sentiment") == before
