"""The open tag API (/v1/tags/…) with tag API keys scoped to categories, and the admin scope of
the management API (a tag key cannot call /v1/admin/…)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tessera.api.app import create_app
from tessera.clock import FrozenClock
from tessera.runtime import Instance
from tessera.services import tokens
from tests.tags.test_static_tags import INTERESTS, NOW, TIER, make_people

TOKEN = "open-api-tests"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}
GEAR = {"key": "camp_gear", "name": "露营装备", "name_en": "Camping gear", "category": "outdoor",
        "value_type": "string", "multi": True, "status": "active"}  # fmt: skip


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def c(tmp_path: Path) -> Iterator[TestClient]:
    root = tmp_path / "data"
    clock = FrozenClock(NOW)
    make_people(root, clock)
    with Instance(root, clock=clock) as inst:
        client = TestClient(create_app(inst, local_token=TOKEN))
        r = client.post("/v1/admin/tag-categories", headers=ADMIN,
                        json={"key": "outdoor", "name": "户外", "name_en": "Outdoor", "parent": "preference"})  # fmt: skip
        assert r.status_code == 201, r.text
        for tag in (TIER, INTERESTS, GEAR):
            assert client.post("/v1/admin/tags", headers=ADMIN, json=tag).status_code == 201
        r = client.post("/v1/admin/tags/member_tier/values", headers=ADMIN,
                        json={"items": [{"user_id": "u1", "value": "金卡"}]})  # fmt: skip
        r = client.post("/v1/admin/tags/interests/values", headers=ADMIN,
                        json={"items": [{"user_id": "u1", "value": ["跑步", "露营"]}]})  # fmt: skip
        assert r.status_code == 200, r.text
        yield client


def make_key(c: TestClient, **body: Any) -> dict[str, Any]:
    r = c.post("/v1/admin/tag-api-keys", headers=ADMIN, json=body)
    assert r.status_code == 201, r.text
    got: dict[str, Any] = r.json()
    return got


def test_read_scope_limits_what_a_key_sees_and_covers_sub_categories(c: TestClient) -> None:
    key = make_key(c, name="CRM 系统", read=["preference"], write=["outdoor"])
    assert key["key"].startswith("tsk_") and (key["read"], key["write"]) == (["preference"], ["outdoor"])
    h = bearer(key["key"])
    defs = {d["key"]: d for d in c.get("/v1/tags/definitions", headers=h).json()}
    assert set(defs) == {"interests", "camp_gear"}  # member_tier is in 价值 (value): not visible
    assert (defs["interests"]["readable"], defs["interests"]["writable"]) == (True, False)
    assert (defs["camp_gear"]["readable"], defs["camp_gear"]["writable"]) == (True, True)  # outdoor ⊂ preference

    r = c.post("/v1/tags/camp_gear/values", headers=h, json={"op": "add", "items": [
        {"id_type": "phone", "id_value": "+86 138 0013 8000", "value": ["帐篷", "睡袋"]}]})  # fmt: skip
    assert r.status_code == 200, r.text
    assert r.json()["run"]["trigger"] == "open_api" and r.json()["run"]["details"]["source"].endswith("CRM 系统")
    got = c.get("/v1/tags/profiles", headers=h, params={"id_type": "phone", "id_value": "138-0013-8000"}).json()
    tags = {t["key"]: t for t in got["tags"]}
    assert set(tags) == {"interests", "camp_gear"}
    assert tags["interests"] | {"updated_at": None} == {
        "key": "interests", "name": "兴趣", "name_en": "Interests", "category": "preference", "kind": "static",
        "value_type": "enum", "multi": True, "values": ["跑步", "露营"], "updated_at": None}  # fmt: skip
    assert tags["camp_gear"]["values"] == ["帐篷", "睡袋"]
    by_id = c.get(f"/v1/tags/profiles/{got['profile_id']}", headers=h).json()
    assert by_id["tags"] == got["tags"]
    # An admin token reads every category.
    everything = c.get(f"/v1/tags/profiles/{got['profile_id']}", headers=ADMIN).json()
    assert {t["key"] for t in everything["tags"]} == {"interests", "camp_gear", "member_tier"}


def test_write_scope_is_enforced_naming_the_category(c: TestClient) -> None:
    h = bearer(make_key(c, name="门店系统", read=["*"], write=["outdoor"])["key"])
    item = {"op": "add", "items": [{"user_id": "u2", "value": "咖啡"}]}
    r = c.post("/v1/tags/interests/values", headers=h, json=item)
    assert r.status_code == 403 and r.json()["field"] == "category" and "业务偏好 (preference)" in r.json()["message"]
    r = c.post("/v1/tags/member_tier/values", headers=h, json=item)
    assert r.status_code == 403 and "价值 (value)" in r.json()["message"]
    r = c.post("/v1/tags/camp_gear/values", headers=h, json={"op": "replace", "items": []})
    assert r.status_code == 422 and r.json()["field"] == "op"
    r = c.post("/v1/tags/camp_gear/values", headers=h, json={"op": "add", "items": {"user_id": "u2"}})
    assert r.status_code == 422 and r.json()["field"] == "items"
    r = c.post("/v1/tags/nope/values", headers=h, json=item)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = c.post("/v1/tags/camp_gear/values", headers=h, json={"op": "remove", "items": [{"user_id": "u1"}]})
    assert r.status_code == 200 and r.json()["applied"] == 1
    # '*' reads everything, also categories created later.
    defs = {d["key"] for d in c.get("/v1/tags/definitions", headers=h).json()}
    assert defs == {"member_tier", "interests", "camp_gear"}
    # A read-only key writes nothing.
    ro = bearer(make_key(c, name="BI", read=["value"])["key"])
    r = c.post("/v1/tags/member_tier/values", headers=ro, json=item)
    assert r.status_code == 403 and "价值 (value)" in r.json()["message"]


def test_lookups_that_fail_and_keys_that_are_refused(c: TestClient) -> None:
    key = make_key(c, name="小程序", read=["preference"])
    h = bearer(key["key"])
    r = c.get("/v1/tags/profiles/p_nobody", headers=h)
    assert r.status_code == 404 and r.json()["field"] == "profile"
    r = c.get("/v1/tags/profiles", headers=h, params={"id_type": "shoe_size", "id_value": "42"})
    assert r.status_code == 422 and r.json()["field"] == "id_type"
    r = c.get("/v1/tags/profiles", headers=h, params={"id_type": "phone", "id_value": "12345"})
    assert r.status_code == 422 and r.json()["field"] == "id_value"
    r = c.get("/v1/tags/profiles", headers=h, params={"id_type": "phone"})
    assert r.status_code == 422 and r.json()["field"] == "query.id_value"
    # A tag key is not an admin token: the management API refuses it (403), naming why.
    r = c.get("/v1/admin/tags", headers=h)
    assert r.status_code == 403 and r.json()["error"] == "forbidden" and "admin" in r.json()["message"]
    assert c.post("/v1/admin/tag-api-keys", headers=h, json={"name": "x", "read": ["*"]}).status_code == 403
    # Revoked: 401, and the listing shows it without secrets.
    r = c.delete(f"/v1/admin/tag-api-keys/{key['id']}", headers=ADMIN)
    assert r.status_code == 200 and r.json()["revoked_at"]
    r = c.get("/v1/tags/definitions", headers=h)
    assert r.status_code == 401 and r.json()["message"] == "unknown or revoked token"
    listed = c.get("/v1/admin/tag-api-keys", headers=ADMIN).json()
    assert [(k["name"], k["revoked_at"] is not None) for k in listed] == [("小程序", True)]
    assert all("key" not in k for k in listed)
    assert c.get("/v1/tags/definitions").status_code == 401
    assert c.get("/v1/tags/definitions", headers=bearer("tsk_nope")).status_code == 401
    assert c.delete("/v1/admin/tag-api-keys/999", headers=ADMIN).status_code == 404
    for body, field in (({"name": "x"}, "read"), ({"name": "x", "read": ["nope"]}, "read[0]"),
                        ({"name": "", "read": ["*"]}, "name"), ({"name": "x", "read": ["*"], "admin": True}, "admin")):  # fmt: skip
        r = c.post("/v1/admin/tag-api-keys", headers=ADMIN, json=body)
        assert r.status_code == 422 and r.json()["field"] == field, r.text


def test_stored_admin_tokens_still_work_and_admin_keys_are_not_tag_keys(c: TestClient) -> None:
    inst: Instance = c.app.state.instance  # type: ignore[attr-defined]
    with inst.operational.session() as s:
        admin = tokens.create_token(session=s, name="ops", now=datetime.now(UTC)).token
    assert c.get("/v1/admin/tags", headers=bearer(admin)).status_code == 200
    assert c.get("/v1/tags/definitions", headers=bearer(admin)).status_code == 200
    listed = c.get("/v1/admin/tag-api-keys", headers=ADMIN).json()
    assert listed == []  # an admin token is not listed or revoked as a tag key
    with inst.operational.session() as s:
        info = tokens.lookup_token(session=s, token=admin)
        assert info is not None and info.admin
        admin_id = info.id
    assert c.delete(f"/v1/admin/tag-api-keys/{admin_id}", headers=ADMIN).status_code == 404
    with pytest.raises(ValueError, match="at least one scope"), inst.operational.session() as s:
        tokens.create_token(session=s, name="none", now=datetime.now(UTC), scopes=[])
