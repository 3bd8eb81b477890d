"""The journey dry run: entries, waits, guards and forecasts on the demo brand — and nothing written."""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from sqlalchemy import func, select

from tessera.clock import FrozenClock
from tessera.domain.guards import consent_decision
from tessera.runtime import Instance
from tessera.services import channels as channels_service
from tessera.services import journeys as journeys_service
from tessera.services.audiences import estimate, list_audiences
from tessera.services.journey_dry_run import dry_run
from tessera.services.journey_facts import load_people
from tessera.services.journey_runner import advance_due, run_entries
from tessera.services.journeys import JourneyRequestError
from tessera.stores.models import ChannelOptOutRow, JourneyInstanceRow, JourneyOutboxRow, JourneyRunRow, JourneyVisitRow

SHANGHAI = ZoneInfo("Asia/Shanghai")
SMS = {"body": {"zh": "{{ profile.name }}，您好", "en": "Hello"}}


def _local(day: date, hour: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, tzinfo=SHANGHAI).astimezone(UTC)


@pytest.fixture(scope="module")
def inst(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Instance]:
    root = tmp_path_factory.mktemp("dry_run") / "data"
    shutil.copytree(demo_dir, root)
    i = Instance(root, clock=FrozenClock(datetime.now(UTC)))
    channels_service.create_channel(inst=i, draft=channels_service.ChannelDraft(
        name="sms_main", kind="sms", config={"url": "http://127.0.0.1:9/sms", "from": "YS"}))  # fmt: skip
    yield i
    i.close()


@pytest.fixture(scope="module")
def start(inst: Instance) -> datetime:
    """Today 10:00 in Shanghai (outside quiet hours)."""
    return _local(inst.clock.now().astimezone(SHANGHAI).date(), 10)


def _aud(inst: Instance, name: str) -> str:
    return next(a.id for a in list_audiences(inst=inst) if a.name == name)


def _audience_journey(audience_id: str, *, wait: dict[str, Any] | None = None, settings: dict[str, Any] | None = None,
                      entry: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    nodes: list[dict[str, Any]] = [
        {"id": "start", "type": "entry", "data": {"audience": {"audience_id": audience_id, **(entry or {})}}},
        {"id": "sms", "type": "sms", "data": {"template": SMS}},
    ]
    edges = [{"source": "start", "target": "sms"}]
    if wait is not None:
        nodes.insert(1, {"id": "wait", "type": "wait", "data": {"mode": "duration", "span": wait}})
        edges = [{"source": "start", "target": "wait"}, {"source": "wait", "target": "sms"}]
    return {"nodes": nodes, "edges": edges, "settings": settings or {}}


def _members(inst: Instance, audience_id: str) -> list[tuple[int, str]]:
    sql = ("SELECT p.profile_idx, p.profile_id FROM audience_members_current m JOIN profiles p USING (profile_idx) "
           "WHERE m.audience_id = ?")  # fmt: skip
    return [(int(a), str(b)) for a, b in inst.analytic.cursor().execute(sql, [audience_id]).fetchall()]


def _counts(inst: Instance) -> tuple[int, ...]:
    with inst.operational.session() as s:
        ops = tuple(int(s.scalar(select(func.count()).select_from(t)) or 0)
                    for t in (JourneyInstanceRow, JourneyOutboxRow, JourneyVisitRow, JourneyRunRow))  # fmt: skip
    cur = inst.analytic.cursor()
    analytic = tuple(int(cur.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0])
                     for t in ("events", "profiles", "journey_inbox", "audience_runs", "profile_tags"))  # fmt: skip
    return ops + analytic


def test_audience_wait_then_sms(inst: Instance, start: datetime) -> None:
    audience_id = _aud(inst, "近一年冲锋衣买家")
    members = _members(inst, audience_id)
    assert len(members) == estimate(inst=inst, audience_id=audience_id).members > 100
    facts = load_people(inst, [i for i, _ in members])
    no_phone = [f for f in facts.values() if f.address("sms") is None]
    with_phone = [f for f in facts.values() if f.address("sms") is not None]
    refused = Counter(why for f in with_phone if (why := consent_decision(f.traits, "sms")) is not None)
    # one person who could be reached opts out of SMS
    who = next(f for f in with_phone if consent_decision(f.traits, "sms") is None)
    channels_service.opt_out(inst=inst, profile_id=who.profile_id, channel="sms")
    try:
        before = _counts(inst)
        r = dry_run(inst=inst, definition=_audience_journey(audience_id, wait={"days": 1}), days=3, start=start)
        assert _counts(inst) == before  # nothing written, to either store
    finally:
        with inst.operational.session() as s:
            s.query(ChannelOptOutRow).delete()
    assert r.entry.kind == "audience" and r.entry.members == len(members) and r.entry.runs == [start]
    assert r.entered == len(members) and not r.sampled and r.scale == 1.0 and r.simulated == len(members)
    today = start.astimezone(SHANGHAI).date()
    assert [d.date for d in r.days] == [today + timedelta(days=k) for k in range(4)]  # 3 days from 10:00: 4 dates
    assert [d.entered for d in r.days] == [len(members), 0, 0, 0]
    sent = len(with_phone) - sum(refused.values()) - 1
    assert [d.messages for d in r.days] == [{}, {"sms": sent}, {}, {}]  # the day after, in local dates
    assert r.messages == {"sms": sent}
    assert r.suppressed == {"no_address": len(no_phone), **refused, "opted_out": 1}
    assert r.days[1].suppressed == len(members) - sent
    assert r.delayed_by_quiet_hours == 0 and r.fallback == 0 and r.effects == {}
    nodes = {n.id: n for n in r.nodes}
    assert nodes["start"].reached == nodes["wait"].reached == nodes["sms"].reached == len(members)
    assert nodes["wait"].by_handle == {"next": len(members)} and r.completed == len(members) and r.live_at_end == 0
    assert (
        r.horizon.start == start
        and r.horizon.end == start + timedelta(days=3)
        and r.horizon.timezone == "Asia/Shanghai"
    )
    assert any("Frequency caps are not simulated" in a for a in r.assumptions)
    assert any("Quiet hours 21:00-08:00" in a for a in r.assumptions)
    assert r.warnings == []

    # a wait longer than the period: everyone is still waiting at the end, nothing is sent
    r = dry_run(inst=inst, definition=_audience_journey(audience_id, wait={"days": 5}), days=3, start=start)
    assert r.messages == {} and r.live_at_end == len(members)
    assert {n.id: n.waiting_at_end for n in r.nodes}["wait"] == len(members)


def test_quiet_hours_move_sends_to_the_morning(inst: Instance, start: datetime) -> None:
    audience_id = _aud(inst, "近一年冲锋衣买家")
    late = start + timedelta(hours=12)  # 22:00 local
    r = dry_run(inst=inst, definition=_audience_journey(audience_id), days=2, start=late)
    sent = sum(r.messages.values())
    assert sent > 0 and r.delayed_by_quiet_hours == sent
    assert [d.messages for d in r.days] == [{}, {"sms": sent}, {}]
    r = dry_run(
        inst=inst, definition=_audience_journey(audience_id, settings={"transactional": True}), days=2, start=late
    )
    assert r.delayed_by_quiet_hours == 0 and [d.messages for d in r.days] == [{"sms": sent}, {}, {}]
    assert any("transactional" in a for a in r.assumptions)


def test_scheduled_runs_follow_the_reentry_policy(inst: Instance, start: datetime) -> None:
    audience_id = _aud(inst, "门店活动名单")
    n = len(_members(inst, audience_id))
    entry = {"at": start.isoformat(), "every": "day"}

    def run(settings: dict[str, Any]) -> Any:
        d = _audience_journey(audience_id, wait={"hours": 36}, settings=settings, entry=entry)
        return dry_run(inst=inst, definition=d, days=4, start=start)

    once = run({})
    assert len(once.entry.runs) == 4 and once.entered == n and once.entry.skipped == 3 * n
    # always, one live instance at a time: the 36-hour wait blocks the next day's run
    always = run({"reentry": {"policy": "always"}})
    assert always.entered == 2 * n and always.entry.skipped == 2 * n
    assert [d.entered for d in always.days[:4]] == [n, 0, n, 0]
    cooldown = run({"reentry": {"policy": "cooldown", "cooldown_days": 2.5}, "max_live": 5})
    assert cooldown.entered == 2 * n and [d.entered for d in cooldown.days[:4]] == [n, 0, 0, n]
    free = run({"reentry": {"policy": "always"}, "max_live": 5})
    assert free.entered == 4 * n and free.live_at_end == n  # the last run still waits at the end
    # a wait of exactly a day: the next run comes as the timer is due, before the worker advances it
    exact = dry_run(inst=inst, definition=_audience_journey(audience_id, wait={"days": 1}, entry=entry,
                    settings={"reentry": {"policy": "always"}}), days=4, start=start)  # fmt: skip
    assert exact.entered == 2 * n and [d.entered for d in exact.days[:4]] == [n, 0, n, 0]
    # an entry time in the past: no run, and a warning says so
    past = dry_run(inst=inst, definition=_audience_journey(audience_id, entry={"at": (start - timedelta(days=1)).isoformat()}),
                   days=2, start=start)  # fmt: skip
    assert past.entered == 0 and past.entry.runs == [] and past.warnings


def _history(inst: Instance, name: str, since: datetime, until: datetime) -> list[tuple[datetime, dict[str, Any], int]]:
    """The events of ``name`` (with a profile) and each one's number among the profile's events of that name."""
    rows = inst.analytic.cursor().execute(
        'SELECT e."timestamp", e.properties, l.profile_idx FROM events e JOIN identity_links l ON l.obs_idx = e.identity_idx '
        "JOIN profiles p ON p.profile_idx = l.profile_idx JOIN event_names n ON n.event_id = e.event_id "
        'WHERE n.name = ? ORDER BY e."timestamp"', [name]).fetchall()  # fmt: skip
    seen: Counter[int] = Counter()
    out = []
    for ts, props, idx in rows:
        seen[idx] += 1
        at = ts.replace(tzinfo=UTC)
        if since <= at < until:
            out.append((at, orjson.loads(props) if props else {}, seen[idx]))
    return out


def test_event_trigger_is_forecast_from_the_last_period(inst: Instance, start: datetime) -> None:
    days = 30
    history = _history(inst, "Order Completed", start - timedelta(days=days), start)
    big = [h for h in history if float(h[1].get("revenue", 0)) >= 300]
    assert len(big) > 10
    definition = {
        "nodes": [
            {
                "id": "start",
                "type": "entry",
                "data": {
                    "event": {"name": "Order Completed", "where": [{"property": "revenue", "op": "gte", "value": 300}]}
                },
            },  # fmt: skip
            {"id": "thanks", "type": "sms", "data": {"template": SMS}},
            {"id": "tag", "type": "points", "data": {"amount": 100, "reason": "大单奖励"}},
        ],
        "edges": [{"source": "start", "target": "thanks"}, {"source": "thanks", "target": "tag"}],
        "settings": {"reentry": {"policy": "always"}, "max_live": 100},
    }
    before = _counts(inst)
    r = dry_run(inst=inst, definition=definition, days=days, start=start)
    assert _counts(inst) == before
    assert r.entry.kind == "event" and r.entry.history_events == len(big) == r.entered
    assert r.entry.history_start == start - timedelta(days=days) and "shifted forward by 30 days" in r.entry.method
    per_day = Counter((at + timedelta(days=days)).astimezone(SHANGHAI).date() for at, _, _ in big)
    assert {d.date: d.entered for d in r.days if d.entered} == dict(per_day)
    assert r.effects == {"points": len(big)}
    assert sum(r.messages.values()) + sum(r.suppressed.values()) == len(big)

    # first purchases only, once per person
    first = [h for h in history if h[2] == 1]
    d: dict[str, Any] = {**definition, "settings": {}}
    d["nodes"] = [{"id": "start", "type": "entry", "data": {"event": {"name": "Order Completed", "purchase": "first"}}},
                  *d["nodes"][1:]]  # fmt: skip
    r = dry_run(inst=inst, definition=d, days=days, start=start)
    assert r.entered == r.entry.history_events == len(first) > 0


def test_splits_ab_and_sampling(inst: Instance, start: datetime) -> None:
    audience_id = _aud(inst, "近一年冲锋衣买家")
    members = _members(inst, audience_id)
    shanghai = {"type": "attribute", "field": "city", "op": "eq", "value": "上海"}
    expected = estimate(inst=inst, definition={"type": "and", "children": [
        {"type": "in_audience", "audience": audience_id}, shanghai]}).members  # fmt: skip
    definition = {
        "nodes": [
            {"id": "start", "type": "entry", "data": {"audience": {"audience_id": audience_id}}},
            {"id": "city", "type": "split", "data": {"paths": [{"handle": "sh", "condition": shanghai}]}},
            {"id": "ab", "type": "ab", "data": {"arms": [{"handle": "x", "weight": 1}, {"handle": "y", "weight": 3}]}},
            {"id": "bye", "type": "exit"},
        ],
        "edges": [
            {"source": "start", "target": "city"},
            {"source": "city", "sourceHandle": "sh", "target": "ab"},
            {"source": "ab", "sourceHandle": "x", "target": "bye"},
        ],
    }
    r = dry_run(inst=inst, definition=definition, days=1, start=start)
    nodes = {n.id: n for n in r.nodes}
    assert nodes["city"].by_handle == {"sh": expected, "else": len(members) - expected}
    assert 0 < expected < len(members) and nodes["ab"].reached == expected
    assert sum(nodes["ab"].by_handle.values()) == expected and nodes["bye"].by_handle == {
        "exit": nodes["ab"].by_handle["x"]
    }
    assert r.exited == nodes["ab"].by_handle["x"] and r.completed == len(members) - r.exited
    assert any("today's data" in a for a in r.assumptions) and any("A/B" in a for a in r.assumptions)

    sample = dry_run(inst=inst, definition=definition, days=1, start=start, max_people=100)
    assert sample.sampled and 50 < sample.simulated < 200 and sample.simulated < len(members)
    assert sample.scale == pytest.approx(len(members) / sample.simulated)
    assert sample.entered == len(members) and sample.entry.candidates == len(members)
    assert abs(sum(n.reached for n in sample.nodes if n.id == "ab") - expected) < 0.35 * len(members)
    assert any("sample" in a for a in sample.assumptions)
    again = dry_run(inst=inst, definition=definition, days=1, start=start, max_people=100)
    assert again.model_dump() == sample.model_dump()  # deterministic


def test_stored_journey_counts_earlier_entries(inst: Instance, start: datetime) -> None:
    audience_id = _aud(inst, "门店活动名单")
    n = len(_members(inst, audience_id))
    draft = journeys_service.JourneyDraft(
        name="门店活动提醒", definition=_audience_journey(audience_id, wait={"days": 1})
    )
    jid = journeys_service.create_journey(inst=inst, draft=draft).id
    fresh = dry_run(inst=inst, journey_id=jid, days=2, start=start)  # never published: everyone enters
    assert fresh.journey_id == jid and fresh.entered == n
    base = _counts(inst)  # the demo's own journeys have people inside too
    journeys_service.publish(inst=inst, journey_id=jid)
    run_entries(inst=inst, now=inst.clock.now())
    advance_due(inst=inst, now=inst.clock.now())
    before = _counts(inst)
    assert before[0] - base[0] == n  # they are inside now, waiting
    again = dry_run(inst=inst, journey_id=jid, days=2, start=start + timedelta(days=3))
    assert _counts(inst) == before
    assert again.entered == 0 and again.entry.skipped == n  # policy once: they entered already
    assert any("entered this journey before" in a for a in again.assumptions)


def test_errors(inst: Instance, start: datetime) -> None:
    with pytest.raises(JourneyRequestError) as e:
        dry_run(inst=inst, definition=_audience_journey("aud_missing"), start=start)
    assert e.value.status == 422 and e.value.field == "definition.nodes[0].data.audience.audience_id"
    broken = _audience_journey(_aud(inst, "近一年冲锋衣买家"))
    broken["nodes"][1]["data"]["template"] = {"body": {"zh": "{{ profile.name "}}
    with pytest.raises(JourneyRequestError) as e:
        dry_run(inst=inst, definition=broken, start=start)
    assert e.value.status == 422 and e.value.field.startswith("definition.nodes[1].data.template")
    with pytest.raises(JourneyRequestError) as e:
        dry_run(inst=inst, journey_id="jrn_nope")
    assert e.value.status == 404
    with pytest.raises(JourneyRequestError) as e:
        dry_run(inst=inst)
    assert e.value.status == 422
    with pytest.raises(JourneyRequestError) as e:
        dry_run(inst=inst, definition=broken, days=0)
    assert e.value.field == "days"
