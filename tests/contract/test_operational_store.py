"""The operational store behaves the same on SQLite (default) and the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect

from tessera.services import sources as sources_service
from tessera.services import tokens as tokens_service
from tessera.stores.operational import OperationalStore, downgrade, upgrade

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


@pytest.fixture
def store(op_store: OperationalStore) -> OperationalStore:
    return op_store


def test_sources_have_unique_names_and_keys(store: OperationalStore) -> None:
    with store.session() as s:
        a = sources_service.create_source(session=s, name="微信小程序", kind="wechat_miniprogram", now=NOW)
        b = sources_service.create_source(session=s, name="京东自营", kind="jd", now=NOW)
    assert a.write_key != b.write_key and a.write_key.startswith("wk_")
    with store.session() as s:
        assert [x.name for x in sources_service.list_sources(session=s)] == ["微信小程序", "京东自营"]
        found = sources_service.source_for_key(session=s, write_key=b.write_key)
        assert found is not None and found.name == "京东自营" and found.kind == "jd"
        assert sources_service.source_for_key(session=s, write_key="wk_nope") is None
    with pytest.raises(sources_service.SourceError) as err, store.session() as s:
        sources_service.create_source(session=s, name="微信小程序", kind="app", now=NOW)
    assert err.value.field == "name"
    with pytest.raises(sources_service.SourceError) as err, store.session() as s:
        sources_service.create_source(session=s, name="ok", kind="Bad Kind!", now=NOW)
    assert err.value.field == "kind"
    with store.session() as s:  # the failed unit of work left nothing behind
        assert len(sources_service.list_sources(session=s)) == 2


def test_tokens_are_stored_hashed_and_can_be_revoked(store: OperationalStore) -> None:
    with store.session() as s:
        issued = tokens_service.create_token(session=s, name="ops", now=NOW)
    assert issued.token.startswith("tsk_")
    with store.session() as s:
        assert tokens_service.check_token(session=s, token=issued.token) == ["admin"]
        assert tokens_service.check_token(session=s, token=issued.token + "x") is None
    with store.session() as s:
        assert tokens_service.revoke_token(session=s, token_id=issued.id, now=NOW)
    with store.session() as s:
        assert tokens_service.check_token(session=s, token=issued.token) is None


def test_migrations_go_down_and_up_again(store: OperationalStore) -> None:
    downgrade(store.engine, "base")
    assert "sources" not in inspect(store.engine).get_table_names()
    upgrade(store.engine)
    assert {
        "sources",
        "api_tokens",
        "setting_docs",
        "audiences",
        "destinations",
        "pushes",
        "delivery_dead_letters",
    } <= set(inspect(store.engine).get_table_names())


def test_identity_rules_are_saved_versioned_and_read_back(store: OperationalStore) -> None:
    from tessera.domain.identity import default_rules
    from tessera.services.identity_rules import get_rules, rules_version, save_rules

    assert rules_version(store) == 0 and get_rules(store) == default_rules()
    rules = default_rules()
    rules.types[2].limit = 2
    rules.blocked_values.append("门店电话")
    assert save_rules(store, rules, now=datetime(2026, 11, 1, tzinfo=UTC)) == 1
    assert save_rules(store, rules, now=datetime(2026, 11, 2, tzinfo=UTC)) == 2
    got = get_rules(store)
    assert got.types[2].limit == 2 and "门店电话" in got.blocked_values and rules_version(store) == 2


def test_audiences_are_kept_the_same_way_on_both_stores(store: OperationalStore, tmp_path: Path) -> None:
    from tessera.clock import FrozenClock
    from tessera.runtime import Instance
    from tessera.services import audiences
    from tessera.services.audiences import AudienceDraft, AudienceError, AudiencePatch
    from tessera.settings import load_settings

    settings = load_settings()
    settings.store.operational_url = store.engine.url.render_as_string(hide_password=False)
    inst = Instance(tmp_path / "data", settings=settings, clock=FrozenClock(NOW))
    try:
        city = {"type": "attribute", "field": "city", "op": "eq", "value": "上海"}
        a = audiences.create_audience(
            inst=inst, draft=AudienceDraft(name="上海会员", definition=city, schedule="0 8 * * 1")
        )
        b = audiences.create_audience(
            inst=inst,
            draft=AudienceDraft(name="快照", kind="static", definition={"type": "in_audience", "audience": a.id}),
        )
        assert b.member_count == 0 and a.next_refresh_at is not None and a.next_refresh_at > NOW
        assert [x.name for x in audiences.list_audiences(inst=inst)] == ["上海会员", "快照"]
        changed = audiences.update_audience(
            inst=inst, audience_id=a.id, patch=AudiencePatch(definition=city, name_en="Shanghai")
        )
        assert changed.version == 2 and changed.name_en == "Shanghai" and changed.definition == city
        with pytest.raises(AudienceError) as err:
            audiences.delete_audience(inst=inst, audience_id=a.id)
        assert err.value.status == 409 and "快照" in err.value.message
        audiences.delete_audience(inst=inst, audience_id=b.id)
        audiences.delete_audience(inst=inst, audience_id=a.id)
        assert audiences.list_audiences(inst=inst) == []
    finally:
        inst.close()
