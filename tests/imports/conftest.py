"""Fixtures of the file-import tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tessera.stores.analytic import AnalyticStore
from tests.imports.support import new_store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AnalyticStore]:
    s = new_store(tmp_path)
    yield s
    s.close()
