"""The journeys and channels API in-process on a copy of the demo brand, driven by hand (no worker
thread): validation naming JSON paths, versions, lifecycle, a campaign through the real fake SMS
provider, receipts, unsubscribe links, channels, previews and the OpenAPI document."""

from __future__ import annotations

import copy
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from fastapi.testclient import TestClient

from tessera.api.app import create_app
from tessera.clock import FrozenClock
from tessera.runtime import Instance
from tessera.services.journey_dispatch import Dispatcher
from tessera.services.journey_worker import run_until_idle
from tessera.settings import load_settings
from tests.fakes.sms_provider import FakeSmsProvider

TOKEN = "journey-tests"
BASE = "/v1/admin/journeys"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DOCS = Path(__file__).resolve().parents[2] / "docs" / "journeys.md"


@dataclass
class Api:
    client: TestClient
    inst: Instance
    clock: FrozenClock
    sms: FakeSmsProvider

    def call(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        r = self.client.request(method, path, headers=AUTH, **kw)
        assert r.status_code == status, r.text
        return r.json() if r.content and r.headers.get("content-type", "").startswith("application/json") else r

    def run(self) -> None:
        """What the worker does, synchronously, at the clock's time."""
        dispatcher = Dispatcher(self.inst)
        try:
            run_until_idle(self.inst, dispatcher, now=self.clock.now())
        finally:
            dispatcher.close()


@pytest.fixture(scope="module")
def api(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("journeys-api") / "data"
    shutil.copytree(demo_dir, root)
    today = datetime.now(UTC).replace(hour=3, minute=0, second=0, microsecond=0)  # 11:00 in Shanghai: no quiet hours
    clock = FrozenClock(today)
    inst = Instance(root, settings=load_settings(journeys={"worker": False}), clock=clock)
    with FakeSmsProvider("sms-key") as sms, TestClient(create_app(inst, local_token=TOKEN)) as client:
        a = Api(client, inst, clock, sms)
        a.call("POST", "/v1/admin/channels", 201, json={"name": "sms_main", "kind": "sms",
                                                       "config": {"url": sms.url, "from": "YUANSHAN", "api_key": "sms-key"}})  # fmt: skip
        yield a
    inst.close()


def audience_id(api: Api, name: str) -> str:
    return next(a["id"] for a in api.call("GET", "/v1/admin/audiences") if a["name"] == name)


def entry_event(name: str = "Store Fitting Booked") -> dict[str, Any]:
    return {"id": "in", "type": "entry", "data": {"event": {"name": name}}}


def sms_node(node_id: str, zh: str, **data: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "sms", "data": {"template": {"body": {"zh": zh}}, **data}}


def problems(r: Any) -> dict[str, str]:
    body = r.json()
    assert body["success"] is False and body["field"] == body["problems"][0]["field"]
    return {p["field"]: p["message"] for p in body["problems"]}


# --- validation and versions -----------------------------------------------------------------------------


def test_validation_names_each_problem_by_json_path_and_stores_nothing(api: Api) -> None:
    before = api.call("GET", BASE)
    bad_template_and_audience = {
        "nodes": [{"id": "in", "type": "entry", "data": {"audience": {"audience_id": "aud_nope"}}},
                  sms_node("hello", "{{ profile.name 您好")],
        "edges": [{"source": "in", "target": "hello"}],
    }  # fmt: skip
    r = api.client.post(f"{BASE}/validate", headers=AUTH, json={"definition": bad_template_and_audience})
    assert r.status_code == 422
    got = problems(r)
    assert got["definition.nodes[0].data.audience.audience_id"] == "no audience 'aud_nope'"
    assert got["definition.nodes[1].data.template.body.zh"].startswith("line 1: ")
    missing_node = {"nodes": [entry_event(), sms_node("a", "hi")], "edges": [{"source": "in", "target": "b"}]}
    r = api.client.post(f"{BASE}/validate", headers=AUTH, json={"definition": missing_node})
    assert r.status_code == 422 and problems(r)["definition.edges[0].target"] == "no node 'b'"
    loop = {
        "nodes": [entry_event(), sms_node("a", "A"), sms_node("b", "B")],
        "edges": [{"source": "in", "target": "a"}, {"source": "a", "target": "b"}, {"source": "b", "target": "a"}],
    }
    r = api.client.post(f"{BASE}/validate", headers=AUTH, json={"definition": loop})
    assert r.status_code == 422 and "loops through a, b" in problems(r)["definition.edges"]
    no_channel = {
        "nodes": [entry_event(), sms_node("a", "A", channel="sms_nope")],
        "edges": [{"source": "in", "target": "a"}],
    }
    r = api.client.post(f"{BASE}/validate", headers=AUTH, json={"definition": no_channel})
    assert problems(r) == {"definition.nodes[1].data.channel": "no sms channel named 'sms_nope'"}
    # a draft with a bad graph is refused and nothing is stored
    for bad in (missing_node, loop):
        r = api.client.post(BASE, headers=AUTH, json={"name": "坏旅程", "definition": bad})
        assert r.status_code == 422 and r.json()["field"].startswith("definition.edges")
    assert api.call("GET", BASE) == before
    # a draft with a bad template is stored (only the graph is checked) but does not publish
    draft = api.call("POST", BASE, 201, json={"name": "模板有误", "definition": bad_template_and_audience})
    r = api.client.post(f"{BASE}/{draft['id']}/publish", headers=AUTH)
    assert r.status_code == 422 and "definition.nodes[1].data.template.body.zh" in problems(r)
    assert api.call("GET", f"{BASE}/{draft['id']}")["status"] == "draft"
    assert api.call("GET", f"{BASE}/{draft['id']}/versions") == []
    api.call("DELETE", f"{BASE}/{draft['id']}", 204)
    api.call("GET", f"{BASE}/{draft['id']}", 404)
    good = {
        "nodes": [entry_event(), sms_node("a", "{{ profile.name }}，欢迎")],
        "edges": [{"source": "in", "target": "a"}],
    }
    assert api.call("POST", f"{BASE}/validate", json={"definition": good}) == {"valid": True, "nodes": 2, "edges": 1}


def test_the_docs_example_journey_validates(api: Api) -> None:
    """The 4S test-drive journey of docs/journeys.md checks against real channels and tags."""
    text = DOCS.read_text(encoding="utf-8")
    example = json.loads(re.search(r"<!-- example -->\s*```json\n(.*?)```", text, re.S).group(1))  # type: ignore[union-attr]
    for name, kind, config in (
        ("callcenter", "webhook", {"url": "https://callcenter.example.com/hooks/tessera"}),
        ("dealer_mail", "email", {"host": "smtp.example.com", "from": "crm@example.com"}),
    ):
        api.call("POST", "/v1/admin/channels", 201, json={"name": name, "kind": kind, "config": config})
    got = api.call("POST", f"{BASE}/validate", json={"definition": example["definition"]})
    assert got["valid"] is True and got["nodes"] == len(example["definition"]["nodes"])
    made = api.call("POST", BASE, 201, json=example)
    assert api.call("POST", f"{BASE}/{made['id']}/publish")["version"] == 1
    api.call("POST", f"{BASE}/{made['id']}/end")
    api.call("DELETE", "/v1/admin/channels/callcenter", 204)
    # a real email channel is now the default of its kind, which the demo's journeys fall back to
    refused = api.call("DELETE", "/v1/admin/channels/dealer_mail", 409)
    assert "首单感谢与复购" in refused["message"]


def test_publishing_makes_versions_and_the_lifecycle_moves(api: Api) -> None:
    definition = {"nodes": [entry_event("Signed Up"), sms_node("welcome", "欢迎加入远山户外")],
                  "edges": [{"source": "in", "target": "welcome"}]}  # fmt: skip
    j = api.call("POST", BASE, 201, json={"name": "新会员欢迎", "name_en": "Welcome", "definition": definition})
    assert (j["status"], j["version"], j["kind"]) == ("draft", 0, "journey")
    jid = j["id"]
    assert api.call("POST", BASE, 409, json={"name": "新会员欢迎", "definition": definition})["field"] == "name"
    assert api.call("POST", f"{BASE}/{jid}/pause", 409)["field"] == "status"  # not published yet
    v1 = api.call("POST", f"{BASE}/{jid}/publish")
    assert (v1["status"], v1["version"]) == ("active", 1)
    edited = copy.deepcopy(definition)
    edited["nodes"][1]["data"]["template"]["body"] = {
        "zh": "欢迎，{{ profile.name }}",
        "en": "Welcome, {{ profile.name }}",
    }
    patched = api.call("PATCH", f"{BASE}/{jid}", json={"definition": edited})
    assert patched["version"] == 1 and patched["definition"]["nodes"][1]["data"]["template"]["body"]["en"]
    assert [v["version"] for v in api.call("GET", f"{BASE}/{jid}/versions")] == [1]  # editing publishes nothing
    assert api.call("POST", f"{BASE}/{jid}/publish")["version"] == 2
    vs = api.call("GET", f"{BASE}/{jid}/versions")
    assert [v["version"] for v in vs] == [1, 2]
    assert vs[0]["definition"]["nodes"][1]["data"]["template"]["body"] == {"zh": "欢迎加入远山户外"}
    assert vs[1]["definition"]["nodes"][1]["data"]["template"]["body"]["en"] == "Welcome, {{ profile.name }}"
    assert api.call("GET", f"{BASE}/{jid}/report", params={"version": 1})["scope"] == 1
    assert api.call("GET", f"{BASE}/{jid}/report", params={"version": 3}, status=404)["field"] == "version"
    assert api.call("POST", f"{BASE}/{jid}/pause")["status"] == "paused"
    assert [x["id"] for x in api.call("GET", BASE, params={"status": "paused"})] == [jid]
    assert api.call("POST", f"{BASE}/{jid}/resume")["status"] == "active"
    assert api.call("DELETE", f"{BASE}/{jid}", 409)["field"] == "status"  # published: ended, not deleted
    assert api.call("POST", f"{BASE}/{jid}/end")["status"] == "ended"
    assert api.call("POST", f"{BASE}/{jid}/publish", 409)["field"] == "status"
    assert api.call("PATCH", f"{BASE}/{jid}", 409, json={"name": "改名"})["field"] == "status"
    assert api.call("POST", f"{BASE}/{jid}/resume", 409)["field"] == "status"
    assert api.call("GET", f"{BASE}/jrn_nope", 404)["field"] == "journey"
    assert api.call("GET", BASE, 422, params={"status": "asleep"})["field"] == "query.status"


# --- a campaign through the fake SMS provider --------------------------------------------------------------


def reachable_by_sms(api: Api, aud: str) -> tuple[set[str], dict[str, int]]:
    """Independently of the journey code: members with a phone whose traits do not refuse SMS."""
    rows = (
        api.inst.analytic.cursor()
        .execute(
            """
        SELECT p.profile_id,
               coalesce(json_extract_string(coalesce(a.traits, p.traits), '$.phone'),
                        (SELECT min(i.id_value) FROM profile_identifiers i
                         WHERE i.profile_idx = m.profile_idx AND i.id_type = 'phone')) AS phone,
               json_extract_string(coalesce(a.traits, p.traits), '$.sms_opt_in') AS opt_in
        FROM audience_members_current m JOIN profiles p USING (profile_idx)
        LEFT JOIN profile_attributes a USING (profile_idx)
        WHERE m.audience_id = ?
        """,
            [aud],
        )
        .fetchall()
    )
    reachable = {pid for pid, phone, opt_in in rows if phone and opt_in != "false"}
    reasons = {"no_address": sum(1 for _, phone, _ in rows if not phone),
               "no_consent": sum(1 for _, phone, opt_in in rows if phone and opt_in == "false")}  # fmt: skip
    return reachable, {k: v for k, v in reasons.items() if v}


def test_dry_runs_forecast_per_day_without_sending(api: Api) -> None:
    aud = audience_id(api, "门店活动名单")
    reachable, reasons = reachable_by_sms(api, aud)
    definition = {"nodes": [{"id": "in", "type": "entry", "data": {"audience": {"audience_id": aud}}},
                            sms_node("send", "{{ profile.name }}您好")],
                  "edges": [{"source": "in", "target": "send"}]}  # fmt: skip
    sent_before = len(api.sms.messages)
    got = api.call("POST", f"{BASE}/dry-run", json={"definition": definition, "days": 3})
    assert [len(got["days"]), got["journey_id"]] == [4, None]  # 3 × 24 h from 11:00 local touch 4 local dates
    assert got["entered"] == got["days"][0]["entered"] == len(reachable) + sum(reasons.values())
    assert got["messages"] == {"sms": len(reachable)} == got["days"][0]["messages"]
    assert got["suppressed"] == reasons
    assert len(api.sms.messages) == sent_before  # nothing sent
    stored = api.call("POST", BASE, 201, json={"name": "试穿预约提醒", "definition": {
        "nodes": [entry_event(), {"id": "w", "type": "wait", "data": {"mode": "duration", "span": {"days": 1}}},
                  sms_node("remind", "明天见")],
        "edges": [{"source": "in", "target": "w"}, {"source": "w", "target": "remind"}]}})  # fmt: skip
    forecast = api.call("POST", f"{BASE}/{stored['id']}/dry-run", json={"days": 14})
    assert forecast["journey_id"] == stored["id"] and forecast["entry"]["kind"] == "event"
    assert (
        len(forecast["days"]) == 15
        and forecast["entered"] == forecast["entry"]["candidates"] - forecast["entry"]["skipped"]
    )
    assert api.call("POST", f"{BASE}/{stored['id']}/dry-run", 422, json={"days": 0})["field"] == "days"
    r = api.client.post(f"{BASE}/dry-run", headers=AUTH, json={"definition": {"nodes": [sms_node("a", "x")]}})
    assert r.status_code == 422 and r.json()["field"] == "definition.nodes"
    api.call("DELETE", f"{BASE}/{stored['id']}", 204)


def unsubscribe_link(text: str) -> tuple[Any, dict[str, str]]:
    link = urlsplit(re.search(r"(https?://\S+/v1/unsubscribe\?\S+)", text).group(1))  # type: ignore[union-attr]
    return link, {k: v[0] for k, v in parse_qs(link.query).items()}


def test_a_campaign_sends_through_the_provider_receipts_and_unsubscribe(api: Api) -> None:
    aud = audience_id(api, "门店活动名单")
    reachable, reasons = reachable_by_sms(api, aud)
    assert len(reachable) > 20 and reasons.get("no_consent")  # the demo has both kinds
    template = {"body": {"zh": "{{ profile.name }}您好，远山户外门店活动本周六开始。退订 {{ unsubscribe_url }}",
                         "en": "Hi {{ profile.name }}, our store event starts Saturday. Unsubscribe {{ unsubscribe_url }}"}}  # fmt: skip
    body = {"name": "门店活动通知", "audience_id": aud, "channel": "sms", "template": template}
    bad = api.client.post(f"{BASE}/campaigns", headers=AUTH, json={**body, "template": {"body": {"zh": "{% if %}"}}})
    assert bad.status_code == 422 and bad.json()["field"] == "definition.nodes[1].data.template.body.zh"
    assert not [j for j in api.call("GET", BASE, params={"kind": "campaign"}) if j["name"] == "门店活动通知"]
    c = api.call("POST", f"{BASE}/campaigns", 201, json=body)
    assert (c["kind"], c["status"], c["version"]) == ("campaign", "active", 1)
    already = len(api.sms.messages)
    api.run()
    got = api.sms.messages[already:]
    assert {m["to"] for m in got} and len(got) == len(reachable)
    assert all(m["from"] == "YUANSHAN" and "您好" in m["body"] and "/v1/unsubscribe?" in m["body"] for m in got)

    rep = api.call("GET", f"{BASE}/{c['id']}/report")
    send = next(n for n in rep["nodes"] if n["id"] == "send")["messages"]
    assert send["sent"] == len(got) and send["delivered"] == 0
    assert send["suppressed_by"] == reasons and send["suppressed"] == sum(reasons.values())
    assert rep["summary"]["entered"] == len(reachable) + sum(reasons.values())

    # delivery receipts on the public endpoint, checked by the channel's token
    url = "/v1/channels/sms_main/receipts"
    with api.inst.operational.session() as s:
        from tessera.stores.models import ChannelRow

        token = s.get(ChannelRow, "sms_main").receipt_token  # type: ignore[union-attr]
    receipts = [{"message_id": m["message_id"], "status": "delivered", "provider_id": m["provider_id"]} for m in got]
    r = api.client.post(url, params={"token": "wrong"}, json=receipts)
    assert r.status_code == 401 and r.json()["field"] == "token"
    r = api.client.post(url, params={"token": token}, json=[receipts[0], {"message_id": "x", "status": "maybe"}])
    assert r.status_code == 422 and r.json()["field"] == "body[1].status"
    r = api.client.post(url, params={"token": token}, json=[*receipts, {"message_id": "not-ours", "status": "delivered"},
                                                           {"message_id": got[0]["message_id"], "status": "sent"}])  # fmt: skip
    assert r.status_code == 200 and r.json() == {"applied": len(got), "unknown": 1, "ignored": 1}
    send = next(n for n in api.call("GET", f"{BASE}/{c['id']}/report")["nodes"] if n["id"] == "send")["messages"]
    assert send["delivered"] == len(got) == send["sent"]
    listed = api.call("GET", f"{BASE}/{c['id']}/messages", params={"status": "delivered", "limit": 1000})
    assert len(listed) == len(got) and all("****" in (m["address"] or "") for m in listed)
    assert api.call("GET", f"{BASE}/{c['id']}/messages", 422, params={"limit": 1001})["field"] == "query.limit"

    # the unsubscribe link in the message: a forged token is refused, the real one records the opt-out
    link, q = unsubscribe_link(got[0]["body"])
    assert q["c"] == "sms"
    forged = api.client.get("/v1/unsubscribe", params={**q, "t": "0" * 32})
    assert (
        forged.status_code == 403
        and "链接无效" in forged.text
        and forged.headers["content-type"].startswith("text/html")
    )
    other = unsubscribe_link(got[1]["body"])[1]["p"]
    stolen = api.client.get("/v1/unsubscribe", params={**q, "p": other})  # someone else's id with this token
    assert stolen.status_code == 403
    page = api.client.get(link.path, params=q)
    assert page.status_code == 200 and "已退订" in page.text and "You are unsubscribed" in page.text
    one_click = api.client.post("/v1/unsubscribe", params=q, data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200  # RFC 8058 POST: the same, again harmless

    # the next campaign to the same audience (the next day: caps are per day) suppresses that person
    api.clock.advance(timedelta(days=1))
    c2 = api.call("POST", f"{BASE}/campaigns", 201, json={**body, "name": "门店活动提醒", "channel_name": "sms_main"})
    before = len(api.sms.messages)
    api.run()
    assert len(api.sms.messages) - before == len(reachable) - 1
    assert q["p"] not in {unsubscribe_link(m["body"])[1]["p"] for m in api.sms.messages[before:]}
    suppressed = api.call("GET", f"{BASE}/{c2['id']}/messages", params={"status": "suppressed", "limit": 1000})
    assert [m["reason"] for m in suppressed if m["profile_id"] == q["p"]] == ["opted_out"]
    send2 = next(n for n in api.call("GET", f"{BASE}/{c2['id']}/report")["nodes"] if n["id"] == "send")["messages"]
    assert send2["suppressed_by"].get("opted_out") == 1

    # opting back in through the admin API
    back = api.call("DELETE", "/v1/admin/opt-outs", params={"profile_id": q["p"], "channel": "sms"})
    assert back == {"profile_id": q["p"], "channel": "sms", "opted_out": False, "changed": True}
    again = api.call("POST", "/v1/admin/opt-outs", json={"profile_id": q["p"], "channel": "sms"})
    assert again["changed"] is True
    assert api.call("POST", "/v1/admin/opt-outs", json={"profile_id": q["p"], "channel": "sms"})["changed"] is False
    assert (
        api.call("POST", "/v1/admin/opt-outs", 422, json={"profile_id": q["p"], "channel": "fax"})["field"] == "channel"
    )

    # a channel a live journey names cannot be deleted
    assert api.call("DELETE", "/v1/admin/channels/sms_main", 409)["field"] == "channel"


# --- channels ------------------------------------------------------------------------------------------------


def test_channels_show_the_secret_once_and_never_list_it(api: Api) -> None:
    made = api.call("POST", "/v1/admin/channels", 201, json={"name": "crm_hook", "kind": "webhook",
                                                             "config": {"url": "https://crm.example.com/in"}})  # fmt: skip
    assert made["secret"].startswith("whsec_") and made["receipt_token"] and made["receipt_url"] is None
    listed = api.call("GET", "/v1/admin/channels")
    assert {c["name"] for c in listed} >= {"crm_hook", "sms_main"}
    text = json.dumps(listed) + json.dumps(api.call("GET", "/v1/admin/channels/crm_hook"))
    assert made["secret"] not in text and made["receipt_token"] not in text and "secret" not in text
    sms = api.call("GET", "/v1/admin/channels/sms_main")
    assert sms["config"]["api_key"] == "***" and "/v1/channels/sms_main/receipts?token=" in sms["receipt_url"]
    r = api.client.post(
        "/v1/admin/channels", headers=AUTH, json={"name": "sms2", "kind": "sms", "config": {"from": "X"}}
    )
    assert r.status_code == 422 and r.json()["field"] == "config.url"
    r = api.client.post("/v1/admin/channels", headers=AUTH, json={"name": "x", "kind": "fax"})
    assert r.status_code == 422 and r.json()["field"] == "kind"
    assert api.call("POST", "/v1/admin/channels", 409, json={"name": "crm_hook", "kind": "log",
                                                             "config": {"path": "/tmp/x.jsonl"}})["field"] == "name"  # fmt: skip
    off = api.call("PATCH", "/v1/admin/channels/crm_hook", json={"disabled": True, "config": {"timeout": 5}})
    assert (
        off["disabled"] is True
        and off["config"]["timeout"] == 5
        and off["config"]["url"] == "https://crm.example.com/in"
    )
    assert (
        api.call("PATCH", "/v1/admin/channels/crm_hook", 422, json={"config": {"url": "ftp://x"}})["field"]
        == "config.url"
    )
    api.call("DELETE", "/v1/admin/channels/crm_hook", 204)
    assert api.call("GET", "/v1/admin/channels/crm_hook", 404)["field"] == "channel"
    assert api.client.get("/v1/admin/channels").status_code == 401  # admin token needed


# --- preview ---------------------------------------------------------------------------------------------------


def test_preview_renders_for_a_person_in_zh_and_en(api: Api) -> None:
    pid, phone, name = (
        api.inst.analytic.cursor()
        .execute(
            "SELECT p.profile_id, json_extract_string(a.traits, '$.phone'), json_extract_string(a.traits, '$.name') "
            "FROM profiles p JOIN profile_attributes a USING (profile_idx) "
            "WHERE json_extract_string(a.traits, '$.phone') IS NOT NULL AND json_extract_string(a.traits, '$.name') "
            "IS NOT NULL ORDER BY p.profile_id LIMIT 1"
        )
        .fetchall()[0]
    )
    template = {"subject": {"zh": "会员通知", "en": "Member news"},
                "body": {"zh": "{{ profile.name }}，您好！{{ profile.nickname }}", "en": "Hello {{ profile.name }}"}}  # fmt: skip
    zh = api.call("POST", f"{BASE}/preview", json={"template": template, "identifier": f"phone:{phone}"})
    assert zh["profile_id"] == pid and zh["locale"] == "zh" and zh["body"] == f"{name}，您好！"
    assert zh["missing"] == ["profile.nickname"] and zh["subject"] == "会员通知"
    assert zh["address"] and "****" in zh["address"] and zh["address"] != phone
    en = api.call("POST", f"{BASE}/preview", json={"template": template, "profile_id": pid, "locale": "en-US",
                                                   "kind": "email"})  # fmt: skip
    assert en["locale"] == "en" and en["body"] == f"Hello {name}" and en["subject"] == "Member news"
    r = api.client.post(f"{BASE}/preview", headers=AUTH, json={"template": {"body": {"zh": "{{ x"}}, "profile_id": pid})
    assert r.status_code == 422 and r.json()["field"] == "template.body.zh"
    r = api.client.post(f"{BASE}/preview", headers=AUTH, json={"template": template, "profile_id": "p_nobody"})
    assert r.status_code == 404 and r.json()["field"] == "profile_id"
    r = api.client.post(f"{BASE}/preview", headers=AUTH, json={"template": template})
    assert r.status_code == 422


def test_the_openapi_document_lists_the_new_paths(api: Api) -> None:
    doc = api.client.get("/openapi.json").json()
    paths = doc["paths"]
    for path, method in (
        (BASE, "post"), (BASE, "get"), (f"{BASE}/{{journey_id}}", "patch"), (f"{BASE}/{{journey_id}}/publish", "post"),
        (f"{BASE}/{{journey_id}}/pause", "post"), (f"{BASE}/{{journey_id}}/resume", "post"),
        (f"{BASE}/{{journey_id}}/end", "post"), (f"{BASE}/{{journey_id}}/versions", "get"),
        (f"{BASE}/{{journey_id}}/report", "get"), (f"{BASE}/{{journey_id}}/messages", "get"),
        (f"{BASE}/{{journey_id}}/dry-run", "post"), (f"{BASE}/dry-run", "post"), (f"{BASE}/validate", "post"),
        (f"{BASE}/campaigns", "post"), (f"{BASE}/preview", "post"), ("/v1/admin/channels", "post"),
        ("/v1/admin/channels/{name}", "patch"), ("/v1/admin/opt-outs", "delete"),
        ("/v1/channels/{name}/receipts", "post"), ("/v1/unsubscribe", "get"), ("/v1/unsubscribe", "post"),
    ):  # fmt: skip
        op = paths[path][method]
        assert op["summary"] and op["description"], (path, method)
        ok = op["responses"].get("200") or op["responses"].get("201") or op["responses"].get("204")
        assert ok is not None, (path, method)
    report = paths[f"{BASE}/{{journey_id}}/report"]["get"]["responses"]["200"]["content"]["application/json"]
    assert report["schema"]["$ref"].endswith("/JourneyReport")
    assert "ErrorOut" in doc["components"]["schemas"] and "IssuedChannel" in doc["components"]["schemas"]
