"""The identity ground truth (``truth.parquet``): which person every identifier in the files belongs to.

One row per (person, identifier kind, identifier value as written, source) — never loaded into
the store; it is what an identity-resolution run (OneID) is scored against. ``canonical`` is the
normalised value (E.164 phone, lower-case email); ``variant`` says how the written value differs
from it (``exact``, ``format`` — '138 0013 8000', '+86-138-…' …, ``case`` — an upper-case email,
``typo`` — a mistyped phone, whose canonical is the mistyped number, ``second`` — the person's
other phone). ``shared`` marks identifiers held by more than one person (a family device).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tessera.demo import frames
from tessera.demo.behaviour import EVENT_CHANNELS, Events
from tessera.demo.orders import Orders
from tessera.demo.people import APP, CHANNELS, JD, MINI, STORE, TMALL, WEB, Customers, People

VARIANTS = ("exact", "format", "case", "typo", "second")
EXACT, FORMAT, CASE, TYPO, SECOND = range(5)

TRUTH_SCHEMA = pa.schema([
    ("person_id", pa.string()), ("id_type", pa.string()), ("id_value", pa.string()), ("canonical", pa.string()),
    ("source", pa.string()), ("variant", pa.string()), ("shared", pa.bool_()),
])  # fmt: skip


@dataclass
class TruthBuilder:
    people: People
    _parts: list[pa.Table] = field(default_factory=list)

    def add(
        self,
        *,
        rows: np.ndarray,
        id_type: str,
        values: pa.Array,
        source: str,
        mask: np.ndarray | None = None,
        canonical: pa.Array | None = None,
        variant: np.ndarray | None = None,
        shared: np.ndarray | None = None,
    ) -> None:
        """Identifiers of ``people[rows]`` seen in ``source`` (only where ``mask``)."""
        keep = np.ones(len(rows), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        sel = np.flatnonzero(keep)
        if not len(sel):
            return
        take = pa.array(sel)
        person_rows = np.asarray(rows)[sel]
        value = values.take(take)
        canon = canonical.take(take) if canonical is not None else value
        if id_type == "email":
            canon = pc.utf8_lower(canon)
        var = np.zeros(len(sel), dtype=np.int64) if variant is None else np.asarray(variant)[sel]
        shr = np.zeros(len(sel), dtype=bool) if shared is None else np.asarray(shared)[sel]
        self._parts.append(
            pa.table(
                {
                    "person_id": self.people.person_id.take(pa.array(person_rows)),
                    "id_type": pa.array([id_type] * len(sel), pa.string()),
                    "id_value": value,
                    "canonical": canon,
                    "source": pa.array([source] * len(sel), pa.string()),
                    "variant": frames.take(VARIANTS, var),
                    "shared": pa.array(shr),
                }
            )
        )

    def table(self) -> pa.Table:
        if not self._parts:
            return TRUTH_SCHEMA.empty_table()
        t = pa.concat_tables(self._parts)
        t = t.filter(pc.is_valid(t.column("id_value")))
        keys = TRUTH_SCHEMA.names
        t = t.group_by(keys, use_threads=False).aggregate([])
        return t.select(keys).sort_by([(k, "ascending") for k in ("person_id", "id_type", "source", "id_value")])


def build_truth(*, people: People, customers: Customers, orders: Orders, events: Events) -> pa.Table:
    p = people
    tb = TruthBuilder(p)

    # CRM member records.
    c = customers
    cols = c.table
    crm_phone_variant = np.select([c.phone_variant == 2, c.phone_variant == 1], [TYPO, FORMAT], EXACT)
    crm_phone_variant = np.where(
        c.duplicate & p.has_phone2[c.person] & (c.phone_variant == 0), SECOND, crm_phone_variant
    )
    tb.add(rows=c.person, id_type="member_id", values=cols.column("member_id").combine_chunks(), source="crm")
    tb.add(
        rows=c.person,
        id_type="phone",
        values=cols.column("phone").combine_chunks(),
        canonical=c.phone_canonical,
        variant=crm_phone_variant,
        source="crm",
    )
    tb.add(
        rows=c.person,
        id_type="email",
        values=cols.column("email").combine_chunks(),
        variant=np.where(c.email_variant == 1, CASE, EXACT),
        source="crm",
    )
    tb.add(rows=c.person, id_type="wechat_unionid", values=cols.column("wechat_unionid").combine_chunks(), source="crm")
    tb.add(
        rows=c.person, id_type="wechat_openid_oa", values=cols.column("wechat_openid").combine_chunks(), source="crm"
    )
    tb.add(rows=c.person, id_type="douyin_id", values=cols.column("douyin_id").combine_chunks(), source="crm")

    # Orders, per channel.
    o = orders
    phone_variant = np.select(
        [o.phone_shown == 2, o.phone_shown == 3, o.phone_shown == 4], [FORMAT, TYPO, SECOND], EXACT
    )
    person = pa.array(o.person)
    for ch in (TMALL, JD, MINI, APP, WEB, STORE):
        on = o.channel == ch
        name = CHANNELS[ch]
        if ch == TMALL:
            tb.add(rows=o.person, id_type="tmall_id", values=p.tmall_id.take(person), source=name, mask=on)
        if ch == JD:
            tb.add(rows=o.person, id_type="jd_id", values=p.jd_id.take(person), source=name, mask=on)
        tb.add(
            rows=o.person, id_type="member_id", values=p.member_id.take(person), source=name, mask=on & o.member_shown
        )
        tb.add(
            rows=o.person,
            id_type="phone",
            values=o.phone_value,
            canonical=o.phone_canonical,
            variant=phone_variant,
            source=name,
            mask=on & (o.phone_shown > 0),
        )
        tb.add(rows=o.person, id_type="email", values=p.email.take(person), source=name, mask=on & o.email_shown)
        tb.add(
            rows=o.person,
            id_type="wechat_unionid",
            values=p.unionid.take(person),
            source=name,
            mask=on & o.unionid_shown,
        )

    # Events: the identifiers each person's events carried, per event source.
    rows = np.arange(p.n)
    for i, ch in enumerate(EVENT_CHANNELS):
        name = CHANNELS[ch]
        seen = events.seen_anon[:, i]
        if ch == APP:
            tb.add(rows=rows, id_type="device_id", values=p.device_id, source=name, mask=seen, shared=p.shared_device)
        elif ch == WEB:
            tb.add(rows=rows, id_type="anonymous_id", values=p.web_id, source=name, mask=seen)
        else:
            tb.add(rows=rows, id_type="wechat_openid_mp", values=p.openid_mini, source=name, mask=seen)
            tb.add(rows=rows, id_type="wechat_unionid", values=p.unionid, source=name, mask=seen & p.has_unionid)
        tb.add(rows=rows, id_type="member_id", values=p.member_id, source=name, mask=events.seen_member[:, i])
        tb.add(rows=rows, id_type="phone", values=p.phone, source=name, mask=events.seen_phone[:, i])
        tb.add(rows=rows, id_type="email", values=p.email, source=name, mask=events.seen_email[:, i])
    return tb.table()
