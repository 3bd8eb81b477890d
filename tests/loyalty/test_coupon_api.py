"""The coupons API through the real app on a copy of the demo brand: templates, issuing to a member
(by phone), to an audience and from a CSV file, redemption checks with their reasons, replays,
voiding, expiry, reports and the OpenAPI document."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from tessera.api.app import create_app
from tessera.clock import FrozenClock
from tessera.runtime import Instance
from tessera.services import coupon_issue
from tessera.settings import load_settings
from tessera.stores.models import CouponRow

TOKEN = "coupon-tests"
BASE = "/v1/admin/loyalty"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Api:
    client: TestClient
    inst: Instance
    clock: FrozenClock

    def call(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        r = self.client.request(method, BASE + path, headers={**AUTH, **kw.pop("headers", {})}, **kw)
        assert r.status_code == status, r.text
        return r.json()

    def refused(self, method: str, path: str, status: int, reason: str, **kw: Any) -> dict[str, Any]:
        body: dict[str, Any] = self.call(method, path, status, **kw)
        assert (body["success"], body["reason"]) == (False, reason), body
        assert body["field"] and " / " in body["message"]
        return body


@pytest.fixture(scope="module")
def api(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("coupons-api") / "data"
    shutil.copytree(demo_dir, root)
    clock = FrozenClock(datetime.now(UTC).replace(microsecond=0))
    inst = Instance(root, settings=load_settings(journeys={"worker": False}), clock=clock)
    with TestClient(create_app(inst, local_token=TOKEN)) as client:
        yield Api(client, inst, clock)
    inst.close()


def phones(api: Api, n: int) -> list[tuple[str, str]]:
    """(phone identifier, profile id) of ``n`` demo members."""
    rows = api.inst.analytic.cursor().execute(
        "SELECT 'phone:' || i.id_value, p.profile_id FROM profile_identifiers i JOIN profiles p USING (profile_idx) "
        "WHERE i.id_type = 'phone' ORDER BY p.profile_id LIMIT ?", [n]).fetchall()  # fmt: skip
    return [(str(a), str(b)) for a, b in rows]


def template(**kw: Any) -> dict[str, Any]:
    return {"key": "bday-api", "name": "生日券", "name_en": "Birthday coupon", "kind": "threshold", "amount": "30",
            "threshold": 300, "valid_days": 30, "channels": ["app", "tmall"], "code_prefix": "BDAY-",
            "campaign": "birthday-2026", **kw}  # fmt: skip


def test_templates_lifecycle(api: Api) -> None:
    bad = api.refused("POST", "/coupon-templates", 422, "invalid", json=template(key="bad-1", kind="percent"))
    assert bad["field"] == "amount"  # a percent coupon takes no amount
    made = api.call("POST", "/coupon-templates", 201, json=template(key="tpl-life", stock=100))
    assert (made["issued"], made["remaining"], made["threshold"]) == (0, 100, "300")
    api.refused("POST", "/coupon-templates", 409, "invalid", json=template(key="tpl-life"))
    assert "tpl-life" in [t["key"] for t in api.call("GET", "/coupon-templates?campaign=birthday-2026")]
    patched = api.call("PATCH", "/coupon-templates/tpl-life", json={"name": "生日礼券", "stock": 50})
    assert (patched["name"], patched["remaining"]) == ("生日礼券", 50)
    assert api.call("POST", "/coupon-templates/tpl-life/status", json={"status": "paused"})["status"] == "paused"
    assert api.call("GET", "/coupon-templates?status=paused")[0]["key"] == "tpl-life"
    (member, _pid), = phones(api, 1)  # fmt: skip
    api.refused("POST", "/coupon-templates/tpl-life/issue", 409, "inactive", json={"member": member, "key": "x"})
    api.refused("GET", "/coupon-templates/nope", 404, "unknown_template")
    api.refused("POST", "/coupon-templates/nope/issue", 404, "unknown_template", json={"member": member, "key": "x"})


def test_issue_to_a_member_then_redeem_with_every_check(api: Api) -> None:
    api.call("POST", "/coupon-templates", 201, json=template())
    (member, pid), (other, _other_pid) = phones(api, 2)
    first = api.call("POST", "/coupon-templates/bday-api/issue", json={"member": member, "key": "bday:2026:" + pid})
    coupon = first["coupon"]
    assert (first["replayed"], coupon["profile_id"], coupon["status"], coupon["usable"]) == (False, pid, "issued", True)
    assert coupon["code"].startswith("BDAY-") and coupon["summary"].startswith("满300减30")
    again = api.call("POST", "/coupon-templates/bday-api/issue", json={"member": pid, "key": "bday:2026:" + pid})
    assert (again["replayed"], again["coupon"]["code"]) == (True, coupon["code"])
    api.refused("POST", "/coupon-templates/bday-api/issue", 409, "limit_reached", json={"member": pid, "key": "k2"})
    api.refused("POST", "/coupon-templates/bday-api/issue", 404, "unknown_member",
                json={"member": "phone:+8613000000000", "key": "k3"})  # fmt: skip

    code = coupon["code"]
    order = {"member": member, "order_id": "SO-1", "amount": "320.00", "channel": "App"}
    api.refused("POST", f"/coupons/{code}/redeem", 422, "not_owner", json={**order, "member": other})
    api.refused("POST", f"/coupons/{code}/redeem", 422, "wrong_channel", json={**order, "channel": "jd"})
    api.refused("POST", f"/coupons/{code}/redeem", 422, "threshold_not_met", json={**order, "amount": "299.99"})
    api.refused("POST", f"/coupons/{code}/redeem", 422, "currency_mismatch", json={**order, "currency": "USD"})
    api.refused("POST", "/coupons/BDAY-NOTACODE/redeem", 404, "not_found", json=order)
    assert api.call("GET", f"/coupons/{code}")["status"] == "issued"  # refusals wrote nothing
    used = api.call("POST", f"/coupons/{code.lower()}/redeem", json=order)
    assert (used["status"], used["discount"], used["order_amount"], used["usable"]) == (
        "redeemed",
        "30.00",
        "320.00",
        False,
    )
    assert api.call("POST", f"/coupons/{code}/redeem", json=order) == used  # the same order: the same answer
    api.refused("POST", f"/coupons/{code}/redeem", 409, "already_redeemed", json={**order, "order_id": "SO-2"})
    api.refused("POST", f"/coupons/{code}/void", 409, "already_redeemed")
    mine = api.call("GET", "/coupons", params={"member": member, "template": "bday-api"})
    assert [c["code"] for c in mine] == [code]


def test_issue_to_an_audience_once_per_member_within_the_stock(api: Api) -> None:
    audiences = api.client.get("/v1/admin/audiences", headers=AUTH).json()
    aud = next(a for a in audiences if a["kind"] == "static")
    members = coupon_issue.audience_profiles(api.inst, aud["id"])
    assert len(members) > 20
    api.call("POST", "/coupon-templates", 201, json=template(key="aud", kind="shipping", amount=None, threshold=None,
                                                             channels=[], stock=len(members) - 7))  # fmt: skip
    body = {"audience_id": aud["id"], "key": "spring-shipping"}
    got = api.call("POST", "/coupon-templates/aud/issue-audience", json=body)
    assert (got["requested"], got["issued"], got["replayed"]) == (len(members), len(members) - 7, 0)
    assert got["refused"] == {"out_of_stock": 7}
    again = api.call("POST", "/coupon-templates/aud/issue-audience", json=body)
    assert (again["issued"], again["replayed"], again["refused"]) == (0, len(members) - 7, {"out_of_stock": 7})
    with api.inst.operational.session() as s:
        held = s.execute(select(CouponRow.profile_id, func.count()).where(CouponRow.template == "aud")
                         .group_by(CouponRow.profile_id)).all()  # fmt: skip
    assert len(held) == len(members) - 7 and {n for _p, n in held} == {1} and {p for p, _n in held} <= set(members)
    assert api.call("GET", "/coupon-templates/aud")["remaining"] == 0
    api.refused("POST", "/coupon-templates/aud/issue-audience", 404, "not_found",
                json={"audience_id": "nope", "key": "x"})  # fmt: skip


def test_issue_from_a_csv_file_names_every_bad_row(api: Api) -> None:
    api.call("POST", "/coupon-templates", 201, json=template(key="file", kind="fixed", amount="5", threshold=None))
    (m1, p1), (_m2, p2) = phones(api, 2)
    csv = f"member,note\n{m1},vip\n{p2},\nphone:+8613000000000,gone\n\nemail:not-an-email,x\n{p1},dup\n"
    got = api.call("POST", "/coupon-templates/file/issue-file?key=f1", content=csv.encode(),
                   headers={"content-type": "text/csv"})  # fmt: skip
    assert (got["rows"], got["requested"], got["issued"]) == (6, 2, 2)
    assert [(p["line"], p["reason"]) for p in got["problems"]] == [(4, "unknown_member"), (6, "invalid")]
    upload = api.call("POST", "/coupon-templates/file/issue-file?key=f1",
                      files={"file": ("list.csv", f"member\n{p1}\n".encode(), "text/csv")})  # fmt: skip
    assert (upload["issued"], upload["replayed"]) == (0, 1)
    api.refused("POST", "/coupon-templates/file/issue-file?key=f2", 422, "invalid", content=b"phone\n1\n",
                headers={"content-type": "text/csv"})  # fmt: skip


def test_void_expire_and_report(api: Api) -> None:
    api.call("POST", "/coupon-templates", 201, json=template(key="short", kind="percent", percent="12.5", cap="40",
                                                             amount=None, threshold=None, valid_days=2, per_person=3,
                                                             channels=[], campaign="flash"))  # fmt: skip
    (member, _pid), = phones(api, 1)  # fmt: skip
    codes = [api.call("POST", "/coupon-templates/short/issue", json={"member": member, "key": f"s{i}"})["coupon"]["code"]
             for i in range(3)]  # fmt: skip
    assert api.call("POST", f"/coupons/{codes[0]}/void")["status"] == "void"
    used = api.call("POST", f"/coupons/{codes[1]}/redeem", json={"member": member, "order_id": "F-1", "amount": 100})
    assert used["discount"] == "12.50"
    api.clock.advance(timedelta(days=2))
    assert api.call("POST", "/coupons/expire") == {"expired": 1}
    api.refused("POST", f"/coupons/{codes[2]}/redeem", 409, "expired", json={"member": member, "order_id": "F-2",
                                                                              "amount": 100})  # fmt: skip
    rep = api.call("GET", "/coupon-reports", params={"campaign": "flash"})
    line = rep["templates"][0]
    assert {k: line[k] for k in ("template", "issued", "redeemed", "expired", "void", "open", "discount", "gmv")} == {
        "template": "short", "issued": 3, "redeemed": 1, "expired": 1, "void": 1, "open": 0, "discount": "12.50",
        "gmv": "100.00"}  # fmt: skip
    assert rep["campaigns"][0]["campaign"] == "flash" and rep["campaigns"][0]["redemption_rate"] == pytest.approx(
        0.3333
    )


def test_every_route_documents_its_refusals(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    ours = {p: ops for p, ops in paths.items() if p.startswith(BASE + "/coupon")}
    assert len(ours) == 12
    for ops in ours.values():
        for op in ops.values():
            assert {"404", "409", "422"} <= set(op["responses"]), op["summary"]
    create = paths[BASE + "/coupon-templates"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert "kind" in create["properties"]
