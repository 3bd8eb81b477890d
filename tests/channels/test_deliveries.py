"""Destinations and delivery dead letters on the operational op_store (SQLite, and PostgreSQL when up)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from tessera.channels.webhook import DeliveryResult, json_body, sign, verify
from tessera.services import deliveries
from tessera.services.deliveries import DeliveryError
from tessera.stores.operational import OperationalStore

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def test_destinations_are_created_listed_and_deleted(op_store: OperationalStore) -> None:
    with op_store.session() as s:
        crm, secret = deliveries.create_destination(
            session=s, name="  经销商CRM ", url="https://crm.example.com/hooks/tessera?src=cdp", now=NOW
        )
        call, _ = deliveries.create_destination(session=s, name="外呼中心", url="http://10.0.0.8:8080/in", now=NOW)
    assert crm.name == "经销商CRM" and crm.kind == "webhook" and crm.id.startswith("dst_") and crm.id != call.id
    assert crm.created_at == NOW
    assert "secret" not in crm.model_dump()  # listings never carry it
    with op_store.session() as s:
        assert [d.name for d in deliveries.list_destinations(session=s)] == ["外呼中心", "经销商CRM"]
        assert deliveries.get_destination(session=s, destination_id=crm.id) == crm
        assert deliveries.get_destination(session=s, destination_id="dst_nope") is None
        stored = deliveries.destination_secret(session=s, destination_id=crm.id)
    # The secret shown once is the one the sender signs with, and a receiver verifies with it.
    assert stored == secret and secret.startswith("whsec_")
    body = json_body({"ok": True})
    headers = {"webhook-id": "m", "webhook-timestamp": str(int(NOW.timestamp())),
               "webhook-signature": sign(stored, "m", int(NOW.timestamp()), body)}  # fmt: skip
    assert verify(secret, headers, body, now=NOW) == {"ok": True}
    with op_store.session() as s:
        assert deliveries.delete_destination(session=s, destination_id=crm.id)
        assert not deliveries.delete_destination(session=s, destination_id=crm.id)
    with op_store.session() as s:
        assert [d.id for d in deliveries.list_destinations(session=s)] == [call.id]
        assert deliveries.destination_secret(session=s, destination_id=crm.id) is None


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("", "required"),
        ("ftp://files.example.com/in", "http:// or https://"),
        ("javascript:alert(1)", "http:// or https://"),
        ("crm.example.com/hook", "http:// or https://"),
        ("https://", "host name"),
        ("https://user:pw@crm.example.com/hook", "user name or password"),
        ("https://crm.example.com/a b", "spaces"),
        ("https://crm.example.com:99999/", "not a valid URL"),
        ("https://crm.example.com/" + "x" * 2000, "at most 2000"),
    ],
)
def test_destination_urls_are_validated(op_store: OperationalStore, url: str, message: str) -> None:
    with pytest.raises(DeliveryError, match=message) as err, op_store.session() as s:
        deliveries.create_destination(session=s, name="坏地址", url=url, now=NOW)
    assert err.value.field == "url"


def test_destination_names_are_required_and_unique(op_store: OperationalStore) -> None:
    with op_store.session() as s:
        deliveries.create_destination(session=s, name="企业微信", url="https://qyapi.example.com/hook", now=NOW)
    with pytest.raises(DeliveryError) as err, op_store.session() as s:
        deliveries.create_destination(session=s, name="企业微信", url="https://other.example.com/", now=NOW)
    assert err.value.field == "name" and "exists already" in err.value.message
    with pytest.raises(DeliveryError) as err, op_store.session() as s:
        deliveries.create_destination(session=s, name="   ", url="https://other.example.com/", now=NOW)
    assert err.value.field == "name"
    with op_store.session() as s:
        assert len(deliveries.list_destinations(session=s)) == 1


def test_dead_letters_keep_the_payload_and_why(op_store: OperationalStore) -> None:
    payload = {"push_id": "push_1", "members": [{"profile_id": "p_1", "城市": "杭州", "spend": Decimal("99.90"),
                                                 "last_seen": NOW}]}  # fmt: skip
    failed = DeliveryResult(delivered=False, attempts=5, status=503, error="HTTP 503: busy", dead=True)
    refused = DeliveryResult(delivered=False, attempts=3, status=None, error="connection failed: refused", dead=True)
    with op_store.session() as s:
        first = deliveries.record_dead_letter(session=s, channel="webhook", reference="push_1",
                                              destination="https://crm.example.com/h", payload=payload,
                                              result=failed, now=NOW)  # fmt: skip
        deliveries.record_dead_letter(session=s, channel="webhook", reference="journey:j1:v2:n3:p_9:e1",
                                      destination="https://call.example.com/h", payload={"to": "p_9"},
                                      result=refused, now=NOW)  # fmt: skip
    with op_store.session() as s:
        every = deliveries.list_dead_letters(session=s)
        mine = deliveries.list_dead_letters(session=s, reference="push_1")
    assert [d.reference for d in every] == ["push_1", "journey:j1:v2:n3:p_9:e1"]
    [letter] = mine
    assert letter.id == first and letter.attempts == 5 and letter.last_status == 503
    assert letter.error == "HTTP 503: busy" and letter.created_at == NOW
    # Stored as the JSON that was sent: decimals as strings, times in RFC 3339.
    assert letter.payload["members"][0] == {"profile_id": "p_1", "城市": "杭州", "spend": "99.90",
                                            "last_seen": "2026-11-23T09:30:00+00:00"}  # fmt: skip
    assert every[1].last_status is None and every[1].error.startswith("connection failed")
    with pytest.raises(ValueError, match="delivered"), op_store.session() as s:
        ok = DeliveryResult(delivered=True, attempts=1, status=200, error=None, dead=False)
        deliveries.record_dead_letter(session=s, channel="webhook", reference="x", destination="y", payload={},
                                      result=ok, now=NOW)  # fmt: skip
