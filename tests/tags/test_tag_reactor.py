"""Rule tags re-evaluated as events arrive (the server's tag reactor), and tag values following a
profile merge."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

from fastapi.testclient import TestClient

from tessera.api.app import create_app
from tessera.clock import FrozenClock
from tessera.runtime import Instance
from tessera.services import tag_runs, tag_values
from tessera.settings import load_settings
from tests.audiences.conftest import TOKEN
from tests.conftest import make_source

H = {"Authorization": f"Bearer {TOKEN}"}
CLAIMED = {
    "key": "double11_claimer", "name": "双11领券", "name_en": "Claimed a Double 11 coupon", "category": "behaviour",
    "kind": "rule", "value_type": "bool", "status": "active", "rules": [{"value": True, "condition": {
        "type": "event", "event": "Coupon Claimed", "where": [{"property": "campaign", "op": "eq", "value": "双11"}]}}],
}  # fmt: skip
ZONE = {
    "key": "zone", "name": "区域", "name_en": "Zone", "category": "basic", "kind": "rule", "value_type": "string",
    "status": "active", "rules": [{"value": "上海", "condition": {"type": "attribute", "field": "city", "op": "eq",
                                                                  "value": "上海"}}],
}  # fmt: skip


def test_new_events_re_evaluate_reacting_rule_tags_for_those_profiles(demo_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(demo_dir, root)
    key = make_source(root, name="测试埋点")
    settings = load_settings(tags={"reactor_interval_seconds": 3600})  # the test drives the reactor
    inst = Instance(root, settings=settings, clock=FrozenClock(datetime.now(UTC)))
    try:
        app = create_app(inst, local_token=TOKEN)
        with TestClient(app) as c:
            for body in (CLAIMED, ZONE):
                assert c.post("/v1/admin/tags", headers=H, json=body).status_code == 201
            assert c.post("/v1/admin/tags/double11_claimer/run", headers=H).json()[0]["rows"] == 0
            cur = inst.analytic.cursor()
            users = [r[0] for r in cur.execute(
                "SELECT id_value FROM profile_identifiers WHERE id_type = 'user_id' ORDER BY id_value LIMIT 3"
            ).fetchall()]  # fmt: skip
            batch = [
                {"type": "track", "userId": users[0], "event": "Coupon Claimed", "properties": {"campaign": "双11"}},
                {"type": "track", "userId": users[1], "event": "Coupon Claimed", "properties": {"campaign": "618"}},
            ]
            r = c.post("/v1/batch", json={"batch": batch}, auth=(key, ""))
            assert r.status_code == 200, r.text
            assert app.state.pipeline.loader.flush()
            results = app.state.tag_reactor.react()
            # only tags that read events ran (the demo's interests too; zone reads a trait), for the
            # touched profiles only
            ran = {x.tag_key: (x.trigger, x.details.get("scoped"), x.details.get("scope")) for x in results}
            assert ran["double11_claimer"] == ("events", True, 2) and "zone" not in ran
            holders = cur.execute(
                "SELECT i.id_value FROM profile_tags t JOIN profile_identifiers i USING (profile_idx) "
                "WHERE t.tag_key = 'double11_claimer' AND i.id_type = 'user_id'"
            ).fetchall()
            assert [h[0] for h in holders] == [users[0]]
            assert app.state.tag_reactor.react() == []  # nothing new
            health = c.get("/healthz").json()
            assert health.get("tag_reactor_error") is None
    finally:
        inst.close()


def test_tag_values_follow_a_merge(demo_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(demo_dir, root)
    inst = Instance(root, clock=FrozenClock(datetime.now(UTC)))
    try:
        c = TestClient(create_app(inst, local_token=TOKEN))
        for k, multi in (("vip_note", False), ("hobbies", True)):
            body = {"key": k, "name": k, "name_en": k, "category": "basic", "value_type": "string", "multi": multi}
            assert c.post("/v1/admin/tags", headers=H, json=body).status_code == 201
        tags = {t.key: t for t in tag_runs.load_tags(inst, ["vip_note", "hobbies"])}
        cur = inst.analytic.cursor()
        a, b, d = (
            r[0] for r in cur.execute("SELECT profile_idx FROM profiles ORDER BY profile_idx LIMIT 3").fetchall()
        )

        def assign(key: str, rows: list[tuple[int, str | None]]) -> None:
            scoped = tag_values.stage_assignment(cur, tags[key], rows, "add")
            with inst.analytic.transaction(cur) as tx:
                tag_values.swap(tx, [tags[key]], trigger="api", started_at=inst.clock.now(), now=inst.clock.now(),
                                scoped=scoped)  # fmt: skip

        assign("vip_note", [(a, "老客户"), (b, "黑卡")])
        assign("hobbies", [(b, "登山"), (d, "滑雪")])
        # b and d merge into a: a keeps its own vip_note, takes b's hobbies (the earliest loser's)
        cur.execute("CREATE TEMP TABLE _m AS SELECT * FROM (VALUES (?, ?), (?, ?)) t(loser, survivor)", [b, a, d, a])
        with inst.analytic.transaction(cur) as tx:
            tag_values.carry_over(tx, "_m", now=inst.clock.now())
        got = cur.execute(
            "SELECT profile_idx, tag_key, value FROM profile_tags WHERE tag_key IN ('vip_note', 'hobbies') ORDER BY ALL"
        ).fetchall()
        assert got == sorted([(a, "hobbies", "登山"), (a, "vip_note", "老客户")])
        moved = cur.execute(
            "SELECT profile_idx, value, added FROM tag_changes WHERE tag_key = 'hobbies' ORDER BY run_no, added, value"
        ).fetchall()
        assert set(moved[-3:]) == {(b, "登山", False), (d, "滑雪", False), (a, "登山", True)}
    finally:
        inst.close()
