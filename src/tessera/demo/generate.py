"""Generate the demo brand's files: ``generate(users=…, seed=…, out_dir=…, now=…)`` → :class:`DemoFiles`.

People are generated in chunks of :data:`CHUNK` (memory stays flat for a million users); every
chunk draws from its own random streams (``default_rng([seed, chunk, stream])``), so the files
depend only on ``(users, seed, now)`` and are byte-identical from one run to the next.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from tessera.demo import frames
from tessera.demo.behaviour import EVENT_CHANNELS, EVENT_SCHEMA, make_events
from tessera.demo.catalog import PRODUCT_SCHEMA, build_catalog
from tessera.demo.orders import ITEM_SCHEMA, ORDER_SCHEMA, REVIEW_SCHEMA, make_orders
from tessera.demo.people import CHANNELS, CUSTOMER_SCHEMA, Keys, customer_table, make_people
from tessera.demo.season import build_calendar
from tessera.demo.texts import BRAND_FULL
from tessera.demo.truth import TRUTH_SCHEMA, build_truth

CHUNK = 25_000
#: Written last into the output folder: parameters, files and counts.
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class DemoFiles:
    """What :func:`generate` wrote: paths and row counts."""

    out_dir: Path
    users: int
    seed: int
    now: datetime
    products: Path
    customers: Path
    orders: dict[str, Path]  # per channel (source kind)
    order_items: Path
    reviews: Path
    events: dict[str, Path]  # per channel (source kind)
    truth: Path
    counts: dict[str, int] = field(default_factory=dict)

    def imports(self) -> list[tuple[str, Path, str | None]]:
        """(import kind, file, source kind) in the order they load: products first, events last."""
        out: list[tuple[str, Path, str | None]] = [
            ("products", self.products, None),
            ("customers", self.customers, "crm"),
        ]
        out += [("orders", path, channel) for channel, path in self.orders.items()]
        out += [("order-items", self.order_items, None), ("reviews", self.reviews, None)]
        out += [("events", path, channel) for channel, path in self.events.items()]
        return out

    def manifest(self) -> dict[str, object]:
        return {
            "brand": BRAND_FULL,
            "users": self.users,
            "seed": self.seed,
            "now": self.now.astimezone(UTC).isoformat(),
            "files": {str(p.relative_to(self.out_dir)): kind for kind, p, _ in self.imports()}
            | {"truth.parquet": "truth"},
            "counts": self.counts,
        }


def _paths(out_dir: Path) -> dict[str, Path]:
    names = {
        "products": "products",
        "customers": "customers",
        "order_items": "order_items",
        "reviews": "reviews",
        "truth": "truth",
    }
    paths = {k: out_dir / f"{v}.parquet" for k, v in names.items()}
    for ch in CHANNELS:
        paths[f"orders:{ch}"] = out_dir / f"orders_{ch}.parquet"
    for c in EVENT_CHANNELS:
        paths[f"events:{CHANNELS[c]}"] = out_dir / f"events_{CHANNELS[c]}.parquet"
    return paths


def generate(
    *,
    users: int,
    seed: int,
    out_dir: Path,
    now: datetime,
    progress: Callable[[int, int], None] | None = None,
) -> DemoFiles:
    """Write the demo brand's Parquet files for ``users`` people into ``out_dir``."""
    if users < 1:
        raise ValueError("users must be at least 1")
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    out_dir.mkdir(parents=True, exist_ok=True)
    cal = build_calendar(now)
    catalog = build_catalog(seed)
    keys = Keys.for_seed(seed)
    paths = _paths(out_dir)
    counts = {"people": users, "products": frames.write_table(paths["products"], catalog.table, PRODUCT_SCHEMA)}
    sinks = {
        "customers": frames.ParquetSink(paths["customers"], CUSTOMER_SCHEMA),
        "order_items": frames.ParquetSink(paths["order_items"], ITEM_SCHEMA),
        "reviews": frames.ParquetSink(paths["reviews"], REVIEW_SCHEMA),
        "truth": frames.ParquetSink(paths["truth"], TRUTH_SCHEMA),
    }
    for ch in CHANNELS:
        sinks[f"orders:{ch}"] = frames.ParquetSink(paths[f"orders:{ch}"], ORDER_SCHEMA)
    for c in EVENT_CHANNELS:
        sinks[f"events:{CHANNELS[c]}"] = frames.ParquetSink(paths[f"events:{CHANNELS[c]}"], EVENT_SCHEMA)
    order_offset = review_offset = 0
    # Parquet encoding runs on a second thread (pyarrow releases the GIL) while the next chunk is
    # generated; one chunk in flight at most, and each file is written by that one thread, in order.
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="demo-parquet")
    pending: list[Future[None]] = []

    def flush() -> None:
        for fut in pending:
            fut.result()
        pending.clear()

    try:
        for chunk, base in enumerate(range(0, users, CHUNK)):
            n = min(CHUNK, users - base)
            people = make_people(n=n, base=base, seed=seed, chunk=chunk, cal=cal, keys=keys)
            orders = make_orders(
                people=people,
                catalog=catalog,
                cal=cal,
                keys=keys,
                seed=seed,
                chunk=chunk,
                order_offset=order_offset,
                review_offset=review_offset,
            )
            order_offset += orders.n
            review_offset += orders.reviews.num_rows
            customers = customer_table(
                people=people,
                cal=cal,
                spend_12m_cents=orders.spend(n, -365),
                spend_all_cents=orders.spend(n, -100_000),
                seed=seed,
                chunk=chunk,
            )
            events = make_events(people=people, orders=orders, catalog=catalog, cal=cal, seed=seed, chunk=chunk)
            truth = build_truth(people=people, customers=customers, orders=orders, events=events)
            flush()
            writes: list[tuple[str, pa.Table]] = [
                ("customers", customers.table),
                ("order_items", orders.items),
                ("reviews", orders.reviews),
                ("truth", truth),
            ]
            channel_col = orders.table.column("channel")
            writes += [(f"orders:{ch}", orders.table.filter(pc.equal(channel_col, ch))) for ch in CHANNELS]
            writes += [(f"events:{name}", table) for name, table in events.tables.items()]
            for key, table in writes:
                pending.append(writer.submit(sinks[key].write, table))
            del people, orders, customers, events, truth, writes
            if progress is not None:
                progress(base + n, users)
        flush()
    finally:
        for fut in pending:
            fut.cancel()
        writer.shutdown(wait=True)
        for sink in sinks.values():
            sink.close()
    counts["customers"] = sinks["customers"].rows
    counts["orders"] = sum(sinks[f"orders:{ch}"].rows for ch in CHANNELS)
    counts["order_items"] = sinks["order_items"].rows
    counts["reviews"] = sinks["reviews"].rows
    counts["events"] = sum(sinks[f"events:{CHANNELS[c]}"].rows for c in EVENT_CHANNELS)
    counts["truth"] = sinks["truth"].rows
    for ch in CHANNELS:
        counts[f"orders_{ch}"] = sinks[f"orders:{ch}"].rows
    for c in EVENT_CHANNELS:
        counts[f"events_{CHANNELS[c]}"] = sinks[f"events:{CHANNELS[c]}"].rows
    files = DemoFiles(
        out_dir=out_dir,
        users=users,
        seed=seed,
        now=now,
        products=paths["products"],
        customers=paths["customers"],
        orders={ch: paths[f"orders:{ch}"] for ch in CHANNELS},
        order_items=paths["order_items"],
        reviews=paths["reviews"],
        events={CHANNELS[c]: paths[f"events:{CHANNELS[c]}"] for c in EVENT_CHANNELS},
        truth=paths["truth"],
        counts=counts,
    )
    (out_dir / MANIFEST).write_text(json.dumps(files.manifest(), ensure_ascii=False, indent=2, sort_keys=True) + "\n")
    return files
