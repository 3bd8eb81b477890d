"""Fixtures: a copy of the demo brand per module with the management API in-process, and a clock."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tessera.api.app import create_app
from tessera.clock import FrozenClock
from tessera.runtime import Instance
from tests.audiences.conftest import TOKEN, Api


@pytest.fixture(scope="module")
def tags_api(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    root = tmp_path_factory.mktemp("tags") / "data"
    shutil.copytree(demo_dir, root)
    clock = FrozenClock(datetime.now(UTC))
    inst = Instance(root, clock=clock)
    try:
        yield Api(TestClient(create_app(inst, local_token=TOKEN)), inst, clock)
    finally:
        inst.close()
