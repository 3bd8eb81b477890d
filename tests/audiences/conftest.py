"""Fixtures: the demo brand once per session, a copy per module, the management API in-process."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tessera.api.app import create_app
from tessera.clock import FrozenClock
from tessera.runtime import Instance

TOKEN = "audience-tests"


@dataclass
class Api:
    client: TestClient
    inst: Instance
    clock: FrozenClock

    def call(self, method: str, path: str, status: int = 200, **kw: object) -> object:
        r = self.client.request(method, path, headers={"Authorization": f"Bearer {TOKEN}"}, **kw)  # type: ignore[arg-type]
        assert r.status_code == status, r.text
        return r.json() if r.content and r.headers.get("content-type", "").startswith("application/json") else r


@contextmanager
def demo_copy_api(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory, name: str = "copy") -> Iterator[Api]:
    """The management API in-process on a fresh copy of the demo brand, with a clock to move."""
    root = tmp_path_factory.mktemp(name) / "data"
    shutil.copytree(demo_dir, root)
    clock = FrozenClock(datetime.now(UTC))
    inst = Instance(root, clock=clock)
    try:
        yield Api(TestClient(create_app(inst, local_token=TOKEN)), inst, clock)
    finally:
        inst.close()


@pytest.fixture(scope="module")
def api(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with demo_copy_api(demo_dir, tmp_path_factory) as a:
        yield a
