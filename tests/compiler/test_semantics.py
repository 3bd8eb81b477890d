"""What compiled conditions select on a real store: every leaf kind against hand-worked answers."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tessera.stores.analytic import AnalyticStore
from tests.compiler.support import DYNAMIC, STATIC, members, store

__all__ = ["store"]

EVERYONE = {1, 2, 3, 4, 5}


def attr(field: str, op: str, value: Any = None, **kw: Any) -> dict[str, Any]:
    leaf = {"type": "attribute", "field": field, "op": op, **kw}
    if value is not None:
        leaf["value"] = value
    return leaf


def event(name: str, **kw: Any) -> dict[str, Any]:
    return {"type": "event", "event": name, **kw}


def order(**kw: Any) -> dict[str, Any]:
    return {"type": "order", **kw}


def tag(key: str, op: str = "has", **kw: Any) -> dict[str, Any]:
    return {"type": "tag", "tag": key, "op": op, **kw}


LAST30 = {"last": 30}
CASES: list[tuple[str, dict[str, Any], set[int]]] = [
    # attributes: text, two-valued negations, presence
    ("eq", attr("city", "eq", "上海"), {1}),
    ("neq holds without the attribute", attr("city", "neq", "上海"), {2, 3, 4, 5}),
    ("in", attr("city", "in", ["上海", "北京"]), {1, 2}),
    ("not_in", attr("city", "not_in", ["上海"]), {2, 3, 4, 5}),
    ("is_set skips JSON null", attr("city", "is_set"), {1, 2}),
    ("is_not_set", attr("city", "is_not_set"), {3, 4, 5}),
    ("contains", attr("member_level", "contains", "金"), {1}),
    ("starts_with", attr("member_level", "starts_with", "金"), {1}),
    ("regex searches", attr("city", "regex", "京$"), {2}),
    ("key with a dot", attr("traits.a.b", "eq", "dot"), {1}),
    ("key with a quote", attr("it's", "eq", "quote"), {1}),
    ("text of a number", attr("score", "eq", "7.5"), {2}),
    ("arrays are not text", attr("tags", "eq", '["a"]'), set()),
    # numbers: JSON numbers and numeric text; NaN and junk are missing
    ("gt", attr("points", "gt", 100), {1, 5}),
    ("between", attr("points", "between", [100, 200]), {1}),
    ("numeric text", attr("points", "eq", 1000), {5}),
    ("lt skips NaN", attr("score", "lt", 10), {2}),
    ("number in", attr("score", "in", [42, 7.5]), {1, 2}),
    ("bool true", attr("vip", "eq", True), {1}),
    ("bool false", attr("vip", "eq", False), {2}),
    ("text true is no boolean", attr("score", "eq", True), set()),
    # dates: ISO text (offsets converted), computed timestamps
    ("before", attr("birthday", "before", "1990-01-01"), {2}),
    ("after excludes the day", attr("birthday", "after", "1990-03-04"), {1, 5}),
    ("after a datetime", attr("birthday", "after", "1990-03-05T07:59:00"), {1, 5}),
    ("after a datetime, exact", attr("birthday", "after", "1990-03-05T08:00:00"), {5}),
    ("anniversary this month", attr("birthday", "anniversary_this_month"), {1, 2}),
    ("anniversary in next", attr("birthday", "anniversary_in_next", days=4), {1, 2}),
    ("anniversary every day", attr("birthday", "anniversary_in_next", days=400), {1, 2, 5}),
    ("computed before", attr("created_at", "before", "2025-01-03"), {1, 2}),
    ("within_last", attr("last_order_at", "within_last", days=7), {1}),
    ("in_next", attr("last_order_at", "in_next", days=7), set()),
    ("computed is_set", attr("first_seen", "is_set"), {1, 2}),
    ("profile_id", attr("profile_id", "eq", "p_3"), {3}),
    ("computed number", attr("event_count", "gte", 3), {1, 4}),
    ("money", attr("total_spend", "gt", 100), {1}),
    ("money eq", attr("total_spend", "eq", 300.5), {1}),
    # lists
    ("list eq", attr("channels", "eq", "天猫"), {1}),
    ("list contains", attr("channels", "contains", "官方App"), {1}),
    ("list in", attr("channels", "in", ["小程序", "门店"]), {2, 5}),
    ("list neq", attr("channels", "neq", "天猫"), {2, 3, 4, 5}),
    ("list starts_with", attr("channels", "starts_with", "小"), {2}),
    ("list is_set", attr("channels", "is_set"), {1, 2, 4, 5}),
    # tags
    ("tag has", tag("会员等级"), {1, 2}),
    ("tag eq", tag("会员等级", "eq", value="金卡"), {1}),
    ("tag neq", tag("会员等级", "neq", value="金卡"), {2, 3, 4, 5}),
    ("tag all", tag("偏好品类", "all", values=["女装", "鞋履"]), {1}),
    ("tag all missing one", tag("偏好品类", "all", values=["女装", "男装"]), set()),
    ("tag in", tag("偏好品类", "in", values=["鞋履", "男装"]), {1}),
    ("tag gt", tag("rfm_score", "gt", value=50), {1}),
    ("tag between", tag("rfm_score", "between", values=[5, 20]), {2}),
    ("tag eq number", tag("rfm_score", "eq", value=10), {2}),
    ("tag eq text", tag("rfm_score", "eq", value="abc"), {4}),
    ("tag in mixed", tag("rfm_score", "in", values=["abc", 95]), {1, 4}),
    ("tag all mixed", tag("rfm_score", "all", values=["95", 95]), {1}),
    # events
    ("did", event("下单"), {1, 2}),
    ("did in window", event("下单", window=LAST30), {1}),
    ("did not (count eq 0)", event("下单", window=LAST30, count={"op": "eq", "value": 0}), {2, 3, 4, 5}),
    ("count gte 2", event("下单", count={"op": "gte", "value": 2}), {1}),
    ("count lt 2 holds for none", event("下单", count={"op": "lt", "value": 2}), {2, 3, 4, 5}),
    ("count neq 1", event("下单", count={"op": "neq", "value": 1}), {1, 3, 4, 5}),
    ("count gte 0", event("下单", count={"op": "gte", "value": 0}), EVERYONE),
    ("count lt 0", event("下单", count={"op": "lt", "value": 0}), set()),
    ("count in hours", event("浏览商品", window={"last": 3, "unit": "hours"}), {2}),
    ("count since until", event("浏览商品", window={"since": "2026-02-26", "until": "2026-02-27"}), {4}),
    ("count gte 3", event("浏览商品", window={"last": 7}, count={"op": "gte", "value": 3}), {4}),
    ("not did", {"type": "not", "child": event("浏览商品")}, {3, 5}),
    ("sum money", event("下单", aggregate={"fn": "sum", "property": "revenue", "op": "gte", "value": 300}), {1}),
    ("sum exact", event("下单", aggregate={"fn": "sum", "property": "amount", "op": "eq", "value": 0.3}), {1}),
    (
        "sum zero holds",
        event("下单", aggregate={"fn": "sum", "property": "revenue", "op": "lt", "value": 50}),
        {2, 3, 4, 5},
    ),
    ("avg", event("下单", aggregate={"fn": "avg", "property": "revenue", "op": "gt", "value": 100}), {1}),
    ("max of text", event("下单", aggregate={"fn": "max", "property": "amount", "op": "gte", "value": 5}), {2}),
    (
        "min of none fails",
        event("浏览商品", aggregate={"fn": "min", "property": "revenue", "op": "lt", "value": 1}),
        set(),
    ),
    ("where typed", event("下单", where=[{"property": "category", "op": "eq", "value": "女装"}]), {1}),
    ("where json", event("下单", where=[{"property": "sku", "op": "in", "value": ["B2"]}]), {1}),
    ("where neq null column", event("下单", where=[{"property": "channel", "op": "neq", "value": "web"}]), {1, 2}),
    ("where is_set", event("浏览商品", where=[{"property": "page", "op": "is_set"}]), {2}),
    ("where number", event("下单", where=[{"property": "revenue", "op": "lt", "value": 150}]), {1, 2}),
    ("first in window", event("下单", window=LAST30, occurrence="first"), {1}),
    ("last in window", event("浏览商品", window={"last": 7}, occurrence="last"), {2, 4}),
    # orders
    ("bought", order(), {1, 2, 4}),
    ("bought in window", order(window=LAST30), {1, 2}),
    ("total", order(measure="total", value=300), {1}),
    ("total zero holds", order(measure="total", op="lt", value=40), {3, 4, 5}),
    ("did not buy", order(window=LAST30, op="eq", value=0), {3, 4, 5}),
    ("first purchase", order(purchase="first", window=LAST30), {2}),
    ("repeat purchase", order(purchase="repeat"), {1}),
    ("products", order(products=["p1"]), {1, 2}),
    ("categories", order(categories=["鞋履"]), {2, 4}),
    ("channels", order(channels=["天猫"]), {1}),
    ("coupons", order(coupons=["NEW10"]), {1}),
    ("without coupon", order(with_coupon=False), {1, 2, 4}),
    ("with coupon", order(with_coupon=True), {1}),
    ("first of a category", order(purchase="first", categories=["男装"]), {1}),
    ("first total", order(purchase="first", measure="total", op="gte", value=60), {2}),
    # audiences, identifiers
    ("static audience", {"type": "in_audience", "audience": STATIC}, {1, 4}),
    ("dynamic audience", {"type": "in_audience", "audience": DYNAMIC}, {1}),
    ("not a member", {"type": "not", "child": {"type": "in_audience", "audience": STATIC}}, {2, 3, 5}),
    ("identifier", {"type": "has_identifier", "id_types": ["phone"]}, {1, 4}),
    ("identifiers", {"type": "has_identifier", "id_types": ["wechat_openid", "email"]}, {1, 2}),
    # combinations
    ("and", {"type": "and", "children": [attr("city", "eq", "上海"), event("下单", window=LAST30)]}, {1}),
    (
        "or",
        {"type": "or", "children": [tag("会员等级", "eq", value="银卡"), {"type": "in_audience", "audience": STATIC}]},
        {1, 2, 4},
    ),
    (
        "not or",
        {
            "type": "not",
            "child": {
                "type": "or",
                "children": [tag("会员等级", "eq", value="银卡"), {"type": "in_audience", "audience": STATIC}],
            },
        },
        {3, 5},
    ),  # fmt: skip
    ("double not", {"type": "not", "child": {"type": "not", "child": attr("city", "eq", "上海")}}, {1}),
]


@pytest.mark.parametrize(("definition", "expected"), [(d, e) for _, d, e in CASES], ids=[n for n, _, _ in CASES])
def test_selects(store: AnalyticStore, definition: dict[str, Any], expected: set[int]) -> None:
    assert members(store, definition) == expected


def test_random_bucket_follows_the_formula(store: AnalyticStore) -> None:
    def bucket(idx: int) -> int:
        return int(hashlib.md5(f"p_{idx}:春季实验".encode()).hexdigest()[:8], 16) % 7

    for low, high in ((0, 3), (3, 7), (2, 3)):
        leaf = {"type": "random_bucket", "salt": "春季实验", "buckets": 7, "low": low, "high": high}
        assert members(store, leaf) == {i for i in EVERYONE if low <= bucket(i) < high}
