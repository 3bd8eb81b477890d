"""The tag catalogue (标签体系) on both operational stores: categories, definitions, versions, refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from tessera.domain.tags import TagDraft, check_value
from tessera.services import tag_catalogue as cat
from tessera.services.tag_catalogue import CatalogueError
from tessera.stores.models import AudienceRow
from tessera.stores.operational import OperationalStore

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
RFM = {
    "key": "rfm_group", "name": "RFM分群", "name_en": "RFM group", "category": "value", "kind": "model",
    "model": {"name": "rfm", "params": {"output": "group"}}, "schedule": "0 3 * * *",
}  # fmt: skip


def test_default_categories_are_the_seeds(op_store: OperationalStore) -> None:
    with op_store.session() as s:
        got = cat.list_categories(session=s, now=NOW)
    assert [(c.key, c.name) for c in got] == [
        ("basic", "基础信息"), ("behaviour", "用户行为"), ("preference", "业务偏好"), ("scenario", "场景"),
        ("lifecycle", "生命周期"), ("value", "价值"), ("predictive", "预测"),
    ]  # fmt: skip
    with op_store.session() as s:  # listing again creates nothing twice
        assert len(cat.list_categories(session=s, now=NOW)) == 7


def test_categories_form_a_tree_and_only_empty_ones_go(op_store: OperationalStore) -> None:
    with op_store.session() as s:
        sub = cat.create_category(session=s, body={"key": "outdoor", "name": "户外偏好", "name_en": "Outdoor",
                                                   "parent": "preference"}, now=NOW)  # fmt: skip
    assert sub.parent == "preference"
    with pytest.raises(CatalogueError) as err, op_store.session() as s:
        cat.create_category(session=s, body={"key": "x", "name": "x", "name_en": "x", "parent": "nope"}, now=NOW)
    assert err.value.field == "parent"
    with pytest.raises(CatalogueError) as err, op_store.session() as s:
        cat.create_category(session=s, body={"key": "Bad Key", "name": "x", "name_en": "x"}, now=NOW)
    assert err.value.status == 422 and err.value.field == "key"
    with pytest.raises(CatalogueError) as err, op_store.session() as s:
        cat.delete_category(session=s, key="preference")
    assert err.value.status == 409 and "outdoor" in err.value.message
    with op_store.session() as s:
        cat.delete_category(session=s, key="outdoor")
        assert "outdoor" not in {c.key for c in cat.list_categories(session=s, now=NOW)}


def test_tags_are_defined_versioned_and_validated(op_store: OperationalStore) -> None:
    with op_store.session() as s:
        rfm = cat.create_tag(session=s, body=RFM, now=NOW)
    assert rfm.version == 1 and rfm.status == "draft" and rfm.enum_values is not None
    with op_store.session() as s:
        active = cat.update_tag(session=s, key="rfm_group", changes={"status": "active", "owner": "CRM 组"},
                                now=NOW + timedelta(hours=1))  # fmt: skip
    assert (active.version, active.status, active.owner) == (2, "active", "CRM 组")
    with op_store.session() as s:
        assert [t.key for t in cat.list_tags(session=s, category="value")] == ["rfm_group"]
        assert cat.get_tag(session=s, key="rfm_group").updated_at > rfm.updated_at
    refusals = [
        ({**RFM, "key": "rfm_group"}, 409, "key"),
        ({**RFM, "key": "x1", "category": "nope"}, 422, "category"),
        ({**RFM, "key": "x2", "enum_values": None}, 422, ""),
        ({**RFM, "key": "x3", "kind": "static"}, 422, ""),
        ({**RFM, "key": "x4", "value_type": "bogus"}, 422, "value_type"),
    ]
    for body, status, field in refusals:
        with pytest.raises(CatalogueError) as err, op_store.session() as s:
            cat.create_tag(session=s, body=body, now=NOW)
        assert err.value.status == status and err.value.field.startswith(field), body
    with pytest.raises(CatalogueError) as err, op_store.session() as s:
        cat.update_tag(session=s, key="rfm_group", changes={"key": "rfm2"}, now=NOW)
    assert err.value.field == "key"


def test_archiving_a_tag_an_active_audience_uses_is_refused_naming_it(op_store: OperationalStore) -> None:
    with op_store.session() as s:
        cat.create_tag(session=s, body={**RFM, "status": "active"}, now=NOW)
        s.add(AudienceRow(id="aud_1", name="重要价值客户", kind="dynamic", status="active", version=1,
                          definition={"type": "not", "child": {"type": "tag", "tag": "rfm_group", "op": "has"}},
                          created_at=NOW, updated_at=NOW))  # fmt: skip
    with pytest.raises(CatalogueError) as err, op_store.session() as s:
        cat.update_tag(session=s, key="rfm_group", changes={"status": "archived"}, now=NOW)
    assert err.value.status == 409 and "重要价值客户 (aud_1)" in err.value.message
    with op_store.session() as s:
        s.get(AudienceRow, "aud_1").status = "archived"  # type: ignore[union-attr]
    with op_store.session() as s:
        assert cat.update_tag(session=s, key="rfm_group", changes={"status": "archived"}, now=NOW).status == "archived"


@pytest.mark.parametrize(
    ("draft", "value", "stored"),
    [
        ({"value_type": "bool"}, True, "true"),
        ({"value_type": "number"}, 3, "3"),
        ({"value_type": "number"}, 2.5, "2.5"),
        ({"value_type": "string"}, "喜欢露营", "喜欢露营"),
        ({"value_type": "date"}, "2026-11-11", "2026-11-11"),
        ({"value_type": "enum", "enum_values": ["金卡", "银卡"]}, "金卡", "金卡"),
    ],
)
def test_values_are_checked_against_the_type(draft: dict[str, object], value: object, stored: str) -> None:
    tag = TagDraft.model_validate({"key": "t", "name": "t", "name_en": "t", "category": "basic", **draft})
    assert check_value(tag, value) == stored


@pytest.mark.parametrize(
    ("draft", "value", "message"),
    [
        ({"value_type": "bool"}, "yes", "true or false"),
        ({"value_type": "number"}, float("inf"), "finite"),
        ({"value_type": "number"}, True, "finite"),
        ({"value_type": "enum", "enum_values": ["金卡"]}, "铜卡", "not one of"),
        ({"value_type": "date"}, "11/11", "ISO date"),
        ({"value_type": "string"}, "  ", "non-blank"),
    ],
)
def test_bad_values_say_why(draft: dict[str, object], value: object, message: str) -> None:
    tag = TagDraft.model_validate({"key": "t", "name": "t", "name_en": "t", "category": "basic", **draft})
    with pytest.raises(ValueError, match=message):
        check_value(tag, value)
