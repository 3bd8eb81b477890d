"""A small world for the condition tests: profiles, events, orders, tags, identifiers, audiences.

Plain dataclasses that :mod:`tests.conditions.reference` reads directly, and :func:`write`, which
stores the same world in a real :class:`~tessera.stores.analytic.AnalyticStore` with plain
INSERTs (bound parameters) so that compiled SQL can run on it. Times are naive UTC, as stored.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import duckdb

from tessera.stores.analytic import AnalyticStore

#: The typed event columns besides the name and time (see ``EVENT_COLUMNS`` in the spec module).
EVENT_TEXT_COLUMNS = (
    "currency",
    "order_id",
    "product_id",
    "category",
    "channel",
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
)


@dataclass
class Profile:
    """A profile (用户) and its ``profile_attributes`` row (``attributes=False``: none written yet)."""

    idx: int
    profile_id: str
    created_at: datetime
    traits: dict[str, Any] | None = None
    attributes: bool = True
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    channels: list[str] | None = None
    event_count: int | None = None
    order_count: int | None = None
    total_spend: Decimal | None = None
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    #: How many observations (identity_links rows) the profile is made of.
    observations: int = 1


@dataclass
class Event:
    """An event (track, or a page or screen by name); ``profile_idx`` None = it belongs to no profile."""

    profile_idx: int | None
    name: str
    timestamp: datetime
    type: str = "track"
    revenue: Decimal | None = None
    currency: str | None = None
    order_id: str | None = None
    product_id: str | None = None
    category: str | None = None
    channel: str | None = None
    utm_source: str | None = None
    utm_medium: str | None = None
    utm_campaign: str | None = None
    utm_term: str | None = None
    utm_content: str | None = None
    properties: dict[str, Any] | None = None
    #: Which of the profile's observations the event points at (modulo their number); without a
    #: profile, odd numbers leave ``identity_idx`` NULL and even ones point at an unlinked observation.
    observation: int = 0


@dataclass
class Product:
    product_id: str
    category: str | None


@dataclass
class OrderItem:
    product_id: str
    quantity: int = 1


@dataclass
class Order:
    order_id: str
    profile_idx: int | None
    ordered_at: datetime
    total: Decimal
    status: str | None = "paid"
    channel: str | None = None
    coupon_code: str | None = None
    items: list[OrderItem] = field(default_factory=list)
    observation: int = 0


@dataclass
class Tag:
    """One current value of a tag on a profile (``profile_tags`` row)."""

    profile_idx: int
    key: str
    value: str
    value_num: float | None


@dataclass
class Identifier:
    id_type: str
    id_value: str
    profile_idx: int


@dataclass
class Dataset:
    """The world a condition is evaluated against: ``now`` is the clock the timestamps were made
    around, ``timezone`` the workspace's time zone."""

    now: datetime
    profiles: list[Profile]
    events: list[Event] = field(default_factory=list)
    products: list[Product] = field(default_factory=list)
    orders: list[Order] = field(default_factory=list)
    tags: list[Tag] = field(default_factory=list)
    identifiers: list[Identifier] = field(default_factory=list)
    timezone: str = "Asia/Shanghai"
    #: Stored members of static audiences: audience id → profile indexes (possibly of profiles
    #: since merged away, which are nobody now).
    audience_members: dict[str, set[int]] = field(default_factory=dict)

    def profile(self, idx: int) -> Profile:
        return next(p for p in self.profiles if p.idx == idx)

    @property
    def everyone(self) -> set[int]:
        return {p.idx for p in self.profiles}

    def event_names(self) -> list[str]:
        return sorted({e.name for e in self.events})


def tag_value_num(value: str) -> float | None:
    """``value_num`` for a tag value: its reading as a finite number, else None."""
    try:
        num = float(value)
    except ValueError:
        return None
    return num if num == num and abs(num) != float("inf") else None


# --- storing ---------------------------------------------------------------------------------

_TABLES = (
    "events",
    "event_names",
    "identity_links",
    "profiles",
    "profile_attributes",
    "orders",
    "order_items",
    "products",
    "profile_tags",
    "profile_identifiers",
    "audience_members",
)


def clear(store: AnalyticStore) -> None:
    """Empty every table :func:`write` fills (one store serves many datasets)."""
    with store.transaction() as cur:
        for table in _TABLES:
            cur.execute(f"DELETE FROM {table}")
    _changed(store)


def _changed(store: AnalyticStore) -> None:
    """Tell in-memory copies of the tables (the fast count's columns) to read them again."""
    changed = getattr(store, "changed", None)
    if changed is not None:
        changed(*_TABLES)


def _insert(cur: duckdb.DuckDBPyConnection, table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """One multi-row INSERT with bound parameters (a row at a time is slow in DuckDB)."""
    if not rows:
        return
    one = "(" + ", ".join("?" for _ in columns) + ")"
    cols = ", ".join(f'"{c}"' for c in columns)
    for start in range(0, len(rows), 200):
        chunk = rows[start : start + 200]
        sql = f"INSERT INTO {table} ({cols}) VALUES " + ", ".join(one for _ in chunk)
        cur.execute(sql, [v for row in chunk for v in row])


def _json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, ensure_ascii=False)


def observation_ids(dataset: Dataset) -> dict[tuple[int, int], int]:
    """(profile_idx, n) → obs_idx for each profile's observations."""
    out: dict[tuple[int, int], int] = {}
    for p in dataset.profiles:
        for n in range(p.observations):
            out[(p.idx, n)] = len(out) + 1
    return out


def write(store: AnalyticStore, dataset: Dataset) -> None:
    """Store the dataset (after :func:`clear` when the store held another one)."""
    obs = observation_ids(dataset)
    orphan_obs = len(obs) + 1  # an observation no profile holds (events arrive before linking)

    def obs_of(profile_idx: int | None, n: int) -> int | None:
        if profile_idx is None:
            return orphan_obs if n % 2 == 0 else None
        return obs[(profile_idx, n % dataset.profile(profile_idx).observations)]

    names = {name: i + 1 for i, name in enumerate(sorted({e.name for e in dataset.events}))}
    profile_ids = {p.idx: p.profile_id for p in dataset.profiles}
    with store.transaction() as cur:
        _insert(
            cur,
            "profiles",
            ("profile_idx", "profile_id", "created_at", "first_seen", "last_seen", "traits"),
            [(p.idx, p.profile_id, p.created_at, p.first_seen, p.last_seen, _json(p.traits)) for p in dataset.profiles],
        )
        _insert(
            cur,
            "profile_attributes",
            (
                "profile_idx",
                "traits",
                "first_seen",
                "last_seen",
                "channels",
                "event_count",
                "order_count",
                "total_spend",
                "first_order_at",
                "last_order_at",
                "updated_at",
            ),  # fmt: skip
            [
                (
                    p.idx,
                    _json(p.traits),
                    p.first_seen,
                    p.last_seen,
                    p.channels,
                    p.event_count,
                    p.order_count,
                    p.total_spend,
                    p.first_order_at,
                    p.last_order_at,
                    dataset.now,
                )  # fmt: skip
                for p in dataset.profiles
                if p.attributes
            ],
        )
        link_rows: list[tuple[Any, ...]] = []
        for (profile_idx, n), obs_idx in obs.items():
            ids = [{"id_type": "device_id", "id_value": f"dev-{profile_idx}-{n}"}]
            key = f"device_id:dev-{profile_idx}-{n}"
            key_hash = int(hashlib.md5(key.encode()).hexdigest(), 16)
            link_rows.append((obs_idx, key_hash, key, ids, dataset.now, 1, "test", profile_idx))
        link_rows.append(
            (
                orphan_obs,
                0,
                "device_id:orphan",
                [{"id_type": "device_id", "id_value": "orphan"}],
                dataset.now,
                1,
                "test",
                None,
            )
        )
        _insert(
            cur,
            "identity_links",
            ("obs_idx", "key_hash", "ids_key", "ids", "first_seen", "source_id", "origin", "profile_idx"),
            link_rows,
        )
        _insert(cur, "event_names", ("event_id", "name"), [(i, name) for name, i in names.items()])
        _insert(
            cur,
            "events",
            (
                "message_id",
                "source_id",
                "type",
                "event_id",
                "timestamp",
                "received_at",
                "revenue",
                *EVENT_TEXT_COLUMNS,
                "properties",
                "identity_idx",
            ),  # fmt: skip
            [
                (
                    f"m{i}",
                    1,
                    "track",
                    names[e.name],
                    e.timestamp,
                    e.timestamp,
                    e.revenue,
                    *(getattr(e, c) for c in EVENT_TEXT_COLUMNS),
                    _json(e.properties),
                    obs_of(e.profile_idx, e.observation),
                )  # fmt: skip
                for i, e in enumerate(dataset.events)
            ],
        )
        _insert(cur, "products", ("product_id", "category"), [(p.product_id, p.category) for p in dataset.products])
        _insert(
            cur,
            "orders",
            ("order_id", "ordered_at", "total", "status", "channel", "coupon_code", "identity_idx"),
            [
                (
                    o.order_id,
                    o.ordered_at,
                    o.total,
                    o.status,
                    o.channel,
                    o.coupon_code,
                    obs_of(o.profile_idx, o.observation),
                )
                for o in dataset.orders
            ],
        )
        _insert(
            cur,
            "order_items",
            ("order_id", "line_no", "product_id", "quantity"),
            [(o.order_id, n + 1, it.product_id, it.quantity) for o in dataset.orders for n, it in enumerate(o.items)],
        )
        _insert(
            cur,
            "profile_tags",
            ("profile_idx", "tag_key", "value", "value_num", "updated_at"),
            [(t.profile_idx, t.key, t.value, t.value_num, dataset.now) for t in dataset.tags],
        )
        _insert(
            cur,
            "profile_identifiers",
            ("id_type", "id_value", "profile_idx"),
            [(i.id_type, i.id_value, i.profile_idx) for i in dataset.identifiers],
        )
        _insert(
            cur,
            "audience_members",
            ("audience_id", "profile_idx", "profile_id", "since"),
            [
                (audience, idx, profile_ids.get(idx, f"gone-{idx}"), dataset.now)
                for audience, members in sorted(dataset.audience_members.items())
                for idx in sorted(members)
            ],
        )
    _changed(store)
