"""The operational store behaves the same on SQLite (default) and the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import inspect

from tessera.services import sources as sources_service
from tessera.services import tokens as tokens_service
from tessera.stores.operational import OperationalStore, downgrade, sqlite_url, upgrade

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> OperationalStore:
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "operational.sqlite")
    else:
        url = request.getfixturevalue("pg_url")
    s = OperationalStore(url)
    request.addfinalizer(s.close)
    return s


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
    assert {"sources", "api_tokens"} <= set(inspect(store.engine).get_table_names())


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
