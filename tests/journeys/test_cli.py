"""`tessera journey …` and `tessera channel …` without a server (the API in-process) on a copy of the
demo brand; the campaign is carried out by hand through the real fake SMS provider."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tessera.cli.main import app
from tessera.runtime import Instance
from tessera.services.journey_dispatch import Dispatcher
from tessera.services.journey_worker import run_until_idle
from tests.fakes.sms_provider import FakeSmsProvider

runner = CliRunner()


@pytest.fixture
def data(demo_dir: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(demo_dir, root)
    return root


def write(path: Path, body: Any) -> Path:
    path.write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    return path


def test_journeys_and_channels_from_the_command_line(data: Path, tmp_path: Path) -> None:
    d = ["--data-dir", str(data)]

    def cli(*args: str, code: int = 0) -> str:
        got = runner.invoke(app, [*args, *d])
        assert got.exit_code == code, got.output
        return got.output if "--json" in args or args[1] == "show" else " ".join(got.output.split())  # unwrap Rich

    # a draft from a file, validated, published, paused, resumed
    definition = {
        "nodes": [{"id": "in", "type": "entry", "data": {"event": {"name": "Store Fitting Booked"}}},
                  {"id": "hi", "type": "sms", "data": {"template": {"body": {"zh": "{{ profile.name }}，期待您到店试穿"}}}}],
        "edges": [{"source": "in", "target": "hi"}],
    }  # fmt: skip
    good = write(
        tmp_path / "fitting.json", {"name": "试穿邀约", "name_en": "Fitting invitation", "definition": definition}
    )
    assert "valid 有效" in cli("journey", "validate", str(good))
    jid = json.loads(cli("journey", "create", str(good), "--json"))["id"]
    bad_definition = json.loads(json.dumps(definition))
    bad_definition["nodes"][0]["data"] = {"audience": {"audience_id": "aud_nope"}}
    bad_definition["nodes"][1]["data"]["template"]["body"]["zh"] = "{{ profile.name "
    bad = write(tmp_path / "bad.json", {"name": "x", "definition": bad_definition})
    out = cli("journey", "validate", str(bad), code=2)
    assert "definition.nodes[1].data.template.body.zh: line 1:" in out
    assert "definition.nodes[0].data.audience.audience_id: no audience 'aud_nope'" in out
    assert "FILE" in cli("journey", "validate", str(write(tmp_path / "nope.json", "[")), code=2)
    (tmp_path / "broken.json").write_text("{nope", encoding="utf-8")
    assert "is not JSON" in cli("journey", "create", str(tmp_path / "broken.json"), code=2)
    assert "definition.edges[0].target: no node 'b'" in cli(
        "journey", "create",
        str(write(tmp_path / "edge.json", {"name": "y", "definition": {**definition, "edges": [{"source": "in", "target": "b"}]}})),
        code=2,
    )  # fmt: skip
    spare = json.loads(cli("journey", "create", str(write(tmp_path / "spare.json", {"name": "备用", "definition": definition})),
                           "--json"))["id"]  # fmt: skip
    assert f"deleted 已删除 {spare}" in cli("journey", "delete", spare)
    assert "active" in cli("journey", "publish", jid)
    assert "版本 Versions" in cli("journey", "versions", jid)
    assert "published journey is ended" in cli("journey", "delete", jid, code=2)
    assert "paused" in cli("journey", "pause", jid)
    assert "active" in cli("journey", "resume", jid)
    assert jid in cli("journey", "list", "--status", "active")
    assert "jrn_nope" in cli("journey", "show", "jrn_nope", code=2)

    # channels: the secret and token are printed once, never listed
    with FakeSmsProvider("cli-key") as sms:
        out = cli("channel", "add", "sms_main", "--kind", "sms", "--config", f"url={sms.url}", "--config", "from=YUANSHAN",
                  "--config", "api_key=cli-key", "--config", "batch_size:=50")  # fmt: skip
        receipt_url = out.split("回执地址: ")[1].split()[0]
        token = receipt_url.split("token=")[1]
        assert "/v1/channels/sms_main/receipts?token=" in receipt_url and "***" not in receipt_url
        listed_sms = [c for c in json.loads(cli("channel", "list", "--json")) if c["name"] == "sms_main"]
        assert listed_sms[0]["config"]["callback_url"] == receipt_url.replace(
            token, "***"
        )  # receipts come back by default
        assert token not in cli("channel", "list", "--json")
        hook = cli("channel", "add", "crm", "--kind", "webhook", "--config", "url=https://crm.example.com/in")
        secret = hook.split("签名密钥 (shown once 只显示一次): ")[1].split()[0]
        assert secret.startswith("whsec_")
        listed = cli("channel", "list", "--json")
        assert secret not in listed and "whsec_" not in listed and '"batch_size": 50' in listed
        assert '"api_key": "***"' in listed
        assert "config.url" in cli("channel", "add", "sms_bad", "--kind", "sms", "--config", "from=X", code=2)
        assert "--config" in cli("channel", "add", "x", "--kind", "sms", "--config", "nonsense", code=2)
        assert "disabled 已停用 crm" in cli("channel", "disable", "crm")
        assert json.loads(cli("channel", "show", "crm"))["disabled"] is True
        assert "enabled 已启用 crm" in cli("channel", "enable", "crm")
        assert "removed 已删除 crm" in cli("channel", "remove", "crm")

        # a campaign in one command, carried out, reported
        audiences = json.loads(cli("audience", "list", "--json"))
        aud = next(a["id"] for a in audiences if a["name"] == "门店活动名单")
        out = cli("journey", "campaign", "--name", "门店活动", "--audience", aud, "--channel", "sms",
                  "--text", "{{ profile.name }}您好，门店活动周六开始", "--text-en", "Hi {{ profile.name }}",
                  "--control", "10", "--transactional", "--json")  # fmt: skip
        camp = json.loads(out)
        assert (camp["kind"], camp["status"], camp["version"]) == ("campaign", "active", 1)
        assert [n["id"] for n in camp["definition"]["nodes"]] == ["entry", "holdout", "send"]
        assert "no audience 'aud_nope'" in cli("journey", "campaign", "--name", "z", "--audience", "aud_nope", "--text", "x",
                                               code=2)  # fmt: skip
        assert "--at" in cli("journey", "campaign", "--name", "z", "--audience", aud, "--text", "x", "--at", "tomorrow",
                             code=2)  # fmt: skip
        inst = Instance(data)
        dispatcher = Dispatcher(inst)
        try:
            run_until_idle(inst, dispatcher, now=datetime.now(UTC))
        finally:
            dispatcher.close()
            inst.close()
        sent = len(sms.messages)
        assert sent > 0

    report = cli("journey", "report", camp["id"])
    assert "节点 Nodes" in report and "A/B 测试 holdout" in report and "control" in report
    got = json.loads(cli("journey", "report", camp["id"], "--json"))
    send = next(n for n in got["nodes"] if n["id"] == "send")["messages"]
    assert send["sent"] == sent
    assert "消息 Messages" in cli("journey", "messages", camp["id"], "--status", "sent", "--limit", "5")
    cli("journey", "messages", camp["id"], "--limit", "5000", code=2)

    # a dry run of a file that is not stored, and a preview in English
    dry = cli("journey", "dry-run", "--file", str(good), "--days", "7")
    assert "模拟 Dry run" in dry and "entered 进入" in dry
    assert "give a journey id or --file" in cli("journey", "dry-run", code=2)
    template = write(
        tmp_path / "template.json", {"body": {"zh": "{{ profile.name }}您好", "en": "Hello {{ profile.name }}"}}
    )
    with Instance(data) as inst:
        pid = (
            inst.analytic.cursor()
            .execute(
                "SELECT p.profile_id FROM profiles p JOIN profile_attributes a USING (profile_idx) "
                "WHERE json_extract_string(a.traits, '$.name') IS NOT NULL ORDER BY 1 LIMIT 1"
            )
            .fetchall()[0][0]
        )
    assert "Hello " in cli("journey", "preview", "--profile", pid, "--file", str(template), "--locale", "en")
    assert "您好" in cli("journey", "preview", "--profile", pid, "--file", str(template))
    assert "profile_id" in cli("journey", "preview", "--profile", "p_nobody", "--file", str(template), code=2)
    assert "ended" in cli("journey", "end", jid)
