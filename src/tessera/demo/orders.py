"""Orders, order lines and reviews of the demo brand (订单 / 订单明细 / 评价).

Every person buys on the channels they use (Tmall, JD, the WeChat mini-program, the app, the web
shop, a store near home), more in November and around 618, less around the Spring Festival;
churners stop buying 90+ days before ``now``. Totals are exact in cents:
``total = Σ items.amount − discount + shipping``. Each channel's rows carry only what that channel
knows about the buyer (see ``ORDER_ID_COLUMNS``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tessera.demo import frames
from tessera.demo.catalog import CATEGORIES, MONTH_WEIGHTS, Catalog
from tessera.demo.people import (
    APP,
    CHANNELS,
    JD,
    MINI,
    STORE,
    TMALL,
    WEB,
    Keys,
    People,
    masked_phone,
    phone_text,
    phone_variant,
    typo_body,
)  # fmt: skip
from tessera.demo.season import HISTORY_DAYS, Calendar
from tessera.demo.texts import (
    CAMPAIGNS,
    MEMBER_COUPONS,
    PAYMENTS,
    PLACES,
    REVIEW_CLOSERS,
    REVIEW_OPENERS,
    REVIEW_REMARKS,
    REVIEW_TITLES,
    STORES,
)  # fmt: skip

#: Identifier columns each channel's orders may fill.
ORDER_ID_COLUMNS = {
    "tmall": {"tmall_id", "phone"},
    "jd": {"jd_id"},
    "wechat_miniprogram": {"wechat_unionid", "member_id", "customer_id", "phone"},
    "app": {"member_id", "customer_id"},
    "web": {"member_id", "customer_id", "email"},
    "offline_store": {"phone", "member_id", "customer_id"},
}
STATUSES = ("paid", "shipped", "completed", "refunded")
PAID, SHIPPED, COMPLETED, REFUNDED = range(4)
#: Coupons: campaign coupons first, then member coupons (codes, thresholds and amounts in yuan).
COUPON_CODES = [c[3] for c in CAMPAIGNS] + [c[0] for c in MEMBER_COUPONS]
_COUPON_THRESHOLD = np.array([c[4] for c in CAMPAIGNS] + [c[2] for c in MEMBER_COUPONS]) * 100
_COUPON_OFF = np.array([c[5] for c in CAMPAIGNS] + [c[3] for c in MEMBER_COUPONS]) * 100
_COUPON_PCT = np.array([0] * len(CAMPAIGNS) + [c[4] for c in MEMBER_COUPONS])
_NEWMEMBER, _BDAY, _VIP = (len(CAMPAIGNS) + i for i in range(3))
_OWN = np.array([False, False, True, True, True, False])  # mini-program, app, web: our own SDK sees them
_SHOES = next(i for i, c in enumerate(CATEGORIES) if c[0] == "shoes")

ORDER_SCHEMA = pa.schema([
    ("order_id", pa.string()), ("customer_id", pa.string()), ("channel", pa.string()), ("store_id", pa.string()),
    ("status", pa.string()), ("ordered_at", frames.TS), ("total", frames.MONEY), ("discount", frames.MONEY),
    ("shipping", frames.MONEY), ("currency", pa.string()), ("coupon_code", pa.string()), ("member_id", pa.string()),
    ("phone", pa.string()), ("email", pa.string()), ("wechat_unionid", pa.string()), ("tmall_id", pa.string()),
    ("jd_id", pa.string()), ("attributes", pa.string()),
])  # fmt: skip
ITEM_SCHEMA = pa.schema([
    ("order_id", pa.string()), ("line_no", pa.int32()), ("product_id", pa.string()), ("quantity", pa.int32()),
    ("unit_price", frames.MONEY), ("amount", frames.MONEY), ("attributes", pa.string()),
])  # fmt: skip
REVIEW_SCHEMA = pa.schema([
    ("review_id", pa.string()), ("order_id", pa.string()), ("product_id", pa.string()),
    ("customer_id", pa.string()), ("rating", pa.int8()), ("title", pa.string()), ("body", pa.string()),
    ("language", pa.string()), ("created_at", frames.TS), ("attributes", pa.string()),
])  # fmt: skip


@dataclass
class Orders:
    n: int
    person: np.ndarray
    channel: np.ndarray
    day: np.ndarray
    ts_us: np.ndarray
    order_id: pa.Array
    customer_id: pa.Array
    member_shown: np.ndarray
    phone_shown: np.ndarray  # 0 none, 1 exact, 2 format variant, 3 typo, 4 second phone
    phone_value: pa.Array
    phone_canonical: pa.Array
    email_shown: np.ndarray
    unionid_shown: np.ndarray
    subtotal: np.ndarray
    discount: np.ndarray
    shipping: np.ndarray
    total: np.ndarray
    coupon: np.ndarray  # index into COUPON_CODES or -1
    status: np.ndarray
    item_offsets: np.ndarray  # n + 1
    item_product: np.ndarray
    item_qty: np.ndarray
    item_unit: np.ndarray
    item_amount: np.ndarray
    table: pa.Table  # all channels; split by ``channel`` when written
    items: pa.Table
    reviews: pa.Table

    def spend(self, n_people: int, since_day: int) -> np.ndarray:
        """Cents spent per person (refunds excluded) on days ≥ ``since_day``."""
        ok = (self.status != REFUNDED) & (self.day >= since_day)
        return np.bincount(self.person[ok], weights=self.total[ok], minlength=n_people).astype(np.int64)


def make_orders(
    *,
    people: People,
    catalog: Catalog,
    cal: Calendar,
    keys: Keys,
    seed: int,
    chunk: int,
    order_offset: int,
    review_offset: int,
) -> Orders:
    rng = np.random.default_rng([seed, chunk, 2])
    p = people
    first = np.maximum(p.first_day, -HISTORY_DAYS)
    last = p.last_day
    span = np.maximum(last - first + 1, 0)
    buyer = rng.random(p.n) < np.where(p.member, 0.8, 0.45)
    lam = 1.2 * p.activity * np.clip(span / 400, 0.15, 1.5)
    counts = np.where(buyer & (span > 0), 1 + rng.poisson(lam), 0).clip(0, 30)
    person = np.repeat(np.arange(p.n), counts)
    n = len(person)
    day = cal.sample_days(rng, first[person], last[person])
    di = cal.day_index(day)
    seconds = cal.sample_seconds(rng, n)
    midnight_rush = cal.double11_day[di] & (rng.random(n) < 0.25)
    seconds = np.where(midnight_rush, rng.integers(0, 3600, n), seconds)
    ts = cal.micros(day, seconds)
    order = np.lexsort((ts, person))
    person, day, di, ts = person[order], day[order], di[order], ts[order]

    # Channel: the person's habits, Tmall/JD boosted in the Double 11 and 618 windows; the app and web
    # shop need a member login, so not before the person joined.
    w = p.channel_weights[person].copy()
    peak = cal.peak[di]
    w[:, TMALL] *= np.where(peak > 0, 2.0, 1.0)
    w[:, JD] *= np.where(peak > 0, 1.5, 1.0)
    joined = p.member[person] & (day >= p.reg_day[person])
    w[:, APP] *= joined
    w[:, WEB] *= joined
    w[w.sum(axis=1) == 0, TMALL] = 1.0
    channel = frames.categorical(rng, w)

    # Lines: category by season and the person's favourite, product in the person's size.
    n_items = np.minimum(1 + rng.poisson(0.45, n), 5)
    offsets = np.concatenate([[0], np.cumsum(n_items)])
    item_order = np.repeat(np.arange(n), n_items)
    ip = person[item_order]
    cat_w = MONTH_WEIGHTS[:, cal.month[di[item_order]] - 1].T * (
        1 + 2.0 * (np.arange(len(CATEGORIES)) == p.fav_category[ip][:, None])
    )
    item_cat = frames.categorical(rng, cat_w)
    product = catalog.sample(rng, item_cat, p.apparel_size[ip], p.shoe_size[ip])
    item_cat = catalog.category[product]
    m = len(product)
    qty = np.where(item_cat == 6, 1 + (rng.random(m) < 0.3) + (rng.random(m) < 0.1), 1 + (rng.random(m) < 0.03))
    list_price = catalog.price_cents[product]
    promo = (peak[item_order] > 0) & (channel[item_order] != STORE)
    unit = np.where(promo, np.round(list_price * 0.9 / 100) * 100, list_price).astype(np.int64)
    amount = unit * qty
    subtotal = np.add.reduceat(amount, offsets[:-1]) if n else np.zeros(0, np.int64)

    # Coupons: the running campaign's coupon, or a member coupon (new member, birthday, VIP).
    campaign = cal.campaign[di]
    coupon = np.full(n, -1, dtype=np.int64)
    use_campaign = (campaign >= 0) & (rng.random(n) < np.where(peak > 0, 0.45, 0.25))
    coupon[use_campaign] = campaign[use_campaign]
    first_after_join = joined & np.concatenate([[True], (person[1:] != person[:-1]) | ~joined[:-1]]) if n else joined
    month = cal.month[di]
    bday_month = p.birthday[person].astype("datetime64[M]").astype(np.int64) % 12 + 1
    free = coupon < 0
    coupon[free & first_after_join & (rng.random(n) < 0.6)] = _NEWMEMBER
    free = coupon < 0
    coupon[free & joined & p.has_birthday[person] & (bday_month == month) & (rng.random(n) < 0.4)] = _BDAY
    free = coupon < 0
    coupon[free & joined & (rng.random(n) < 0.08)] = _VIP
    ci = np.maximum(coupon, 0)
    valid = (coupon >= 0) & (subtotal >= _COUPON_THRESHOLD[ci])
    coupon = np.where(valid, coupon, -1)
    discount = np.where(
        valid, np.where(_COUPON_PCT[ci] > 0, np.round(subtotal * _COUPON_PCT[ci] / 100), _COUPON_OFF[ci]), 0
    ).astype(np.int64)
    own = _OWN[channel]
    shipping = np.where(own & (subtotal - discount < 19_900), 1200, 0).astype(np.int64)
    total = subtotal - discount + shipping

    # Status by age; refunds (more for shoes — sizes).
    age = -day
    has_shoes = np.bincount(item_order, weights=(item_cat == _SHOES), minlength=n) > 0
    refund = rng.random(n) < np.where(has_shoes, 0.10, 0.05)
    u = rng.random(n)
    status = np.where(
        age >= 15,
        COMPLETED,
        np.where(age >= 4, np.where(u < 0.6, SHIPPED, COMPLETED), np.where(u < 0.5, PAID, SHIPPED)),
    )
    status = np.where(refund & (age >= 4), REFUNDED, status)

    # Who the channel knows.
    idx = pa.array(person)
    member_shown = (
        joined & np.isin(channel, [MINI, APP, WEB, STORE]) & np.where(channel == STORE, rng.random(n) < 0.85, True)
    )
    tmall_bound = p.member & (rng.random(p.n) < 0.35)  # joined the brand membership on Tmall (会员通)
    phone_kind = np.zeros(n, dtype=np.int64)
    has_phone = p.has_phone[person]
    on_tmall = (channel == TMALL) & tmall_bound[person] & has_phone
    on_mini = (channel == MINI) & member_shown & has_phone
    on_store = (channel == STORE) & has_phone & (rng.random(n) < np.where(p.member[person], 0.95, 0.6))
    phone_kind[on_tmall | on_mini | on_store] = 1
    v = rng.random(n)
    phone_kind[on_store & (v < 0.08)] = 2
    phone_kind[on_store & (v >= 0.08) & (v < 0.09)] = 3
    phone_kind[on_store & (v >= 0.09) & (v < 0.12) & p.has_phone2[person]] = 4
    use2 = phone_kind == 4
    body = np.where(use2, p.phone2_body[person], p.phone_body[person])
    body = np.where(phone_kind == 3, typo_body(rng, body), body)
    prefix = np.where(use2, p.phone2_prefix[person], p.phone_prefix[person])
    fmt = np.where(phone_kind == 2, rng.integers(1, 6, n), 0)
    phone_canonical = phone_text(prefix, body)
    phone_value = phone_variant(phone_canonical, fmt)
    email_shown = (channel == WEB) & p.has_email[person] & (rng.random(n) < 0.6)
    unionid_shown = (channel == MINI) & p.has_unionid[person]

    seq = order_offset + np.arange(n)
    yymmdd = pc.strftime(frames.timestamps(ts + 8 * 3_600_000_000), format="%y%m%d")
    own_no = frames.digits(keys.number(seq, 10**8, salt=11), 8)
    prefixes = ["", "", "WX", "AP", "WB", "POS"]
    order_id = frames.concat(frames.take(prefixes, channel), yymmdd, own_no)
    order_id = frames.where(
        channel == TMALL, frames.concat(yymmdd, frames.digits(keys.number(seq, 10**12, salt=12), 12)), order_id
    )
    order_id = frames.where(channel == JD, frames.digits(keys.number(seq, 10**12, salt=13), 12, "3"), order_id)
    customer_id = frames.where(member_shown, p.member_id.take(idx))
    store = np.where(rng.random(n) < 0.9, p.store[person], rng.integers(0, len(STORES), n))
    store_id = frames.take([s for s, _, _ in STORES], np.maximum(store, 0), channel == STORE)

    show_masked = np.isin(channel, [TMALL, JD]) & has_phone & (phone_kind == 0) & (rng.random(n) < 0.6)
    payment = np.where(channel == STORE, rng.integers(0, 4, n), np.where(channel == MINI, 1, rng.integers(0, 3, n)))
    attrs = frames.json_object(
        n,
        [
            ("payment", frames.json_text(frames.take(PAYMENTS, payment))),
            (
                "receiver_city",
                frames.json_text(frames.take([c for _, c, _ in PLACES], p.place[person], channel != STORE)),
            ),
            ("receiver_phone_masked", frames.json_text(frames.where(show_masked, masked_phone(p.phone.take(idx))))),
            ("items", frames.json_raw(pa.array(n_items))),
        ],
    )
    table = pa.table(
        {
            "order_id": order_id,
            "customer_id": customer_id,
            "channel": frames.take(CHANNELS, channel),
            "store_id": store_id,
            "status": frames.take(STATUSES, status),
            "ordered_at": frames.timestamps(ts),
            "total": frames.money(total),
            "discount": frames.money(discount),
            "shipping": frames.money(shipping),
            "currency": pa.array(["CNY"] * n, pa.string()),
            "coupon_code": frames.take(COUPON_CODES, ci, coupon >= 0),
            "member_id": frames.where(member_shown, p.member_id.take(idx)),
            "phone": frames.where(phone_kind > 0, phone_value),
            "email": frames.where(email_shown, p.email.take(idx)),
            "wechat_unionid": frames.where(unionid_shown, p.unionid.take(idx)),
            "tmall_id": frames.where(channel == TMALL, p.tmall_id.take(idx)),
            "jd_id": frames.where(channel == JD, p.jd_id.take(idx)),
            "attributes": attrs,
        }
    )
    line_no = np.arange(m) - offsets[item_order] + 1
    items = pa.table(
        {
            "order_id": order_id.take(pa.array(item_order)),
            "line_no": pa.array(line_no.astype(np.int32)),
            "product_id": catalog.product_ids.take(pa.array(product)),
            "quantity": pa.array(qty.astype(np.int32)),
            "unit_price": frames.money(unit),
            "amount": frames.money(amount),
            "attributes": frames.json_object(
                m, [("list_price", frames.json_raw(frames.where(unit != list_price, frames.money(list_price))))]
            ),
        }
    )
    orders = Orders(
        n=n, person=person, channel=channel, day=day, ts_us=ts, order_id=order_id, customer_id=customer_id,
        member_shown=member_shown, phone_shown=phone_kind, phone_value=phone_value, phone_canonical=phone_canonical, email_shown=email_shown,
        unionid_shown=unionid_shown, subtotal=subtotal, discount=discount, shipping=shipping, total=total,
        coupon=coupon, status=status, item_offsets=offsets, item_product=product, item_qty=qty, item_unit=unit,
        item_amount=amount, table=table, items=items, reviews=pa.table({}),
    )  # fmt: skip
    orders.reviews = _reviews(orders=orders, people=p, catalog=catalog, cal=cal, rng=rng, offset=review_offset)
    return orders


def _vocab(groups: Mapping[Any, list[str]], keys: Sequence[Any]) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """Flatten phrase lists: (all phrases, start per key, count per key)."""
    flat: list[str] = []
    start, count = [], []
    for k in keys:
        words = groups[k]
        start.append(len(flat))
        count.append(len(words))
        flat.extend(words)
    return pa.array(flat, pa.string()), np.array(start), np.array(count)


def _phrase(rng: np.random.Generator, vocab: tuple[pa.Array, np.ndarray, np.ndarray], key: np.ndarray) -> pa.Array:
    words, start, count = vocab
    return words.take(pa.array(start[key] + (rng.random(len(key)) * count[key]).astype(np.int64)))


LANGS = ("zh", "en")
TONES = ("positive", "neutral", "negative")


def _reviews(
    *, orders: Orders, people: People, catalog: Catalog, cal: Calendar, rng: np.random.Generator, offset: int
) -> pa.Table:
    """Reviews of delivered lines: Chinese or English, positive / neutral / negative, rating to match."""
    o = orders
    item_order = np.repeat(np.arange(o.n), np.diff(o.item_offsets))
    done = np.isin(o.status[item_order], [COMPLETED, REFUNDED])
    marketplace = np.isin(o.channel[item_order], [TMALL, JD])
    chosen = np.flatnonzero(done & (rng.random(len(item_order)) < np.where(marketplace, 0.18, 0.13)))
    order_of = item_order[chosen]
    k = len(chosen)
    created = o.ts_us[order_of] + rng.integers(3, 21, k) * 86_400_000_000 + rng.integers(0, 86_400, k) * 1_000_000
    keep = created < cal.midnight_us
    chosen, order_of, created = chosen[keep], order_of[keep], created[keep]
    k = len(chosen)
    person = o.person[order_of]
    refunded = o.status[order_of] == REFUNDED
    u = rng.random(k)
    tone = np.where(
        refunded, np.where(u < 0.75, 2, np.where(u < 0.85, 1, 0)), np.where(u < 0.8, 0, np.where(u < 0.9, 1, 2))
    )
    lang = np.where(
        people.intl[person], (rng.random(k) < 0.9).astype(np.int64), (rng.random(k) < 0.03).astype(np.int64)
    )
    r = rng.random(k)
    rating = np.where(tone == 0, np.where(r < 0.7, 5, 4), np.where(tone == 1, 3, np.where(r < 0.5, 1, 2)))
    cat = catalog.category[o.item_product[chosen]]
    pair_keys = [(lg, t) for lg in LANGS for t in TONES]
    pair = lang * 3 + tone
    openers = _vocab(REVIEW_OPENERS, pair_keys)
    closers = _vocab(REVIEW_CLOSERS, pair_keys)
    titles = _vocab(REVIEW_TITLES, pair_keys)
    remark_groups: dict[tuple[str, str, str], list[str]] = {}
    remark_keys: list[tuple[str, str, str]] = []
    for code, *_ in CATEGORIES:
        for lg in LANGS:
            for t in TONES:
                remark_groups[(code, lg, t)] = REVIEW_REMARKS[code][(lg, "positive" if t == "neutral" else t)]
                remark_keys.append((code, lg, t))
    remarks = _vocab(remark_groups, remark_keys)
    body = frames.concat(
        _phrase(rng, openers, pair), _phrase(rng, remarks, cat * 6 + pair), _phrase(rng, closers, pair)
    )
    line = np.arange(len(item_order))[chosen] - o.item_offsets[order_of] + 1
    attrs = frames.json_object(
        k,
        [
            ("channel", frames.json_text(frames.take(CHANNELS, o.channel[order_of]))),
            ("tone", frames.json_text(frames.take(TONES, tone))),
            ("line_no", frames.json_raw(pa.array(line))),
            ("verified_purchase", frames.json_raw(pa.array(np.ones(k, dtype=bool)))),
        ],
    )
    oi = pa.array(order_of)
    return pa.table(
        {
            "review_id": frames.digits(offset + np.arange(k) + 1, 9, "RV"),
            "order_id": o.order_id.take(oi),
            "product_id": catalog.product_ids.take(pa.array(o.item_product[chosen])),
            "customer_id": o.customer_id.take(oi),
            "rating": pa.array(rating.astype(np.int8)),
            "title": _phrase(rng, titles, pair),
            "body": body,
            "language": frames.take(LANGS, lang),
            "created_at": frames.timestamps(created),
            "attributes": attrs,
        }
    )
