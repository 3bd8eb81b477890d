"""Live traffic for the demo: recent Segment messages from the app (官方App), sent after the server starts.

``live_messages(users=…, seed=…, now=…, count=…)`` returns camelCase Segment messages, as the
iOS / Android libraries send them, from the last hour before ``now``: members browsing and buying
(new orders, ``Order Completed`` with revenue), signing in (``identify`` with their phone), daily
check-ins, coupon claims, and brand-new installs arriving from a Douyin or Xiaohongshu ad
(``context.campaign``). The people are the demo's own (the first chunk of :mod:`.people`), so live
events join their history. Deterministic for the same arguments.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import numpy as np

from tessera.demo.catalog import CATEGORIES, MONTH_WEIGHTS, build_catalog
from tessera.demo.generate import CHUNK
from tessera.demo.people import Keys, make_people
from tessera.demo.season import build_calendar
from tessera.demo.texts import ANDROID_MODELS, CAMPAIGNS, IOS_MODELS, UTM_CONTENTS, UTM_SOURCES

_CST = timezone(timedelta(hours=8))
_SCENARIOS = ("browse", "buy", "sign_in", "check_in", "coupon", "install")
_WEIGHTS = np.array([0.45, 0.12, 0.13, 0.12, 0.08, 0.10])


def _iso(t: datetime) -> str:
    return t.astimezone(_CST).isoformat(timespec="milliseconds")


def live_messages(*, users: int, seed: int, now: datetime, count: int) -> list[dict[str, Any]]:
    """About ``count`` Segment messages (whole sessions), oldest first, all before ``now``."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    rng = np.random.default_rng([seed, 0x11FE, users])
    cal = build_calendar(now)
    catalog = build_catalog(seed)
    people = make_people(n=min(users, CHUNK), base=0, seed=seed, chunk=0, cal=cal, keys=Keys.for_seed(seed))
    app_users = np.flatnonzero(people.has_app)
    members = app_users[people.member[app_users]]
    product_ids = catalog.product_ids.to_pylist()
    names = catalog.table.column("name").to_pylist()
    cats = catalog.table.column("category").to_pylist()
    month_w = MONTH_WEIGHTS[:, (now + timedelta(hours=8)).month - 1]
    campaign_index = int(cal.campaign[-1])
    campaign_name = (
        f"{CAMPAIGNS[campaign_index][2]}_{(now + timedelta(hours=8)).year}" if campaign_index >= 0 else "always_on"
    )
    coupon = CAMPAIGNS[campaign_index][3] if campaign_index >= 0 else "VIP-95"
    out: list[dict[str, Any]] = []
    order_no = 0

    def uid() -> str:
        return str(uuid.UUID(bytes=rng.bytes(16), version=4))

    def pick_product(person: int | None) -> int:
        w = month_w * (
            1 + 2.0 * (np.arange(len(CATEGORIES)) == (people.fav_category[person] if person is not None else -1))
        )
        cat = int(rng.choice(len(CATEGORIES), p=w / w.sum()))
        rows = np.flatnonzero(catalog.category == cat)
        return int(rows[rng.integers(0, len(rows))])

    def product_props(row: int) -> dict[str, Any]:
        return {
            "product_id": product_ids[row],
            "name": names[row],
            "category": cats[row],
            "price": int(catalog.price_cents[row]) / 100,
            "currency": "CNY",
        }

    while len(out) < count:
        scenario = _SCENARIOS[int(rng.choice(len(_SCENARIOS), p=_WEIGHTS / _WEIGHTS.sum()))]
        if scenario != "install" and not len(members):
            scenario = "install"
        t = now - timedelta(seconds=float(rng.uniform(30, 3600)))
        if scenario == "install":
            person = None
            ios = bool(rng.random() < 0.45)
            device = uid().upper() if ios else uid().replace("-", "")[:16]
            user_id = None
            model_i = int(rng.integers(0, 4))
        else:
            person = int(members[rng.integers(0, len(members))])
            ios = bool(people.ios[person])
            device = str(people.device_id[person].as_py())
            user_id = str(people.member_id[person].as_py())
            model_i = int(people.gidx[person] % 4)
        maker, model = IOS_MODELS[model_i % len(IOS_MODELS)] if ios else ANDROID_MODELS[model_i % len(ANDROID_MODELS)]
        context: dict[str, Any] = {
            "library": {"name": "analytics-ios", "version": "4.1.8"}
            if ios
            else {"name": "analytics-android", "version": "4.11.3"},
            "app": {"name": "远山户外", "version": "5.2.0", "build": "520"},
            "device": {"id": device, "type": "ios" if ios else "android", "manufacturer": maker, "model": model},
            "os": {"name": "iOS", "version": "17.5"} if ios else {"name": "Android", "version": "14"},
            "locale": "zh-CN",
            "timezone": "Asia/Shanghai",
        }
        if ios:
            context["device"]["advertisingId"] = device
        if scenario == "install" or rng.random() < 0.1:
            src = int(rng.integers(0, 2))  # the app's ads run on Douyin and Xiaohongshu
            context["campaign"] = {
                "name": campaign_name,
                "source": UTM_SOURCES[src][0],
                "medium": UTM_SOURCES[src][1],
                "content": UTM_CONTENTS[int(rng.integers(0, len(UTM_CONTENTS)))],
            }
        steps: list[tuple[str, str | None, dict[str, Any]]] = []  # (type, event/name, properties or traits)
        if scenario == "install":
            steps.append(("track", "Application Installed", {"version": "5.2.0", "build": "520"}))
            steps.append(("track", "Application Opened", {"from_background": False}))
            steps.append(("screen", "Home", {"title": "首页", "path": "/"}))
            for _ in range(int(rng.integers(1, 4))):
                steps.append(("track", "Product Viewed", product_props(pick_product(None))))
        elif scenario == "sign_in":
            steps.append(("screen", "Member Center", {"title": "会员中心", "path": "/member"}))
            steps.append(("track", "Signed In", {"method": "sms_code"}))
            traits: dict[str, Any] = {"member_id": user_id, "name": people.name[person].as_py()}
            if people.has_phone[person]:
                traits["phone"] = people.phone[person].as_py()
            steps.append(("identify", None, traits))
        elif scenario == "check_in":
            steps.append(("screen", "Member Center", {"title": "会员中心", "path": "/member"}))
            streak = int(min(rng.geometric(0.2), 14))
            steps.append(("track", "Checked In", {"streak_days": streak, "points": 50 if streak == 7 else 5}))
        elif scenario == "coupon":
            steps.append(("screen", "Campaign Landing", {"title": "活动会场", "path": "/campaign"}))
            steps.append(("track", "Coupon Claimed", {"coupon_id": coupon}))
        else:
            steps.append(("screen", "Home", {"title": "首页", "path": "/"}))
            viewed = [pick_product(person) for _ in range(int(rng.integers(1, 5)))]
            for row in viewed:
                steps.append(("track", "Product Viewed", product_props(row)))
            if scenario == "buy" or rng.random() < 0.25:
                row = viewed[-1]
                steps.append(("track", "Product Added", {**product_props(row), "quantity": 1}))
                if scenario == "buy":
                    order_no += 1
                    price = int(catalog.price_cents[row]) / 100
                    order_id = f"AP{(now + timedelta(hours=8)):%y%m%d}L{seed % 1000:03d}{order_no:05d}"
                    steps.append(
                        ("track", "Checkout Started", {"order_id": order_id, "total": price, "currency": "CNY"})
                    )
                    steps.append(
                        (
                            "track",
                            "Order Completed",
                            {
                                "order_id": order_id,
                                "total": price,
                                "revenue": price,
                                "currency": "CNY",
                                "products": [{**product_props(row), "quantity": 1}],
                            },
                        )
                    )
        for kind, name, body in steps:
            msg: dict[str, Any] = {
                "type": kind,
                "messageId": uid(),
                "anonymousId": device,
                "timestamp": _iso(t),
                "context": context,
                "integrations": {},
            }
            if user_id is not None:
                msg["userId"] = user_id
            if kind == "track":
                msg["event"] = name
                msg["properties"] = body
            elif kind == "screen":
                msg["name"] = name
                msg["properties"] = body
            else:
                msg["traits"] = body
            out.append(msg)
            t = min(t + timedelta(seconds=float(rng.exponential(20.0)) + 0.5), now - timedelta(milliseconds=1))
    out.sort(key=lambda m: m["timestamp"])
    return out
