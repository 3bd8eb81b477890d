"""Loading the demo into an instance through the product's own paths.

Sources (one per channel, each with its write key) are created with the sources service; every
generated file goes through the file importer (``import_file``) with its channel's ``source_id``;
live messages go through the collection path — over HTTP (``run_demo_server``) or, without a
server, in-process: ``Collector.prepare`` → write-ahead log → loader, exactly what ``/v1/batch``
does after reading the request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tessera.demo.generate import DemoFiles
from tessera.domain.messages import to_micros
from tessera.runtime import Instance
from tessera.services import sources as sources_service
from tessera.services import tokens as tokens_service
from tessera.services.identity_rules import get_rules
from tessera.services.imports import ImportReport, import_file
from tessera.services.pipeline import Pipeline
from tessera.services.sources import Source

#: The demo brand's sources (数据源): (name, kind). Files and live traffic use the source of their kind.
SOURCES: tuple[tuple[str, str], ...] = (
    ("官方App", "app"),
    ("官网 Web", "web"),
    ("微信小程序", "wechat_miniprogram"),
    ("天猫旗舰店", "tmall"),
    ("京东自营", "jd"),
    ("线下门店", "offline_store"),
    ("CRM 会员系统", "crm"),
)
#: The data dir file that marks a generated demo (its parameters, counts and timings).
MARKER = "demo.json"
#: Where the generated files live inside the data dir.
FILES_DIR = "demo"
LIVE_SOURCE = "app"


def ensure_sources(instance: Instance, now: datetime) -> dict[str, Source]:
    """The demo's sources by kind, created when missing."""
    out: dict[str, Source] = {}
    with instance.operational.session() as session:
        for name, kind in SOURCES:
            existing = sources_service.get_source_by_name(session=session, name=name)
            out[kind] = existing or sources_service.create_source(session=session, name=name, kind=kind, now=now)
    return out


def new_admin_token(instance: Instance, now: datetime) -> str:
    with instance.operational.session() as session:
        return tokens_service.create_token(session=session, name="demo", now=now).token


ImportDone = Callable[[str, Path, ImportReport], None]


def import_files(
    instance: Instance,
    files: DemoFiles,
    sources: dict[str, Source],
    *,
    now: datetime,
    on_done: ImportDone | None = None,
) -> list[ImportReport]:
    """Import every file, one after the other, each with its channel's source; raises ``ImportFailed``."""
    reports: list[ImportReport] = []
    rules = get_rules(instance.operational)
    for kind, path, source_kind in files.imports():
        report = import_file(
            store=instance.analytic,
            kind=kind,
            path=path,
            source_id=sources[source_kind].id if source_kind else None,
            rejects_dir=instance.data_dir.rejects,
            now=now,
            rules=rules,
        )
        reports.append(report)
        if on_done is not None:
            on_done(kind, path, report)
    return reports


def refresh_profiles(instance: Instance, *, now: datetime) -> int:
    """Compute every profile's stored attributes (traits after the merge policies, basics)."""
    from tessera.services.profile_attributes import refresh_attributes
    from tessera.services.sources import source_names

    rules = get_rules(instance.operational)
    with instance.analytic.transaction() as cur:
        return refresh_attributes(cur, rules=rules, source_names=source_names(instance.operational), now=now)


def send_live_in_process(
    instance: Instance, messages: list[dict[str, Any]], source: Source, *, batch_size: int = 100
) -> int:
    """The collection path without HTTP: validate each batch, append it to the log, load; returns accepted."""
    if not messages:
        return 0
    pipeline = Pipeline(instance)
    accepted = 0
    waiting = 0
    errors: list[BaseException] = []
    done = threading.Condition()

    def written(error: BaseException | None) -> None:
        nonlocal waiting
        with done:
            waiting -= 1
            if error is not None:
                errors.append(error)
            done.notify_all()

    try:
        pipeline.loader.flush(timeout=600)  # whatever an earlier process left in the log
        for i in range(0, len(messages), batch_size):
            body = json.dumps({"batch": messages[i : i + batch_size]}, ensure_ascii=False).encode()
            received = to_micros(instance.clock.now())
            prepared = pipeline.collector.prepare(body, source=source, implied_type=None, received_us=received)
            accepted += prepared.accepted
            with done:
                waiting += 1
            pipeline.writer.append(prepared.record, written)
        with done:
            done.wait_for(lambda: waiting == 0, timeout=600)
        if errors:
            raise errors[0]
        if not pipeline.loader.flush(timeout=600):
            raise RuntimeError("the loader did not catch up with the write-ahead log in time")
    finally:
        pipeline.stop()
    return accepted


@dataclass
class Marker:
    users: int
    seed: int
    generated_at: str
    counts: dict[str, int]
    timings: dict[str, float]

    def write(self, root: Path) -> None:
        data = {
            "users": self.users,
            "seed": self.seed,
            "generated_at": self.generated_at,
            "counts": self.counts,
            "timings": self.timings,
        }
        (root / MARKER).write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n")

    @classmethod
    def read(cls, root: Path) -> Marker | None:
        try:
            data = json.loads((root / MARKER).read_text())
            return cls(
                users=int(data["users"]),
                seed=int(data["seed"]),
                generated_at=str(data["generated_at"]),
                counts={k: int(v) for k, v in data.get("counts", {}).items()},
                timings={k: float(v) for k, v in data.get("timings", {}).items()},
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


def utc_iso(now: datetime) -> str:
    return now.astimezone(UTC).isoformat(timespec="seconds")
