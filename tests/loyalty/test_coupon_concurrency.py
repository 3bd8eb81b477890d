"""The store decides races: one coupon redeemed at the same moment by many buyers is used once, and
issuers racing for a stock of N never issue more than N — real threads on SQLite and PostgreSQL,
real processes (spawned, each with its own OperationalStore) on PostgreSQL."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tessera.domain.coupons import CouponTemplate
from tessera.services import coupons as svc
from tessera.services.coupons import IssueRequest, Redemption
from tessera.services.loyalty_common import LoyaltyError
from tessera.stores.models import CouponRow, CouponTemplateRow, LoyaltyEventRow
from tessera.stores.operational import OperationalStore, sqlite_url

NOW = datetime(2026, 5, 1, 4, tzinfo=UTC)
RACERS = 8


def setup_store(store: OperationalStore, stock: int | None) -> str:
    """A template and one coupon of p_a; returns its code."""
    t = CouponTemplate(key="race", name="抢券", kind="fixed", amount="10", stock=stock, per_person=None)
    with store.session() as s:
        s.execute(svc.T.insert().values(key=t.key, body=t.model_dump(mode="json"), status="active", campaign=None,
                                        stock=t.stock, issued=0, created_at=NOW, updated_at=NOW))  # fmt: skip
    with store.session() as s:
        return svc.issue_in_session(s, "race", [IssueRequest("p_a", "the-one", "api")], NOW).issued[0].code


def redeem_once(store: OperationalStore, code: str, order: str) -> str:
    try:
        with store.session() as s:
            svc.redeem_in_session(s, Redemption(code, "p_a", order, 5000, "CNY", None), NOW)
        return "ok"
    except LoyaltyError as e:
        return e.reason or "?"


def issue_some(store: OperationalStore, racer: int, per_racer: int) -> int:
    reqs = [IssueRequest(f"p_{racer}_{i}", f"r{racer}:{i}", "api") for i in range(per_racer)]
    with store.session() as s:
        got = svc.issue_in_session(s, "race", reqs, NOW)
    assert {reason for _r, reason in got.refused} <= {"out_of_stock"}
    return len(got.issued)


def in_threads(work: Any, n: int = RACERS) -> list[Any]:
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        out[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    return out


def check_store(store: OperationalStore, *, coupons: int, issued: int, redeemed: int) -> None:
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(CouponRow)) == coupons
        assert s.scalar(select(CouponTemplateRow.issued)) == issued
        assert s.scalar(select(func.count()).where(CouponRow.status == "redeemed")) == redeemed
        names = Counter(s.scalars(select(LoyaltyEventRow.name)))
    assert names["Coupon Redeemed"] == redeemed and names["Coupon Issued"] == coupons


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "operational.sqlite")
    return str(request.getfixturevalue("pg_url"))


def test_one_coupon_redeemed_by_eight_threads_at_once_is_used_once(store_url: str) -> None:
    store = OperationalStore(store_url)
    try:
        code = setup_store(store, stock=None)
        got = in_threads(lambda i: redeem_once(store, code, f"order-{i}"))
        assert sorted(got) == ["already_redeemed"] * (RACERS - 1) + ["ok"]
        check_store(store, coupons=1, issued=1, redeemed=1)
    finally:
        store.close()


def test_threads_racing_for_a_stock_never_issue_more_than_it(store_url: str) -> None:
    store = OperationalStore(store_url)
    try:
        setup_store(store, stock=13)
        got = in_threads(lambda i: issue_some(store, i, 4))
        assert sum(got) == 12  # 13 minus the coupon issued in setup
        check_store(store, coupons=13, issued=13, redeemed=0)
    finally:
        store.close()


# --- processes (PostgreSQL) ----------------------------------------------------------------------------------

PROCESSES = 4


def _process(url: str, code: str, racer: int, barrier: Any, results: Any) -> None:
    """Race twice: redeem the one coupon, then issue 4 coupons against the stock."""
    store = OperationalStore(url, migrate=False)
    try:
        store.engine.connect().close()  # connected before the start line
        barrier.wait(timeout=60)
        used = redeem_once(store, code, f"order-{racer}")
        barrier.wait(timeout=60)
        results.put((racer, used, issue_some(store, racer, 4)))
    finally:
        store.close()


@pytest.mark.postgres
def test_processes_on_postgres_use_a_coupon_once_and_never_exceed_the_stock(pg_url: str) -> None:
    store = OperationalStore(pg_url)
    try:
        code = setup_store(store, stock=11)
        ctx = multiprocessing.get_context("spawn")
        barrier, results = ctx.Barrier(PROCESSES), ctx.Queue()
        procs = [ctx.Process(target=_process, args=(pg_url, code, i, barrier, results)) for i in range(PROCESSES)]
        for p in procs:
            p.start()
        got = [results.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
        assert sorted(used for _r, used, _n in got) == ["already_redeemed"] * (PROCESSES - 1) + ["ok"]
        issued = [n for _r, _u, n in got]
        assert sum(issued) == 10 and max(issued) <= 4  # 11 minus the coupon issued in setup
        check_store(store, coupons=11, issued=11, redeemed=1)
    finally:
        store.close()
