"""A small brand for journey scenarios: real collection path, real channels, a clock to move.

The server app runs in-process (its pipeline loads events); its journey worker is off, so a test
drives journeys with :meth:`World.run` at the clock's time — jump days ahead instead of sleeping.
Channels point at real local servers: the fake SMS provider, an aiosmtpd SMTP server, and a signed
webhook receiver (for webhook, push and WeChat).
"""

from __future__ import annotations

import base64
import gzip
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from fastapi.testclient import TestClient

from tessera.api.app import create_app
from tessera.clock import FrozenClock
from tessera.runtime import Instance
from tessera.services import channels as channels_service
from tessera.services import journeys as journeys_service
from tessera.services.journey_dispatch import Dispatcher
from tessera.services.journey_worker import Progress, run_until_idle
from tessera.settings import load_settings
from tests.conftest import make_source
from tests.fakes.hook_receiver import HookReceiver
from tests.fakes.sms_provider import FakeSmsProvider
from tests.fakes.smtp import FakeSmtpServer

TOKEN = "journey-tests"
START = datetime(2026, 11, 20, 2, 0, tzinfo=UTC)  # Friday 10:00 in Shanghai


@dataclass
class World:
    inst: Instance
    clock: FrozenClock
    client: TestClient
    write_key: str
    sms: FakeSmsProvider
    smtp: FakeSmtpServer
    hooks: HookReceiver
    secrets: dict[str, str] = field(default_factory=dict)
    dispatcher: Dispatcher | None = None

    # -- data ------------------------------------------------------------------------------------
    def send(self, *messages: dict[str, Any]) -> None:
        batch = []
        for m in messages:
            m = {"messageId": str(uuid.uuid4()), "timestamp": self.clock.now().isoformat(), **m}
            batch.append(m)
        auth = base64.b64encode(f"{self.write_key}:".encode()).decode()
        r = self.client.post("/v1/batch", content=gzip.compress(orjson.dumps({"batch": batch})),
                             headers={"Authorization": f"Basic {auth}", "Content-Encoding": "gzip",
                                      "Content-Type": "application/json"})  # fmt: skip
        assert r.status_code == 200, r.text
        self.admin("POST", "/v1/admin/flush")

    def person(self, user_id: str, **traits: Any) -> str:
        self.send({"type": "identify", "userId": user_id, "traits": traits})
        return self.profile_id(user_id)

    def track(self, user_id: str, event: str, at: datetime | None = None, **props: Any) -> None:
        msg: dict[str, Any] = {"type": "track", "userId": user_id, "event": event, "properties": props}
        if at is not None:
            msg["timestamp"] = at.isoformat()
        self.send(msg)

    def profile_id(self, user_id: str) -> str:
        got = self.inst.analytic.cursor().execute(
            "SELECT p.profile_id FROM profile_identifiers i JOIN profiles p USING (profile_idx) "
            "WHERE i.id_type = 'user_id' AND i.id_value = ?", [user_id]).fetchall()  # fmt: skip
        assert got, f"no profile for {user_id}"
        return str(got[0][0])

    # -- API -------------------------------------------------------------------------------------
    def admin(self, method: str, path: str, status: int = 200, **kw: Any) -> Any:
        r = self.client.request(method, path, headers={"Authorization": f"Bearer {TOKEN}"}, **kw)
        assert r.status_code == status, r.text
        return r.json() if r.content and r.headers.get("content-type", "").startswith("application/json") else r

    def journey(self, name: str, definition: dict[str, Any]) -> str:
        draft = journeys_service.JourneyDraft(name=name, definition=definition)
        jid = journeys_service.create_journey(inst=self.inst, draft=draft).id
        journeys_service.publish(inst=self.inst, journey_id=jid)
        return jid

    def coupon_template(self, key: str, amount: str = "20", **body: Any) -> str:
        """A fixed-amount coupon template in the catalogue (coupon nodes issue from it)."""
        from tessera.services import coupons

        coupons.create_template(self.inst, {"key": key, "name": f"券 {key}", "kind": "fixed", "amount": amount,
                                            "per_person": None, **body})  # fmt: skip
        return key

    # -- time ------------------------------------------------------------------------------------
    def run(self) -> Progress:
        assert self.dispatcher is not None
        return run_until_idle(self.inst, self.dispatcher, now=self.clock.now())

    def advance(self, **delta: float) -> Progress:
        self.clock.advance(timedelta(**delta))
        return self.run()

    def at(self, when: datetime) -> Progress:
        self.clock.set(when)
        return self.run()

    # -- what happened -----------------------------------------------------------------------------
    def sms_to(self, phone: str) -> list[str]:
        return [m["body"] for m in self.sms.messages if m["to"] == phone]

    def outbox(self, journey_id: str) -> list[Any]:
        from sqlalchemy import select

        from tessera.stores.models import JourneyOutboxRow

        with self.inst.operational.session() as s:
            return list(s.scalars(select(JourneyOutboxRow).where(JourneyOutboxRow.journey_id == journey_id)
                                  .order_by(JourneyOutboxRow.id)))  # fmt: skip


@contextmanager
def make_world(root: Path, **journey_settings: Any) -> Iterator[World]:
    data = root / "data"
    data.mkdir(parents=True)
    write_key = make_source(data)
    clock = FrozenClock(START)
    settings = load_settings(
        data=data, journeys={"worker": False, "base_delay_seconds": 60, **journey_settings}, loyalty={"worker": False}
    )
    inst = Instance(data, settings=settings, clock=clock)
    with FakeSmsProvider() as sms, FakeSmtpServer() as smtp, HookReceiver(None) as hooks, \
            TestClient(create_app(inst, local_token=TOKEN)) as client:  # fmt: skip
        w = World(inst, clock, client, write_key, sms, smtp, hooks)
        for kind in ("webhook", "push", "wechat"):
            cfg: dict[str, Any] = {"url": hooks.url}
            if kind == "wechat":
                cfg["app_id"] = "wx_test_app"
            issued = channels_service.create_channel(
                inst=inst, draft=channels_service.ChannelDraft(name=f"{kind}_main", kind=kind, config=cfg)
            )
            assert issued.secret is not None
            w.secrets[kind] = issued.secret
        sms_channel = channels_service.create_channel(inst=inst, draft=channels_service.ChannelDraft(
            name="sms_main", kind="sms", config={"url": sms.url, "from": "TESSERA", "api_key": "test-api-key"}))  # fmt: skip
        w.secrets["sms_receipts"] = sms_channel.receipt_token
        channels_service.create_channel(inst=inst, draft=channels_service.ChannelDraft(
            name="email_main", kind="email", config={"host": "127.0.0.1", "port": smtp.port,
                                                     "from": "crm@brand.example", "from_name": "品牌会员中心"}))  # fmt: skip
        from tessera.services.journey_worker import pipeline_trait_writer

        w.dispatcher = Dispatcher(inst, write_traits=pipeline_trait_writer(client.app.state.pipeline))  # type: ignore[attr-defined]
        try:
            yield w
        finally:
            w.dispatcher.close()
    inst.close()
