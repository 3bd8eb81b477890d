"""Concurrent spends are decided by the store (the conditional UPDATE), never by Python: real threads
on SQLite and on PostgreSQL never overdraw, and one key posted concurrently is written once."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tessera.clock import FrozenClock
from tessera.runtime import Instance
from tessera.services import points
from tessera.services.loyalty_common import LoyaltyError
from tessera.stores.models import PointsEntryRow
from tessera.stores.operational import OperationalStore
from tests.loyalty.test_points import START, add_profiles


@pytest.fixture
def inst(op_store: OperationalStore, tmp_path: Path) -> Iterator[Instance]:
    i = Instance(tmp_path / "data", clock=FrozenClock(START))
    i.__dict__["operational"] = op_store
    add_profiles(i)
    _ = i.analytic
    yield i
    i.__dict__.pop("operational", None)
    i.close()


def race(n: int, work: Callable[[int], Any]) -> list[Any]:
    """Run ``work(k)`` for k < n in n threads released together; their answers or exceptions."""
    gate = threading.Barrier(n)
    out: list[Any] = [None] * n

    def run(k: int) -> None:
        gate.wait()
        try:
            out[k] = work(k)
        except Exception as e:  # collected for the assertions
            out[k] = e

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def test_concurrent_spends_never_overdraw(inst: Instance) -> None:
    points.earn(inst, member="p_alice", points=100, reason="r", key="seed")
    got = race(10, lambda k: points.spend(inst, member="p_alice", points=30, reason="兑换", key=f"spend-{k}"))
    ok = [g for g in got if isinstance(g, points.Posted)]
    refused = [g for g in got if isinstance(g, LoyaltyError)]
    assert len(ok) == 3 and len(refused) == 7, got
    assert all(e.reason == "insufficient_points" for e in refused)
    with inst.operational.session() as s:
        assert points.balance(s, "p_alice") == 10
        assert s.scalar(select(func.sum(PointsEntryRow.points))) == 10
        assert sorted(e.balance_after for e in points.history(s, "p_alice")) == [10, 40, 70, 100]


def test_same_key_concurrently_is_written_once(inst: Instance) -> None:
    got = race(8, lambda k: points.earn(inst, member="p_bob", points=10 + k, reason="r", key="the-key"))
    assert all(isinstance(g, points.Posted) for g in got), got
    assert len({g.entry.id for g in got}) == 1
    assert sum(1 for g in got if not g.replayed) == 1
    with inst.operational.session() as s:
        assert s.scalar(select(func.count()).select_from(PointsEntryRow)) == 1
        assert points.balance(s, "p_bob") == got[0].entry.points
