"""The demo brand's journeys and campaigns (营销活动 / 客户旅程), on sandbox channels.

Every channel is a **sandbox**: messages are rendered, guarded and recorded as for real, then
written to ``<data dir>/outbox/<kind>.jsonl`` instead of being sent (``tail -f`` shows them).

* 生日有礼 — on the 1st of each month at 10:00, the members with a birthday that month get a 50-yuan
  coupon by SMS (the seeds' birthday campaign);
* 首单感谢与复购 — a first order triggers a thank-you SMS; a week later an A/B test: a coupon by SMS,
  points by WeChat, or nothing (the control group); the goal is another order within 14 days;
* 高价值召回 — a single campaign (一次性活动) made in one call: the big spenders who lapsed get an SMS
  now (held until 08:00 when the demo is built during quiet hours), 10 % held out as a control group.

The campaign runs once while the demo is built, so its report has numbers; the first-order journey
reacts to the live orders the demo server receives.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from tessera.runtime import Instance
from tessera.services import channels as channels_service
from tessera.services import journeys as journeys_service
from tessera.services.journey_dispatch import Dispatcher
from tessera.services.journey_worker import Progress, run_until_idle
from tessera.stores.models import AudienceRow, JourneyRow

KINDS = ("sms", "email", "wechat", "push", "webhook")
ORDER = "Order Completed"


def _edges(*pairs: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"source": p[0], "target": p[1], **({"sourceHandle": p[2]} if len(p) > 2 else {})} for p in pairs]


def birthday(audience_id: str, first_run: str) -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "monthly", "type": "entry", "label": "每月1日 10:00", "position": {"x": 0, "y": 0},
             "data": {"audience": {"audience_id": audience_id, "at": first_run, "every": "month"}}},
            {"id": "coupon", "type": "coupon", "label": "50元生日券", "position": {"x": 0, "y": 100},
             "data": {"template": "birthday_50", "valid_days": 30}},
            {"id": "sms", "type": "sms", "label": "生日祝福短信", "position": {"x": 0, "y": 200},
             "data": {"template": {"body": {
                 "zh": "{{ profile.name | default('亲爱的会员') }}，远山户外祝您生日快乐！50元生日券 {{ coupon.code }}，"
                       "{{ coupon.valid_until | date('%m月%d日') }}前有效。回复TD退订",
                 "en": "Happy birthday from Yuanshan Outdoor! Your 50-yuan coupon: {{ coupon.code }}."}}}},
        ],
        "edges": _edges(("monthly", "coupon"), ("coupon", "sms")),
        "settings": {"reentry": {"policy": "cooldown", "cooldown_days": 300},
                     "goal": {"name": ORDER, "within_days": 30}},
    }  # fmt: skip


def first_order() -> dict[str, Any]:
    arms = [{"handle": "coupon", "weight": 40, "name": "满300减30券"}, {"handle": "points", "weight": 40, "name": "双倍积分"},
            {"handle": "control", "weight": 20, "control": True, "name": "对照组"}]  # fmt: skip
    return {
        "nodes": [
            {"id": "first", "type": "entry", "label": "首单", "position": {"x": 0, "y": 0},
             "data": {"event": {"name": ORDER, "purchase": "first"}}},
            {"id": "thanks", "type": "sms", "label": "感谢短信", "position": {"x": 0, "y": 100},
             "data": {"template": {"body": {"zh": "{{ profile.name | default('您好') }}，感谢您在远山户外的首单！订单 {{ event.order_id }} 正在备货。",
                                            "en": "Thanks for your first order {{ event.order_id }} at Yuanshan Outdoor!"}},
                      "fallback": ["email"]}},
            {"id": "week", "type": "wait", "label": "7天后", "position": {"x": 0, "y": 200},
             "data": {"mode": "duration", "span": {"days": 7}}},
            {"id": "ab", "type": "ab", "label": "复购激励 A/B", "position": {"x": 0, "y": 300}, "data": {"arms": arms}},
            {"id": "coupon", "type": "coupon", "position": {"x": -200, "y": 400},
             "data": {"template": "repeat_300_30", "valid_days": 14}},
            {"id": "coupon_sms", "type": "sms", "position": {"x": -200, "y": 500},
             "data": {"template": {"body": "满300减30券 {{ coupon.code }} 已到账，14天内有效。回复TD退订"}}},
            {"id": "points", "type": "points", "position": {"x": 200, "y": 400},
             "data": {"amount": 200, "reason": "复购激励 双倍积分"}},
            {"id": "points_wx", "type": "wechat", "position": {"x": 200, "y": 500},
             "data": {"template": {"body": "双倍积分", "data": {"template_id": "TM_POINTS", "data": {
                 "first": "复购享双倍积分", "keyword1": "200 积分", "remark": "14天内下单有效"}}}, "fallback": ["sms"]}},
        ],
        "edges": _edges(("first", "thanks"), ("thanks", "week"), ("week", "ab"), ("ab", "coupon", "coupon"),
                        ("coupon", "coupon_sms"), ("ab", "points", "points"), ("points", "points_wx")),
        "settings": {"goal": {"name": ORDER, "within_days": 14}},
    }  # fmt: skip


def create_journeys(instance: Instance) -> list[journeys_service.JourneyOut]:
    """Channels, two journeys and a campaign (those not there yet); runs the campaign once."""
    from zoneinfo import ZoneInfo

    outbox = instance.data_dir.root / "outbox"
    outbox.mkdir(exist_ok=True)
    have_channels = {c.name for c in channels_service.list_channels(inst=instance)}
    for kind in KINDS:
        if f"{kind}_demo" not in have_channels:
            channels_service.create_channel(inst=instance, draft=channels_service.ChannelDraft(
                name=f"{kind}_demo", kind=kind, config={"sandbox": str(outbox / f"{kind}.jsonl")}))  # fmt: skip
    with instance.operational.session() as s:
        audiences = {r.name: r.id for r in s.scalars(select(AudienceRow))}
        have = {r.name for r in s.scalars(select(JourneyRow))}
    now = instance.clock.now()
    local = now.astimezone(ZoneInfo(instance.settings.timezone))
    first = (local.replace(day=1, hour=10, minute=0, second=0, microsecond=0) + _month()).isoformat()
    made = []
    if "生日有礼" not in have and "本月生日会员" in audiences:
        made.append(_publish(instance, "生日有礼", "Birthday gift", birthday(audiences["本月生日会员"], first)))
    if "首单感谢与复购" not in have:
        made.append(_publish(instance, "首单感谢与复购", "First order: thanks and repeat", first_order()))
    if "高价值召回" not in have and "高价值待召回" in audiences:
        made.append(journeys_service.create_campaign(inst=instance, draft=journeys_service.CampaignDraft(
            name="高价值召回", name_en="High-value win-back", audience_id=audiences["高价值待召回"], channel="sms",
            template={"body": {"zh": "{{ profile.name | default('您好') }}，好久不见！远山户外为您准备了8折回归礼，点击 https://s.yuanshan.cn/back 领取。回复TD退订",
                               "en": "We miss you! 20% off for your return: https://s.yuanshan.cn/back"}},
            fallback=["email"], control_percent=10, goal={"name": ORDER, "within_days": 14})))  # fmt: skip
    return made


def run_once(instance: Instance) -> Progress:
    """Drive the journeys at the clock's time until nothing moves (the campaign goes out)."""
    dispatcher = Dispatcher(instance)
    try:
        return run_until_idle(instance, dispatcher)
    finally:
        dispatcher.close()


def _month() -> Any:
    from dateutil.relativedelta import relativedelta

    return relativedelta(months=1)


def _publish(instance: Instance, name: str, name_en: str, definition: dict[str, Any]) -> journeys_service.JourneyOut:
    draft = journeys_service.JourneyDraft(name=name, name_en=name_en, definition=definition)
    jid = journeys_service.create_journey(inst=instance, draft=draft).id
    return journeys_service.publish(inst=instance, journey_id=jid)
