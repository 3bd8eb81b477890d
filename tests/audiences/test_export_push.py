"""Export to CSV / Parquet with chosen columns and hashed identifiers; push to a real webhook receiver."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from tessera.channels.webhook import WebhookSender, verify
from tessera.services import audience_push
from tests.audiences.conftest import TOKEN, Api

BEIJING = {"type": "attribute", "field": "city", "op": "eq", "value": "北京"}


class Receiver:
    """A real HTTP server that checks signatures and answers from a script (then 200)."""

    def __init__(self) -> None:
        self.script: list[int] = []
        self.bodies: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.secret = ""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.ids.append(self.headers["webhook-id"])
                status = receiver.script.pop(0) if receiver.script else 200
                if status == 200:
                    verify(receiver.secret, dict(self.headers.items()), body)
                    receiver.bodies.append(json.loads(body))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def _audience(api: Api, name: str) -> str:
    got: Any = api.call("POST", "/v1/admin/audiences", 201, json={"name": name, "definition": BEIJING})
    return str(got["id"])


def _beijing(api: Api) -> int:
    return int(api.inst.analytic.cursor().execute(
        "SELECT count(*) FROM profile_attributes WHERE json_extract_string(traits, '$.city') = '北京'").fetchall()[0][0])  # fmt: skip


def test_export_csv_with_chosen_columns_and_hashed_phones(api: Api) -> None:
    aud = _audience(api, "导出北京")
    r: Any = api.call("POST", f"/v1/admin/audiences/{aud}/export",
                      json={"columns": ["name", "city", "id:phone", "id:email"], "hash_identifiers": True})  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert len(rows) == _beijing(api)
    assert set(rows[0]) >= {"profile_id", "name", "city", "id:phone", "id:email"}
    assert {row["city"] for row in rows} == {"北京"}
    phones = dict(api.inst.analytic.cursor().execute(
        "SELECT p.profile_id, max(i.id_value) FROM profile_identifiers i JOIN profiles p USING (profile_idx) "
        "WHERE i.id_type = 'phone' GROUP BY 1").fetchall())  # fmt: skip
    hashed = [row for row in rows if row["id:phone"]]
    assert hashed, "some Beijing members have phones"
    for row in hashed:
        assert row["id:phone"] == hashlib.sha256(phones[row["profile_id"]].lstrip("+").encode()).hexdigest()


def test_export_parquet_reads_back(api: Api, tmp_path: Path) -> None:
    aud = _audience(api, "导出北京 parquet")
    r: Any = api.call(
        "POST", f"/v1/admin/audiences/{aud}/export", json={"columns": ["name", "total_spend"], "format": "parquet"}
    )
    path = tmp_path / "out.parquet"
    path.write_bytes(r.content)
    table = pq.read_table(path)
    assert table.num_rows == _beijing(api) and {"profile_id", "name", "total_spend"} <= set(table.column_names)
    bad = api.client.post(f"/v1/admin/audiences/{aud}/export", headers={"Authorization": f"Bearer {TOKEN}"},
                          json={"columns": ['traits.x"); DROP TABLE profiles; --', "tag:"]})  # fmt: skip
    assert bad.status_code == 422 and bad.json()["field"] == "columns"
    assert api.inst.analytic.cursor().execute("SELECT count(*) FROM profiles").fetchall()[0][0] > 0


def test_push_sends_signed_batches_with_member_variables(api: Api, receiver: Receiver) -> None:
    created: Any = api.call("POST", "/v1/admin/destinations", 201, json={"name": "广告平台", "url": receiver.url})
    receiver.secret = created["secret"]
    aud = _audience(api, "推送北京")
    receiver.bodies.clear()
    got: Any = api.call("POST", f"/v1/admin/audiences/{aud}/push",
                        json={"destination": "广告平台", "columns": ["name", "member_level"], "batch_size": 10})  # fmt: skip
    n = _beijing(api)
    assert got["status"] == "delivered" and got["rows"] == n and got["batches"] == -(-n // 10)
    members = [m for b in receiver.bodies for m in b["members"]]
    assert len(members) == n and {"profile_id", "name", "member_level"} <= set(members[0])
    assert receiver.bodies[0]["audience"]["name"] == "推送北京" and receiver.bodies[0]["push_id"] == got["id"]


def test_push_retries_then_dead_letters_what_the_receiver_refuses(api: Api, receiver: Receiver) -> None:
    created: Any = api.call("POST", "/v1/admin/destinations", 201, json={"name": "CRM 回流", "url": receiver.url})
    receiver.secret = created["secret"]
    aud = _audience(api, "推送重试")
    sleeps: list[float] = []
    sender = WebhookSender(None, api.clock, sleep=sleeps.append, max_attempts=3, base_delay=0.01)
    # First batch: 500 then 200 (retried, same webhook-id); second batch: 400 (terminal, dead letter).
    receiver.script[:] = [500, 200, 400]
    receiver.ids.clear()
    batch = max(1, (_beijing(api) + 1) // 2)
    with sender:
        out = audience_push.push(inst=api.inst, audience_id=aud, destination=created["destination"]["id"],
                                 columns=["name"], batch_size=batch, sender=sender)  # fmt: skip
    assert out.batches == 2 and out.batches_failed == 1 and out.status == "partial"
    assert receiver.ids[0] == receiver.ids[1] == f"{out.id}_1" and receiver.ids[2] == f"{out.id}_2"
    assert len(sleeps) == 1
    dead: Any = api.call("GET", "/v1/admin/delivery-dead-letters", params={"reference": out.id})
    assert len(dead) == 1 and dead[0]["last_status"] == 400 and dead[0]["payload"]["batch"] == 2
    assert api.call("GET", f"/v1/admin/audiences/{aud}/pushes")[0]["status"] == "partial"  # type: ignore[index]


def test_destination_refusals(api: Api) -> None:
    h = {"Authorization": f"Bearer {TOKEN}"}
    r = api.client.post("/v1/admin/destinations", headers=h, json={"name": "x", "url": "ftp://example.com"})
    assert r.status_code == 422 and r.json()["field"] == "url"
    r = api.client.post("/v1/admin/audiences/aud_nope/push", headers=h, json={"destination": "x"})
    assert r.status_code == 404
