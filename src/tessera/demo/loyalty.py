"""The demo brand's loyalty programme (远山户外会员体系): coupon templates, the points programme,
member tiers, and two journeys on loyalty events.

* Coupons: 50元生日券, 满300减30复购券, 新人券, 包邮券, 会员95折 (capped), 速干袜赠品, plus the
  campaign templates the journeys of the demo issue.
* Points: 1 point per yuan; ×2 for orders in the mini-program (小程序), ×3 during 双11 (1–11 Nov);
  tier multipliers; 5 points per daily check-in, 100 on the birthday; points last a year and
  members hear 30 days before they lapse.
* Tiers over the spend of the last 365 days: 普通会员 → 银卡 ¥1,000 → 金卡 ¥5,000 → 黑钻 ¥20,000.
* Journeys: 积分到期提醒 (``Points Expiring`` → SMS) and 升级礼遇 (``Tier Changed`` up → a coupon
  and a WeChat message).

Everything goes through the same services the API uses; :func:`create_loyalty` is idempotent.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from tessera.runtime import Instance
from tessera.stores.models import CouponTemplateRow, JourneyRow

MINIPROGRAM = "wechat_miniprogram"


def coupon_templates() -> list[dict[str, Any]]:
    """Unique-code templates the journeys issue, and the shared codes (通用码) the history's orders used."""
    from tessera.demo.texts import CAMPAIGNS

    campaigns = [
        {"key": key, "name": f"{name} 满{floor}减{off}", "name_en": f"{key}: {off} off {floor}", "kind": "threshold",
         "amount": str(off), "threshold": str(floor), "public_code": code, "per_person": None, "campaign": key}
        for key, name, _utm, code, floor, off in CAMPAIGNS
    ]  # fmt: skip
    return campaigns + [
        {"key": "birthday_50", "name": "50元生日券", "name_en": "Birthday ¥50 off", "kind": "threshold",
         "amount": "50", "threshold": "199", "valid_days": 30, "per_person": None, "code_prefix": "BDAY-",
         "public_code": "BDAY-50",
         "campaign": "生日有礼", "description": "生日当月发放，满199减50，30天有效"},
        {"key": "repeat_300_30", "name": "满300减30复购券", "name_en": "Repeat order: ¥30 off ¥300",
         "kind": "threshold", "amount": "30", "threshold": "300", "valid_days": 14, "per_person": 3,
         "campaign": "首单感谢与复购"},
        {"key": "newmember_20", "name": "新人券", "name_en": "New member ¥20 off", "kind": "threshold",
         "amount": "20", "threshold": "99", "valid_days": 30, "per_person": 1, "code_prefix": "NEW-",
         "public_code": "NEWMEMBER-20"},
        {"key": "free_shipping", "name": "包邮券", "name_en": "Free shipping", "kind": "shipping",
         "valid_days": 60, "per_person": 5, "channels": [MINIPROGRAM, "app", "web"]},
        {"key": "vip_95", "name": "会员95折", "name_en": "Members 5% off", "kind": "percent", "percent": "5",
         "cap": "200", "valid_days": 90, "per_person": None, "public_code": "VIP-95"},
        {"key": "gift_socks", "name": "速干袜赠品券", "name_en": "Gift: quick-dry socks", "kind": "gift",
         "gift": "速干袜 SKU-SOCK-01", "threshold": "500", "valid_days": 30, "stock": 2000, "per_person": 1,
         "channels": ["offline_store"]},
        {"key": "tier_up_gift", "name": "升级礼遇券", "name_en": "Tier upgrade gift", "kind": "fixed",
         "amount": "30", "valid_days": 30, "per_person": 4, "campaign": "升级礼遇"},
    ]  # fmt: skip


def points_program(now: datetime) -> dict[str, Any]:
    tz = ZoneInfo("Asia/Shanghai")
    year = now.astimezone(tz).year
    start = datetime(year, 11, 1, tzinfo=tz)
    return {
        "rates": [{"currency": "CNY", "points_per_unit": "1"}, {"currency": "USD", "points_per_unit": "7"}],
        "lifetime_days": 365,
        "notice_days": 30,
        "multipliers": [
            {"key": "miniprogram_x2", "name": "小程序下单双倍积分", "name_en": "Mini-program orders ×2",
             "factor": "2", "channels": [MINIPROGRAM]},
            {"key": "double11_x3", "name": "双11 三倍积分", "name_en": "Double 11 ×3", "factor": "3",
             "start": start.isoformat(), "end": (start + timedelta(days=11)).isoformat(), "campaign": "double11"},
        ],
        "stack": "max",
        "bonuses": [
            {"key": "checkin", "name": "每日签到", "name_en": "Daily check-in", "event": "Checked In", "points": 5,
             "per": "day"},
            {"key": "birthday", "name": "生日积分", "name_en": "Birthday points", "event": "birthday", "points": 100,
             "per": "year"},
        ],
    }  # fmt: skip


def tier_program() -> dict[str, Any]:
    return {
        "enabled": True,
        "metric": "spend",
        "currency": "CNY",
        "window_days": 365,
        "levels": [
            {"key": "regular", "name": "普通会员", "name_en": "Member", "threshold": "0"},
            {"key": "silver", "name": "银卡会员", "name_en": "Silver", "threshold": "1000", "keep": "800",
             "benefits": {"points_multiplier": "1.2", "perks": [{"zh": "生日双倍积分", "en": "Double birthday points"}]}},
            {"key": "gold", "name": "金卡会员", "name_en": "Gold", "threshold": "5000", "keep": "4000",
             "benefits": {"points_multiplier": "1.5", "free_shipping": True}},
            {"key": "black", "name": "黑钻会员", "name_en": "Black diamond", "threshold": "20000", "keep": "16000",
             "benefits": {"points_multiplier": "2", "free_shipping": True, "birthday_coupon": "birthday_50",
                          "perks": [{"zh": "专属顾问", "en": "A personal adviser"}]}},
        ],
        "review": "0 3 * * *",
        "min_stay_days": 30,
        "downgrade": "one",
    }  # fmt: skip


def points_expiring() -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "expiring", "type": "entry", "label": "积分即将过期", "position": {"x": 0, "y": 0},
             "data": {"event": {"name": "Points Expiring"}}},
            {"id": "sms", "type": "sms", "label": "到期提醒短信", "position": {"x": 0, "y": 100},
             "data": {"template": {"body": {
                 "zh": "{{ profile.name | default('亲爱的会员') }}，您有 {{ event.points }} 积分将于"
                       "{{ event.expires_at | date('%m月%d日') }}到期，快来远山户外兑换好礼吧！回复TD退订",
                 "en": "{{ event.points }} Yuanshan points expire on {{ event.expires_at | date('%d %b') }}."}}}},
        ],
        "edges": [{"source": "expiring", "target": "sms"}],
        "settings": {"reentry": {"policy": "always"}},
    }  # fmt: skip


def tier_upgrade() -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "up", "type": "entry", "label": "会员升级", "position": {"x": 0, "y": 0},
             "data": {"event": {"name": "Tier Changed", "where": [{"property": "direction", "op": "eq", "value": "up"}]}}},
            {"id": "gift", "type": "coupon", "label": "升级礼遇券", "position": {"x": 0, "y": 100},
             "data": {"template": "tier_up_gift"}},
            {"id": "wx", "type": "wechat", "label": "升级通知", "position": {"x": 0, "y": 200},
             "data": {"template": {"body": "恭喜升级{{ event.to_name }}", "data": {"template_id": "TM_TIER_UP", "data": {
                 "first": "恭喜您升级为{{ event.to_name }}！", "keyword1": "{{ event.to_name }}",
                 "remark": "升级礼遇券 {{ coupon.code }} 已到账"}}}, "fallback": ["sms"]}},
        ],
        "edges": [{"source": "up", "target": "gift"}, {"source": "gift", "target": "wx"}],
        "settings": {"reentry": {"policy": "always"}},
    }  # fmt: skip


def create_loyalty(instance: Instance) -> dict[str, int]:
    """Templates, the points programme and the tiers (those not set yet), then one loyalty round:
    the history's orders become points, redemptions and tiers (before any journey listens, so the
    back-fill sends nothing)."""
    from sqlalchemy import func

    from tessera.services import coupons, points, tiers
    from tessera.services.loyalty_common import get_config
    from tessera.services.loyalty_worker import run_once
    from tessera.stores.models import MemberTierRow, PointsAccountRow

    now = instance.clock.now()
    with instance.operational.session() as s:
        have = set(s.scalars(select(CouponTemplateRow.key)))
        points_set = get_config(s, "points")[1] > 0
        tiers_set = get_config(s, "tiers")[1] > 0
    made = 0
    for body in coupon_templates():
        if body["key"] not in have:
            coupons.create_template(instance, body)
            made += 1
    if not points_set:
        points.set_program(instance, points_program(now))
    if not tiers_set:
        tiers.set_program(instance, tier_program())
    done = run_once(instance, now)
    with instance.operational.session() as s:
        total = int(s.scalar(select(func.coalesce(func.sum(PointsAccountRow.balance), 0))) or 0)
        members = int(s.scalar(select(func.count()).select_from(MemberTierRow)) or 0)
    return {"templates": made, "orders": done.orders, "points": total, "members": members}


def create_loyalty_journeys(instance: Instance) -> list[Any]:
    """积分到期提醒 and 升级礼遇 (those not there yet)."""
    from tessera.demo.journeys import _publish

    with instance.operational.session() as s:
        journeys = set(s.scalars(select(JourneyRow.name)))
    made = []
    if "积分到期提醒" not in journeys:
        made.append(_publish(instance, "积分到期提醒", "Points expiring reminder", points_expiring()))
    if "升级礼遇" not in journeys:
        made.append(_publish(instance, "升级礼遇", "Tier upgrade gift", tier_upgrade()))
    return made
