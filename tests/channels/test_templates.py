"""Message templates (消息模板): locale choice, missing names, the sandbox, filters, error positions."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from tessera.services.templates import (
    MessageTemplate,
    TemplateError,
    check_template,
    format_date,
    mask_phone,
    money,
    render,
    variables_for,
)

PROFILE: dict[str, Any] = {
    "id": "p_42",
    "name": "王小明",
    "phone": "+8613812345678",
    "email": "xm@example.cn",
    "traits": {"city": "上海", "vip_level": "金卡", "nickname": None},
}
COUPON = {"code": "D11-50", "amount": Decimal("50"), "expires_at": "2026-11-30T23:59:59+08:00"}


def tpl(**fields: Any) -> MessageTemplate:
    """A template from JSON-like fields (a plain string for subject or body means Chinese)."""
    return MessageTemplate.model_validate(fields)


def variables(**extra: Any) -> dict[str, Any]:
    return variables_for(
        profile=PROFILE,
        tags={"rfm_segment": "重要价值客户"},
        coupon=COUPON,
        event={"name": "Order Completed", "properties": {"total": 388}},
        journey={"id": "j_1", "name": "双十一召回"},
        extra=extra or None,
    )


COUPON_TEMPLATE = MessageTemplate(
    subject={"zh": "{{ profile.name }}，您的 {{ coupon.amount | money }} 券到了", "en": "{{ profile.name }}, a coupon"},
    body={
        "zh": "亲爱的{{ profile.name }}（{{ profile.city }}），券码 {{ coupon.code }}，"
        "{{ coupon.expires_at | date('%Y年%m月%d日') }} 前有效。",
        "en": "Dear {{ profile.name }}, use {{ coupon.code }} before {{ coupon.expires_at | date('%b %d') }}.",
    },
)


def test_the_profiles_language_picks_the_text_else_chinese() -> None:
    v = variables()
    zh = render(COUPON_TEMPLATE, locale="zh-CN", variables=v)
    assert zh.locale == "zh" and zh.subject == "王小明，您的 ¥50.00 券到了"
    assert zh.body == "亲爱的王小明（上海），券码 D11-50，2026年11月30日 前有效。"
    for locale in ("en", "en-US", "EN_gb"):
        en = render(COUPON_TEMPLATE, locale=locale, variables=v)
        assert (
            en.locale == "en"
            and en.body == "Dear 王小明, use D11-50 before Nov 30."
            and en.subject == "王小明, a coupon"
        )
    for other in (None, "", "fr-FR", "ja"):
        assert render(COUPON_TEMPLATE, locale=other, variables=v).locale == "zh"
    english_only = MessageTemplate(body={"en": "Hi {{ profile.name }}"})
    assert render(english_only, locale="zh-CN", variables=v).body == "Hi 王小明"


def test_plain_strings_mean_chinese_and_locales_are_checked() -> None:
    t = MessageTemplate.model_validate({"subject": "主题", "body": "正文"})
    assert t.subject == {"zh": "主题"} and t.body == {"zh": "正文"}
    bad_ones: list[dict[str, Any]] = [{"body": {}}, {"body": {"fr": "Bonjour"}}, {"body": "x", "unknown": 1}]
    for bad in bad_ones:
        with pytest.raises(ValidationError):
            MessageTemplate.model_validate(bad)


def test_undefined_names_render_empty_and_are_reported() -> None:
    t = tpl(
        body="{{ profile.nickname }}您好，{{ profile.address.city }}{{ vip_points }}"
        "{{ profile.nickname | default('朋友') }}{% for x in wishlist %}{{ x }}{% endfor %}",
        data={"first": {"value": "{{ coupon.discount }}"}},
    )
    r = render(t, locale="zh", variables=variables())
    assert r.body == "您好，朋友"
    assert r.missing == ["profile.nickname", "profile.address", "vip_points", "wishlist", "coupon.discount"]
    assert render(COUPON_TEMPLATE, locale="zh", variables=variables()).missing == []


def test_html_bodies_are_autoescaped_but_not_the_subject_or_data() -> None:
    t = tpl(subject="{{ profile.name }}", body="<p>{{ profile.name }}</p>", data={"x": "{{ profile.name }}"})
    v = variables_for(profile={"name": "<b>A&B</b>"}, tags={}, coupon=None, event=None, journey=None)
    html = render(t, locale="zh", variables=v, html=True)
    assert html.body == "<p>&lt;b&gt;A&amp;B&lt;/b&gt;</p>"
    assert html.subject == "<b>A&B</b>" and html.data == {"x": "<b>A&B</b>"}
    assert render(t, locale="zh", variables=v).body == "<p><b>A&B</b></p>"


def test_the_sandbox_refuses_escapes() -> None:
    v = variables()
    escapes = [
        "{{ ''.__class__.__mro__ }}",
        "{{ profile.__class__ }}",
        "{{ ''['__class__'] }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ profile.update({'name': 'x'}) }}",  # no changing the variables
        "{{ 'x' * 100000000 }}",
        "{{ 10 ** 100000 }}",
    ]
    for source in escapes:
        with pytest.raises(TemplateError) as err:
            render(MessageTemplate(body={"en": source}), locale="en", variables=v)
        assert err.value.field == "body.en", source
    # Ordinary dict access, methods on plain values and loops still work.
    ok = tpl(body="{{ profile.name }}|{{ profile['city'] }}|{{ tags.rfm_segment }}|{{ 'ab'.upper() }}|"
                              "{% for k in event.properties %}{{ k }}{% endfor %}")  # fmt: skip
    assert render(ok, locale=None, variables=v).body == "王小明|上海|重要价值客户|AB|total"


def test_rendering_errors_name_the_field_and_line() -> None:
    t = MessageTemplate(body={"zh": "ok"}, data={"first": {"value": "第一行\n{{ profile.name + 1 }}"}})
    with pytest.raises(TemplateError) as err:
        render(t, locale="zh", variables=variables())
    assert err.value.field == "data.first.value" and err.value.message.startswith("line 2: TypeError")


def test_filters() -> None:
    assert money(1234) == "¥1,234.00" and money(Decimal("1234.565")) == "¥1,234.57"
    assert money(9.5, "USD") == "$9.50" and money(-12, "eur") == "-€12.00" and money(1000, "JPY") == "JP¥1,000"
    assert money("88") == "¥88.00" and money(None) == "" and money(5, "THB") == "THB 5.00"
    with pytest.raises(ValueError, match="money needs a number"):
        money("cheap")
    assert format_date(date(2026, 11, 11)) == "2026-11-11"
    assert format_date(datetime(2026, 11, 11, 20, 5, tzinfo=UTC), "%m月%d日 %H:%M") == "11月11日 20:05"
    assert format_date("2026-11-30T23:59:59Z", "%Y/%m/%d") == "2026/11/30" and format_date("2026-01-02") == "2026-01-02"
    assert mask_phone("+8613812345678") == "138****5678" and mask_phone("13812345678") == "138****5678"
    assert mask_phone("+14155552671") == "415****2671" and mask_phone(None) == ""
    t = tpl(
        body="{{ coupon.amount | money }} {{ 9.9 | money('USD') }} {{ coupon.expires_at | date }} "
        "{{ profile.phone | mask_phone }} {{ profile.gender | default('未知') }} {{ nothing | money }}"
    )
    r = render(t, locale=None, variables=variables())
    assert r.body == "¥50.00 $9.90 2026-11-30 138****5678 未知 " and r.missing == ["nothing"]


def test_check_template_reports_every_broken_text_with_its_line() -> None:
    t = MessageTemplate(
        subject={"zh": "好的 {{ profile.name }}", "en": "{{ profile.name "},
        body={"zh": "第一行\n{{ name }", "en": "fine"},
        data={"first": {"value": "{{ x | no_such_filter }}"}, "items": ["ok", "{% if %}"]},
    )
    assert check_template(t) == [
        ("subject.en", "line 1: unexpected end of template, expected 'end of print statement'."),
        ("body.zh", "line 2: unexpected '}'"),
        ("data.first.value", "line 1: No filter named 'no_such_filter'."),
        ("data.items[1]", "line 1: Expected an expression, got 'end of statement block'"),
    ]
    assert check_template(COUPON_TEMPLATE) == []
    with pytest.raises(TemplateError, match=r"^body.zh: line 2: unexpected '}'"):
        render(t, locale="zh", variables=variables())


def test_variables_for_documents_its_names() -> None:
    v = variables(unsubscribe_url="https://x.example.cn/u")
    assert sorted(v) == ["coupon", "event", "journey", "profile", "tags", "unsubscribe_url"]
    assert v["profile"] == {
        "city": "上海", "vip_level": "金卡", "id": "p_42", "name": "王小明", "phone": "+8613812345678",
        "email": "xm@example.cn",
    }  # fmt: skip
    flat = variables_for(profile={"profile_id": "p_1", "city": "北京"}, tags={}, coupon=None, event=None, journey=None)
    assert flat["profile"] == {"profile_id": "p_1", "city": "北京", "id": "p_1"} and flat["coupon"] == {}
    with pytest.raises(ValueError, match="profile"):
        variables_for(profile={}, tags={}, coupon=None, event=None, journey=None, extra={"profile": {}})
