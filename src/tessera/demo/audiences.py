"""The demo brand's audiences (群组): one of each kind, made through the audiences service.

* dynamic, refreshed on the 1st of each month at 08:00: members with a birthday this month who
  can be reached by phone (the seeds' birthday-coupon campaign);
* dynamic: big spenders who have not ordered for 90 days (win-back);
* static: who bought a jacket (冲锋衣) in the last year, snapshotted at load time;
* imported: a store event's sign-up list — phones as people type them, a few not known to the
  brand and a malformed one, so the unmatched-rows report has something to show.
"""

from __future__ import annotations

from typing import Any

from tessera.runtime import Instance
from tessera.services import audience_import, audience_refresh, audiences
from tessera.services.audiences import AudienceDraft

BIRTHDAY: dict[str, Any] = {"type": "and", "children": [
    {"type": "attribute", "field": "birthday", "op": "anniversary_this_month"},
    {"type": "has_identifier", "id_types": ["phone"]},
]}  # fmt: skip
WINBACK: dict[str, Any] = {"type": "and", "children": [
    {"type": "attribute", "field": "total_spend", "op": "gte", "value": 1500},
    {"type": "order", "measure": "count", "op": "eq", "value": 0, "window": {"last": 90}},
]}  # fmt: skip
JACKETS: dict[str, Any] = {"type": "order", "categories": ["冲锋衣"], "window": {"last": 365}}


def create_audiences(instance: Instance) -> list[audiences.Audience]:
    """Create (or keep) the demo audiences; returns them."""
    existing = {a.name for a in audiences.list_audiences(inst=instance)}
    made = []
    drafts = (
        AudienceDraft(name="本月生日会员", name_en="Birthday this month", definition=BIRTHDAY, schedule="0 8 1 * *",
                      description="生日券活动 · birthday coupon campaign"),
        AudienceDraft(name="高价值待召回", name_en="High-value, lapsing", definition=WINBACK,
                      description="消费满1500元且90天未下单 · spent 1,500+ and no order in 90 days"),
        AudienceDraft(name="近一年冲锋衣买家", name_en="Jacket buyers (snapshot)", definition=JACKETS, kind="static"),
    )  # fmt: skip
    for draft in drafts:
        if draft.name not in existing:
            made.append(audiences.create_audience(inst=instance, draft=draft))
    for a in made:
        if a.kind == "dynamic":
            audience_refresh.refresh(inst=instance, audience_id=a.id, trigger="demo")
    if "门店活动名单" not in existing:
        report = audience_import.import_audience(inst=instance, name="门店活动名单", name_en="Store event sign-ups",
                                                 data=_event_list(instance))  # fmt: skip
        made.append(report.audience)
    return audiences.list_audiences(inst=instance)


def known_phones(instance: Instance, n: int, *, salt: str = "") -> list[str]:
    """``n`` Chinese mobile numbers of demo profiles, as people type them (``138 0013 8000``),
    in a stable order that ``salt`` shuffles."""
    rows = (
        instance.analytic.cursor()
        .execute(
            "SELECT id_value FROM profile_identifiers WHERE id_type = 'phone' AND id_value LIKE '+861%' "
            "ORDER BY md5(id_value || $salt) LIMIT $n",
            {"salt": salt, "n": n},
        )
        .fetchall()
    )
    return [f"{p[3:6]} {p[6:10]} {p[10:]}" for (p,) in rows]


def _event_list(instance: Instance) -> bytes:
    """A sign-up sheet: 120 known phones typed with spaces, 8 unknown ones, one malformed."""
    lines = ["姓名,手机号"]
    lines += [f"来宾{i + 1},{phone}" for i, phone in enumerate(known_phones(instance, 120))]
    lines += [f"新朋友{i + 1},1390000{i:04d}" for i in range(8)]
    lines.append("手误,1380013")
    return ("\n".join(lines) + "\n").encode()
