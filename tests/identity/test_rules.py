"""Normalisation and blocking of identifier values, and the rules document."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera.domain.identity import Rejected, default_rules, normalise
from tessera.services.identity_rules import RulesError, parse_rules

RULES = default_rules()


@pytest.mark.parametrize(
    "raw",
    ["13800138000", "138 0013 8000", "+86 138-0013-8000", "+86-138-0013-8000", "0086 13800138000", "８６13800138000"],
)
def test_phones_written_many_ways_become_one_e164(raw: str) -> None:
    assert normalise(RULES, "phone", raw) == "+8613800138000"


def test_phone_region_is_configurable() -> None:
    us = RULES.model_copy(update={"default_region": "US"})
    assert normalise(us, "phone", "(650) 253-0000") == "+16502530000"
    with pytest.raises(Rejected, match="not a valid phone number"):
        normalise(RULES, "phone", "(650) 253-0000")  # not a Chinese number


@pytest.mark.parametrize(
    ("id_type", "raw", "reason"),
    [
        ("phone", "12345", "not a valid phone number"),
        ("phone", "call me", "not a phone number"),
        ("email", "not-an-email", "not an email address"),
        ("user_id", "null", "blocked value"),
        ("user_id", " undefined ", "blocked value"),
        ("anonymous_id", "0000-0000", "blocked value"),
        ("user_id", "-1", "blocked value"),
        ("email", "TEST@test.com", "blocked value"),
        ("device_id", "00000000-0000-0000-0000-000000000000", "blocked value"),
        ("user_id", "aaaaaaaaaa", "blocked value"),
        ("user_id", "   ", "empty"),
        ("user_id", "a\x00b", "control characters"),
    ],
)
def test_junk_and_invalid_values_are_rejected_with_a_reason(id_type: str, raw: str, reason: str) -> None:
    with pytest.raises(Rejected, match=reason):
        normalise(RULES, id_type, raw)


def test_emails_trimmed_and_lower_cased_ids_trimmed() -> None:
    assert normalise(RULES, "email", "  Wang.Xiaoming@Example.COM ") == "wang.xiaoming@example.com"
    assert normalise(RULES, "user_id", "  M000123 ") == "M000123"  # ids keep their case
    assert normalise(RULES, "device_id", "AB12-CD34") == "ab12-cd34"  # device ids do not


def test_custom_block_list_and_patterns() -> None:
    rules = RULES.model_copy(update={"blocked_values": ["guest"], "blocked_patterns": [r"tmp_\d+"]})
    with pytest.raises(Rejected):
        normalise(rules, "user_id", "GUEST")
    with pytest.raises(Rejected):
        normalise(rules, "user_id", "tmp_42")
    assert normalise(rules, "user_id", "tmp_x") == "tmp_x"


@given(st.text(min_size=1, max_size=40))
def test_normalising_twice_changes_nothing(raw: str) -> None:
    for id_type in ("user_id", "email", "phone", "device_id"):
        try:
            once = normalise(RULES, id_type, raw)
        except Rejected:
            continue
        assert normalise(RULES, id_type, once) == once


def test_rules_document_errors_name_the_path() -> None:
    body = RULES.model_dump(mode="json")
    body["types"][2]["limit"] = 0
    with pytest.raises(RulesError) as err:
        parse_rules(body)
    assert err.value.field == "types.2.limit"
    body = RULES.model_dump(mode="json")
    body["blocked_patterns"] = ["(unclosed"]
    with pytest.raises(RulesError, match="not a regular expression"):
        parse_rules(body)
    body = RULES.model_dump(mode="json")
    body["types"].append(body["types"][0])
    with pytest.raises(RulesError, match="appears twice"):
        parse_rules(body)
