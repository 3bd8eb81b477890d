"""The channel registry: settings are checked field by field, and every kind builds; the log channel."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tessera.channels.base import CHANNEL_KINDS, ChannelConfigError, Outbound
from tessera.channels.registry import build_channel, check_config
from tessera.channels.webhook import new_secret
from tessera.clock import FrozenClock

T0 = datetime(2026, 11, 11, tzinfo=UTC)
VALID: dict[str, dict[str, Any]] = {
    "email": {"host": "smtp.example.cn", "from": "hi@example.cn"},
    "sms": {"url": "https://sms.example.cn/v1/send", "from": "TIANQING"},
    "webhook": {"url": "https://crm.example.cn/hooks"},
    "push": {"url": "https://push.example.cn/send"},
    "wechat": {"url": "https://wx-gw.example.cn/tpl", "app_id": "wx123"},
    "log": {"path": "/tmp/never-written.jsonl"},
}


def field_of(kind: str, config: Any) -> str:
    with pytest.raises(ChannelConfigError) as err:
        check_config(kind, config)
    return err.value.field


def test_defaults_are_filled_in() -> None:
    email = check_config("email", {"host": " smtp.example.cn ", "from": "Hi@例子.中国", "ssl": True})
    assert email == {
        "host": "smtp.example.cn", "port": 465, "username": None, "password": None, "starttls": False, "ssl": True,
        "from": "Hi@xn--fsqu00a.xn--fiqs8s", "from_name": None, "timeout": 30.0, "max_batch": 100, "helo": None,
    }  # fmt: skip
    assert check_config("email", VALID["email"])["port"] == 25
    sms = check_config("sms", {**VALID["sms"], "batch_size": 1})
    assert (
        sms["batch_size"] == 1 and sms["max_batch"] == 1000 and sms["timeout"] == 10.0 and sms["callback_url"] is None
    )
    assert check_config("wechat", VALID["wechat"]) == {
        "url": "https://wx-gw.example.cn/tpl", "timeout": 10.0, "max_batch": 50, "app_id": "wx123",
    }  # fmt: skip
    assert set(CHANNEL_KINDS) == set(VALID)
    for kind, config in VALID.items():  # a stored (normalised) config checks to itself
        normalised = check_config(kind, config)
        assert check_config(kind, normalised) == normalised


def test_problems_name_their_field() -> None:
    cases: list[tuple[str, Any, str]] = [
        ("fax", {}, "kind"),
        ("email", [], "config"),
        ("email", {"from": "hi@example.cn"}, "config.host"),
        ("email", {"host": "h"}, "config.from"),
        ("email", {"host": "h", "from": "not an address"}, "config.from"),
        ("email", {**VALID["email"], "port": 70000}, "config.port"),
        ("email", {**VALID["email"], "port": "25"}, "config.port"),
        ("email", {**VALID["email"], "ssl": True, "starttls": True}, "config.starttls"),
        ("email", {**VALID["email"], "starttls": "yes"}, "config.starttls"),
        ("email", {**VALID["email"], "password": "p"}, "config.username"),
        ("email", {**VALID["email"], "start_tls": True}, "config.start_tls"),  # a typo is not ignored
        ("email", {**VALID["email"], "timeout": 0}, "config.timeout"),
        ("sms", {"from": "T"}, "config.url"),
        ("sms", {"url": "ftp://sms.example.cn", "from": "T"}, "config.url"),
        ("sms", {"url": "https://u:p@sms.example.cn", "from": "T"}, "config.url"),
        ("sms", {"url": "https://sms.example.cn/a b", "from": "T"}, "config.url"),
        ("sms", {"url": "https://sms.example.cn"}, "config.from"),
        ("sms", {**VALID["sms"], "callback_url": "receipts"}, "config.callback_url"),
        ("sms", {**VALID["sms"], "batch_size": 0}, "config.batch_size"),
        ("sms", {**VALID["sms"], "batch_size": True}, "config.batch_size"),
        ("webhook", {}, "config.url"),
        ("webhook", {**VALID["webhook"], "secret": "hunter2"}, "config.secret"),
        ("push", {**VALID["push"], "secret": "whsec_***"}, "config.secret"),
        ("wechat", {"url": "https://wx-gw.example.cn"}, "config.app_id"),
        ("log", {}, "config.path"),
        ("log", {"path": 3}, "config.path"),
    ]
    for kind, config, expected in cases:
        assert field_of(kind, config) == expected, (kind, config)


def test_a_good_secret_inside_the_config_is_kept() -> None:
    secret = new_secret()
    assert check_config("webhook", {**VALID["webhook"], "secret": secret})["secret"] == secret


def test_every_kind_builds(tmp_path: Path) -> None:
    clock = FrozenClock(T0)
    secret = new_secret()
    for kind in CHANNEL_KINDS:
        config = {**VALID[kind], "path": str(tmp_path / "out.jsonl")} if kind == "log" else VALID[kind]
        channel = build_channel(kind, f"渠道-{kind}", config, clock=clock, secret=secret)
        try:
            assert channel.kind == kind and channel.name == f"渠道-{kind}" and channel.max_batch >= 1
        finally:
            channel.close()
    with pytest.raises(ChannelConfigError) as err:
        build_channel("push", "p", VALID["push"], clock=clock)  # no secret anywhere
    assert err.value.field == "secret"
    inside = build_channel("push", "p", {**VALID["push"], "secret": secret}, clock=clock)
    inside.close()


def test_the_log_channel_appends_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "demo" / "messages.jsonl"
    channel = build_channel("log", "演示", {"path": str(path)}, clock=FrozenClock(T0))
    first = channel.send([Outbound("l1", "+8613800138000", "您好", subject=None, data={"n": 1})])
    second = channel.send(
        [Outbound("l2", "a@example.cn", "<p>hi</p>", subject="主题"), Outbound("l3", "o1", "x", data={"at": T0})]
    )
    assert all(r.accepted for r in first + second) and channel.send([]) == []
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert lines[0] == {"at": T0.isoformat(), "key": "l1", "to": "+8613800138000", "subject": None, "body": "您好",
                        "data": {"n": 1}}  # fmt: skip
    assert [x["key"] for x in lines] == ["l1", "l2", "l3"] and lines[2]["data"] == {"at": "2026-11-11T00:00:00+00:00"}
    channel.close()
