"""Every place a user value enters a compiled query, tried with hostile text on a real store: the
query must select exactly the right profile and leave every table as it was."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlglot
from sqlglot import exp

from tessera.compiler import DIALECTS, AudienceMap, AudienceRef, CompileContext, compile_explain, compile_members
from tessera.domain.conditions import parse_condition
from tessera.stores.analytic import AnalyticStore
from tests.compiler.support import CTX, EVIL, NOW_UTC, members, open_store, table_counts

KEYS = (EVIL, "a.b/c~d", "$['x']", 'it\'s "quoted"', "../traits")
EVIL_AUDIENCE = "aud'); DELETE FROM audience_members; --"


@pytest.fixture(scope="module")
def evil_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnalyticStore]:
    """The usual five profiles and a sixth whose every value is hostile text."""
    store = open_store(Path(tmp_path_factory.mktemp("injection")))
    traits = {k: EVIL for k in KEYS}
    with store.transaction() as cur:
        cur.execute("INSERT INTO profiles (profile_idx, profile_id, created_at) VALUES (6, 'p_6', ?)", [NOW_UTC])
        cur.execute("INSERT INTO profile_attributes (profile_idx, traits, channels, updated_at) VALUES (6, ?, ?, ?)",
                    [json.dumps(traits, ensure_ascii=False), [EVIL], NOW_UTC])  # fmt: skip
        cur.execute("INSERT INTO identity_links VALUES (61, 61, 'k61', [], ?, 1, 'test', 6)", [NOW_UTC])
        cur.execute("INSERT INTO event_names (event_id, name) VALUES (66, ?)", [EVIL])
        cur.execute(
            'INSERT INTO events (message_id, source_id, type, event_id, "timestamp", received_at, channel, properties, '
            "identity_idx) VALUES ('m66', 1, 'track', 66, ?, ?, ?, ?, 61)",
            [NOW_UTC - timedelta(days=1), NOW_UTC, EVIL, json.dumps(traits, ensure_ascii=False)],
        )
        cur.execute("INSERT INTO products (product_id, category) VALUES (?, ?)", [EVIL, EVIL])
        cur.execute("INSERT INTO orders (order_id, ordered_at, total, status, channel, coupon_code, identity_idx) "
                    "VALUES (?, ?, 10, 'paid', ?, ?, 61)", [EVIL, NOW_UTC, EVIL, EVIL])  # fmt: skip
        cur.execute(
            "INSERT INTO order_items (order_id, line_no, product_id, quantity) VALUES (?, 1, ?, 1)", [EVIL, EVIL]
        )
        cur.execute("INSERT INTO profile_tags VALUES (6, ?, ?, NULL, ?)", [EVIL, EVIL, NOW_UTC])
        cur.execute("INSERT INTO profile_identifiers (id_type, id_value, profile_idx) VALUES (?, ?, 6)", [EVIL, EVIL])
        cur.execute("INSERT INTO audience_members VALUES (?, 6, 'p_6', ?)", [EVIL_AUDIENCE, NOW_UTC])
    yield store
    store.close()


def attr(field: str, op: str = "eq", value: Any = EVIL) -> dict[str, Any]:
    return {"type": "attribute", "field": field, "op": op, "value": value}


def event(**kw: Any) -> dict[str, Any]:
    return {"type": "event", "event": EVIL, **kw}


def order(**kw: Any) -> dict[str, Any]:
    return {"type": "order", **kw}


PLACES: list[tuple[str, dict[str, Any]]] = [
    *[(f"trait key {k!r}", attr(k)) for k in KEYS],
    *[(f"traits.{k!r}", attr(f"traits.{k}")) for k in KEYS],
    ("attribute value in", attr(KEYS[1], "in", [EVIL, "x"])),
    ("attribute contains", attr(KEYS[2], "contains", 'DROP TABLE profiles; -- "')),
    ("attribute starts_with", attr(KEYS[3], "starts_with", "x');")),
    ("regex", attr(KEYS[0], "regex", re.escape("'); DROP TABLE profiles; -- \" $p1"))),
    ("list value", attr("channels", "eq", EVIL)),
    ("list values", attr("channels", "in", [EVIL])),
    ("tag key", {"type": "tag", "tag": EVIL}),
    ("tag value", {"type": "tag", "tag": EVIL, "op": "eq", "value": EVIL}),
    ("tag values", {"type": "tag", "tag": EVIL, "op": "all", "values": [EVIL]}),
    ("event name", event()),
    ("property name and value", event(where=[{"property": k, "op": "eq", "value": EVIL} for k in KEYS])),
    ("typed property value", event(where=[{"property": "channel", "op": "in", "value": [EVIL]}])),
    # a text property reads no number: its max is unknown and fails, so the negation holds
    (
        "aggregate property",
        {"type": "not", "child": event(aggregate={"fn": "max", "property": EVIL, "op": "lt", "value": 1})},
    ),
    ("coupons", order(coupons=[EVIL])),
    ("products", order(products=[EVIL])),
    ("categories", order(categories=[EVIL])),
    ("channels", order(channels=[EVIL])),
    ("audience id", {"type": "in_audience", "audience": EVIL_AUDIENCE}),
    ("id types", {"type": "has_identifier", "id_types": [EVIL]}),
]
CTX_EVIL = CompileContext(CTX.eval, AudienceMap.of(AudienceRef(EVIL_AUDIENCE, "static")))


@pytest.mark.parametrize("definition", [d for _, d in PLACES], ids=[n for n, _ in PLACES])
def test_hostile_values_select_the_right_profile(evil_store: AnalyticStore, definition: dict[str, Any]) -> None:
    before = table_counts(evil_store)
    got = members(evil_store, definition, CTX_EVIL)
    if definition["type"] == "not":
        assert 6 in got
    else:
        assert got == {6}
    row = compile_explain(parse_condition(definition), CTX_EVIL, profile_idx=6).execute(evil_store.cursor())
    assert row[0][-1] is True
    assert table_counts(evil_store) == before
    query = compile_members(parse_condition(definition), CTX_EVIL)
    for dialect in DIALECTS:  # keys written as literals stay literals: the text is one SELECT
        [statement] = sqlglot.parse(query.render(dialect), read=dialect)
        assert isinstance(statement, exp.Select)


def test_hostile_salt(evil_store: AnalyticStore) -> None:
    def bucket(idx: int) -> int:
        return int(hashlib.md5(f"p_{idx}:{EVIL}".encode()).hexdigest()[:8], 16) % 3

    before = table_counts(evil_store)
    got = members(evil_store, {"type": "random_bucket", "salt": EVIL, "buckets": 3, "low": 1, "high": 3})
    assert got == {i for i in range(1, 7) if bucket(i) >= 1}
    assert table_counts(evil_store) == before
