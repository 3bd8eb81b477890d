"""`tessera demo` end to end (generate → import → live messages through the collection path), and
the live messages themselves."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from tessera.cli.main import app
from tessera.demo.live import live_messages
from tessera.demo.load import MARKER, SOURCES
from tessera.domain.messages import normalise, to_micros
from tessera.runtime import Instance
from tests.conftest import make_source

runner = CliRunner()
NOW = datetime(2026, 3, 1, 4, 30, tzinfo=UTC)


def counts(root: Path) -> dict[str, int]:
    inst = Instance(root)
    try:
        cur = inst.analytic.cursor()
        out = {}
        for table in ("customers", "orders", "order_items", "products", "reviews", "events", "profiles", "import_runs"):
            where = " WHERE source_id <> 0" if table == "events" else ""  # not the audiences' system events
            row = cur.execute(f"SELECT count(*) FROM {table}{where}").fetchone()
            out[table] = int(row[0]) if row else 0
        rows = cur.execute(
            "SELECT source_id, count(*) FROM events GROUP BY 1 ORDER BY 1",
        ).fetchall()
        out.update({f"events_source_{s}": int(n) for s, n in rows})
        row = cur.execute("SELECT count(*) FROM import_runs WHERE status <> 'ok'").fetchone()
        out["failed_imports"] = int(row[0]) if row else 0
        return out
    finally:
        inst.close()


def test_demo_no_serve_loads_everything_then_reuses_then_forces(tmp_path: Path) -> None:
    root = tmp_path / "data"
    args = ["demo", "--users", "300", "--no-serve", "--data-dir", str(root), "--live", "150"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "tsk_" in result.output and "wk_" in result.output and "/v1/batch" in result.output
    marker = json.loads((root / MARKER).read_text())
    assert marker["users"] == 300 and marker["counts"]["events"] > 0
    first = counts(root)
    for table in ("customers", "orders", "order_items", "products", "reviews", "events", "profiles"):
        assert first[table] > 0, table
    assert first["customers"] == marker["counts"]["customers"]
    assert first["orders"] == marker["counts"]["orders"]
    assert first["import_runs"] == 13 and first["failed_imports"] == 0
    # The live messages went through the collection path into the app source, after its file.
    assert first["events"] >= marker["counts"]["events"] + 150
    inst = Instance(root)
    try:
        with inst.operational.session() as s:
            from tessera.services.sources import list_sources

            names = [(x.name, x.kind) for x in list_sources(session=s)]
    finally:
        inst.close()
    assert names == list(SOURCES)

    again = runner.invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "Reusing" in again.output
    assert counts(root) == first

    forced = runner.invoke(app, [*args[:-2], "--live", "0", "--force", "--seed", "7"])
    assert forced.exit_code == 0, forced.output
    assert "Reusing" not in forced.output
    after = counts(root)
    assert after["events"] == json.loads((root / MARKER).read_text())["counts"]["events"]
    assert after["import_runs"] == 13


def test_demo_refuses_a_data_dir_with_other_data(tmp_path: Path) -> None:
    make_source(tmp_path, "My own source", "web")
    result = runner.invoke(app, ["demo", "--users", "50", "--no-serve", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a demo" in result.output


def test_live_messages_are_valid_segment_messages_of_demo_people(tmp_path: Path) -> None:
    messages = live_messages(users=500, seed=3, now=NOW, count=400)
    assert len(messages) >= 400
    assert messages == live_messages(users=500, seed=3, now=NOW, count=400)
    assert messages != live_messages(users=500, seed=4, now=NOW, count=400)
    received = to_micros(NOW)
    for m in messages:
        row = normalise(m, source_id=1, received_us=received)  # the collection path's own validation
        assert row[0] == m["messageId"]
        t = datetime.fromisoformat(m["timestamp"])
        assert NOW - timedelta(hours=2) < t < NOW
    assert len({m["messageId"] for m in messages}) == len(messages)
    assert [m["timestamp"] for m in messages] == sorted(m["timestamp"] for m in messages)
    events = {m.get("event") for m in messages}
    assert {"Product Viewed", "Order Completed", "Signed In", "Checked In", "Application Installed"} <= events
    assert any(m["type"] == "identify" and "phone" in m["traits"] for m in messages)
    assert any("campaign" in m["context"] for m in messages)
    # Members in live traffic are people of the generated files.
    from tessera.demo.generate import generate

    files = generate(users=500, seed=3, out_dir=tmp_path, now=NOW)
    members = set(pq.read_table(files.customers, columns=["member_id"]).column(0).to_pylist())
    live_members = {m["userId"] for m in messages if m.get("userId")}
    assert live_members and live_members <= members
    json.dumps(messages, ensure_ascii=False)
