"""`POST /v1/admin/imports/{kind}`: good uploads, bad files (422 + report), bad requests, auth, liveness."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():  # Starlette asks for the httpx2 package; httpx is what is installed
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    from fastapi.testclient import TestClient

from tessera.api.app import create_app
from tessera.runtime import Instance
from tessera.services.sources import get_source_by_name
from tests.conftest import make_source
from tests.imports.support import new_data_dir, rows

AUTH = {"Authorization": "Bearer t"}
ORDERS_CSV = '订单号,下单时间,实付金额,买家留言\no1,2024-01-05 10:00:00,"¥1,299.00",尽快发货\no2,2024-01-06,88,\n'


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return new_data_dir(tmp_path / "data")


@pytest.fixture
def client(data_dir: Path) -> Iterator[TestClient]:
    make_source(data_dir, name="天猫旗舰店", kind="tmall")
    instance = Instance(data_dir)
    with TestClient(create_app(instance, local_token="t")) as c:
        yield c
    instance.close()


def upload(
    client: TestClient, kind: str, name: str, content: bytes, options: dict[str, Any] | None = None, **kw: Any
) -> Any:
    return client.post(
        f"/v1/admin/imports/{kind}",
        headers=kw.pop("headers", AUTH),
        files={"file": (name, content, "text/csv")},
        data={"options": json.dumps(options or {}, ensure_ascii=False)},
    )


def test_good_upload_returns_the_report(client: TestClient, data_dir: Path) -> None:
    r = upload(
        client, "orders", "订单.csv", ORDERS_CSV.encode(), {"source": "天猫旗舰店", "defaults": {"currency": "CNY"}}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["rows_read"], body["rows_stored"], body["status"], body["file_name"]) == (2, 2, "ok", "订单.csv")
    got = rows(client.app.state.instance.analytic, "SELECT order_id, source_id, currency, total FROM orders ORDER BY 1")  # type: ignore[attr-defined]
    assert [g[:3] for g in got] == [("o1", 1, "CNY"), ("o2", 1, "CNY")]
    assert not list(data_dir.glob(".import-upload-*"))
    again = upload(client, "order_items".replace("_", "-"), "items.csv", b"order_id,product_id,quantity\no1,p1,2\n")
    assert again.status_code == 200 and again.json()["rows_stored"] == 1


def test_bad_file_is_422_with_the_report_and_the_server_keeps_serving(client: TestClient) -> None:
    bad = ORDERS_CSV + "o3,明天,1,\n"
    r = upload(client, "orders", "orders.csv", bad.encode())
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "import_failed" and body["field"] == "file"
    assert "line 4, column 下单时间 (ordered_at): cannot parse '明天' as a timestamp" in body["message"]
    assert body["report"]["status"] == "failed" and body["report"]["rows_rejected"] == 1
    assert Path(body["report"]["rejects_path"]).is_file()
    gbk = upload(client, "orders", "gbk.csv", ORDERS_CSV.replace("¥", "￥").encode("gbk"))
    assert gbk.status_code == 422 and "--encoding gbk" in gbk.json()["message"]
    garbage = upload(client, "orders", "orders.parquet", b"PAR1 definitely not parquet")
    assert garbage.status_code == 422 and "cannot read orders.parquet as parquet" in garbage.json()["message"]
    assert client.get("/healthz").json()["status"] == "ok"
    ok = upload(client, "orders", "orders.csv", bad.encode(), {"max_rejects": 1})
    assert ok.status_code == 200 and ok.json()["rows_stored"] == 2


@pytest.mark.parametrize(
    ("kind", "options", "status", "field"),
    [
        ("nonsense", {}, 404, "kind"),
        ("orders", {"source": "没有这个"}, 400, "options.source"),
        ("orders", {"max_rejects": -1}, 400, "options.max_rejects"),
        ("orders", {"colour": "red"}, 400, "options.colour"),
        ("orders", {"mapping": {"nope": "order_id"}}, 400, "mapping"),
        ("orders", {"encoding": "klingon"}, 400, "encoding"),
        ("orders", {"timezone": "Mars/Base"}, 400, "timezone"),
    ],
)
def test_bad_requests_are_4xx_with_error_field_message(
    client: TestClient, kind: str, options: dict[str, Any], status: int, field: str
) -> None:
    r = upload(client, kind, "orders.csv", ORDERS_CSV.encode(), options)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["field"] == field and body["message"] and body["error"]


def test_options_must_be_json(client: TestClient) -> None:
    r = client.post(
        "/v1/admin/imports/orders",
        headers=AUTH,
        files={"file": ("o.csv", ORDERS_CSV.encode(), "text/csv")},
        data={"options": "{not json"},
    )
    assert r.status_code == 400 and r.json()["field"] == "options"


def test_admin_token_required(client: TestClient) -> None:
    r = upload(client, "orders", "orders.csv", ORDERS_CSV.encode(), headers={})
    assert r.status_code == 401
    r = upload(client, "orders", "orders.csv", ORDERS_CSV.encode(), headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401


def test_imported_event_names_do_not_trip_the_loader(client: TestClient, data_dir: Path) -> None:
    events = "event,user_id,timestamp\n领取优惠券,u1,2024-01-05 10:00:00\n"
    assert upload(client, "events", "e.csv", events.encode(), {"source": "天猫旗舰店"}).status_code == 200
    inst: Instance = client.app.state.instance  # type: ignore[attr-defined]
    with inst.operational.session() as s:
        src = get_source_by_name(session=s, name="天猫旗舰店")
    assert src is not None
    write_key = src.write_key
    # the loader caches event names: a name the import added must not make its next insert collide
    r = client.post(
        "/v1/track", auth=(write_key, ""), json={"event": "领取优惠券", "userId": "u2", "messageId": "live-1"}
    )
    assert r.status_code == 200, r.text
    assert client.post("/v1/admin/flush", headers=AUTH).status_code == 200
    assert client.get("/healthz").json()["loader_error"] is None
    got = rows(inst.analytic, "SELECT user_id, event FROM events_named ORDER BY user_id")
    assert got == [("u1", "领取优惠券"), ("u2", "领取优惠券")]
    assert rows(inst.analytic, "SELECT count(*) FROM event_names") == [(1,)]
