"""The demo brand's tags (标签): one or more of every kind, made and computed through the services.

* rule: 消费档次 (spend band, first match wins), 兴趣偏好 (multi-valued, from behaviour and orders);
* SQL: 客单价档次 (average order value band, one SELECT over orders);
* model: RFM 分群, 生命周期, AIPL, 预测CLV, 流失风险, 购买倾向, 偏好品类, 价格带偏好, 评价情感;
* static: 常去门店 (favourite store), imported from a store's sign-up sheet of phone numbers.

Computed tags run daily at 03:00 (workspace time zone); the demo runs each once now.
"""

from __future__ import annotations

from typing import Any

from tessera.demo.audiences import known_phones
from tessera.runtime import Instance
from tessera.services import tag_catalogue, tag_runs, tag_static
from tessera.services.tag_values import RunResult

DAILY = "0 3 * * *"


def _model(key: str, name: str, name_en: str, category: str, model: str, **params: Any) -> dict[str, Any]:
    return {"key": key, "name": name, "name_en": name_en, "category": category, "kind": "model", "status": "active",
            "schedule": DAILY, "model": {"name": model, "params": params}}  # fmt: skip


TAGS: list[dict[str, Any]] = [
    {"key": "spend_band", "name": "消费档次", "name_en": "Spend band", "category": "value", "kind": "rule",
     "value_type": "enum", "enum_values": ["高", "中", "低"], "status": "active", "schedule": DAILY,
     "description": "累计消费 ≥2000 高 · ≥500 中 · 有订单 低", "rules": [
        {"value": "高", "condition": {"type": "attribute", "field": "total_spend", "op": "gte", "value": 2000}},
        {"value": "中", "condition": {"type": "attribute", "field": "total_spend", "op": "gte", "value": 500}},
        {"value": "低", "condition": {"type": "attribute", "field": "order_count", "op": "gte", "value": 1}}]},
    {"key": "interests", "name": "兴趣偏好", "name_en": "Interests", "category": "preference", "kind": "rule",
     "value_type": "string", "multi": True, "status": "active", "schedule": DAILY, "rules": [
        {"value": "户外装备", "condition": {"type": "event", "event": "Product Viewed", "window": {"last": 90},
                                        "where": [{"property": "category", "op": "in",
                                                   "value": ["冲锋衣", "登山鞋", "帐篷", "背包"]}]}},
        {"value": "冲锋衣买家", "condition": {"type": "order", "categories": ["冲锋衣"]}},
        {"value": "常逛", "condition": {"type": "event", "event": "Product Viewed", "window": {"last": 30},
                                      "count": {"op": "gte", "value": 5}}}]},
    {"key": "aov_band", "name": "客单价档次", "name_en": "Order value band", "category": "value", "kind": "sql",
     "value_type": "enum", "enum_values": ["高客单", "中客单", "低客单"], "status": "active", "schedule": DAILY,
     "sql": """SELECT l.profile_idx,
       CASE WHEN avg(o.total) >= 800 THEN '高客单' WHEN avg(o.total) >= 300 THEN '中客单' ELSE '低客单' END AS value
FROM orders o JOIN identity_links l ON l.obs_idx = o.identity_idx
WHERE l.profile_idx IS NOT NULL AND lower(coalesce(o.status, '')) NOT IN ('cancelled', 'refunded')
GROUP BY l.profile_idx"""},
    _model("rfm_group", "RFM分群", "RFM group", "value", "rfm", output="group"),
    _model("lifecycle_stage", "生命周期阶段", "Lifecycle stage", "lifecycle", "lifecycle"),
    _model("aipl_stage", "AIPL阶段", "AIPL stage", "lifecycle", "aipl"),
    _model("clv_365d", "预测CLV(一年)", "Predicted CLV (1 year)", "predictive", "clv", output="clv", min_repeat_customers=20),
    _model("churn_risk", "流失风险", "Churn risk", "predictive", "clv", output="churn_risk", min_repeat_customers=20),
    _model("purchase_propensity", "购买倾向", "Purchase propensity", "predictive", "propensity", output="band",
           bands=[0.1, 0.25]),
    _model("top_category", "偏好品类", "Favourite category", "preference", "affinity", dimension="category"),
    _model("price_band", "价格带偏好", "Price band", "preference", "affinity", dimension="price_band"),
    _model("review_sentiment", "评价情感", "Review sentiment", "behaviour", "sentiment"),
    {"key": "favourite_store", "name": "常去门店", "name_en": "Favourite store", "category": "scenario",
     "value_type": "string", "status": "active", "description": "门店活动签到表导入 · from store sign-up sheets"},
]  # fmt: skip
STORES = ("上海南京西路旗舰店", "北京三里屯店", "成都太古里店")


def create_tags(instance: Instance) -> list[RunResult]:
    """Define the demo tags (those not there yet), compute every computed one, import the static one."""
    now = instance.clock.now()
    with instance.operational.session() as s:
        have = {t.key for t in tag_catalogue.list_tags(session=s)}
        for body in TAGS:
            if body["key"] not in have:
                tag_catalogue.create_tag(session=s, body=body, now=now)
    computed = [b["key"] for b in TAGS if b.get("kind", "static") != "static"]
    results = tag_runs.run_keys(instance, computed, trigger="demo")
    if "favourite_store" not in have:
        report = tag_static.import_values(instance, "favourite_store", _sign_ups(instance), source="demo")
        results.append(report.run)
    return results


def _sign_ups(instance: Instance) -> bytes:
    """A sign-up sheet per store: 手机号,标签值 with phones as people type them."""
    phones = known_phones(instance, 300, salt="store")
    lines = ["手机号,标签值"] + [f"{p},{STORES[i % len(STORES)]}" for i, p in enumerate(phones)]
    return ("\n".join(lines) + "\n").encode()
