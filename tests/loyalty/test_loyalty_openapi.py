"""The loyalty API's OpenAPI document is complete enough to generate a console from: every route
answers a described schema, and every route that can refuse lists its refusals with the reason."""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient

from tessera.api.app import create_app
from tessera.runtime import Instance
from tessera.settings import load_settings


def test_every_loyalty_route_has_a_response_schema_and_its_refusals(tmp_path: Path) -> None:
    inst = Instance(tmp_path / "data", settings=load_settings(data=tmp_path / "data"))
    try:
        doc = TestClient(create_app(inst)).get("/openapi.json").json()
    finally:
        inst.close()
    ops = [(path, method, op) for path, item in doc["paths"].items() if path.startswith("/v1/admin/loyalty")
           for method, op in item.items()]  # fmt: skip
    assert len(ops) >= 33  # coupons, points, tiers, orders, members, run
    for path, method, op in ops:
        success = op["responses"].get("200") or op["responses"].get("201") or {}
        assert success.get("content", {}).get("application/json", {}).get("schema"), f"{method.upper()} {path}"
        if "requestBody" in op or "{" in path:  # it takes input, so it can refuse
            assert "422" in op["responses"] or "404" in op["responses"], f"{method.upper()} {path}: refusals"
    refusal = doc["components"]["schemas"]["RefusalOut"]["properties"]
    assert {"field", "message", "reason", "problems"} <= set(refusal)
    tags = {t for _p, _m, op in ops for t in op.get("tags", [])}
    assert tags == {"loyalty"}
