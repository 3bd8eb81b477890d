"""What journeys read about people, a batch at a time (one DuckDB pass per batch).

For each profile: its id, traits (after the merge policies), time zone and locale, the addresses a
channel can reach (phone, email, WeChat openid, push token) and current tag values. Split paths are
answered by compiling each condition once per batch and restricting it to the batch's profiles.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import orjson
import pyarrow as pa
from sqlglot import exp

from tessera.compiler import compile_members
from tessera.compiler.lower import PROFILE
from tessera.compiler.query import Params, run
from tessera.domain.conditions import Condition
from tessera.domain.guards import person_timezone
from tessera.runtime import Instance

_BATCH_TABLE = "_journey_batch"
#: identifier types that are channel addresses
ADDRESS_TYPES = {"phone": "sms", "email": "email", "wechat_openid": "wechat"}


@dataclass
class PersonFacts:
    profile_idx: int
    profile_id: str
    traits: dict[str, Any] = field(default_factory=dict)
    timezone: str = "Asia/Shanghai"
    addresses: dict[str, str] = field(default_factory=dict)
    tags: dict[str, Any] = field(default_factory=dict)

    @property
    def locale(self) -> str | None:
        for key in ("locale", "language", "lang"):
            v = self.traits.get(key)
            if isinstance(v, str) and v:
                return v
        return None

    def address(self, kind: str) -> str | None:
        """Where a message of ``kind`` goes: a trait wins (``email``, ``phone``…), then an identifier."""
        return self.addresses.get(kind)


def _register(cur: duckdb.DuckDBPyConnection, idxs: Sequence[int]) -> None:
    cur.register(_BATCH_TABLE, pa.table({"profile_idx": pa.array(sorted(set(idxs)), pa.int32())}))


def load_people(inst: Instance, idxs: Iterable[int], *, tags: bool = False) -> dict[int, PersonFacts]:
    """Facts of the given profiles (missing profiles are left out)."""
    ids = list(set(idxs))
    if not ids:
        return {}
    default_tz = inst.settings.timezone
    refresh_stale(inst, ids)
    cur = inst.analytic.cursor()
    out: dict[int, PersonFacts] = {}
    _register(cur, ids)
    try:
        rows = cur.execute(
            f"SELECT p.profile_idx, p.profile_id, coalesce(a.traits, p.traits) FROM {_BATCH_TABLE} b "  # noqa: S608 - constant
            "JOIN profiles p ON p.profile_idx = b.profile_idx "
            "LEFT JOIN profile_attributes a ON a.profile_idx = p.profile_idx"
        ).fetchall()
        for idx, pid, traits_json in rows:
            traits = orjson.loads(traits_json) if traits_json else {}
            if not isinstance(traits, dict):
                traits = {}
            facts = PersonFacts(int(idx), str(pid), traits, person_timezone(traits, default_tz))
            out[int(idx)] = facts
        got = cur.execute(
            f"SELECT i.profile_idx, i.id_type, i.id_value FROM {_BATCH_TABLE} b "  # noqa: S608 - constant
            "JOIN profile_identifiers i ON i.profile_idx = b.profile_idx "
            "WHERE i.id_type IN ('phone', 'email', 'wechat_openid', 'device_id') "
            "ORDER BY i.last_seen DESC NULLS LAST"
        ).fetchall()
        for idx, id_type, value in got:
            facts_or_none = out.get(int(idx))
            if facts_or_none is None:
                continue
            kind = ADDRESS_TYPES.get(id_type, "push" if id_type == "device_id" else None)
            if kind is not None:
                facts_or_none.addresses.setdefault(kind, value)
        if tags:
            for idx, key, value in cur.execute(
                f"SELECT t.profile_idx, t.tag_key, t.value FROM {_BATCH_TABLE} b "  # noqa: S608 - constant
                "JOIN profile_tags t ON t.profile_idx = b.profile_idx ORDER BY t.tag_key, t.value"
            ).fetchall():
                f = out.get(int(idx))
                if f is None:
                    continue
                prev = f.tags.get(key)
                f.tags[key] = value if prev is None else ([*prev, value] if isinstance(prev, list) else [prev, value])
    finally:
        cur.unregister(_BATCH_TABLE)
    for f in out.values():  # a trait is what the person told us most recently: it wins over identifiers
        for key, kind in (("email", "email"), ("phone", "sms"), ("mobile", "sms"), ("wechat_openid", "wechat"),
                          ("openid", "wechat"), ("push_token", "push")):  # fmt: skip
            v = f.traits.get(key)
            if isinstance(v, str) and v.strip():
                f.addresses[kind] = _phone(v.strip(), inst.settings.default_region) if kind == "sms" else v.strip()
    return out


def refresh_stale(inst: Instance, ids: Sequence[int] | None = None) -> int:
    """Recompute the merged traits of the profiles seen since their attributes were computed (of
    ``ids``, or of everyone): a person who just signed up is messaged with the name they gave, and an
    audience over attributes sees today's values. Returns how many were refreshed."""
    from tessera.services.identity_rules import get_rules
    from tessera.services.profile_attributes import refresh_attributes
    from tessera.services.sources import source_names

    stale_sql = (
        "SELECT p.profile_idx FROM profiles p LEFT JOIN profile_attributes a ON a.profile_idx = p.profile_idx "
        "WHERE (a.profile_idx IS NULL OR a.updated_at <= p.last_seen)"
    )
    cur = inst.analytic.cursor()
    if ids is None:
        stale = [int(r[0]) for r in cur.execute(stale_sql).fetchall()]
    else:
        _register(cur, ids)
        try:
            stale = [int(r[0]) for r in cur.execute(
                stale_sql + f" AND p.profile_idx IN (SELECT profile_idx FROM {_BATCH_TABLE})"  # noqa: S608 - constant
            ).fetchall()]  # fmt: skip
        finally:
            cur.unregister(_BATCH_TABLE)
    if not stale:
        return 0
    with inst.analytic.transaction() as tx:
        refresh_attributes(tx, rules=get_rules(inst.operational), source_names=source_names(inst.operational),
                           profile_idxs=stale, now=inst.clock.now())  # fmt: skip
    inst.analytic.changed("profile_attributes")
    return len(stale)


def _phone(raw: str, region: str) -> str:
    """A phone trait in E.164 (already-E.164 values pass through without parsing)."""
    if raw.startswith("+") and raw[1:].isdigit() and 8 <= len(raw) <= 16:
        return raw
    import phonenumbers

    try:
        n = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return raw
    return phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164)


def matching(inst: Instance, cond: Condition, idxs: Sequence[int], ctx: Any) -> set[int]:
    """Which of ``idxs`` the condition selects now (compiled; restricted to the batch)."""
    if not idxs:
        return set()
    params = Params()
    query = compile_members(cond, ctx, params=params)
    scope = exp.select("profile_idx").from_(_BATCH_TABLE)
    tree = query.tree.where(exp.column("profile_idx", table=PROFILE).isin(query=scope), copy=True)
    cur = inst.analytic.cursor()
    _register(cur, idxs)
    try:
        return {int(r[0]) for r in run(cur, tree, params.values)}
    finally:
        cur.unregister(_BATCH_TABLE)


def traits_json(traits: Mapping[str, Any]) -> str:
    return orjson.dumps(dict(traits)).decode()
