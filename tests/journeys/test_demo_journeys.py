"""The demo brand's journeys: the campaign went out through the sandbox channel while the demo was
built, its report adds up, and the birthday journey's dry run enters that month's birthdays."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from sqlalchemy import select

from tessera.runtime import Instance
from tessera.services.journey_dry_run import dry_run
from tessera.services.journey_reports import report
from tessera.stores.models import AudienceRow, JourneyRow


@pytest.fixture(scope="module")
def inst(demo_dir: Path) -> Iterator[Instance]:
    i = Instance(demo_dir)  # read only: nothing here writes
    yield i
    i.close()


def journeys(inst: Instance) -> dict[str, JourneyRow]:
    with inst.operational.session() as s:
        return {r.name: r for r in s.scalars(select(JourneyRow))}


def test_the_demo_campaign_went_out_and_its_report_adds_up(inst: Instance, demo_dir: Path) -> None:
    got = journeys(inst)
    assert {"生日有礼", "首单感谢与复购", "高价值召回"} <= set(got)
    campaign = got["高价值召回"]
    assert campaign.kind == "campaign" and campaign.status == "active"
    r = report(inst=inst, journey_id=campaign.id)
    with inst.operational.session() as s:
        audience = s.scalar(select(AudienceRow).where(AudienceRow.name == "高价值待召回"))
    assert audience is not None
    members = inst.analytic.cursor().execute(
        "SELECT count(*) FROM audience_members_current WHERE audience_id = ?", [audience.id]).fetchall()[0][0]  # fmt: skip
    assert r.summary.entered == members > 0
    [holdout] = [b for b in r.splits if b.node_id == "holdout"]
    people = {b.handle: b.people for b in holdout.branches}
    assert people["send"] + people["control"] == members and 0 < people["control"] < members * 0.25
    [send] = [n for n in r.nodes if n.id == "send"]
    assert send.messages is not None
    m = send.messages
    assert m.total == people["send"] == m.sent + m.pending + m.suppressed + m.failed
    lines = [orjson.loads(x) for x in (demo_dir / "outbox" / "sms.jsonl").read_bytes().splitlines()]
    emails = demo_dir / "outbox" / "email.jsonl"
    sent_mail = len(emails.read_bytes().splitlines()) if emails.exists() else 0
    assert len(lines) + sent_mail == m.sent
    assert all(line["body"].endswith("回复TD退订") and line["to"].startswith("+86") for line in lines)


def test_the_birthday_dry_run_enters_each_months_birthdays_on_the_first(inst: Instance) -> None:
    birthday = journeys(inst)["生日有礼"]
    got = dry_run(inst=inst, journey_id=birthday.id, days=40)
    days = [d for d in got.days if d.entered]
    assert days and all(d.date.day == 1 for d in days)
    first = days[0]
    month = first.date.month
    expected = inst.analytic.cursor().execute(
        "SELECT count(*) FROM profile_attributes a WHERE month(try_cast(a.traits->>'birthday' AS DATE)) = ? "
        "AND a.profile_idx IN (SELECT profile_idx FROM profile_identifiers WHERE id_type = 'phone')", [month]).fetchall()[0][0]  # fmt: skip
    assert first.entered == expected
    assert sum(first.messages.values()) + first.suppressed == expected
