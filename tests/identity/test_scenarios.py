"""Stories of OneID: one person across channels, the shared store phone, the shared tablet, unmerge."""

from __future__ import annotations

from datetime import datetime

import pytest

from tessera.domain.identity import default_rules
from tessera.services import identity_admin
from tessera.services.identity_rebuild import rebuild
from tests.identity.support import feed, observation_owners, partition, profiles_by_id, store

RULES = default_rules()
NOW = datetime(2026, 11, 2)


def test_one_person_across_app_web_mini_program_and_crm_is_one_profile() -> None:
    con = store()
    feed(con, [
        # App, not signed in; then signed in (identify with phone).
        {"message_id": "m1", "anonymous_id": "dev-1", "device_id": "IDFA-1", "ts": 1},
        {"message_id": "m2", "user_id": "M0001", "anonymous_id": "dev-1", "ts": 2,
         "traits": '{"phone": "138 0013 8000", "name": "王小明"}'},
        # Web, with an email in context.traits.
        {"message_id": "m3", "anonymous_id": "cookie-9", "ts": 3,
         "context": '{"traits": {"email": "Wang@Example.com", "phone": "+86-138-0013-8000"}}'},
        # WeChat mini-program: openid and unionid through context.externalIds.
        {"message_id": "m4", "anonymous_id": "oMini1", "ts": 4,
         "context": '{"externalIds": [{"id": "uWx1", "type": "wechat_unionid", "collection": "users"}]}'},
        {"message_id": "m5", "user_id": "M0001", "anonymous_id": "oMini1", "ts": 5},
    ], RULES)  # fmt: skip
    (profile,) = partition(con)
    assert profile == {
        "anonymous_id:dev-1", "device_id:idfa-1", "user_id:M0001", "phone:+8613800138000", "anonymous_id:cookie-9",
        "email:wang@example.com", "anonymous_id:oMini1", "wechat_unionid:uWx1",
    }  # fmt: skip
    # Every message's identifiers point at it: its events follow.
    assert len(set(observation_owners(con).values())) == 1


def test_a_shared_store_phone_on_10000_members_does_not_fuse_them() -> None:
    con = store()
    store_phone = "021 6288 8888"  # the shop's landline, typed in for every walk-in member
    messages = [
        {"message_id": f"m{i}", "user_id": f"M{i:05d}", "anonymous_id": f"a{i}", "ts": i + 1,
         "traits": f'{{"phone": "{store_phone}"}}'}
        for i in range(10_000)
    ]  # fmt: skip
    for i in range(0, len(messages), 2500):
        feed(con, messages[i : i + 2500], RULES)
    groups = partition(con)
    assert len(groups) == 10_000
    assert max(len(g) for g in groups) == 3  # user_id + anonymous_id (+ the phone for the first one)
    holders = [g for g in groups if "phone:+862162888888" in g]
    assert holders == [{"user_id:M00000", "anonymous_id:a0", "phone:+862162888888"}]
    drops = con.execute(
        "SELECT count(*), count(DISTINCT origin), any_value(reason) FROM identity_log "
        "WHERE action = 'drop' AND id_value = '+862162888888'"
    ).fetchall()[0]
    assert drops[0] == drops[1] == 9_999  # each decision logged with its message id
    assert "user_id (limit 1)" in drops[2]


def test_a_shared_tablet_at_the_store_counter_does_not_fuse_visitors() -> None:
    con = store()
    tablet = "pad-store-17"
    feed(con, [
        {"message_id": f"v{i}", "user_id": f"M{i}", "anonymous_id": f"kiosk-{i}", "device_id": tablet, "ts": i + 1}
        for i in range(300)
    ], RULES)  # fmt: skip
    groups = partition(con)
    assert len(groups) == 300
    assert sum(1 for g in groups if f"device_id:{tablet}" in g) == 1
    assert all(len([x for x in g if x.startswith("user_id:")]) == 1 for g in groups)


def test_a_member_may_hold_up_to_three_phones_then_new_ones_are_dropped() -> None:
    con = store()
    phones = ["13800138000", "13800138001", "13800138002", "13800138003"]
    feed(con, [
        {"message_id": f"m{i}", "user_id": "M1", "ts": i + 1, "traits": f'{{"phone": "{p}"}}'}
        for i, p in enumerate(phones)
    ], RULES)  # fmt: skip
    (profile,) = partition(con)
    assert sorted(x for x in profile if x.startswith("phone:")) == [
        "phone:+8613800138000", "phone:+8613800138001", "phone:+8613800138002",
    ]  # fmt: skip
    (reason,) = con.execute("SELECT reason FROM identity_log WHERE action = 'drop'").fetchall()[0]
    assert reason == "linking would give the profile 4 phone (limit 3)"


def test_conflicting_traits_never_raise_and_junk_values_are_recorded_not_linked() -> None:
    con = store()
    stats = feed(con, [
        {"message_id": "m1", "user_id": "null", "anonymous_id": "a1", "ts": 1, "traits": '{"phone": "12345"}'},
        {"message_id": "m2", "user_id": "undefined", "anonymous_id": "a2", "ts": 2, "traits": '{"email": 42}'},
        {"message_id": "m3", "anonymous_id": "a1", "ts": 3, "traits": '{"phone": ["x"], "email": {"a": 1}}'},
    ], RULES)  # fmt: skip
    assert partition(con) == {frozenset({"anonymous_id:a1"}), frozenset({"anonymous_id:a2"})}
    assert stats.rejected >= 3
    rejected = {
        (t, v): r for t, v, r in con.execute("SELECT id_type, raw_value, reason FROM identifier_rejections").fetchall()
    }
    assert rejected[("user_id", "null")] == "blocked value"
    assert rejected[("phone", "12345")] == "not a valid phone number"
    assert rejected[("email", "42")] == "not an email address"


def test_alias_links_the_previous_id_to_the_user() -> None:
    con = store()
    feed(con, [
        {"message_id": "m1", "anonymous_id": "anon-7", "ts": 1},
        {"message_id": "m2", "user_id": "M7", "previous_id": "anon-7", "ts": 2},
    ], RULES)  # fmt: skip
    assert partition(con) == {frozenset({"anonymous_id:anon-7", "user_id:M7"})}
    merged = con.execute("SELECT profile_id, other_ids, origin FROM identity_log WHERE action = 'merge'").fetchall()
    assert len(merged) == 0  # anon-7's profile simply gained the user id
    assert len(profiles_by_id(con)) == 1


def test_merge_leaves_a_redirect_and_is_logged() -> None:
    con = store()
    feed(
        con,
        [{"message_id": "m1", "anonymous_id": "web-1", "ts": 1}, {"message_id": "m2", "user_id": "M9", "ts": 2}],
        RULES,
    )
    before = profiles_by_id(con)
    web_id = next(p for p, ids in before.items() if "anonymous_id:web-1" in ids)
    user_id = next(p for p, ids in before.items() if "user_id:M9" in ids)
    feed(con, [{"message_id": "m3", "user_id": "M9", "anonymous_id": "web-1", "ts": 3}], RULES)
    (survivor,) = profiles_by_id(con)
    assert survivor == web_id  # the older profile survives
    assert con.execute("SELECT profile_id, anchor_type, anchor_value FROM profile_redirects").fetchall() == [
        (user_id, "user_id", "M9")
    ]
    assert con.execute("SELECT profile_id, other_ids, origin FROM identity_log WHERE action = 'merge'").fetchall() == [
        (web_id, [user_id], "m3")
    ]


def test_unmerge_splits_the_profile_back_and_events_follow() -> None:
    con = store()
    feed(con, [
        {"message_id": "m1", "user_id": "M1", "anonymous_id": "a1", "device_id": "family-pad", "ts": 1},
        {"message_id": "m2", "anonymous_id": "a2", "device_id": "family-pad", "ts": 2},  # the daughter, not signed in
        {"message_id": "m3", "anonymous_id": "a2", "ts": 3},
    ], RULES)  # fmt: skip
    assert len(partition(con)) == 1
    (pid,) = profiles_by_id(con)
    report = identity_admin.unmerge(
        con, rules=RULES, identifier="device_id:FAMILY-PAD", reason="family tablet", origin="test", now=NOW
    )
    assert report.profile_id == pid and len(report.profiles) == 2
    assert partition(con) == {frozenset({"user_id:M1", "anonymous_id:a1"}), frozenset({"anonymous_id:a2"})}
    owners = observation_owners(con)
    assert owners["anonymous_id:a1\x1fdevice_id:family-pad\x1fuser_id:M1"] == pid
    assert owners["anonymous_id:a2"] == owners["anonymous_id:a2\x1fdevice_id:family-pad"] != pid
    # The split holds for later messages and for a rebuild.
    feed(con, [{"message_id": "m4", "anonymous_id": "a2", "device_id": "family-pad", "ts": 4}], RULES)
    assert len(partition(con)) == 2
    after = profiles_by_id(con)
    rebuild(con, rules=RULES, now=NOW)
    assert profiles_by_id(con) == after
    log = con.execute("SELECT action, reason, origin FROM identity_log WHERE action = 'unmerge'").fetchall()
    assert log == [("unmerge", "family tablet", "test")]


def test_unmerge_of_an_unknown_identifier_names_it() -> None:
    con = store()
    with pytest.raises(identity_admin.IdentityError, match="no profile holds phone:\\+8613800138000"):
        identity_admin.unmerge(con, rules=RULES, identifier="phone:13800138000", reason=None, origin="t", now=NOW)
    with pytest.raises(identity_admin.IdentityError, match="TYPE:VALUE"):
        identity_admin.unmerge(con, rules=RULES, identifier="13800138000", reason=None, origin="t", now=NOW)


def test_injection_through_identifier_values_is_harmless() -> None:
    con = store()
    evil = "x'); DROP TABLE events; --"
    feed(con, [{"message_id": "m1", "user_id": evil, "anonymous_id": "a'b", "ts": 1,
                "traits": '{"email": "a\\"@b.cn\'--"}'}], RULES)  # fmt: skip
    assert partition(con) == {frozenset({f"user_id:{evil}", "anonymous_id:a'b", "email:a\"@b.cn'--"})}
    assert con.execute("SELECT count(*) FROM events").fetchall() == [(0,)]
