"""People of the demo brand and their identifiers, scattered over channels (one person, many ids).

A *person* is the ground truth the OneID step should rediscover. Each person has some of: a
mobile phone (sometimes two), an email, a WeChat unionid with a per-app openid (mini-program and
official account), a Tmall buyer nick, a JD pin, a Douyin id, an app device, a web cookie and — for
members — a member id in the CRM. Which channel sees which identifier is decided in
``behaviour.py`` and :func:`customer_table`; the fractions are documented in ``docs/demo.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tessera.demo import frames
from tessera.demo.catalog import CATEGORIES
from tessera.demo.frames import WECHAT_ALPHABET
from tessera.demo.season import Calendar
from tessera.demo.texts import (
    APPAREL_SIZES,
    EMAIL_DOMAINS_CN,
    EMAIL_DOMAINS_INTL,
    ENGLISH_FIRST_FEMALE,
    ENGLISH_FIRST_MALE,
    ENGLISH_LAST,
    GIVEN_FEMALE,
    GIVEN_MALE,
    INTERNATIONAL_CITIES,
    LEVEL_THRESHOLDS,
    MEMBER_LEVELS,
    MEMBER_LEVELS_EN,
    NICK_ENDINGS,
    NICK_WORDS,
    PHONE_PREFIXES,
    PLACES,
    SHOE_SIZES,
    STORES,
    SURNAMES,
)  # fmt: skip

#: Sales channels, in the column order of :attr:`People.channel_weights`.
CHANNELS = ("tmall", "jd", "wechat_miniprogram", "app", "web", "offline_store")
TMALL, JD, MINI, APP, WEB, STORE = range(6)
_CHANNEL_BASE = np.array([0.38, 0.14, 0.18, 0.12, 0.05, 0.13])
#: Registration channels of members (CRM ``channel``).
REG_CHANNELS = ("wechat_miniprogram", "app", "offline_store", "tmall", "web", "douyin")

FRACTIONS = {
    "international": 0.03,
    "phone_cn": 0.97,
    "phone_intl": 0.55,
    "second_phone": 0.05,
    "email_cn": 0.30,
    "member": 0.55,
    "wechat_cn": 0.70,
    "wechat_intl": 0.25,
    "miniprogram_of_wechat": 0.80,
    "official_account_of_wechat": 0.45,
    "tmall": 0.50,
    "jd": 0.25,
    "douyin": 0.12,
    "app": 0.30,
    "web": 0.35,
    "store_shopper_in_store_city": 0.45,
    "shared_device_of_app": 0.03,
    "churn_of_long_standing": 0.22,
    "birthday_known": 0.88,
    "crm_duplicate": 0.02,
    "crm_phone_format_variant": 0.06,
    "crm_phone_typo": 0.012,
    "crm_email_case_variant": 0.04,
}


@dataclass
class People:
    """One chunk of people: column arrays, row ``i`` is person ``base + i``."""

    n: int
    base: int
    gidx: np.ndarray
    person_id: pa.Array
    gender: np.ndarray  # 0 male, 1 female
    intl: np.ndarray
    name: pa.Array
    birthday: np.ndarray  # datetime64[D]
    has_birthday: np.ndarray
    place: np.ndarray
    store: np.ndarray  # home store index or -1
    first_day: np.ndarray
    last_day: np.ndarray
    churned: np.ndarray
    activity: np.ndarray
    fav_category: np.ndarray
    apparel_size: np.ndarray
    shoe_size: np.ndarray
    member: np.ndarray
    member_id: pa.Array
    reg_day: np.ndarray
    reg_channel: np.ndarray
    has_phone: np.ndarray
    phone_prefix: np.ndarray
    phone_body: np.ndarray
    phone: pa.Array
    has_phone2: np.ndarray
    phone2_prefix: np.ndarray
    phone2_body: np.ndarray
    phone2: pa.Array
    has_email: np.ndarray
    email: pa.Array
    has_unionid: np.ndarray
    unionid: pa.Array
    has_mini: np.ndarray
    openid_mini: pa.Array
    has_oa: np.ndarray
    openid_oa: pa.Array
    has_tmall: np.ndarray
    tmall_id: pa.Array
    has_jd: np.ndarray
    jd_id: pa.Array
    has_douyin: np.ndarray
    douyin_id: pa.Array
    has_app: np.ndarray
    ios: np.ndarray
    device_id: pa.Array
    shared_device: np.ndarray
    has_web: np.ndarray
    web_id: pa.Array
    channel_weights: np.ndarray  # n × len(CHANNELS)


@dataclass(frozen=True)
class Keys:
    """Per-seed constants that make identifiers unique across chunks (bijections of the index)."""

    mult: int
    add: int

    @classmethod
    def for_seed(cls, seed: int) -> Keys:
        rng = np.random.default_rng([seed, 0x1D])
        mult = int(rng.integers(10**6, 10**7)) * 2 + 1
        while mult % 5 == 0:
            mult += 2
        return cls(mult=mult, add=int(rng.integers(0, 10**9)))

    def number(self, index: np.ndarray, modulus: int, salt: int) -> np.ndarray:
        return frames.scramble(np.asarray(index) + salt * 7919, modulus, self.mult, self.add + salt)


def phone_text(prefix: np.ndarray, body: np.ndarray) -> pa.Array:
    """Canonical E.164 mobile numbers '+861xxxxxxxxxx' from prefix indexes and 8-digit bodies."""
    prefixes = [p for p, _ in PHONE_PREFIXES]
    return frames.concat("+86", frames.take(prefixes, prefix), frames.digits(body, 8))


def phone_variant(canonical: pa.Array, kind: np.ndarray) -> pa.Array:
    """Format variants of ``+861xxxxxxxxxx``: kind 0 as is, 1 '138 0013 8000', 2 '+86-138-0013-8000',
    3 '13800138000', 4 '8613800138000', 5 '+86 138 0013 8000'."""
    a = pc.utf8_slice_codeunits(canonical, 3, 6)
    b = pc.utf8_slice_codeunits(canonical, 6, 10)
    c = pc.utf8_slice_codeunits(canonical, 10, 14)
    national = pc.utf8_slice_codeunits(canonical, 3, 14)
    options = [
        canonical,
        frames.concat(a, " ", b, " ", c),
        frames.concat("+86-", a, "-", b, "-", c),
        national,
        frames.concat("86", national),
        frames.concat("+86 ", a, " ", b, " ", c),
    ]
    out = options[0]
    for k in range(1, len(options)):
        out = frames.where(kind == k, options[k], out)
    return out


def masked_phone(canonical: pa.Array) -> pa.Array:
    """'138****8000', as marketplaces show a receiver's phone."""
    return frames.concat(pc.utf8_slice_codeunits(canonical, 3, 6), "****", pc.utf8_slice_codeunits(canonical, 10, 14))


def typo_body(rng: np.random.Generator, body: np.ndarray) -> np.ndarray:
    """One digit of the 8-digit body changed (a mistyped number; still a valid-looking mobile)."""
    pos = 10 ** rng.integers(0, 8, len(body))
    digit = (body // pos) % 10
    new = (digit + rng.integers(1, 10, len(body))) % 10
    return body + (new - digit) * pos


def make_people(*, n: int, base: int, seed: int, chunk: int, cal: Calendar, keys: Keys) -> People:
    rng = np.random.default_rng([seed, chunk, 1])
    gidx = base + np.arange(n, dtype=np.int64)
    intl = rng.random(n) < FRACTIONS["international"]
    gender = (rng.random(n) < 0.46).astype(np.int64)  # outdoor skews male a little

    # Names: surname + one or two given-name characters; English names for international customers.
    sur = frames.pick(rng, n, [w for _, _, w in SURNAMES])
    male = np.array([c for c, _ in GIVEN_MALE] + [c for c, _ in GIVEN_FEMALE])
    male_py = np.array([p for _, p in GIVEN_MALE] + [p for _, p in GIVEN_FEMALE])
    g1 = rng.integers(0, len(GIVEN_MALE), n) + gender * len(GIVEN_MALE)
    g2 = rng.integers(0, len(GIVEN_MALE), n) + gender * len(GIVEN_MALE)
    two = rng.random(n) < 0.7
    given_chars = pa.array(male.tolist())
    given_py = pa.array(male_py.tolist())
    second = frames.where(two, given_chars.take(pa.array(g2)), pa.array([""] * n))
    second_py = frames.where(two, given_py.take(pa.array(g2)), pa.array([""] * n))
    cn_name = frames.concat(frames.take([s for s, _, _ in SURNAMES], sur), given_chars.take(pa.array(g1)), second)
    pinyin = frames.concat(frames.take([p for _, p, _ in SURNAMES], sur), given_py.take(pa.array(g1)), second_py)
    first_en = np.where(
        gender == 0,
        rng.integers(0, len(ENGLISH_FIRST_MALE), n),
        len(ENGLISH_FIRST_MALE) + rng.integers(0, len(ENGLISH_FIRST_FEMALE), n),
    )
    first_vocab = ENGLISH_FIRST_MALE + ENGLISH_FIRST_FEMALE
    last_idx = rng.integers(0, len(ENGLISH_LAST), n)
    en_name = frames.concat(frames.take(first_vocab, first_en), " ", frames.take(ENGLISH_LAST, last_idx))
    name = frames.where(intl, en_name, cn_name)

    # Place and home store.
    place = frames.pick(rng, n, [w for _, _, w in PLACES])
    intl_cities = list(INTERNATIONAL_CITIES)
    city_to_place = {c: i for i, (_, c, _) in enumerate(PLACES)}
    intl_place = np.array([city_to_place[c] for c in intl_cities])[
        frames.pick(rng, n, list(INTERNATIONAL_CITIES.values()))
    ]
    place = np.where(intl, intl_place, place)
    store = np.full(n, -1, dtype=np.int64)
    stores_by_place: dict[int, list[int]] = {}
    for si, (_, _, city) in enumerate(STORES):
        stores_by_place.setdefault(city_to_place[city], []).append(si)
    shopper = rng.random(n) < FRACTIONS["store_shopper_in_store_city"]
    pick_u = rng.random(n)
    for p, sids in stores_by_place.items():
        sel = (place == p) & shopper
        store[sel] = np.array(sids)[(pick_u[sel] * len(sids)).astype(np.int64)]

    # Lifetime: first seen up to three years ago (more recently for more people); some churn.
    first_day = -1 - np.floor(1094 * rng.random(n) ** 1.25).astype(np.int64)
    churn_ok = first_day < -200
    churned = churn_ok & (rng.random(n) < FRACTIONS["churn_of_long_standing"])
    churn_at = first_day + 60 + np.floor(rng.random(n) * np.maximum(-90 - (first_day + 60), 0)).astype(np.int64)
    last_day = np.where(churned, np.minimum(churn_at, -90), -1)
    activity = rng.lognormal(0.0, 0.7, n)
    fav_category = frames.pick(rng, n, [3.0, 2.5, 2.0, 1.0, 0.8, 1.5, 1.0, 0.8][: len(CATEGORIES)])
    apparel = np.where(
        gender == 1,
        frames.pick(rng, n, [0.10, 0.35, 0.35, 0.15, 0.05, 0.0]),
        frames.pick(rng, n, [0.0, 0.05, 0.20, 0.40, 0.25, 0.10]),
    )
    shoe = np.where(
        gender == 1,
        frames.pick(rng, n, [0.15, 0.30, 0.30, 0.15, 0.08, 0.02, 0, 0, 0, 0]),
        frames.pick(rng, n, [0, 0, 0, 0.05, 0.12, 0.22, 0.28, 0.20, 0.10, 0.03]),
    )
    age_days = (18 + rng.gamma(4.0, 3.5, n)).clip(16, 75) * 365.25 + rng.integers(0, 365, n)
    birthday = (np.datetime64(cal.today, "D") - age_days.astype(np.int64)).astype("datetime64[D]")
    has_birthday = rng.random(n) < FRACTIONS["birthday_known"]

    # Identifiers.
    has_phone = rng.random(n) < np.where(intl, FRACTIONS["phone_intl"], FRACTIONS["phone_cn"])
    prefix_w = [w for _, w in PHONE_PREFIXES]
    phone_prefix = frames.pick(rng, n, prefix_w)
    phone_body = keys.number(gidx, 10**8, salt=1)
    phone = phone_text(phone_prefix, phone_body)
    has_phone2 = has_phone & (rng.random(n) < FRACTIONS["second_phone"])
    phone2_prefix = frames.pick(rng, n, prefix_w)
    phone2_body = keys.number(gidx + 50_000_000, 10**8, salt=1)  # same bijection, disjoint indexes
    phone2 = phone_text(phone2_prefix, phone2_body)

    has_email = intl | (rng.random(n) < FRACTIONS["email_cn"])
    qq = rng.random(n) < 0.35
    email_no = pa.array(keys.number(gidx, 10**7, salt=3)).cast(pa.string())
    cn_domain = frames.take([d for d, _ in EMAIL_DOMAINS_CN], frames.pick(rng, n, [w for _, w in EMAIL_DOMAINS_CN]))
    intl_domain = frames.take(
        [d for d, _ in EMAIL_DOMAINS_INTL], frames.pick(rng, n, [w for _, w in EMAIL_DOMAINS_INTL])
    )
    qq_mail = frames.concat(pa.array(10_000 + keys.number(gidx, 10**9, salt=4)).cast(pa.string()), "@qq.com")
    cn_mail = frames.concat(pinyin, email_no, "@", cn_domain)
    en_local = pc.utf8_lower(
        frames.concat(frames.take(first_vocab, first_en), ".", frames.take(ENGLISH_LAST, last_idx))
    )
    en_local = pc.replace_substring(en_local, "ü", "ue")
    intl_mail = frames.concat(en_local, email_no, "@", intl_domain)
    email = frames.where(intl, intl_mail, frames.where(qq, qq_mail, cn_mail))

    has_unionid = rng.random(n) < np.where(intl, FRACTIONS["wechat_intl"], FRACTIONS["wechat_cn"])
    has_mini = has_unionid & (rng.random(n) < FRACTIONS["miniprogram_of_wechat"])
    has_oa = has_unionid & (rng.random(n) < FRACTIONS["official_account_of_wechat"])
    unionid = frames.tokens(rng, n, 27, WECHAT_ALPHABET, "o")
    openid_mini = frames.tokens(rng, n, 23, WECHAT_ALPHABET, "oYs3M")  # one prefix per WeChat app
    openid_oa = frames.tokens(rng, n, 23, WECHAT_ALPHABET, "oGzYs")

    has_tmall = rng.random(n) < FRACTIONS["tmall"]
    custom_nick = rng.random(n) < 0.3
    nick = frames.concat(
        frames.take(NICK_WORDS, rng.integers(0, len(NICK_WORDS), n)),
        frames.take(NICK_ENDINGS, rng.integers(0, len(NICK_ENDINGS), n)),
        "_",
        pa.array(keys.number(gidx, 10**7, salt=5)).cast(pa.string()),
    )
    tmall_id = frames.where(custom_nick, nick, frames.digits(keys.number(gidx, 10**10, salt=6), 10, "tb"))
    has_jd = rng.random(n) < FRACTIONS["jd"]
    jd_id = frames.tokens(rng, n, 12, frames.ALNUM_LOWER, "jd_")
    has_douyin = rng.random(n) < FRACTIONS["douyin"]
    douyin_id = frames.digits(keys.number(gidx, 10**10, salt=7), 10, "dy")

    has_app = rng.random(n) < FRACTIONS["app"]
    ios = rng.random(n) < 0.45
    device_id = frames.where(ios, frames.uuids(rng, n, upper=True), frames.hex_ids(rng, n, 16))
    # Families share a device: some app users' device is another app user's.
    app_rows = np.flatnonzero(has_app)
    shared_device = np.zeros(n, dtype=bool)
    if len(app_rows) > 1:
        taking = rng.random(len(app_rows)) < FRACTIONS["shared_device_of_app"]
        takers, others = app_rows[taking], app_rows[~taking]
        owners = others[rng.integers(0, max(len(others), 1), len(takers))] if len(others) else takers
        keep = owners != takers
        takers, owners = takers[keep], owners[keep]
        index = np.arange(n)
        index[takers] = owners
        device_id = device_id.take(pa.array(index))
        ios = ios[index]
        shared_device[takers] = True
        shared_device[owners] = True
    has_web = rng.random(n) < FRACTIONS["web"]
    web_id = frames.uuids(rng, n)

    # Membership (会员): needs a phone (or an email for international customers).
    member = (rng.random(n) < FRACTIONS["member"] + 0.15 * (activity > 1.5)) & (has_phone | (intl & has_email))
    reg_w = np.stack(
        [has_mini * 3.0, has_app * 2.0, (store >= 0) * 2.0, has_tmall * 1.5, has_web * 0.5, has_douyin * 1.0], axis=1
    ) + np.array([1e-6, 0, 0, 0, 0, 0])
    reg_channel = frames.categorical(rng, reg_w)
    reg_day = np.minimum(first_day + rng.exponential(40.0, n).astype(np.int64), last_day)
    member_id = frames.digits(100_000_000 + gidx, 9, "YS")

    avail = np.stack([has_tmall, has_jd, has_mini, has_app & member, has_web & member, store >= 0], axis=1)
    none = ~avail.any(axis=1)
    has_tmall = has_tmall | none
    avail[:, TMALL] |= none
    weights = avail * _CHANNEL_BASE * rng.lognormal(0.0, 0.6, (n, len(CHANNELS)))

    return People(
        n=n, base=base, gidx=gidx, person_id=frames.digits(gidx + 1, 8, "P"), gender=gender, intl=intl, name=name,
        birthday=birthday, has_birthday=has_birthday, place=place, store=store, first_day=first_day,
        last_day=last_day, churned=churned, activity=activity, fav_category=fav_category, apparel_size=apparel,
        shoe_size=shoe, member=member, member_id=member_id, reg_day=reg_day,
        reg_channel=reg_channel, has_phone=has_phone, phone_prefix=phone_prefix, phone_body=phone_body,
        phone=phone, has_phone2=has_phone2, phone2_prefix=phone2_prefix, phone2_body=phone2_body, phone2=phone2,
        has_email=has_email, email=email, has_unionid=has_unionid, unionid=unionid, has_mini=has_mini,
        openid_mini=openid_mini, has_oa=has_oa, openid_oa=openid_oa, has_tmall=has_tmall, tmall_id=tmall_id,
        has_jd=has_jd, jd_id=jd_id, has_douyin=has_douyin, douyin_id=douyin_id, has_app=has_app, ios=ios,
        device_id=device_id, shared_device=shared_device, has_web=has_web, web_id=web_id, channel_weights=weights,
    )  # fmt: skip


CUSTOMER_SCHEMA = pa.schema([
    ("customer_id", pa.string()), ("member_id", pa.string()), ("name", pa.string()), ("gender", pa.string()),
    ("birthday", pa.date32()), ("phone", pa.string()), ("email", pa.string()), ("wechat_unionid", pa.string()),
    ("wechat_openid", pa.string()), ("tmall_id", pa.string()), ("jd_id", pa.string()), ("douyin_id", pa.string()),
    ("province", pa.string()), ("city", pa.string()), ("member_level", pa.string()), ("points", pa.int32()),
    ("registered_at", frames.TS), ("channel", pa.string()), ("attributes", pa.string()),
])  # fmt: skip


@dataclass
class Customers:
    table: pa.Table
    person: np.ndarray  # person row per customer row
    duplicate: np.ndarray  # second CRM record of the same person
    phone_variant: np.ndarray  # 0 exact, 1 format, 2 typo (per row; meaningful where phone is set)
    phone_canonical: pa.Array  # E.164 of the number written (the typo'd one for typos)
    email_variant: np.ndarray  # 0 exact, 1 case


def customer_table(
    *, people: People, cal: Calendar, spend_12m_cents: np.ndarray, spend_all_cents: np.ndarray, seed: int, chunk: int
) -> Customers:
    """CRM member records (会员): member id, phone, sometimes email, WeChat ids bound to the membership."""
    rng = np.random.default_rng([seed, chunk, 4])
    p = people
    rows = np.flatnonzero(p.member)
    dup = rows[rng.random(len(rows)) < FRACTIONS["crm_duplicate"]]
    person = np.concatenate([rows, dup])
    duplicate = np.concatenate([np.zeros(len(rows), bool), np.ones(len(dup), bool)])
    m = len(person)
    idx = pa.array(person)

    # Phone: the duplicate record carries the second phone (or a mistyped first one).
    variant_kind = np.zeros(m, dtype=np.int64)
    u = rng.random(m)
    # A duplicate record without a second phone repeats the first one, mistyped half of the time.
    typo = (u < FRACTIONS["crm_phone_typo"]) | (duplicate & ~p.has_phone2[person] & (rng.random(m) < 0.5))
    fmt = ~typo & (u < FRACTIONS["crm_phone_typo"] + FRACTIONS["crm_phone_format_variant"])
    variant_kind[fmt] = rng.integers(1, 6, int(fmt.sum()))
    use2 = duplicate & p.has_phone2[person]
    body = np.where(use2, p.phone2_body[person], p.phone_body[person])
    body = np.where(typo, typo_body(rng, body), body)
    prefix = np.where(use2, p.phone2_prefix[person], p.phone_prefix[person])
    canonical = phone_text(prefix, body)
    phone = frames.where(p.has_phone[person], phone_variant(canonical, variant_kind))
    phone_variant_code = np.where(typo, 2, np.where(fmt, 1, 0))

    with_email = p.has_email[person] & (rng.random(m) < 0.7)
    case = with_email & (rng.random(m) < FRACTIONS["crm_email_case_variant"])
    email_raw = p.email.take(idx)
    email = frames.where(with_email, frames.where(case, pc.utf8_upper(email_raw), email_raw))
    reg = p.reg_channel[person]
    bound_wechat = p.has_unionid[person] & ((reg == 0) | (rng.random(m) < 0.5)) & ~duplicate
    unionid = frames.where(bound_wechat, p.unionid.take(idx))
    openid_oa = frames.where(p.has_oa[person] & bound_wechat, p.openid_oa.take(idx))
    douyin = frames.where(p.has_douyin[person] & (reg == 5) & ~duplicate, p.douyin_id.take(idx))

    # Level from the last 12 months' spend; points ~ lifetime spend minus redemptions.
    spend = np.where(duplicate, 0, spend_12m_cents[person]) / 100
    level = np.searchsorted(np.array(LEVEL_THRESHOLDS), spend, side="right") - 1
    points = np.where(duplicate, rng.integers(0, 200, m), spend_all_cents[person] // 100 * rng.uniform(0.3, 1.0, m))
    reg_day = np.where(duplicate, np.minimum(p.reg_day[person] + rng.integers(30, 400, m), -1), p.reg_day[person])
    reg_us = cal.micros(reg_day, cal.sample_seconds(rng, m))
    gender_known = rng.random(m) < 0.97
    gender = frames.where(gender_known, frames.take(["male", "female"], p.gender[person]))
    birthday = pa.array(p.birthday[person]).cast(pa.date32())
    birthday = frames.where(p.has_birthday[person] & ~duplicate, birthday, pa.nulls(m, pa.date32()))
    sizes_known = rng.random(m) < 0.4
    attrs = frames.json_object(
        m,
        [
            ("level_en", frames.json_text(frames.take(MEMBER_LEVELS_EN, level))),
            ("apparel_size", frames.json_text(frames.take(APPAREL_SIZES, p.apparel_size[person], sizes_known))),
            ("shoe_size", frames.json_raw(frames.take(SHOE_SIZES, p.shoe_size[person], sizes_known))),
            (
                "home_store",
                frames.json_text(
                    frames.take([s for s, _, _ in STORES], np.maximum(p.store[person], 0), p.store[person] >= 0)
                ),
            ),
            ("sms_opt_in", frames.json_raw(pa.array(rng.random(m) < 0.8))),
            ("email_opt_in", frames.json_raw(frames.where(with_email, pa.array(rng.random(m) < 0.6)))),
        ],
    )
    # The CRM's key is the member number, which is also the userId members sign in with.
    member_id = frames.where(duplicate, frames.digits(300_000_000 + p.gidx[person], 9, "YS"), p.member_id.take(idx))
    table = pa.table(
        {
            "customer_id": member_id,
            "member_id": member_id,
            "name": p.name.take(idx),
            "gender": gender,
            "birthday": birthday,
            "phone": phone,
            "email": email,
            "wechat_unionid": unionid,
            "wechat_openid": openid_oa,
            "tmall_id": frames.nulls(m),
            "jd_id": frames.nulls(m),
            "douyin_id": douyin,
            "province": frames.take([pr for pr, _, _ in PLACES], p.place[person]),
            "city": frames.take([c for _, c, _ in PLACES], p.place[person]),
            "member_level": frames.take(MEMBER_LEVELS, level),
            "points": pa.array(points.astype(np.int32)),
            "registered_at": frames.timestamps(reg_us),
            "channel": frames.take(REG_CHANNELS, reg),
            "attributes": attrs,
        }
    )
    return Customers(
        table=table,
        person=person,
        duplicate=duplicate,
        phone_variant=phone_variant_code,
        phone_canonical=canonical,
        email_variant=case.astype(np.int64),
    )
