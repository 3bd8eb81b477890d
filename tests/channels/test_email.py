"""Email (邮件) against a real SMTP server (aiosmtpd on loopback): what arrives, and what a failure means."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import pytest

from tessera.channels.base import Channel, Outbound
from tessera.channels.email import EmailChannel, html_to_text
from tessera.clock import FrozenClock
from tests.conftest import free_port
from tests.fakes.smtp import FakeSmtpServer

T0 = datetime(2026, 11, 11, 8, 0, tzinfo=UTC)
HTML = (
    "<html><body><h1>双十一专享</h1><p>亲爱的王小明：</p>"
    "<p>您的 <b>¥50</b> 优惠券已到账 &amp; 可叠加。</p>"
    '<a href="https://shop.example.cn/c/ABC">立即使用</a></body></html>'
)


@pytest.fixture
def smtp() -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer() as server:
        yield server


def channel(server: FakeSmtpServer | None = None, **config: Any) -> EmailChannel:
    base: dict[str, Any] = {"from": "hello@tianqing.example.cn", "from_name": "天青茶社", "timeout": 5}
    if server is not None:
        base.update(host=server.host, port=server.port)
    return EmailChannel("营销邮件", {**base, **config}, clock=FrozenClock(T0))


def test_a_chinese_html_email_arrives_with_its_subject_body_and_ids(smtp: FakeSmtpServer) -> None:
    ch: Channel = channel(smtp)
    assert (ch.kind, ch.name, ch.max_batch) == ("email", "营销邮件", 100)
    message = Outbound(
        key="j1v2n3p4e5",
        to="wang.xiaoming@example.cn",
        subject="【天青茶社】双十一专享券，满300减50",
        body=HTML,
        data={"unsubscribe_url": "https://shop.example.cn/unsub?t=xyz"},
        profile_id="p_1",
    )
    [result] = ch.send([message])
    assert result.accepted and result.status == 250 and result.key == "j1v2n3p4e5" and not result.retryable
    [got] = smtp.wait_for(1)
    assert got["Subject"] == "【天青茶社】双十一专享券，满300减50"
    assert got["From"].addresses[0].display_name == "天青茶社"
    assert got["From"].addresses[0].addr_spec == "hello@tianqing.example.cn"
    assert got["To"] == "wang.xiaoming@example.cn"
    assert got["Message-ID"] == "<j1v2n3p4e5@tessera>" and got["X-Tessera-Key"] == "j1v2n3p4e5"
    assert got["Date"] == format_datetime(T0)
    assert got["List-Unsubscribe"] == "<https://shop.example.cn/unsub?t=xyz>"
    assert got.get_content_type() == "multipart/alternative"
    html = got.get_body(("html",))
    text = got.get_body(("plain",))
    assert html is not None and text is not None
    assert html.get_content().strip() == HTML and html.get_content_charset() == "utf-8"
    plain = text.get_content()
    assert "亲爱的王小明：" in plain and "¥50 优惠券已到账 & 可叠加" in plain and "<p>" not in plain
    assert "立即使用 (https://shop.example.cn/c/ABC)" in plain
    # On the wire every header is ASCII (RFC 2047 encoded words) and the envelope is right.
    raw_headers = smtp.received[0].raw.split(b"\r\n\r\n", 1)[0]
    assert raw_headers.isascii() and b"=?utf-8?" in raw_headers
    assert smtp.envelopes == [("hello@tianqing.example.cn", ["wang.xiaoming@example.cn"])]


def test_a_plain_text_body_is_one_utf8_part(smtp: FakeSmtpServer) -> None:
    with_lines = "王小明您好：\n\n您的积分 1,288 分将于 12月31日 过期。\n回复 TD 退订"
    [result] = channel(smtp).send([Outbound("k_plain", "a@example.cn", with_lines, subject="积分提醒")])
    assert result.accepted
    [got] = smtp.wait_for(1)
    assert got.get_content_type() == "text/plain" and got.get_content_charset() == "utf-8"
    assert got.get_content().rstrip("\n") == with_lines
    assert "List-Unsubscribe" not in got


def test_a_refused_recipient_is_final_and_the_others_still_go(smtp: FakeSmtpServer) -> None:
    smtp.refuse("gone@example.cn", 550)
    batch = [Outbound(f"k{i}", to, f"第{i}封", subject="通知") for i, to in enumerate(
        ["a@example.cn", "gone@example.cn", "c@example.cn"])]  # fmt: skip
    results = channel(smtp).send(batch)
    assert [r.key for r in results] == ["k0", "k1", "k2"]
    assert [r.accepted for r in results] == [True, False, True]
    refused = results[1]
    assert refused.status == 550 and not refused.retryable
    assert refused.error is not None and "gone@example.cn" in refused.error
    got = smtp.wait_for(2)
    assert [m["To"] for m in got] == ["a@example.cn", "c@example.cn"]


def test_temporary_failures_are_retryable(smtp: FakeSmtpServer) -> None:
    smtp.fail_next(1, 451)  # DATA answered 451: greylisting, a full queue …
    smtp.refuse("busy@example.cn", 452)
    results = channel(smtp).send(
        [
            Outbound("t1", "a@example.cn", "一", subject="s"),
            Outbound("t2", "busy@example.cn", "二", subject="s"),
            Outbound("t3", "c@example.cn", "三", subject="s"),
        ]
    )
    assert [(r.accepted, r.retryable, r.status) for r in results] == [
        (False, True, 451),
        (False, True, 452),
        (True, False, 250),
    ]
    assert [m["Message-ID"] for m in smtp.wait_for(1)] == ["<t3@tessera>"]
    # The retry of the first message (same key, hence the same Message-ID) goes through.
    [again] = channel(smtp).send([Outbound("t1", "a@example.cn", "一", subject="s")])
    assert again.accepted and [m["Message-ID"] for m in smtp.wait_for(2)] == ["<t3@tessera>", "<t1@tessera>"]


def test_invalid_addresses_are_final_and_named(smtp: FakeSmtpServer) -> None:
    bad = ["not-an-email", "someone@localhost", "王@example.cn", "a@@example.cn", "", "a b@example.cn"]
    messages = [Outbound(f"b{i}", to, "x", subject="s") for i, to in enumerate(bad)]
    messages.append(Outbound("good", "ok@例子.中国", "内容", subject="s"))  # an IDN domain is fine
    results = channel(smtp).send(messages)
    for to, result in zip(bad, results[:-1], strict=True):
        assert not result.accepted and not result.retryable
        assert result.error is not None and result.error.startswith("invalid recipient") and repr(to) in result.error
    assert results[-1].accepted
    [got] = smtp.wait_for(1)
    assert got["To"] == "ok@xn--fsqu00a.xn--fiqs8s"


def test_an_unreachable_or_silent_server_makes_the_batch_retryable() -> None:
    batch = [Outbound("u1", "a@example.cn", "x"), Outbound("u2", "b@example.cn", "y")]
    refused = channel(host="127.0.0.1", port=free_port()).send(batch)
    assert all(not r.accepted and r.retryable for r in refused)
    assert (refused[0].error or "").startswith("connection failed")
    with socket.socket() as silent:  # accepts connections (the kernel does) but never greets
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        slow = channel(host="127.0.0.1", port=silent.getsockname()[1], timeout=0.3).send(batch)
    assert all(not r.accepted and r.retryable for r in slow)
    assert "timed out" in (slow[0].error or "")


def test_login_and_bad_credentials() -> None:
    with FakeSmtpServer(auth=("mailer", "s3cret")) as server:
        ok = channel(server, username="mailer", password="s3cret").send([Outbound("l1", "a@example.cn", "x")])
        assert ok[0].accepted
        wrong = channel(server, username="mailer", password="nope").send(
            [Outbound("l2", "a@example.cn", "x"), Outbound("l3", "b@example.cn", "y")]
        )
        assert [(r.accepted, r.retryable, r.status) for r in wrong] == [(False, False, 535)] * 2
        anonymous = channel(server).send([Outbound("l4", "a@example.cn", "x")])
        assert anonymous[0].status == 530 and not anonymous[0].retryable
        assert len(server.wait_for(1)) == 1


def test_a_key_that_cannot_be_a_message_id_is_final(smtp: FakeSmtpServer) -> None:
    results = channel(smtp).send([Outbound("有 空格", "a@example.cn", "x"), Outbound("ok-key", "a@example.cn", "y")])
    assert not results[0].accepted and "Message-ID" in (results[0].error or "")
    assert results[1].accepted


def test_html_to_text_keeps_what_a_reader_needs() -> None:
    html = "<style>p{color:red}</style><p>第一段</p><ul><li>甲</li><li>乙</li></ul><p>a&nbsp;&lt;b&gt;</p>"
    assert html_to_text(html) == "第一段\n\n- 甲\n\n- 乙\n\na\xa0<b>\n"
