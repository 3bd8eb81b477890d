"""Found while wiring the demo to the importer: concurrent imports, empty JSON objects, names."""

from __future__ import annotations

import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from tessera.clock import FrozenClock
from tessera.services.imports import import_file
from tessera.services.loader import Loader
from tessera.settings import IngestSettings
from tests.imports.support import NOW, new_store


def _events_file(path: Path, n: int, name: str) -> Path:
    pq.write_table(
        pa.table({
            "message_id": [f"{name}-{i}" for i in range(n)], "type": ["track"] * n, "event": [name] * n,
            "user_id": [f"u{i}" for i in range(n)], "timestamp": ["2026-01-10T08:00:00Z"] * n,
        }),
        path,
    )  # fmt: skip
    return path


def test_concurrent_imports_on_one_store_each_store_their_own_file(tmp_path: Path) -> None:
    store = new_store(tmp_path / "data")
    files = {n: _events_file(tmp_path / f"{name}.parquet", n, name)
             for n, name in ((300, "Product Viewed"), (200, "Signed In"), (100, "Checked In"))}  # fmt: skip
    errors: list[BaseException] = []

    def run(path: Path) -> None:
        try:
            import_file(store=store, kind="events", path=path, now=NOW, rejects_dir=tmp_path)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(p,)) for p in files.values()]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    cur = store.cursor()
    got = dict(cur.execute("SELECT event, count(*) FROM events_named GROUP BY event").fetchall())
    assert got == {"Product Viewed": 300, "Signed In": 200, "Checked In": 100}
    # the raw file view is temporary: nothing of the import is left in the database's catalog
    assert cur.execute("SELECT count(*) FROM duckdb_views() WHERE view_name LIKE '_imp%'").fetchone() == (0,)


def test_an_empty_attributes_object_is_not_a_reject(tmp_path: Path) -> None:
    store = new_store(tmp_path / "data")
    path = tmp_path / "items.parquet"
    pq.write_table(pa.table({"order_id": ["O1", "O2"], "line_no": [1, 1], "product_id": ["P1", "P2"],
                             "quantity": [1, 2], "attributes": ["{}", '{"尺码": "L"}']}), path)  # fmt: skip
    report = import_file(store=store, kind="order-items", path=path, now=NOW, rejects_dir=tmp_path)
    assert report.rows_stored == 2 and report.rows_rejected == 0
    rows = store.cursor().execute("SELECT order_id, attributes FROM order_items ORDER BY 1").fetchall()
    assert rows == [("O1", None), ("O2", '{"尺码":"L"}')]


def test_the_loader_copes_with_event_names_an_import_added(tmp_path: Path) -> None:
    store = new_store(tmp_path / "data")
    loader = Loader(
        store=store, wal_dir=tmp_path / "wal", writer=None, settings=IngestSettings(), clock=FrozenClock(NOW)
    )
    import_file(store=store, kind="events", path=_events_file(tmp_path / "e.parquet", 3, "Coupon Claimed"), now=NOW,
                rejects_dir=tmp_path)  # fmt: skip
    with store.transaction() as cur:  # the loader's cache predates the import: no unique-key clash
        ids = loader._event_ids(cur, pa.chunked_array([pa.array(["Coupon Claimed", None, "New Event"])]))
    assert ids.null_count == 1
    names = dict(store.cursor().execute("SELECT name, event_id FROM event_names").fetchall())
    assert ids.to_pylist() == [names["Coupon Claimed"], None, names["New Event"]]
