"""The tiers API (``/v1/admin/loyalty/tiers``) in-process and ``tessera tier …`` through the CLI, on a
small brand whose members came in through the real collection path."""

from __future__ import annotations

import base64
import gzip
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert
from typer.testing import CliRunner

from tessera.api.app import create_app
from tessera.clock import FrozenClock
from tessera.runtime import Instance
from tessera.settings import load_settings
from tessera.stores.models import LoyaltyOrderRow
from tests.conftest import make_source
from tests.loyalty.test_tiers import programme

TOKEN = "tier-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
BASE = "/v1/admin/loyalty/tiers"
START = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)
PEOPLE = {"u1": "+8613800000001", "u2": "+8613800000002", "u3": "+8613800000003"}


@dataclass
class Api:
    client: TestClient
    inst: Instance
    clock: FrozenClock
    pids: dict[str, str]

    def call(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        r = self.client.request(method, path, headers=AUTH, **kw)
        assert r.status_code == status, r.text
        return r.json()

    def order(self, user: str, yuan: int, at: datetime) -> None:
        with self.inst.operational.session() as s:
            s.execute(insert(LoyaltyOrderRow), [{
                "order_id": uuid.uuid4().hex, "profile_id": self.pids[user], "amount": yuan * 100, "currency": "CNY",
                "channel": "app", "ordered_at": at, "coupon_code": None, "points": 0, "status": "completed",
                "source": "event", "message_id": None, "created_at": at}])  # fmt: skip


def settings(data: Path) -> Any:
    return load_settings(data=data, journeys={"worker": False}, loyalty={"worker": False})


def with_members(client: TestClient, inst: Instance, write_key: str) -> dict[str, str]:
    """Identify the people through ``/v1/batch``; their profile ids."""
    batch = [{"type": "identify", "userId": u, "traits": {"phone": phone, "name": f"会员{u}"},
              "messageId": str(uuid.uuid4()), "timestamp": START.isoformat()} for u, phone in PEOPLE.items()]  # fmt: skip
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    r = client.post("/v1/batch", content=gzip.compress(orjson.dumps({"batch": batch})),
                    headers={"Authorization": f"Basic {auth}", "Content-Encoding": "gzip",
                             "Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 200, r.text
    assert client.post("/v1/admin/flush", headers=AUTH).status_code == 200
    rows = inst.analytic.cursor().execute(
        "SELECT i.id_value, p.profile_id FROM profile_identifiers i JOIN profiles p USING (profile_idx) "
        "WHERE i.id_type = 'user_id'").fetchall()  # fmt: skip
    return dict(rows)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    data = tmp_path_factory.mktemp("tiers-api") / "data"
    data.mkdir()
    write_key = make_source(data)
    clock = FrozenClock(START)
    inst = Instance(data, settings=settings(data), clock=clock)
    with TestClient(create_app(inst, local_token=TOKEN)) as client:
        yield Api(client, inst, clock, with_members(client, inst, write_key))
    inst.close()


def test_programme_levels_members_and_review(api: Api) -> None:
    assert api.call("GET", f"{BASE}/program") == {"version": 0, "updated_at": None, "program": None}
    assert api.call("GET", BASE)["levels"] == []
    api.call("POST", f"{BASE}/review")  # nothing to review: fine
    bad = programme()
    bad["levels"][2]["threshold"] = 500
    bad["levels"][3]["benefits"]["points_multiplier"] = "0.5"
    got = api.call("PUT", f"{BASE}/program", 422, json={"program": bad})
    assert (got["error"], got["reason"]) == ("loyalty_refused", "invalid")
    assert [p["field"] for p in got["problems"]] == ["program.levels[3].benefits.points_multiplier"]
    bad["levels"][3]["benefits"]["points_multiplier"] = "2"  # fields valid: the level checks run
    got = api.call("PUT", f"{BASE}/program", 422, json={"program": bad})
    problems = {p["field"]: p["message"] for p in got["problems"]}
    assert problems["program.levels[2].keep"] == "keep 4000 must not exceed threshold 500"
    assert problems["program.levels[2].threshold"].startswith("thresholds rise strictly")
    assert api.call("PUT", f"{BASE}/program", 422, json={"program": programme(), "x": 1})["field"] == "x"

    saved = api.call("PUT", f"{BASE}/program", json={"program": programme()})
    assert saved["version"] == 1 and saved["moved"] == 0
    assert saved["program"]["levels"][2]["name"] == "金卡"
    assert api.call("GET", f"{BASE}/program")["version"] == 1

    api.order("u1", 6000, START - timedelta(days=1))
    api.order("u2", 1500, START - timedelta(days=1))
    assert api.call("POST", f"{BASE}/review") == {"evaluated": 2, "up": 2, "down": 0, "unchanged": 0, "placed": 0,
                                                  "skipped": 0}  # fmt: skip
    levels = api.call("GET", BASE)
    assert [(lv["key"], lv["members"]) for lv in levels["levels"]] == [("member", 0), ("silver", 1), ("gold", 1),
                                                                       ("black", 0)]  # fmt: skip
    assert levels["levels"][2]["threshold"] == 500_000 and levels["levels"][2]["threshold_text"] == "¥5,000.00"

    u1 = api.call("GET", f"{BASE}/members/phone:{PEOPLE['u1']}")  # a member by identifier
    assert (u1["profile_id"], u1["tier"], u1["name"], u1["metric"]) == (api.pids["u1"], "gold", "金卡", 600_000)
    assert u1["progress"]["next_tier"] == "black" and u1["progress"]["missing_text"] == "¥14,000.00"
    assert u1["history"][0]["reason"].startswith("近365天消费 ¥6,000.00 ≥ 金卡")
    u3 = api.call("GET", f"{BASE}/members/user_id:u3")
    assert (u3["tier"], u3["since"], u3["history"]) == ("member", None, [])
    nobody = api.call("GET", f"{BASE}/members/user_id:nobody", 404)
    assert (nobody["field"], nobody["reason"]) == ("member", "unknown_member")


def test_manual_set_and_removing_a_level(api: Api) -> None:
    if api.call("GET", f"{BASE}/program")["version"] == 0:
        api.call("PUT", f"{BASE}/program", json={"program": programme()})
    path = f"{BASE}/members/{api.pids['u3']}"
    body = {"tier": "gold", "reason": "门店大客户 / key account", "key": "m-1"}
    got = api.call("POST", path, json=body)
    assert (got["change"]["from_tier"], got["change"]["to_tier"], got["change"]["direction"]) == (
        "member",
        "gold",
        "up",
    )
    assert got["change"]["reason"] == "manual: 门店大客户 / key account" and got["tier"]["tier"] == "gold"
    again = api.call("POST", path, json=body)
    assert again["replayed"] and again["change"] == got["change"]
    assert api.call("POST", path, 422, json={**body, "tier": "vip", "key": "m-2"})["field"] == "tier"
    assert api.call("POST", path, 422, json={"tier": "gold", "key": "m-3"})["field"] == "reason"

    no_gold = programme()
    no_gold["levels"] = [lv for lv in no_gold["levels"] if lv["key"] != "gold"]
    refused = api.call("PUT", f"{BASE}/program", 409, json={"program": no_gold})
    assert refused["field"] == "program.levels" and "remap" in refused["message"]
    moved = api.call("PUT", f"{BASE}/program", json={"program": no_gold, "remap": {"gold": "silver"}})
    assert moved["moved"] >= 1
    assert api.call("GET", path)["tier"] == "silver"
    assert api.call("PUT", f"{BASE}/program", json={"program": programme()})["moved"] == 0


def test_openapi_names_the_refusals(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    for path, method in ((f"{BASE}/program", "put"), (f"{BASE}/members/{{member}}", "post"),
                         (f"{BASE}/members/{{member}}", "get")):  # fmt: skip
        op = doc["paths"][path][method]
        assert {"404", "409", "422"} <= set(op["responses"]), path
        assert op["responses"]["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/RefusalOut")
    assert "200" in doc["paths"][BASE]["get"]["responses"]


def test_the_command_line(tmp_path: Path) -> None:
    from tessera.cli.main import app as cli_app

    data = tmp_path / "data"
    data.mkdir()
    write_key = make_source(data)
    inst = Instance(data, settings=settings(data))
    with TestClient(create_app(inst, local_token=TOKEN)) as client:
        pids = with_members(client, inst, write_key)
    inst.close()
    runner = CliRunner()
    d = ["--data-dir", str(data)]

    def cli(*args: str, code: int = 0) -> str:
        got = runner.invoke(cli_app, [*args, *d])
        assert got.exit_code == code, got.output
        return got.output if "--json" in args else " ".join(got.output.split())

    bad = programme()
    bad["levels"][1]["keep"] = 5000
    (tmp_path / "bad.json").write_text(json.dumps(bad, ensure_ascii=False), encoding="utf-8")
    assert "program.levels[1].keep: keep 5000 must not exceed threshold 1000" in cli(
        "tier", "program", "set", str(tmp_path / "bad.json"), code=2
    )
    (tmp_path / "tiers.json").write_text(json.dumps(programme(), ensure_ascii=False), encoding="utf-8")
    assert "version 1 saved" in cli("tier", "program", "set", str(tmp_path / "tiers.json"))
    assert json.loads(cli("tier", "program", "show"))["program"]["levels"][3]["name"] == "黑钻"
    out = cli("tier", "set", "user_id:u1", "black", "--reason", "VIP", "--key", "k1")
    assert "普通会员 → 黑钻 (up)" in out
    assert "replayed" in cli("tier", "set", "user_id:u1", "black", "--reason", "VIP", "--key", "k1")
    assert "tier: no level 'vip'" in cli("tier", "set", "user_id:u1", "vip", "--reason", "x", code=2)
    assert "member: no profile" in cli("tier", "set", "user_id:nobody", "gold", "--reason", "x", code=2)
    shown = cli("tier", "show", "user_id:u1")
    assert f"{pids['u1']}: 黑钻 Black Diamond" in shown and "manual: VIP" in shown
    assert json.loads(cli("tier", "show", "user_id:u1", "--json"))["tier"] == "black"
    listed = cli("tier", "list")
    assert "黑钻" in listed and "¥20,000.00" in listed
    review = json.loads(cli("tier", "review", "--json"))
    # a manual level stands until a review finds the member below its keep (no minimum stay here)
    assert (review["evaluated"], review["down"]) == (1, 1)
    assert json.loads(cli("tier", "show", "user_id:u1", "--json"))["tier"] == "gold"
    (tmp_path / "small.json").write_text(json.dumps({"program": programme(levels=programme()["levels"][:2])}))
    assert "level gold is held by 1 members" in cli("tier", "program", "set", str(tmp_path / "small.json"), code=2)
    assert "1 members moved" in cli("tier", "program", "set", str(tmp_path / "small.json"), "--remap", "gold=silver")
    assert "--remap: give OLD=NEW" in cli(
        "tier", "program", "set", str(tmp_path / "small.json"), "--remap", "x", code=2
    )
