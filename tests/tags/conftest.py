"""Fixtures: a copy of the demo brand (with its tags) per module, the management API in-process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.audiences.conftest import Api, demo_copy_api


@pytest.fixture(scope="module")
def tags_api(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    with demo_copy_api(demo_dir, tmp_path_factory, "tags") as api:
        yield api
