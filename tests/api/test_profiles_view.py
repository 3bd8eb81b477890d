"""The 360° view through a real server: a person sends with the Segment client, then is looked up by any identifier."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from segment.analytics.client import Client as SegmentClient
from typer.testing import CliRunner

from tessera.cli.main import app
from tests.conftest import ServerProcess, make_source

pytestmark = pytest.mark.slow
runner = CliRunner()


def cli(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


def _send_two_people(write_key: str, url: str) -> None:
    """王小明 browses anonymously, then identifies with user id u1 and his phone; 李雷 only identifies."""
    client = SegmentClient(write_key, host=url, sync_mode=True, max_retries=0)
    client.page(
        anonymous_id="anon-1", category="商品", name="冲锋衣详情页", properties={"url": "https://shop.example.cn/p/1"}
    )
    client.track(anonymous_id="anon-1", event="Product Viewed", properties={"product_id": "SKU-001", "price": 899.0})
    client.identify("u1", {"name": "王小明", "phone": "138 0013 8000", "email": "Wang@Example.CN"},
                    anonymous_id="anon-1")  # fmt: skip
    client.track("u1", "Product Added", {"product_id": "SKU-001"}, anonymous_id="anon-1")
    client.track("u1", "Order Completed", {"order_id": "O-1", "revenue": 899.0, "currency": "CNY"})
    client.identify("u2", {"name": "李雷", "phone": "+86 139 1234 5678"})


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data_dir = tmp_path_factory.mktemp("profiles") / "tessera-data"
    data_dir.mkdir()
    key = make_source(data_dir)
    server = ServerProcess(data_dir).start()
    try:
        _send_two_people(key, server.url)
        server.flush()
        yield server
    finally:
        assert server.stop() == 0


def _get(server: ServerProcess, path: str, **params: Any) -> httpx.Response:
    return server.admin("GET", "/v1/admin/profiles" + path, params=params)


def test_one_person_found_by_phone_user_id_and_anonymous_id(seeded: ServerProcess) -> None:
    by_phone = _get(seeded, "/lookup", identifier="phone:138 0013 8000")
    assert by_phone.status_code == 200, by_phone.text
    view = by_phone.json()
    for identifier in ("user_id:u1", "anonymous_id:anon-1", "phone:+8613800138000", "email:wang@example.cn"):
        r = _get(seeded, "/lookup", identifier=identifier)
        assert r.status_code == 200, r.text
        assert r.json()["profile"]["profile_id"] == view["profile"]["profile_id"]
    ids = {(i["type"], i["value"]) for i in view["identities"]}
    assert {("user_id", "u1"), ("phone", "+8613800138000"), ("anonymous_id", "anon-1")} <= ids
    assert all(i["source"] == "官方App" and i["first_seen"] for i in view["identities"])
    events = view["timeline"]["events"]
    # every message of the person, newest first, whichever identifier it carried
    assert [e["event"] for e in events] == ["Order Completed", "Product Added", None, "Product Viewed", "冲锋衣详情页"]
    assert all(e["source"] == "官方App" for e in events)
    assert view["attributes"]["traits"]["name"] == "王小明" and view["attributes"]["event_count"] == 5
    assert view["consents"] == [] and view["tags"] == [] and view["audiences"] == []
    assert isinstance(view["orders"], list) and isinstance(view["merge_history"], list)
    other = _get(seeded, "/lookup", identifier="user_id:u2").json()
    assert other["profile"]["profile_id"] != view["profile"]["profile_id"]


def test_by_profile_id_and_timeline_pages(seeded: ServerProcess) -> None:
    pid = _get(seeded, "/lookup", identifier="user_id:u1").json()["profile"]["profile_id"]
    r = _get(seeded, f"/{pid}", timeline_limit=2)
    assert r.status_code == 200 and r.json()["profile"]["profile_id"] == pid
    assert len(r.json()["timeline"]["events"]) == 2 and r.json()["timeline"]["next_before"]
    seen: list[str] = []
    before = None
    while True:
        page = _get(seeded, f"/{pid}/events", limit=2, **({"before": before} if before else {}))
        assert page.status_code == 200, page.text
        seen += [e["message_id"] for e in page.json()["events"]]
        before = page.json()["next_before"]
        if before is None:
            break
    assert len(seen) == len(set(seen)) == 5
    r = seeded.admin("GET", f"/v1/admin/profiles/{pid}/events",
                     params=[("event", "Product Viewed"), ("event", "Product Added")])  # fmt: skip
    assert [e["event"] for e in r.json()["events"]] == ["Product Added", "Product Viewed"]


def test_search_is_not_taken_for_a_profile_id(seeded: ServerProcess) -> None:
    r = _get(seeded, "/search", q="0013")
    assert r.status_code == 200, r.text
    assert [h["phones"] for h in r.json()] == [["+8613800138000"]] and r.json()[0]["matched"] == ["phone"]
    # names come from customer records and the stored attributes (identify traits, after a refresh)
    r = seeded.admin("POST", "/v1/admin/profiles/refresh")
    assert r.status_code == 200 and r.json() == {"refreshed": 2}
    assert [(h["name"], h["matched"]) for h in _get(seeded, "/search", q="李雷").json()] == [("李雷", ["name"])]
    assert [h["emails"] for h in _get(seeded, "/search", q="王小明").json()] == [["wang@example.cn"]]
    r = _get(seeded, "/search", q="x")
    assert r.status_code == 400 and r.json()["field"] == "q"


def test_errors_are_uniform_and_name_the_field(seeded: ServerProcess) -> None:
    for path, params in (("/lookup", {"identifier": "user_id:nobody"}), ("/p_nobody", {}), ("/p_nobody/events", {})):
        r = _get(seeded, path, **params)
        assert r.status_code == 404, r.text
        assert r.json()["error"] == "not_found" and r.json()["success"] is False and r.json()["message"]
    assert "phone:+8613900000000" in _get(seeded, "/lookup", identifier="phone:139 0000 0000").json()["message"]
    for params, field in (({"identifier": "13800138000"}, "identifier"), ({"identifier": "phone:abc"}, "identifier"),
                          ({"identifier": "email:test@test.com"}, "identifier")):  # fmt: skip
        r = _get(seeded, "/lookup", **params)
        assert r.status_code == 400 and r.json()["field"] == field and r.json()["error"] == "invalid_request", r.text
    pid = _get(seeded, "/lookup", identifier="user_id:u1").json()["profile"]["profile_id"]
    r = _get(seeded, f"/{pid}/events", before="not-a-cursor")
    assert r.status_code == 400 and r.json()["field"] == "before"
    r = _get(seeded, f"/{pid}/events", limit=0)
    assert r.status_code == 422 and r.json()["field"] == "query.limit"
    r = _get(seeded, "/lookup")
    assert r.status_code == 422 and r.json()["field"] == "query.identifier"
    r = httpx.get(seeded.url + "/v1/admin/profiles/search", params={"q": "0013"})
    assert r.status_code == 401


def test_cli_through_the_running_server(seeded: ServerProcess) -> None:
    d = str(seeded.data_dir)
    code, out = cli("profile", "show", "--identifier", "phone:13800138000", "--json", "--data-dir", d)
    assert code == 0, out
    view = json.loads(out)
    assert (
        view["profile"]["profile_id"]
        == _get(seeded, "/lookup", identifier="user_id:u1").json()["profile"]["profile_id"]
    )
    code, out = cli("profile", "show", "--id", view["profile"]["profile_id"], "--events", "2", "--data-dir", d)
    assert code == 0 and "王小明" in out and "+8613800138000" in out and "Completed" in out, out
    code, out = cli("profile", "show", "-i", "user_id:nobody", "--data-dir", d)
    assert code == 1 and "no profile" in out
    code, out = cli("profile", "show", "-i", "nonsense", "--data-dir", d)
    assert code == 2 and "TYPE:VALUE" in out
    code, out = cli("profile", "search", "0013", "--json", "--data-dir", d)
    assert code == 0 and json.loads(out)[0]["profile_id"] == view["profile"]["profile_id"]
    code, out = cli("profile", "refresh", "--data-dir", d)
    assert code == 0 and "2" in out, out


def test_cli_on_the_files_when_no_server_runs(data_dir: Path) -> None:
    key = make_source(data_dir)
    server = ServerProcess(data_dir).start()
    try:
        _send_two_people(key, server.url)
        server.flush()
    finally:
        assert server.stop() == 0
    d = str(data_dir)
    code, out = cli("profile", "show", "-i", "phone:+86 138-0013-8000", "--json", "--data-dir", d)
    assert code == 0, out
    assert json.loads(out)["attributes"]["traits"]["name"] == "王小明"
    code, out = cli("profile", "show", "-i", "user_id:u1", "--data-dir", d)
    assert code == 0 and "身份标识 Identities" in out and "行为时间线 Timeline" in out, out
    code, out = cli("profile", "show", "--data-dir", d)
    assert code == 2 and "--identifier" in out
    code, out = cli("profile", "show", "-i", "phone:12", "--data-dir", d)
    assert code == 2 and "phone" in out
    code, out = cli("profile", "search", "wang@", "--json", "--data-dir", d)
    assert code == 0 and json.loads(out)[0]["phones"] == ["+8613800138000"], out
    code, out = cli("profile", "search", "wang@", "--data-dir", d)
    assert code == 0 and "email" in out and "用户搜索" in out, out
    code, out = cli("profile", "search", "q", "--data-dir", d)
    assert code == 2 and "at least 2" in out
    code, out = cli("profile", "refresh", "--data-dir", d)
    assert code == 0 and "2" in out
