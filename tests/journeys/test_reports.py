"""Journey reports: per-node, per-branch and outbox counts, A/B statistics, the message list."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from tessera.clock import FrozenClock
from tessera.domain.abstats import Proportion, compare, wilson_interval
from tessera.domain.journeys import parse_journey
from tessera.engine.step import arm_for
from tessera.runtime import Instance
from tessera.services import channels as channels_service
from tessera.services import journeys as journeys_service
from tessera.services.journey_dispatch import Dispatcher
from tessera.services.journey_reports import mask_address, messages, report
from tessera.services.journey_worker import run_until_idle
from tessera.services.journeys import JourneyRequestError
from tessera.settings import load_settings
from tessera.stores.models import (
    JourneyInstanceRow,
    JourneyOutboxRow,
    JourneyRewardRow,
    JourneyRow,
    JourneyVersionRow,
    JourneyVisitRow,
)
from tessera.stores.operational import OperationalStore
from tests.fakes.sms_provider import FakeSmsProvider

T0 = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai: outside quiet hours
TEMPLATE = {"body": {"zh": "您好，新品到店", "en": "Hello, new arrivals"}}


# --- the arithmetic, on rows written through the ORM (SQLite and PostgreSQL) ---------------------------

V1 = {
    "nodes": [
        {"id": "start", "type": "entry", "data": {"audience": {"audience_id": "aud_x"}}},
        {"id": "old_sms", "type": "sms", "data": {"template": TEMPLATE}},
    ],
    "edges": [{"source": "start", "target": "old_sms"}],
}
V2 = {
    "nodes": [
        {"id": "start", "type": "entry", "data": {"audience": {"audience_id": "aud_x"}}},
        {
            "id": "split",
            "type": "split",
            "label": "会员等级",
            "data": {
                "paths": [
                    {
                        "handle": "vip",
                        "name": "金卡",
                        "condition": {"type": "attribute", "field": "member_level", "op": "eq", "value": "金卡"},
                    }
                ]
            },
        },  # fmt: skip
        {"id": "sms", "type": "sms", "data": {"template": TEMPLATE, "fallback": ["email"]}},
        {"id": "wait", "type": "wait", "data": {"mode": "duration", "span": {"days": 2}}},
        {"id": "coupon", "type": "coupon", "data": {"template": "VIP-95"}},
        {"id": "bye", "type": "exit"},
    ],
    "edges": [
        {"source": "start", "target": "split"},
        {"source": "split", "sourceHandle": "vip", "target": "sms"},
        {"source": "split", "sourceHandle": "else", "target": "wait"},
        {"source": "sms", "target": "coupon"},
        {"source": "coupon", "target": "bye"},
    ],
    "settings": {"goal": {"name": "Order Completed", "within_days": 7}},
}


def _instance(i: int, version: int, node: str, status: str, converted: bool = False) -> JourneyInstanceRow:
    return JourneyInstanceRow(
        id=i, journey_id="jrn_r", version=version, profile_id=f"p{i}", profile_idx=i, entry_no=1, trigger_ref="run:1",
        node_id=node, status=status, due_at=None, wait_event=None, state={}, entered_at=T0, updated_at=T0,
        ended_at=None, goal_until=T0 + timedelta(days=7), converted_at=T0 + timedelta(days=1) if converted else None,
    )  # fmt: skip


def _outbox(i: int, node: str, status: str, reason: str | None = None, address: str | None = None,
            version: int = 2, minutes: int = 0, sent_kind: str | None = None) -> JourneyOutboxRow:  # fmt: skip
    at = T0 + timedelta(minutes=minutes)
    return JourneyOutboxRow(
        key=f"k{i}", journey_id="jrn_r", version=version, node_id=node, instance_id=i, profile_id=f"p{i}",
        profile_idx=i, kind="sms", channel="sms_main" if status != "suppressed" else None, address=address,
        sent_kind=sent_kind or ("sms" if status in ("sent", "delivered", "undelivered") else None),
        status=status, reason=reason, attempts=1 if status != "suppressed" else 0, next_attempt_at=at,
        provider_id=None, error="boom" if status in ("failed", "dead") else None, context={}, created_at=at,
        sent_at=at if status in ("sent", "delivered", "undelivered") else None,
        delivered_at=at if status == "delivered" else None,
    )  # fmt: skip


@pytest.fixture
def inst(op_store: OperationalStore, tmp_path: Path) -> Iterator[Instance]:
    settings = load_settings(data=tmp_path / "data")
    settings.store.operational_url = op_store.engine.url.render_as_string(hide_password=False)
    i = Instance(tmp_path / "data", settings=settings, clock=FrozenClock(T0))
    yield i
    i.close()


def _seed(inst: Instance) -> None:
    """v1: 3 people through old_sms. v2: 10 people — 4 vip (sms → coupon → exit), 6 else (wait)."""
    rows: list[Any] = [
        JourneyRow(
            id="jrn_r",
            name="报表测试",
            kind="journey",
            status="active",
            draft=parse_journey(V2).as_json(),
            version=2,
            created_at=T0,
            updated_at=T0,
        ),  # fmt: skip
        JourneyVersionRow(journey_id="jrn_r", version=1, definition=parse_journey(V1).as_json(), published_at=T0),
        JourneyVersionRow(
            journey_id="jrn_r", version=2, definition=parse_journey(V2).as_json(), published_at=T0 + timedelta(hours=1)
        ),  # fmt: skip
    ]
    for i in (1, 2, 3):  # v1: completed after old_sms; one converted
        rows.append(_instance(i, 1, "old_sms", "completed", converted=i == 1))
        rows += [JourneyVisitRow(journey_id="jrn_r", version=1, node_id=n, handle="next", instance_id=i, at=T0)
                 for n in ("start", "old_sms")]  # fmt: skip
    for i in range(10, 14):  # v2 vip: 3 exited, 1 still active at the coupon; 2 converted
        done = i != 13
        rows.append(
            _instance(i, 2, "bye" if done else "coupon", "exited" if done else "active", converted=i in (10, 11))
        )
        path = [("start", "next"), ("split", "vip"), ("sms", "next")] + (
            [("coupon", "next"), ("bye", "exit")] if done else []
        )
        rows += [
            JourneyVisitRow(journey_id="jrn_r", version=2, node_id=n, handle=h, instance_id=i, at=T0) for n, h in path
        ]
    for i in range(20, 26):  # v2 else: 5 waiting, 1 completed after the wait; 1 converted
        waiting = i != 25
        rows.append(_instance(i, 2, "wait", "waiting" if waiting else "completed", converted=i == 20))
        path = [("start", "next"), ("split", "else")] + ([] if waiting else [("wait", "next")])
        rows += [
            JourneyVisitRow(journey_id="jrn_r", version=2, node_id=n, handle=h, instance_id=i, at=T0) for n, h in path
        ]
    rows += [  # the outbox of the vip sms node, and old_sms of v1
        _outbox(10, "sms", "delivered", address="+8613812345678", minutes=1),
        _outbox(11, "sms", "sent", address="zhang.san@example.com", minutes=2, sent_kind="email"),
        _outbox(12, "sms", "suppressed", "no_address", minutes=3),
        _outbox(13, "sms", "pending", "quiet_hours", address="+8613900001111", minutes=4),
        _outbox(14, "sms", "suppressed", "no_consent", minutes=5),
        _outbox(15, "sms", "suppressed", "no_address", minutes=6),
        _outbox(16, "sms", "failed", "template", minutes=7),
        _outbox(17, "sms", "dead", "delivery", address="+8613700002222", minutes=8),
        _outbox(18, "sms", "undelivered", None, address="+8613600003333", minutes=9),
        _outbox(19, "sms", "pending", "retrying", address="+8613500004444", minutes=10),
        _outbox(1, "old_sms", "sent", None, address="13812345678", version=1),
        _outbox(2, "old_sms", "suppressed", "opted_out", version=1),
    ]
    rows += [JourneyRewardRow(key=f"r{i}", journey_id="jrn_r", version=2, node_id="coupon", profile_id=f"p{i}", kind="coupon",
                              template="VIP-95", code=f"CODE{i}", created_at=T0) for i in (10, 11, 12)]  # fmt: skip
    with inst.operational.session() as s:
        s.add_all(rows)


def test_report_counts_people_nodes_branches_and_outbox(inst: Instance) -> None:
    _seed(inst)
    r = report(inst=inst, journey_id="jrn_r")
    assert (r.name, r.version, r.scope) == ("报表测试", 2, None)

    s = r.summary
    assert (s.entered, s.live, s.active, s.waiting, s.completed, s.exited, s.converted) == (13, 6, 1, 5, 4, 3, 4)
    assert (s.conversion.converted, s.conversion.total) == (4, 13)
    assert (s.conversion.ci_low, s.conversion.ci_high) == pytest.approx(wilson_interval(Proportion(4, 13)))
    assert s.goal == {"name": "Order Completed", "where": [], "within_days": 7.0}
    assert [(v.version, v.entered, v.live, v.converted) for v in s.versions] == [(1, 3, 0, 1), (2, 10, 6, 3)]

    nodes = {n.id: n for n in r.nodes}
    assert list(nodes) == ["start", "split", "sms", "wait", "coupon", "bye", "old_sms"]  # older nodes last
    assert not nodes["old_sms"].in_latest and nodes["sms"].in_latest
    assert (nodes["start"].entered, nodes["start"].passed) == (13, 13)
    assert nodes["split"].by_handle == {"vip": 4, "else": 6} and nodes["split"].entered == 10
    wait = nodes["wait"]
    assert (wait.entered, wait.waiting, wait.passed, wait.by_handle) == (6, 5, 1, {"next": 1})
    coupon = nodes["coupon"]
    assert (coupon.entered, coupon.active, coupon.passed, coupon.rewards) == (4, 1, 3, 3)
    assert nodes["bye"].by_handle == {"exit": 3} and nodes["bye"].entered == 3

    m = nodes["sms"].messages
    assert m is not None
    assert m.total == 10 and m.by_status == {"pending": 2, "sent": 1, "delivered": 1, "undelivered": 1, "failed": 1,
                                             "suppressed": 3, "dead": 1}  # fmt: skip
    assert (m.sent, m.delivered, m.undelivered, m.pending, m.held, m.failed, m.dead, m.suppressed, m.fallback) == (
        3, 1, 1, 2, 1, 1, 1, 3, 1)  # fmt: skip
    assert m.suppressed_by == {"no_address": 2, "no_consent": 1}
    assert list(m.suppressed_by) == ["no_address", "no_consent"]  # most first
    assert m.failed_by == {"template": 1}
    old = nodes["old_sms"].messages
    assert old is not None and (old.sent, old.suppressed_by) == (1, {"opted_out": 1})
    assert nodes["wait"].messages is None and nodes["split"].messages is None

    (split,) = r.splits
    assert split.node_id == "split" and split.type == "split" and split.control is None
    got = {b.handle: b for b in split.branches}
    assert list(got) == ["vip", "else"] and got["vip"].name == "金卡"
    assert (got["vip"].people, got["vip"].conversion.converted) == (4, 2)
    assert (got["else"].people, got["else"].conversion.converted) == (6, 1)
    assert got["vip"].conversion.rate == 0.5 and got["vip"].comparison is None
    low, high = wilson_interval(Proportion(1, 6))
    assert (got["else"].conversion.ci_low, got["else"].conversion.ci_high) == pytest.approx((low, high))


def test_report_of_one_version(inst: Instance) -> None:
    _seed(inst)
    r = report(inst=inst, journey_id="jrn_r", version=1)
    assert r.scope == 1 and r.summary.version == 1
    assert (r.summary.entered, r.summary.completed, r.summary.converted) == (3, 3, 1)
    assert [n.id for n in r.nodes] == ["start", "old_sms"] and r.splits == []
    old = r.nodes[1]
    assert old.passed == 3 and old.messages is not None and old.messages.total == 2
    r2 = report(inst=inst, journey_id="jrn_r", version=2)
    assert r2.summary.entered == 10 and "old_sms" not in {n.id for n in r2.nodes}
    assert {n.id: n.passed for n in r2.nodes}["start"] == 10
    with pytest.raises(JourneyRequestError) as e:
        report(inst=inst, journey_id="jrn_r", version=9)
    assert e.value.status == 404
    with pytest.raises(JourneyRequestError) as e:
        report(inst=inst, journey_id="jrn_nope")
    assert e.value.status == 404


def test_message_list_masks_and_filters(inst: Instance) -> None:
    _seed(inst)
    got = messages(inst=inst, journey_id="jrn_r", node_id="sms")
    assert len(got) == 10 and [g.key for g in got][:3] == ["k19", "k18", "k17"]  # newest first
    by_key = {g.key: g for g in got}
    assert by_key["k10"].address == "+86138****5678" and by_key["k10"].delivered_at is not None
    assert by_key["k11"].address == "z***@example.com" and by_key["k11"].reason is None
    assert by_key["k12"].address is None and by_key["k12"].status == "suppressed"
    assert by_key["k13"].next_attempt_at is not None and by_key["k10"].next_attempt_at is None
    suppressed = messages(inst=inst, journey_id="jrn_r", status="suppressed")
    assert {g.key for g in suppressed} == {"k12", "k14", "k15", "k2"}
    assert [g.key for g in messages(inst=inst, journey_id="jrn_r", limit=2)] == ["k19", "k18"]
    old = messages(inst=inst, journey_id="jrn_r", node_id="old_sms", status="sent")
    assert [(g.key, g.address, g.version) for g in old] == [("k1", "138****5678", 1)]
    with pytest.raises(JourneyRequestError) as e:
        messages(inst=inst, journey_id="jrn_r", status="lost")
    assert e.value.status == 422 and e.value.field == "status"


def test_mask_address() -> None:
    assert mask_address("13812345678") == "138****5678"
    assert mask_address("+8613812345678") == "+86138****5678"
    assert mask_address("zhang@example.com") == "z***@example.com"
    assert mask_address("oWx1234567890abcdef") == "oWx1****cdef"
    assert (
        mask_address("https://hooks.example.com/dealer/7?token=secret", "webhook")
        == "https://hooks.example.com/dealer/7"
    )
    assert mask_address("short") == "****" and mask_address(None) is None


# --- end to end: an A/B test on the demo brand, driven by the real worker --------------------------------


@pytest.fixture(scope="module")
def demo_inst(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    root = tmp_path_factory.mktemp("reports") / "data"
    shutil.copytree(demo_dir, root)
    inst = Instance(root, clock=FrozenClock(T0))
    yield inst
    inst.close()


def _audience(inst: Instance, name: str) -> tuple[str, list[str]]:
    from tessera.services.audiences import list_audiences, members_of

    aud = next(a for a in list_audiences(inst=inst) if a.name == name)
    with members_of(inst=inst, audience_id=aud.id) as m:
        sql = "SELECT p.profile_id FROM profiles p WHERE p.profile_idx IN (SELECT profile_idx FROM audience_members_current WHERE audience_id = ?)"
        ids = [str(r[0]) for r in inst.analytic.cursor().execute(sql, [aud.id]).fetchall()]
        assert not m.live  # a static audience: stored members
    return aud.id, ids


def test_ab_test_report_on_the_demo_brand(demo_inst: Instance) -> None:
    inst = demo_inst
    audience_id, people = _audience(inst, "近一年冲锋衣买家")
    arms: list[dict[str, Any]] = [{"handle": "a", "weight": 1, "name": "短信 SMS"}, {"handle": "b", "weight": 1, "name": "等一天 wait"},
            {"handle": "ctrl", "weight": 1, "control": True, "name": "对照组 control"}]  # fmt: skip
    definition = {
        "nodes": [
            {"id": "start", "type": "entry", "data": {"audience": {"audience_id": audience_id}}},
            {"id": "ab", "type": "ab", "data": {"arms": arms}},
            {"id": "sms", "type": "sms", "data": {"template": TEMPLATE}},
            {"id": "wait", "type": "wait", "data": {"mode": "duration", "span": {"days": 1}}},
            {"id": "out", "type": "exit"},
        ],
        "edges": [
            {"source": "start", "target": "ab"},
            {"source": "ab", "sourceHandle": "a", "target": "sms"},
            {"source": "ab", "sourceHandle": "b", "target": "wait"},
            {"source": "ab", "sourceHandle": "ctrl", "target": "out"},
        ],
        "settings": {"goal": {"name": "Order Completed", "within_days": 7}},
    }
    with FakeSmsProvider() as provider:
        channels_service.create_channel(inst=inst, draft=channels_service.ChannelDraft(
            name="sms_main", kind="sms", config={"url": provider.url, "from": "YS", "api_key": "test-api-key"}))  # fmt: skip
        jid = journeys_service.create_journey(
            inst=inst, draft=journeys_service.JourneyDraft(name="新品 A/B", definition=definition)
        ).id
        journeys_service.publish(inst=inst, journey_id=jid)
        dispatcher = Dispatcher(inst)
        try:
            run_until_idle(inst, dispatcher, now=T0)
            expected = Counter(
                arm_for(jid, "ab", pid, [(a["handle"], float(a["weight"])) for a in arms]) for pid in people
            )
            with inst.operational.session() as s:
                rows = list(s.scalars(select(JourneyOutboxRow).where(JourneyOutboxRow.journey_id == jid)))
                ids = {i.profile_id: i.id for i in s.scalars(select(JourneyInstanceRow).where(
                    JourneyInstanceRow.journey_id == jid))}  # fmt: skip
            r = report(inst=inst, journey_id=jid)
            nodes = {n.id: n for n in r.nodes}
            assert r.summary.entered == len(people) == len(ids)
            assert nodes["ab"].by_handle == dict(expected) and nodes["ab"].passed == len(people)
            assert (nodes["sms"].entered, nodes["sms"].passed) == (expected["a"], expected["a"])
            assert (nodes["wait"].entered, nodes["wait"].waiting, nodes["wait"].passed) == (
                expected["b"],
                expected["b"],
                0,
            )
            assert nodes["out"].by_handle == {"exit": expected["ctrl"]}
            assert (r.summary.live, r.summary.completed, r.summary.exited) == (
                expected["b"],
                expected["a"],
                expected["ctrl"],
            )
            m = nodes["sms"].messages
            assert m is not None and m.total == len(rows) == expected["a"]
            assert m.by_status == dict(Counter(o.status for o in rows))
            assert m.sent == len(provider.messages) > 0
            assert m.suppressed_by == dict(Counter(o.reason for o in rows if o.status == "suppressed"))
            assert m.suppressed > 0  # the demo has people without a phone or without consent

            # conversions: a known number per arm, then the report's statistics are abstats.compare's
            by_arm: dict[str, list[str]] = {"a": [], "b": [], "ctrl": []}
            for pid in sorted(people):
                by_arm[arm_for(jid, "ab", pid, [(a["handle"], float(a["weight"])) for a in arms])].append(pid)
            wins = {"a": 30, "b": 12, "ctrl": 10}
            with inst.operational.session() as s:
                for arm, n in wins.items():
                    s.execute(update(JourneyInstanceRow)
                              .where(JourneyInstanceRow.id.in_([ids[p] for p in by_arm[arm][:n]]))
                              .values(converted_at=T0 + timedelta(hours=5)))  # fmt: skip
            r = report(inst=inst, journey_id=jid)
            (ab,) = r.splits
            assert ab.type == "ab" and ab.control == "ctrl"
            branches = {b.handle: b for b in ab.branches}
            assert branches["a"].share == pytest.approx(1 / 3) and branches["ctrl"].control
            assert branches["ctrl"].comparison is None
            control = Proportion(wins["ctrl"], expected["ctrl"])
            for arm in ("a", "b"):
                b = branches[arm]
                assert (b.people, b.conversion.converted) == (expected[arm], wins[arm])
                want = compare(Proportion(wins[arm], expected[arm]), control)
                assert b.comparison is not None and b.comparison.control == "ctrl"
                assert b.comparison.p_value == pytest.approx(want.p_value)
                assert (b.comparison.ci_low, b.comparison.ci_high) == pytest.approx((want.ci_low, want.ci_high))
                assert b.comparison.diff == pytest.approx(want.diff) and b.comparison.significant == want.significant
                assert b.comparison.lift == pytest.approx(want.lift)
            assert branches["a"].comparison is not None and branches["a"].comparison.significant  # 30 vs 10 of ~98
            assert r.summary.converted == sum(wins.values())

            # a day later the waiting arm moves on
            run_until_idle(inst, dispatcher, now=T0 + timedelta(days=1, minutes=1))
            r = report(inst=inst, journey_id=jid)
            wait = {n.id: n for n in r.nodes}["wait"]
            assert (wait.waiting, wait.passed, r.summary.live) == (0, expected["b"], 0)

            listed = messages(inst=inst, journey_id=jid, node_id="sms", limit=1000)
            assert len(listed) == expected["a"]
            for g in listed:
                assert g.address is None or re.fullmatch(r"\+86\d{3}\*{4}\d{4}", g.address), g.address
        finally:
            dispatcher.close()
