"""Chosen attribute columns: names parse to what they read, and project() reads it from a real store."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pytest
from sqlglot import exp

from tessera.compiler.projection import ColumnSpec, ProjectionError, parse_column, parse_columns, project
from tessera.compiler.query import Params, Query
from tessera.stores.analytic import AnalyticStore

EVIL_TRAIT = 'x"); DROP TABLE profiles; --'
EVIL_TAG = "x'); DROP TABLE profile_tags; --"
T = datetime(2026, 3, 1, 8, 0)


def fill(cur: duckdb.DuckDBPyConnection) -> None:
    """Four profiles: 1 and 2 fully described, 3 without computed attributes, 4 never a member here."""
    for idx in (1, 2, 3, 4):
        cur.execute(
            "INSERT INTO profiles (profile_idx, profile_id, created_at) VALUES (?, ?, ?)",
            [idx, f"p_{idx}", datetime(2025, 1, idx)],
        )
    traits: dict[int, dict[str, Any]] = {
        1: {"name": "王小明", "city": "上海", "会员等级": "钻石", "points": 120, "vip": True,
            "address": {"省": "浙江"}, "a.b": "dotted", EVIL_TRAIT: "evil-but-harmless", "phone": "138 0013 8000",
            "total_spend": "trait, not the computed one"},
        2: {"name": "李雷", "city": "北京", "note": "逗号,引号\"和\n换行"},
        4: {"city": "深圳"},
    }  # fmt: skip
    attrs = {
        1: (["天猫", "微信小程序"], 12, 3, Decimal("1288.50"), T),
        2: (["官方App"], 4, 0, Decimal("0.00"), None),
        4: ([], 0, 0, Decimal("0.00"), None),
    }
    for idx, (channels, events, orders, spend, last_order) in attrs.items():
        cur.execute(
            """INSERT INTO profile_attributes (profile_idx, traits, first_seen, last_seen, channels, event_count,
               order_count, total_spend, first_order_at, last_order_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
            [idx, json.dumps(traits[idx], ensure_ascii=False), datetime(2025, 2, 1), T, channels, events, orders,
             spend, last_order, last_order, T],
        )  # fmt: skip
    ids = [
        ("phone", "+8613800138000", 1, datetime(2025, 1, 1)),
        ("phone", "+8613900139000", 1, datetime(2025, 3, 1)),  # linked later: the one id:phone shows
        ("email", "wang@example.com", 1, datetime(2025, 1, 1)),
        ("email", "xm.wang@qq.com", 1, datetime(2025, 2, 1)),
        ("wechat_openid", "oAbC_123", 1, datetime(2025, 1, 1)),
        ("phone", "+8618600186000", 2, datetime(2025, 1, 5)),
        ("phone", "+8613700137000", 4, datetime(2025, 1, 5)),
    ]
    for id_type, value, idx, linked in ids:
        cur.execute(
            """INSERT INTO profile_identifiers (id_type, id_value, profile_idx, first_seen, last_seen, linked_at)
               VALUES (?, ?, ?, ?, ?, ?)""",
            [id_type, value, idx, linked, linked, linked],
        )
    tags = [
        (1, "rfm", "重要价值客户", None),
        (1, "interest", "跑步", None),
        (1, "interest", "瑜伽", None),
        (1, "interest", "咖啡", None),
        (2, "interest", "篮球", None),
        (1, "score", "7", 7.0),
        (1, EVIL_TAG, "tagged", None),
    ]
    for idx, key, value, num in tags:
        cur.execute(
            "INSERT INTO profile_tags (profile_idx, tag_key, value, value_num, updated_at) VALUES (?, ?, ?, ?, ?)",
            [idx, key, value, num, T],
        )


@pytest.fixture
def cur(tmp_path: Path) -> Any:
    store = AnalyticStore(tmp_path / "analytic.duckdb")
    c = store.cursor()
    fill(c)
    yield c
    c.close()
    store.close()


def members(params: Params, *idxs: int) -> exp.Query:
    """A member query with its own parameters (as an audience's would be)."""
    return (
        exp.select("profile_idx")
        .from_("profiles")
        .where(exp.column("profile_idx").isin(*(params.add(i) for i in idxs)))
    )


def rows(cur: duckdb.DuckDBPyConnection, query: Query) -> list[dict[str, Any]]:
    names = list(query.columns())
    return [dict(zip(names, r, strict=True)) for r in query.execute(cur)]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


# -- names -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "kind", "key"),
    [
        ("total_spend", "computed", "total_spend"),
        ("channels", "computed", "channels"),
        ("city", "trait", "city"),
        ("会员等级", "trait", "会员等级"),
        ("traits.total_spend", "trait", "total_spend"),
        ("traits.utm:source", "trait", "utm:source"),
        ("traits.a.b", "trait", "a.b"),
        (" city ", "trait", "city"),
        ("id:phone", "identifier", "phone"),
        ("ids:wechat_openid", "identifiers", "wechat_openid"),
        ("tag:rfm", "tag", "rfm"),
        ("tag:生命周期:阶段", "tag", "生命周期:阶段"),
    ],
)
def test_names_say_what_they_read(name: str, kind: str, key: str) -> None:
    spec = parse_column(name)
    assert (spec.kind, spec.key, spec.name) == (kind, key, name.strip())


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "empty"),
        ("traits.", "needs a trait key"),
        ("tag:", "needs a tag key"),
        ("id:", "identifier type"),
        ("id:Phone", "identifier type"),
        ("id:phone; DROP TABLE profiles", "identifier type"),
        ("ids:电话", "identifier type"),
        ("foo:bar", "unknown prefix 'foo:'"),
        ("ci\x00ty", "control characters"),
        ("x" * 201, "longer than 200"),
    ],
)
def test_bad_names_raise_an_error_naming_the_column(name: str, message: str) -> None:
    with pytest.raises(ProjectionError, match=message) as err:
        parse_column(name)
    assert err.value.column == name.strip() or err.value.column.endswith("…")
    assert repr(err.value.column) in str(err.value)


def test_column_lists_refuse_duplicates_and_unknown_identifier_types() -> None:
    assert [c.name for c in parse_columns(["profile_id", "city", "id:phone"])] == ["city", "id:phone"]
    with pytest.raises(ProjectionError, match="chosen twice") as err:
        parse_columns(["city", "id:phone", "city"])
    assert err.value.column == "city"
    types = {"phone": "phone", "email": "email", "member_id": "id"}
    assert parse_columns(["id:member_id"], id_types=types)[0] == ColumnSpec("id:member_id", "identifier", "member_id")
    with pytest.raises(ProjectionError, match="known types: email, member_id, phone") as err:
        parse_columns(["id:qq"], id_types=types)
    assert err.value.column == "id:qq"
    assert parse_column("total_spend").label("zh") == "累计消费" and parse_column("city").label("en") == "city"


# -- on a real store -------------------------------------------------------------------------------------


def test_projects_computed_fields_traits_identifiers_and_tags(cur: duckdb.DuckDBPyConnection) -> None:
    params = Params()
    q = project(
        members(params, 2, 3, 1, 1),  # any order, duplicates: one row each, ordered by profile_idx
        ["city", "会员等级", "traits.address", "points", "vip", "total_spend", "channels", "order_count",
         "last_order_at", "created_at", "id:phone", "ids:phone", "id:email", "id:wechat_openid", "tag:interest",
         "tag:rfm", "tag:score", "traits.a.b", "traits.total_spend", "missing"],
        params,
    )  # fmt: skip
    assert list(q.columns())[:3] == ["profile_id", "city", "会员等级"]
    got = rows(cur, q)
    assert [r["profile_id"] for r in got] == ["p_1", "p_2", "p_3"]
    one, two, three = got
    assert one["city"] == "上海" and one["会员等级"] == "钻石"
    assert json.loads(one["traits.address"]) == {"省": "浙江"}  # non-text values read as their JSON text
    assert one["points"] == "120" and one["vip"] == "true"
    assert one["total_spend"] == Decimal("1288.50") and one["traits.total_spend"] == "trait, not the computed one"
    assert one["channels"] == "天猫|微信小程序" and one["order_count"] == 3 and one["last_order_at"] == T
    assert one["created_at"] == datetime(2025, 1, 1)
    assert one["id:phone"] == "+8613900139000"  # the most recently linked
    assert one["ids:phone"] == "+8613800138000|+8613900139000"
    assert one["id:email"] == "xm.wang@qq.com" and one["id:wechat_openid"] == "oAbC_123"
    assert one["tag:interest"] == "咖啡|瑜伽|跑步" and one["tag:rfm"] == "重要价值客户" and one["tag:score"] == "7"
    assert one["traits.a.b"] == "dotted" and one["missing"] is None
    assert two["city"] == "北京" and two["id:phone"] == "+8618600186000" and two["id:email"] is None
    assert two["tag:interest"] == "篮球" and two["tag:rfm"] is None and two["channels"] == "官方App"
    # A profile whose attributes are not computed yet still appears, with what is known.
    assert three["profile_id"] == "p_3" and three["created_at"] == datetime(2025, 1, 3)
    assert all(v is None for k, v in three.items() if k not in ("profile_id", "created_at"))


def test_only_profile_id_when_nothing_is_chosen(cur: duckdb.DuckDBPyConnection) -> None:
    params = Params()
    q = project(members(params, 4, 2), [], params)
    assert rows(cur, q) == [{"profile_id": "p_2"}, {"profile_id": "p_4"}]


def test_hashed_identifiers_match_what_ad_platforms_compute(cur: duckdb.DuckDBPyConnection) -> None:
    params = Params()
    cols = ["id:phone", "ids:phone", "id:email", "ids:email", "id:wechat_openid", "city"]
    [one, two] = rows(cur, project(members(params, 1, 2), cols, params, hash_identifiers=True))
    assert one["id:phone"] == sha("8613900139000")  # E.164 digits, no '+'
    assert one["ids:phone"] == "|".join(sorted([sha("8613800138000"), sha("8613900139000")]))
    assert one["id:email"] == sha("xm.wang@qq.com")
    assert one["ids:email"] == "|".join(sorted([sha("wang@example.com"), sha("xm.wang@qq.com")]))
    assert one["id:wechat_openid"] == "oAbC_123" and one["city"] == "上海"  # only phones and emails
    assert two["id:phone"] == sha("8618600186000") and two["id:email"] is None
    assert all(len(h) == 64 and h == h.lower() for h in one["ids:phone"].split("|"))
    # Google Customer Match's form keeps the plus sign.
    params = Params()
    [g] = rows(cur, project(members(params, 1), ["id:phone"], params, hash_identifiers=True, phone_format="e164"))
    assert g["id:phone"] == sha("+8613900139000")


def test_hashing_follows_the_workspace_identifier_kinds(cur: duckdb.DuckDBPyConnection) -> None:
    cur.execute(
        "INSERT INTO profile_identifiers (id_type, id_value, profile_idx, linked_at) VALUES (?, ?, ?, ?)",
        ["work_email", " Boss@Corp.CN ", 1, T],
    )
    params = Params()
    kinds = {"phone": "phone", "email": "email", "work_email": "email", "wechat_openid": "id"}
    [one] = rows(cur, project(members(params, 1), ["id:work_email"], params, hash_identifiers=True, id_types=kinds))
    assert one["id:work_email"] == sha("boss@corp.cn")  # trimmed and lower-cased before hashing


def test_raw_contact_traits_are_refused_while_hashing() -> None:
    params = Params()
    for name in ("phone", "traits.email", "Mobile"):
        with pytest.raises(ProjectionError, match="raw contact data") as err:
            project(members(params, 1), ["city", name], params, hash_identifiers=True)
        assert err.value.column == name
    project(members(params, 1), ["phone"], params)  # fine without hashing


def test_user_text_never_becomes_sql(cur: duckdb.DuckDBPyConnection) -> None:
    params = Params()
    evil_columns = [f"traits.{EVIL_TRAIT}", f"tag:{EVIL_TAG}", "traits.'; DROP TABLE profile_tags; --"]
    q = project(members(params, 1), evil_columns, params)
    # The text only appears as quoted output names; what is read is named by parameters.
    assert not any("DROP" in lit.this for lit in q.tree.find_all(exp.Literal))
    named = [i for i in q.tree.find_all(exp.Identifier) if "DROP" in i.this]
    assert len(named) == 3 and all(i.quoted and isinstance(i.parent, exp.Alias) for i in named)
    assert sorted(map(str, q.params.values())) == sorted(
        ["1", '$."x\\"); DROP TABLE profiles; --"', EVIL_TAG, '$."\'; DROP TABLE profile_tags; --"']
    )
    [one] = rows(cur, q)
    assert one == {
        "profile_id": "p_1",
        f"traits.{EVIL_TRAIT}": "evil-but-harmless",  # read as a key, verbatim
        f"tag:{EVIL_TAG}": "tagged",
        "traits.'; DROP TABLE profile_tags; --": None,
    }
    tables = {r[0] for r in cur.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"profiles", "profile_tags", "profile_identifiers"} <= tables
    with pytest.raises(ProjectionError) as err:
        project(members(params, 1), ["id:phone'); DROP TABLE profiles; --"], params)
    assert err.value.column == "id:phone'); DROP TABLE profiles; --"
