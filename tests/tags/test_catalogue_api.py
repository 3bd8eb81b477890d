"""The catalogue through the management API: answers and refusals naming the field."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tessera.api.app import create_app
from tessera.runtime import Instance

H = {"Authorization": "Bearer t"}


def test_catalogue_api(tmp_path: Path) -> None:
    with Instance(tmp_path / "data") as inst:
        c = TestClient(create_app(inst, local_token="t"))
        cats = c.get("/v1/admin/tag-categories", headers=H).json()
        assert cats[0] == {**cats[0], "key": "basic", "name": "基础信息", "name_en": "Basic info"}
        r = c.post("/v1/admin/tags", headers=H, json={"key": "lifecycle_stage", "name": "生命周期阶段", "name_en": "Lifecycle stage",
                   "category": "lifecycle", "kind": "model", "model": {"name": "lifecycle"}})  # fmt: skip
        assert r.status_code == 201, r.text
        assert r.json()["version"] == 1
        r = c.patch("/v1/admin/tags/lifecycle_stage", headers=H, json={"status": "active"})
        assert r.status_code == 200 and r.json()["version"] == 2
        assert [t["key"] for t in c.get("/v1/admin/tags", headers=H, params={"status": "active"}).json()] == [
            "lifecycle_stage"
        ]
        bad = c.post(
            "/v1/admin/tags",
            headers=H,
            json={"key": "x", "name": "x", "name_en": "x", "category": "basic", "value_type": "nope"},
        )
        assert bad.status_code == 422 and bad.json()["field"] == "value_type"
        assert c.get("/v1/admin/tags/nope", headers=H).status_code == 404
        r = c.delete("/v1/admin/tag-categories/lifecycle", headers=H)
        assert r.status_code == 409 and "lifecycle_stage" in r.json()["message"]
