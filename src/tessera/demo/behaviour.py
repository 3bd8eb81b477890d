"""Behaviour events (行为事件) of the demo brand, in Segment's shape, for the app, web and mini-program.

Groups of events, each built for all people at once (numpy, no per-event Python):

* browsing sessions — a landing page / screen (with UTM on campaign traffic), product views,
  add-to-cart, searches, list views, shares, abandoned checkouts; members sign in (``Signed In`` +
  ``identify`` with their phone or email);
* purchase funnels for every own-channel order — views, adds, ``Checkout Started``,
  ``Coupon Used``, ``Order Completed`` (same ``order_id`` and revenue as the order) and later
  ``Order Refunded`` for refunds;
* member programme — ``Signed Up``, daily ``Checked In`` streaks (签到), ``Coupon Claimed``;
* KOC sharers (10+ ``Product Shared``), ``Activity Registered`` (hiking events),
  ``Store Fitting Booked``.

Identifiers: the app's ``anonymousId`` is the device id, the web's a cookie id, the mini-program's
its openid (with the unionid in ``context.externalIds``); ``userId`` is the member id once signed in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tessera.demo import frames
from tessera.demo.catalog import CATEGORY_ZH, MONTH_WEIGHTS, Catalog
from tessera.demo.orders import COUPON_CODES, REFUNDED, Orders
from tessera.demo.people import APP, CHANNELS, MINI, WEB, People
from tessera.demo.season import DAY_US, EVENT_DAYS, Calendar
from tessera.demo.texts import (
    ACTIVITIES,
    ANDROID_MODELS,
    CAMPAIGNS,
    IOS_MODELS,
    LANDINGS,
    STORES,
    UTM_CONTENTS,
    UTM_SOURCES,
    UTM_TERMS,
)  # fmt: skip

# Event kinds (codes); names by code, LANDING is a page or screen, IDENTIFY an identify call.
(LANDING, VIEWED, ADDED, CHECKOUT, COMPLETED, REFUND, SHARED, SIGNED_IN, IDENTIFY, CHECKED_IN, CLAIMED, USED,
 ACTIVITY, FITTING, SEARCHED, LISTED, SIGNED_UP) = range(17)  # fmt: skip
EVENT_NAMES = [
    "", "Product Viewed", "Product Added", "Checkout Started", "Order Completed", "Order Refunded", "Product Shared",
    "Signed In", "", "Checked In", "Coupon Claimed", "Coupon Used", "Activity Registered", "Store Fitting Booked",
    "Products Searched", "Product List Viewed", "Signed Up",
]  # fmt: skip
#: The event sources (one file and one source each).
EVENT_CHANNELS = (APP, WEB, MINI)
SHARE_VIA = ["wechat_friend", "wechat_moments", "poster"]
SIGN_IN_METHODS = ["sms_code", "password", "wechat"]
WEB_HOST = "https://www.yuanshan-outdoor.cn"
MINI_APP_ID = "wx7d3f5a9c2e81b604"

_D = frames.DICT
EVENT_SCHEMA = pa.schema([
    ("message_id", pa.string()), ("type", _D), ("event", _D), ("user_id", pa.string()),
    ("anonymous_id", pa.string()), ("timestamp", frames.TS), ("received_at", frames.TS), ("properties", pa.string()),
    ("revenue", frames.MONEY), ("currency", _D), ("order_id", pa.string()), ("product_id", _D),
    ("category", _D), ("channel", _D), ("device_id", pa.string()), ("utm_source", _D),
    ("utm_medium", _D), ("utm_campaign", _D), ("utm_term", _D), ("utm_content", _D),
    ("context", pa.string()), ("traits", pa.string()),
])  # fmt: skip

_ROW_FIELDS = ("session", "kind", "ts", "product", "order", "coupon", "extra", "extra2", "logged")
_SESSION_FIELDS = ("person", "channel", "utm", "campaign", "year", "term", "content")


@dataclass
class _Acc:
    """Sessions and their rows, gathered group by group."""

    sessions: list[dict[str, np.ndarray]] = field(default_factory=list)
    rows: list[dict[str, np.ndarray]] = field(default_factory=list)
    n_sessions: int = 0

    def add(self, sessions: dict[str, np.ndarray], rows: dict[str, np.ndarray]) -> None:
        k = len(sessions["person"])
        s = {f: np.asarray(sessions.get(f, np.full(k, -1)), dtype=np.int64) for f in _SESSION_FIELDS}
        r_n = len(rows["session"])
        r = {f: np.asarray(rows.get(f, np.full(r_n, -1)), dtype=np.int64) for f in _ROW_FIELDS}
        r["session"] = r["session"] + self.n_sessions
        self.sessions.append(s)
        self.rows.append(r)
        self.n_sessions += k

    def single(self, person: np.ndarray, channel: np.ndarray, rows: dict[str, np.ndarray]) -> None:
        """Events that are their own session (one row per session)."""
        self.add({"person": person, "channel": channel}, {"session": np.arange(len(person)), **rows})

    def arrays(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        s = {f: np.concatenate([x[f] for x in self.sessions]) for f in _SESSION_FIELDS}
        r = {f: np.concatenate([x[f] for x in self.rows]) for f in _ROW_FIELDS}
        return s, r


@dataclass
class Events:
    tables: dict[str, pa.Table]  # per channel name
    #: per (person row, event channel index 0..2): identifiers the events revealed
    seen_anon: np.ndarray
    seen_member: np.ndarray
    seen_phone: np.ndarray
    seen_email: np.ndarray
    rows: int


def _window(p: People) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    first = np.maximum(p.first_day, -EVENT_DAYS)
    last = p.last_day
    return first, last, last >= first


def _repeat(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(owner index, position within owner) for ``counts[i]`` rows per owner."""
    owner = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return owner, np.arange(len(owner)) - starts[owner]


def _member_channel(rng: np.random.Generator, p: People, rows: np.ndarray) -> np.ndarray:
    """The mini-program if the person uses it, else the app."""
    return np.where(p.has_mini[rows] & (~p.has_app[rows] | (rng.random(len(rows)) < 0.7)), MINI, APP)


def make_events(*, people: People, orders: Orders, catalog: Catalog, cal: Calendar, seed: int, chunk: int) -> Events:
    rng = np.random.default_rng([seed, chunk, 3])
    p = people
    acc = _Acc()
    first, last, active = _window(p)
    joined_by = np.where(p.member, p.reg_day, 10**6)

    # -- browsing sessions ----------------------------------------------------------------------
    digital = p.has_app | p.has_web | p.has_mini
    lam = 5.5 * p.activity * (np.maximum(last - first + 1, 0) / EVENT_DAYS)
    counts = np.where(digital & active, rng.poisson(lam), 0)
    sp = np.repeat(np.arange(p.n), counts)
    k = len(sp)
    day = cal.sample_days(rng, first[sp], last[sp])
    start = cal.micros(day, cal.sample_seconds(rng, k))
    cw = np.stack([p.has_app[sp] * 0.45, p.has_web[sp] * 0.20, p.has_mini[sp] * 0.35], axis=1)
    ch = np.array(EVENT_CHANNELS)[frames.categorical(rng, cw)]
    login_p = np.select([ch == APP, ch == WEB], [0.8, 0.5], 0.85)
    logged = (day >= joined_by[sp]) & (rng.random(k) < login_p)
    signin = logged & (rng.random(k) < 0.3)
    utm = _utm(rng, cal, day, np.select([ch == APP, ch == WEB], [0.15, 0.4], 0.25))
    interest = frames.categorical(
        rng,
        MONTH_WEIGHTS[:, cal.month[cal.day_index(day)] - 1].T
        * (1 + 2.0 * (np.arange(MONTH_WEIGHTS.shape[0]) == p.fav_category[sp][:, None])),
    )
    length = np.minimum(1 + rng.poisson(2.2, k), 15)
    owner, pos = _repeat(length)
    m = len(owner)
    gaps = np.where(pos == 0, 0, rng.exponential(45.0, m) * 1e6).astype(np.int64)
    cum = np.cumsum(gaps)
    ts = start[owner] + cum - cum[np.cumsum(length) - length][owner]
    kinds = np.array([VIEWED, ADDED, SEARCHED, LISTED, SHARED, CHECKOUT])
    share_boost = np.where(ch[owner] == MINI, 0.10, 0.04)
    kw = np.stack(
        [np.full(m, 0.60), np.full(m, 0.13), np.full(m, 0.08), np.full(m, 0.10), share_boost, np.full(m, 0.04)], axis=1
    )
    kind = np.where(pos == 0, LANDING, kinds[frames.categorical(rng, kw)])
    product = catalog.sample(rng, interest[owner], p.apparel_size[sp[owner]], p.shoe_size[sp[owner]])
    has_product = np.isin(kind, [VIEWED, ADDED, SHARED, CHECKOUT])
    landing = np.where(utm["utm"][owner] >= 0, 1, rng.choice([0, 0, 0, 2, 3, 4], m))
    extra = np.select(
        [kind == LANDING, kind == SEARCHED, kind == LISTED, kind == SHARED],
        [landing, rng.integers(0, len(UTM_TERMS), m), interest[owner], rng.integers(0, len(SHARE_VIA), m)],
        -1,
    )
    acc.add(
        {"person": sp, "channel": ch, **utm},
        {
            "session": owner, "kind": kind, "ts": ts, "product": np.where(has_product, product, -1),
            "extra": extra, "logged": logged[owner] & ~(signin[owner] & (pos == 0)),
        },
    )  # fmt: skip
    # Sign-in inside the session: a track and an identify carrying the phone / email.
    si = np.flatnonzero(signin)
    acc.add(
        {"person": sp[si], "channel": ch[si], **{key: v[si] for key, v in utm.items()}},
        {
            "session": np.repeat(np.arange(len(si)), 2), "kind": np.tile([SIGNED_IN, IDENTIFY], len(si)),
            "ts": np.repeat(start[si], 2) + np.tile([1_500_000, 2_000_000], len(si)),
            "extra": np.repeat(rng.integers(0, len(SIGN_IN_METHODS), len(si)), 2), "logged": np.ones(2 * len(si)),
        },
    )  # fmt: skip

    _purchases(acc, rng, p, orders, cal)
    _member_programme(acc, rng, p, catalog, cal, first, last, joined_by)

    sessions, rows = acc.arrays()
    return _build(rng=rng, people=p, orders=orders, catalog=catalog, cal=cal, sessions=sessions, rows=rows)


def _utm(rng: np.random.Generator, cal: Calendar, day: np.ndarray, share: np.ndarray) -> dict[str, np.ndarray]:
    """Per session: UTM source index (-1 none), campaign (-1 always-on), year, term, content."""
    k = len(day)
    src = np.where(rng.random(k) < share, frames.pick(rng, k, [w for _, _, w in UTM_SOURCES]), -1)
    di = cal.day_index(day)
    baidu = src == next(i for i, u in enumerate(UTM_SOURCES) if u[0] == "baidu")
    return {
        "utm": src,
        "campaign": np.where(src >= 0, cal.campaign[di], -1),
        "year": cal.year[di],
        "term": np.where(baidu, rng.integers(0, len(UTM_TERMS), k), -1),
        "content": np.where(src >= 0, rng.integers(0, len(UTM_CONTENTS), k), -1),
    }


def _purchases(acc: _Acc, rng: np.random.Generator, p: People, o: Orders, cal: Calendar) -> None:
    """The funnel behind each own-channel order in the event window, and refunds."""
    sel = np.flatnonzero(np.isin(o.channel, EVENT_CHANNELS) & (o.day >= -EVENT_DAYS))
    n_items = np.diff(o.item_offsets)[sel]
    with_coupon = o.coupon[sel] >= 0
    per = 2 * n_items + 2 + with_coupon
    owner, pos = _repeat(per)
    order = sel[owner]
    ni = n_items[owner]
    item = o.item_offsets[order] + np.where(pos < ni, pos, pos - ni)
    kind = np.select(
        [pos < ni, pos < 2 * ni, pos == 2 * ni, (pos == 2 * ni + 1) & with_coupon[owner]],
        [VIEWED, ADDED, CHECKOUT, USED],
        COMPLETED,
    )
    offset_s = np.select(
        [kind == VIEWED, kind == ADDED, kind == CHECKOUT, kind == USED],
        [-900 + 40 * pos, -600 + 40 * (pos - ni), -120, -30],
        0,
    )
    utm = _utm(rng, cal, o.day[sel], np.where(cal.peak[cal.day_index(o.day[sel])] > 0, 0.35, 0.15))
    acc.add(
        {"person": o.person[sel], "channel": o.channel[sel], **utm},
        {
            "session": owner, "kind": kind, "ts": o.ts_us[order] + offset_s * 1_000_000,
            "product": np.where(np.isin(kind, [VIEWED, ADDED]), o.item_product[np.minimum(item, len(o.item_product) - 1)], -1),
            "order": np.where(np.isin(kind, [CHECKOUT, USED, COMPLETED]), order, -1),
            "coupon": np.where(kind == USED, o.coupon[order], -1), "logged": o.member_shown[order],
        },
    )  # fmt: skip
    ref = sel[o.status[sel] == REFUNDED]
    at = o.ts_us[ref] + rng.integers(5, 15, len(ref)) * DAY_US + rng.integers(0, 36_000, len(ref)) * 1_000_000
    keep = at < cal.midnight_us
    ref, at = ref[keep], at[keep]
    acc.single(
        o.person[ref],
        o.channel[ref],
        {"kind": np.full(len(ref), REFUND), "ts": at, "order": ref, "logged": o.member_shown[ref]},
    )


def _member_programme(
    acc: _Acc,
    rng: np.random.Generator,
    p: People,
    catalog: Catalog,
    cal: Calendar,
    first: np.ndarray,
    last: np.ndarray,
    joined_by: np.ndarray,
) -> None:
    n = p.n
    member_first = np.maximum(first, joined_by)
    member_active = p.member & (member_first <= last)
    app_or_mini = p.has_app | p.has_mini

    # Signed Up: members who joined in the window on the mini-program, the app or the web shop.
    reg_event_ch = np.array([MINI, APP, -1, -1, WEB, -1])[p.reg_channel]
    uses = np.select(
        [reg_event_ch == MINI, reg_event_ch == APP, reg_event_ch == WEB], [p.has_mini, p.has_app, p.has_web], False
    )
    su = np.flatnonzero(p.member & uses & (p.reg_day >= -EVENT_DAYS) & (p.reg_day <= last))
    t0 = cal.micros(p.reg_day[su], cal.sample_seconds(rng, len(su)))
    acc.add(
        {"person": su, "channel": reg_event_ch[su]},
        {
            "session": np.repeat(np.arange(len(su)), 2), "kind": np.tile([SIGNED_UP, IDENTIFY], len(su)),
            "ts": np.repeat(t0, 2) + np.tile([0, 500_000], len(su)), "logged": np.ones(2 * len(su)),
        },
    )  # fmt: skip

    # Daily check-in streaks (签到): engaged members, some streaks reach 7 and 14 days.
    engaged = np.flatnonzero(member_active & app_or_mini & (rng.random(n) < 0.12 * np.clip(p.activity, 0.3, 2.5)))
    streaks = 1 + rng.poisson(1.0, len(engaged))
    sp = np.repeat(engaged, streaks)
    length = np.minimum(rng.geometric(0.2, len(sp)), 21)
    span = last[sp] - member_first[sp] + 1
    start = member_first[sp] + (rng.random(len(sp)) * np.maximum(span - length + 1, 1)).astype(np.int64)
    owner, pos = _repeat(length)
    person = sp[owner]
    day = start[owner] + pos
    keep = day <= last[person]
    owner, pos, person, day = owner[keep], pos[keep], person[keep], day[keep]
    morning = rng.random(len(sp)) < 0.6
    secs = np.where(
        morning[owner],
        7 * 3600 + rng.integers(0, 9000, len(owner)),
        20 * 3600 + 1800 + rng.integers(0, 9000, len(owner)),
    )
    streak_ch = _member_channel(rng, p, sp)
    points = np.select([(pos + 1) % 14 == 0, (pos + 1) % 7 == 0], [100, 50], 5)
    acc.single(
        person,
        streak_ch[owner],
        {
            "kind": np.full(len(person), CHECKED_IN),
            "ts": cal.micros(day, secs),
            "extra": pos + 1,
            "extra2": points,
            "logged": np.ones(len(person)),
        },
    )

    # Coupon claims: the running campaign's coupon, else the member coupon.
    claimers = np.flatnonzero(member_active & app_or_mini & (rng.random(n) < 0.3))
    cp = np.repeat(claimers, 1 + rng.poisson(0.8, len(claimers)))
    day = cal.sample_days(rng, member_first[cp], last[cp])
    campaign = cal.campaign[cal.day_index(day)]
    coupon = np.where(campaign >= 0, campaign, COUPON_CODES.index("VIP-95"))
    acc.single(
        cp,
        _member_channel(rng, p, cp),
        {
            "kind": np.full(len(cp), CLAIMED),
            "ts": cal.micros(day, cal.sample_seconds(rng, len(cp))),
            "coupon": coupon,
            "logged": np.ones(len(cp)),
        },
    )

    # KOC sharers: 10+ shares in the mini-program (the "shared 10+ times → referral reward" story).
    koc = np.flatnonzero(p.has_mini & (first <= last) & (rng.random(n) < 0.015))
    kp = np.repeat(koc, 10 + rng.poisson(12, len(koc)))
    day = cal.sample_days(rng, first[kp], last[kp])
    product = catalog.sample(rng, p.fav_category[kp], p.apparel_size[kp], p.shoe_size[kp])
    acc.single(
        kp,
        np.full(len(kp), MINI),
        {
            "kind": np.full(len(kp), SHARED), "ts": cal.micros(day, cal.sample_seconds(rng, len(kp))), "product": product,
            "extra": rng.integers(0, len(SHARE_VIA), len(kp)), "logged": day >= joined_by[kp],
        },
    )  # fmt: skip

    # Hiking activities (活动报名) and store fitting bookings (预约到店试穿).
    hikers = np.flatnonzero(member_active & p.has_mini & (rng.random(n) < 0.05))
    hp = np.repeat(hikers, 1 + (rng.random(len(hikers)) < 0.3))
    day = cal.sample_days(rng, member_first[hp], last[hp])
    acc.single(
        hp,
        np.full(len(hp), MINI),
        {
            "kind": np.full(len(hp), ACTIVITY), "ts": cal.micros(day, cal.sample_seconds(rng, len(hp))),
            "extra": rng.integers(0, len(ACTIVITIES), len(hp)), "extra2": day + rng.integers(7, 31, len(hp)),
            "logged": np.ones(len(hp)),
        },
    )  # fmt: skip
    fitters = np.flatnonzero(member_active & app_or_mini & (p.store >= 0) & (rng.random(n) < 0.04))
    day = cal.sample_days(rng, member_first[fitters], last[fitters])
    acc.single(
        fitters,
        _member_channel(rng, p, fitters),
        {
            "kind": np.full(len(fitters), FITTING), "ts": cal.micros(day, cal.sample_seconds(rng, len(fitters))),
            "extra": p.store[fitters], "extra2": day + rng.integers(1, 8, len(fitters)),
            "product": catalog.sample(rng, p.fav_category[fitters], p.apparel_size[fitters], p.shoe_size[fitters]),
            "logged": np.ones(len(fitters)),
        },
    )  # fmt: skip


# -- columns ---------------------------------------------------------------------------------------
def _const(value: str, k: int) -> pa.Array:
    return pa.array([value] * k, pa.string())


def _by_kind(n: int, groups: list[tuple[np.ndarray, Callable[[np.ndarray], pa.Array]]]) -> pa.Array:
    """A column built per group of rows (``build(rows)`` for the rows of each mask), null elsewhere."""
    parts: list[pa.Array] = []
    where_: list[np.ndarray] = []
    for mask, build in groups:
        rows = np.flatnonzero(mask)
        if len(rows):
            parts.append(build(rows))
            where_.append(rows)
    if not parts:
        return pa.nulls(n, pa.string())
    rows = np.concatenate(where_)
    position = np.full(n, -1)
    position[rows] = np.arange(len(rows))
    return frames.take(pa.concat_arrays(parts), np.maximum(position, 0), position >= 0)


def _campaign_names(years: np.ndarray) -> tuple[list[str], int]:
    """utm_campaign values '<stem>_<year>' for every campaign and year of the history, then 'always_on'."""
    y0 = int(years.min())
    span = int(years.max()) - y0 + 1
    names = [f"{c[2]}_{y0 + y}" for c in CAMPAIGNS for y in range(span)] + ["always_on"]
    return names, y0


def _campaign_code(s: dict[str, np.ndarray], y0: int, span: int) -> np.ndarray:
    camp = s["campaign"]
    return np.where(camp >= 0, np.maximum(camp, 0) * span + (s["year"] - y0), len(CAMPAIGNS) * span)


def _contexts(p: People, s: dict[str, np.ndarray], cal: Calendar) -> pa.Array:
    """Per session: the context JSON (the anonymousId and device id come from the person and channel).

    The constant part of a context is built once per (person, channel); the campaign (UTM) part
    per session.
    """
    person, ch = s["person"], s["channel"]
    ev = np.full(len(CHANNELS), 0)
    for i, c in enumerate(EVENT_CHANNELS):
        ev[c] = i
    pair, inverse = np.unique(person * 3 + ev[ch], return_inverse=True)
    pp = pair // 3
    pc_ch = np.array(EVENT_CHANNELS)[pair % 3]

    def app(x: np.ndarray) -> pa.Array:
        px = pp[x]
        ios = p.ios[px].astype(np.int64)
        models = IOS_MODELS + ANDROID_MODELS
        model_i = p.gidx[px] % 4  # a person keeps one phone
        midx = np.where(ios == 1, model_i % len(IOS_MODELS), len(IOS_MODELS) + model_i % len(ANDROID_MODELS))
        dev = p.device_id.take(pa.array(px))
        library = ['{"name":"analytics-android","version":"4.11.3"}', '{"name":"analytics-ios","version":"4.1.8"}']
        os_ = ['{"name":"Android","version":"14"}', '{"name":"iOS","version":"17.5"}']
        device_type = ['","type":"android","manufacturer":"', '","type":"ios","manufacturer":"']
        advertising = frames.where(ios == 1, frames.concat(',"advertisingId":"', dev, '"'), _const("", len(x)))
        return frames.concat(
            '{"library":', frames.take(library, ios),
            ',"app":{"name":"远山户外","version":"5.2.0","build":"520"},"device":{"id":"', dev,
            frames.take(device_type, ios), frames.take([m[0] for m in models], midx),
            '","model":"', frames.take([m[1] for m in models], midx), '"', advertising,
            '},"os":', frames.take(os_, ios), ',"locale":"zh-CN"',
        )  # fmt: skip

    def web(x: np.ndarray) -> pa.Array:
        agents = [
            '"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36"',
            '"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15"',
        ]
        return frames.concat(
            '{"library":{"name":"analytics.js","version":"5.2.0"},"userAgent":',
            frames.take(agents, p.ios[pp[x]].astype(np.int64)),
            ',"locale":"zh-CN"',
        )

    def mini(x: np.ndarray) -> pa.Array:
        px = pa.array(pp[x])
        tail = '","type":"{}","collection":"users","encoding":"none"}}'
        ext_open = frames.concat('{"id":"', p.openid_mini.take(px), tail.format("wechat_openid"))
        ext_union = frames.concat('{"id":"', p.unionid.take(px), tail.format("wechat_unionid"), ",")
        ext_union = frames.where(p.has_unionid[pp[x]], ext_union, _const("", len(x)))
        return frames.concat(
            '{"library":{"name":"tessera-miniprogram","version":"1.3.0"},"app":{"name":"远山户外小程序","appId":"',
            MINI_APP_ID, '"},"externalIds":[', ext_union, ext_open, '],"locale":"zh-CN"',
        )  # fmt: skip

    prefix = _by_kind(len(pair), [(pc_ch == APP, app), (pc_ch == WEB, web), (pc_ch == MINI, mini)])
    names, y0 = _campaign_names(cal.year)
    span = (len(names) - 1) // len(CAMPAIGNS)
    code = _campaign_code(s, y0, span)

    def campaign(x: np.ndarray) -> pa.Array:
        src, term, content = s["utm"][x], s["term"][x], s["content"][x]
        term_piece = frames.where(
            term >= 0, frames.concat('","term":"', frames.take(UTM_TERMS, term, term >= 0)), _const("", len(x))
        )
        return frames.concat(
            ',"campaign":{"name":"', frames.take(names, code[x]),
            '","source":"', frames.take([u[0] for u in UTM_SOURCES], src),
            '","medium":"', frames.take([u[1] for u in UTM_SOURCES], src), term_piece,
            '","content":"', frames.take(UTM_CONTENTS, np.maximum(content, 0)), '"}',
        )  # fmt: skip

    utm = pc.fill_null(_by_kind(len(person), [(s["utm"] >= 0, campaign)]), "")
    return frames.concat(prefix.take(pa.array(inverse)), utm, "}")


def _product_fragments(catalog: Catalog) -> tuple[pa.Array, pa.Array]:
    """Per product: '"product_id":…,"name":…,"category":…,"price":…,"currency":"CNY"' and its price text."""
    t = catalog.table
    price = t.column("price").combine_chunks().cast(pa.string())
    frag = frames.concat(
        '"product_id":"', t.column("product_id").combine_chunks(), '","name":"', t.column("name").combine_chunks(),
        '","category":"', t.column("category").combine_chunks(), '","price":', price, ',"currency":"CNY"',
    )  # fmt: skip
    return frag, price


def _build(
    *,
    rng: np.random.Generator,
    people: People,
    orders: Orders,
    catalog: Catalog,
    cal: Calendar,
    sessions: dict[str, np.ndarray],
    rows: dict[str, np.ndarray],
) -> Events:
    p, o = people, orders
    ev = np.full(len(CHANNELS), 0)
    for i, c in enumerate(EVENT_CHANNELS):
        ev[c] = i
    row_channel = ev[sessions["channel"][rows["session"]]]
    order_by = np.lexsort((rows["ts"], row_channel))  # per source, by time
    r = {key: v[order_by] for key, v in rows.items()}
    n = len(r["ts"])
    sess = r["session"]
    person = sessions["person"][sess]
    ch = sessions["channel"][sess]
    kind = r["kind"]
    logged = r["logged"] > 0
    product = r["product"]
    has_product = product >= 0
    order = r["order"]
    has_order = order >= 0
    extra, extra2 = r["extra"], r["extra2"]
    is_landing = kind == LANDING
    is_identify = kind == IDENTIFY
    completed = kind == COMPLETED
    money_rows = completed | (kind == REFUND) | ((kind == CHECKOUT) & has_order)
    prod_frag, price_text = _product_fragments(catalog)
    order_ids = o.order_id

    def pick(values: pa.Array | Sequence[str], index: np.ndarray) -> pa.Array:
        return frames.take(values, index)

    def day_text(x: np.ndarray) -> pa.Array:
        return pa.array(np.datetime64(cal.today, "D") + extra2[x]).cast(pa.string())

    def product_group(tail: Callable[[np.ndarray], list[str | pa.Array]]) -> Callable[[np.ndarray], pa.Array]:
        return lambda x: frames.concat("{", pick(prod_frag, product[x]), *tail(x), "}")

    def completed_props(x: np.ndarray) -> pa.Array:
        ox = order[x]
        coupon = o.coupon[ox]
        coupon_piece = frames.where(
            coupon >= 0,
            frames.concat(',"coupon":"', frames.take(COUPON_CODES, coupon, coupon >= 0), '"'),
            _const("", len(x)),
        )
        return frames.concat(
            '{"order_id":"', order_ids.take(pa.array(ox)), '","total":', frames.money(o.total[ox]).cast(pa.string()),
            ',"revenue":', frames.money(o.total[ox]).cast(pa.string()),
            ',"subtotal":', frames.money(o.subtotal[ox]).cast(pa.string()),
            ',"discount":', frames.money(o.discount[ox]).cast(pa.string()),
            ',"shipping":', frames.money(o.shipping[ox]).cast(pa.string()), coupon_piece,
            ',"currency":"CNY","products":', _order_products(o, catalog, ox), "}",
        )  # fmt: skip

    def order_total_props(x: np.ndarray) -> pa.Array:
        ox = order[x]
        return frames.concat(
            '{"order_id":"',
            order_ids.take(pa.array(ox)),
            '","total":',
            frames.money(o.total[ox]).cast(pa.string()),
            ',"currency":"CNY"}',
        )

    landing_props = [f'{{"title":"{t}","path":"{path}"}}' for _, t, path in LANDINGS]
    landing_props += [f'{{"title":"{t}","path":"{path}","url":"{WEB_HOST}{path}"}}' for _, t, path in LANDINGS]
    activity_props = [
        f'{{"activity_id":"{a[0]}","activity_name":"{a[1]}","activity_city":"{a[3]}","activity_date":"'
        for a in ACTIVITIES
    ]
    store_props = [f',"store_id":"{x[0]}","store_name":"{x[1]}","fitting_date":"' for x in STORES]
    props = _by_kind(
        n,
        [
            (kind == VIEWED, product_group(lambda x: [])),
            (kind == ADDED, product_group(lambda x: [',"quantity":1'])),
            (kind == SHARED, product_group(lambda x: [',"share_via":"', pick(SHARE_VIA, extra[x]), '"'])),
            ((kind == CHECKOUT) & has_product, product_group(lambda x: [',"value":', pick(price_text, product[x])])),
            (kind == FITTING, product_group(lambda x: [pick(store_props, extra[x]), day_text(x), '"'])),
            (completed, completed_props),
            (((kind == CHECKOUT) & has_order) | (kind == REFUND), order_total_props),
            (is_landing, lambda x: pick(landing_props, extra[x] + len(LANDINGS) * (ch[x] == WEB))),
            (kind == SEARCHED, lambda x: pick([f'{{"query":"{t}"}}' for t in UTM_TERMS], extra[x])),
            (kind == LISTED, lambda x: pick([f'{{"category":"{c}"}}' for c in CATEGORY_ZH], extra[x])),
            (kind == SIGNED_IN, lambda x: pick([f'{{"method":"{m}"}}' for m in SIGN_IN_METHODS], extra[x])),
            (kind == SIGNED_UP, lambda x: _const('{"method":"phone"}', len(x))),
            (
                kind == CHECKED_IN,
                lambda x: frames.concat(
                    '{"streak_days":',
                    pa.array(extra[x]).cast(pa.string()),
                    ',"points":',
                    pa.array(extra2[x]).cast(pa.string()),
                    "}",
                ),
            ),
            (kind == CLAIMED, lambda x: pick([f'{{"coupon_id":"{c}"}}' for c in COUPON_CODES], r["coupon"][x])),
            (
                kind == USED,
                lambda x: frames.concat(
                    '{"coupon_id":"',
                    pick(COUPON_CODES, r["coupon"][x]),
                    '","order_id":"',
                    order_ids.take(pa.array(order[x])),
                    '"}',
                ),
            ),
            (kind == ACTIVITY, lambda x: frames.concat(pick(activity_props, extra[x]), day_text(x), '"}')),
        ],
    )

    def traits_of(x: np.ndarray) -> pa.Array:
        px = person[x]
        idx = pa.array(px)
        web = ch[x] == WEB
        return frames.json_object(
            len(x),
            [
                ("member_id", frames.json_text(p.member_id.take(idx))),
                ("phone", frames.json_text(frames.where(~web & p.has_phone[px], p.phone.take(idx)))),
                ("email", frames.json_text(frames.where(web & p.has_email[px], p.email.take(idx)))),
                ("name", frames.json_text(p.name.take(idx))),
            ],
        )

    traits = _by_kind(n, [(is_identify, traits_of)])
    context = _contexts(p, sessions, cal)
    # Event names: the track names, then the page / screen names.
    name_code = np.where(is_landing, len(EVENT_NAMES) + np.clip(extra, 0, len(LANDINGS) - 1), kind)
    mtype = np.where(is_landing, np.where(ch == APP, 2, 1), np.where(is_identify, 3, 0))
    category_code = np.where(kind == LISTED, extra, catalog.category[np.maximum(product, 0)])
    anon_code = np.select([ch == APP, ch == WEB], [0, 1], 2)
    anon_all = pa.concat_arrays([p.device_id, p.web_id, p.openid_mini])
    s_utm = sessions["utm"][sess]
    names, y0 = _campaign_names(cal.year)
    span = (len(names) - 1) // len(CAMPAIGNS)
    row_campaign = _campaign_code(sessions, y0, span)[sess]
    term = sessions["term"][sess]
    content = sessions["content"][sess]
    has_utm = s_utm >= 0
    table = pa.table(
        {
            "message_id": frames.uuids(rng, n),
            "type": frames.codes(["track", "page", "screen", "identify"], mtype),
            "event": frames.codes(EVENT_NAMES + [x[0] for x in LANDINGS], name_code, ~is_identify),
            "user_id": frames.take(p.member_id, person, logged),
            "anonymous_id": anon_all.take(pa.array(anon_code * p.n + person)),
            "timestamp": frames.timestamps(r["ts"]),
            # Received when it happened (plus network latency): this is history, not an import-time event.
            "received_at": frames.timestamps(
                np.minimum(r["ts"] + 50_000 + rng.exponential(300_000, n).astype(np.int64), cal.now_us)
            ),
            "properties": props,
            "revenue": frames.money(o.total[np.maximum(order, 0)] if o.n else np.zeros(n, np.int64), completed),
            "currency": frames.codes(["CNY"], np.zeros(n, np.int64), money_rows | has_product),
            "order_id": frames.take(order_ids, order, has_order),
            "product_id": frames.codes(catalog.product_ids.to_pylist(), product, has_product),
            "category": frames.codes(CATEGORY_ZH, category_code, has_product | (kind == LISTED)),
            "channel": frames.codes(CHANNELS, ch),
            "device_id": frames.take(p.device_id, person, ch == APP),
            "utm_source": frames.codes([u[0] for u in UTM_SOURCES], s_utm, has_utm),
            "utm_medium": frames.codes([u[1] for u in UTM_SOURCES], s_utm, has_utm),
            "utm_campaign": frames.codes(names, row_campaign, has_utm),
            "utm_term": frames.codes(UTM_TERMS, term, term >= 0),
            "utm_content": frames.codes(UTM_CONTENTS, content, content >= 0),
            "context": context.take(pa.array(sess)),
            "traits": traits,
        }
    )
    e = ev[ch]
    seen = np.zeros((p.n, 3), dtype=bool)
    seen[person, e] = True
    seen_member = np.zeros((p.n, 3), dtype=bool)
    seen_member[person[logged], e[logged]] = True
    seen_phone = np.zeros((p.n, 3), dtype=bool)
    ident = is_identify & (ch != WEB) & p.has_phone[person]
    seen_phone[person[ident], e[ident]] = True
    seen_email = np.zeros((p.n, 3), dtype=bool)
    ident = is_identify & (ch == WEB) & p.has_email[person]
    seen_email[person[ident], e[ident]] = True
    bounds = np.searchsorted(e, np.arange(4))  # rows are grouped by source
    tables = {
        CHANNELS[c]: table.slice(int(bounds[i]), int(bounds[i + 1] - bounds[i])) for i, c in enumerate(EVENT_CHANNELS)
    }
    return Events(
        tables=tables, seen_anon=seen, seen_member=seen_member, seen_phone=seen_phone, seen_email=seen_email, rows=n
    )


def _order_products(o: Orders, catalog: Catalog, orders: np.ndarray) -> pa.Array:
    """``[{"product_id", "name", "category", "price", "currency", "quantity"}, …]`` per order in ``orders``."""
    counts = np.diff(o.item_offsets)[orders]
    owner, pos = _repeat(counts)
    items = o.item_offsets[orders][owner] + pos
    frag, _ = _product_fragments(catalog)
    item_json = frames.concat(
        "{", frag.take(pa.array(o.item_product[items])), ',"unit_price":', frames.money(o.item_unit[items]).cast(pa.string()),
        ',"quantity":', pa.array(o.item_qty[items]).cast(pa.string()), "}",
    )  # fmt: skip
    return frames.json_list(item_json, np.concatenate([[0], np.cumsum(counts)]))
