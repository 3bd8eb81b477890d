"""The points ledger on the operational store — SQLite and the real PostgreSQL: earn, spend, adjust,
refusals that write nothing, replays by key, FIFO expiry by moving the clock, expiry notices, and
a randomized run where the accounts always equal the ledger's sums."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from tessera.clock import FrozenClock
from tessera.runtime import Instance
from tessera.services import points
from tessera.services.loyalty_common import LoyaltyError
from tessera.stores.models import LoyaltyEventRow, PointsAccountRow, PointsEntryRow
from tessera.stores.operational import OperationalStore

START = datetime(2026, 3, 2, 4, 0, tzinfo=UTC)
MEMBERS = ("p_alice", "p_bob", "p_carol")


def add_profiles(inst: Instance, ids: tuple[str, ...] = MEMBERS) -> None:
    cur = inst.analytic.cursor()
    for k, pid in enumerate(ids, 1):
        cur.execute("INSERT INTO profiles (profile_idx, profile_id, created_at) VALUES (?, ?, ?)",
                    [k, pid, START.replace(tzinfo=None)])  # fmt: skip
    cur.close()


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(START)


@pytest.fixture
def inst(op_store: OperationalStore, tmp_path: Path, clock: FrozenClock) -> Iterator[Instance]:
    i = Instance(tmp_path / "data", clock=clock)
    i.__dict__["operational"] = op_store  # the store under test (SQLite or PostgreSQL)
    add_profiles(i)
    yield i
    i.__dict__.pop("operational", None)
    i.close()


def ledger(inst: Instance, pid: str) -> tuple[int, int, int]:
    """(account balance, sum of the ledger, number of entries)."""
    with inst.operational.session() as s:
        bal = points.balance(s, pid)
        total = s.scalar(
            select(func.coalesce(func.sum(PointsEntryRow.points), 0)).where(PointsEntryRow.profile_id == pid)
        )
        n = s.scalar(select(func.count()).select_from(PointsEntryRow).where(PointsEntryRow.profile_id == pid))
    return bal, int(total or 0), int(n or 0)


def test_earn_spend_adjust(inst: Instance) -> None:
    got = points.earn(inst, member="p_alice", points=100, reason="注册礼", key="k1", campaign="welcome")
    assert (got.balance, got.replayed, got.entry.kind, got.entry.balance_after) == (100, False, "earn", 100)
    assert got.entry.expires_at == START + timedelta(days=365)
    got = points.spend(inst, member="p_alice", points=30, reason="兑换", key="k2")
    assert (got.balance, got.entry.points, got.entry.balance_after) == (70, -30, 70)
    got = points.adjust(inst, member="p_alice", points=-5, reason="纠正", key="k3")
    assert got.balance == 65
    assert ledger(inst, "p_alice") == (65, 65, 3)
    with inst.operational.session() as s:
        acc = s.get(PointsAccountRow, "p_alice")
        assert acc is not None and (acc.earned, acc.spent, acc.expired, acc.adjusted) == (100, 30, 0, -5)
        hist = points.history(s, "p_alice")
        assert [e.key for e in hist] == ["k3", "k2", "k1"]
        assert [e.key for e in points.history(s, "p_alice", limit=1, before=hist[0].id)] == ["k2"]
        earned = list(s.scalars(select(LoyaltyEventRow.key).where(LoyaltyEventRow.name == "Points Earned")))
    assert earned == ["earned:k1"]


def test_refusals_write_nothing(inst: Instance) -> None:
    points.earn(inst, member="p_bob", points=20, reason="r", key="b1")
    with pytest.raises(LoyaltyError) as e:
        points.spend(inst, member="p_bob", points=30, reason="兑换", key="b2")
    assert (e.value.status, e.value.reason) == (409, "insufficient_points")
    assert "balance 20, asked 30" in e.value.message
    assert ledger(inst, "p_bob") == (20, 20, 1)
    with pytest.raises(LoyaltyError) as e:
        points.spend(inst, member="p_carol", points=1, reason="兑换", key="c1")  # no account at all
    assert e.value.reason == "insufficient_points"
    with pytest.raises(LoyaltyError) as e:
        points.earn(inst, member="p_nobody", points=1, reason="r", key="n1")
    assert e.value.reason == "unknown_member"
    with pytest.raises(LoyaltyError) as e:
        points.earn(inst, member="p_bob", points=0, reason="r", key="b3")
    assert (e.value.field, e.value.reason) == ("points", "invalid")
    # a refused debit among several members undoes the ones already applied
    with inst.operational.session() as s:
        points.post_in_session(s, [points.NewEntry("c0", "p_carol", "earn", 50, "r", "api")], START)
    with pytest.raises(LoyaltyError), inst.operational.session() as s:
        points.post_in_session(s, [points.NewEntry("x1", "p_carol", "spend", -10, "r", "api"),
                                   points.NewEntry("x2", "p_bob", "spend", -999, "r", "api")], START)  # fmt: skip
    assert ledger(inst, "p_carol") == (50, 50, 1) and ledger(inst, "p_bob") == (20, 20, 1)


def test_replay_by_key_changes_nothing(inst: Instance) -> None:
    first = points.earn(inst, member="p_alice", points=100, reason="r", key="same")
    again = points.earn(inst, member="p_alice", points=999, reason="other", key="same")
    assert again.replayed and again.entry.points == 100 and again.entry.id == first.entry.id and again.balance == 100
    points.spend(inst, member="p_alice", points=10, reason="r", key="sp")
    assert points.spend(inst, member="p_alice", points=10, reason="r", key="sp").replayed
    assert ledger(inst, "p_alice") == (90, 90, 2)
    with inst.operational.session() as s:
        res = points.post_in_session(s, [points.NewEntry("same", "p_alice", "earn", 5, "r", "api"),
                                         points.NewEntry("new", "p_alice", "earn", 5, "r", "api"),
                                         points.NewEntry("new", "p_alice", "earn", 7, "r", "api")], START)  # fmt: skip
    assert res.replayed == 2 and [e.points for e in res.entries] == [100, 5, 5]
    assert ledger(inst, "p_alice") == (95, 95, 3)


def test_expiry_fifo_after_lifetime(inst: Instance, clock: FrozenClock) -> None:
    points.set_program(inst, {"lifetime_days": 30, "notice_days": 7})
    points.earn(inst, member="p_alice", points=100, reason="a", key="e1")
    clock.advance(timedelta(days=10))
    points.earn(inst, member="p_alice", points=50, reason="b", key="e2")
    points.spend(inst, member="p_alice", points=120, reason="s", key="s1")  # lot e1 first, then 20 of e2
    clock.advance(timedelta(days=21))  # e1 expired (nothing left of it), e2 has 9 days left
    assert points.expire_points(inst, clock.now()).entries == 0
    clock.advance(timedelta(days=10))  # e2 past its expiry: its remaining 30 expire
    got = points.expire_points(inst, clock.now())
    assert (got.entries, got.points) == (1, 30)
    assert points.expire_points(inst, clock.now()).entries == 0  # once
    assert ledger(inst, "p_alice") == (0, 0, 4)
    with inst.operational.session() as s:
        hist = points.history(s, "p_alice")
        assert hist[0].kind == "expire" and hist[0].key == f"expire:{hist[0].lot_id}" and hist[0].points == -30


def test_spend_never_uses_expired_points(inst: Instance, clock: FrozenClock) -> None:
    points.set_program(inst, {"lifetime_days": 30})
    points.earn(inst, member="p_bob", points=100, reason="a", key="e1")
    clock.advance(timedelta(days=20))
    points.earn(inst, member="p_bob", points=40, reason="b", key="e2")
    clock.advance(timedelta(days=15))  # e1 expired, the job has not run
    with pytest.raises(LoyaltyError) as e:
        points.spend(inst, member="p_bob", points=50, reason="s", key="s1")
    assert "balance 40" in e.value.message and ledger(inst, "p_bob") == (140, 140, 2)
    got = points.spend(inst, member="p_bob", points=40, reason="s", key="s2")
    assert got.balance == 0 and ledger(inst, "p_bob") == (0, 0, 4)  # expire e1 + spend


def test_points_expiring_notice_once(inst: Instance, clock: FrozenClock) -> None:
    points.set_program(inst, {"lifetime_days": 60, "notice_days": 7})
    points.earn(inst, member="p_carol", points=80, reason="a", key="e1")
    clock.advance(timedelta(days=50))
    assert points.expiring_notices(inst, clock.now()) == 0  # 10 days ahead: not yet
    clock.advance(timedelta(days=4))
    assert points.expiring_notices(inst, clock.now()) == 1
    clock.advance(timedelta(days=1))
    assert points.expiring_notices(inst, clock.now()) == 0  # once per member and date
    with inst.operational.session() as s:
        ev = s.scalars(select(LoyaltyEventRow).where(LoyaltyEventRow.name == "Points Expiring")).all()
    assert len(ev) == 1 and ev[0].profile_id == "p_carol"
    assert ev[0].properties["points"] == 80 and ev[0].properties["balance"] == 80
    assert ev[0].key == f"expiring:p_carol:{ev[0].properties['expires_on']}"


def test_randomized_accounts_equal_the_ledger(inst: Instance, clock: FrozenClock) -> None:
    rnd = random.Random(7)
    points.set_program(inst, {"lifetime_days": 20})
    for i in range(120):
        pid = rnd.choice(MEMBERS)
        op = rnd.choice(["earn", "earn", "spend", "adjust", "expire", "replay"])
        key = f"k{i}" if op != "replay" else f"k{rnd.randrange(max(i, 1))}"
        try:
            if op in ("earn", "replay"):
                points.earn(inst, member=pid, points=rnd.randint(1, 100), reason="r", key=key)
            elif op == "spend":
                points.spend(inst, member=pid, points=rnd.randint(1, 120), reason="r", key=key)
            elif op == "adjust":
                points.adjust(inst, member=pid, points=rnd.choice([-1, 1]) * rnd.randint(1, 60), reason="r", key=key,
                              allow_negative=rnd.random() < 0.3)  # fmt: skip
            else:
                points.expire_points(inst, clock.now())
        except LoyaltyError as e:
            assert e.reason == "insufficient_points"
        clock.advance(timedelta(days=rnd.randint(0, 3)))
        if i % 20 == 19:
            for m in MEMBERS:
                bal, total, _ = ledger(inst, m)
                assert bal == total
                with inst.operational.session() as s:
                    assert points.member_lots(s, m, clock.now()).total == bal
    with inst.operational.session() as s:
        accounts = s.scalar(select(func.sum(PointsAccountRow.balance)))
        total = s.scalar(select(func.sum(PointsEntryRow.points)))
    assert accounts == total


def test_birthday_bonus_once_a_year(inst: Instance, clock: FrozenClock) -> None:
    points.set_program(inst, {"bonuses": [{"key": "bday", "name": "生日礼", "event": "birthday", "points": 200,
                                           "per": "year"}]})  # fmt: skip
    cur = inst.analytic.cursor()
    cur.execute("UPDATE profiles SET traits = ? WHERE profile_id = 'p_alice'", ['{"birthday": "1990-03-02"}'])
    cur.execute("UPDATE profiles SET traits = ? WHERE profile_id = 'p_bob'", ['{"birthday": "1991-03-03"}'])
    cur.execute("UPDATE profiles SET traits = ? WHERE profile_id = 'p_carol'",
                ['{"birthday": "03-03", "timezone": "Asia/Tokyo"}'])  # fmt: skip
    cur.close()
    clock.set(datetime(2026, 3, 2, 15, 30, tzinfo=UTC))  # 23:30 on the 2nd in Shanghai, 00:30 on the 3rd in Tokyo
    assert points.grant_birthdays(inst, clock.now()) == 2
    assert points.grant_birthdays(inst, clock.now()) == 0
    assert ledger(inst, "p_alice")[0] == 200 and ledger(inst, "p_carol")[0] == 200 and ledger(inst, "p_bob")[0] == 0
    with inst.operational.session() as s:
        keys = set(s.scalars(select(PointsEntryRow.key)))
    assert keys == {"birthday:bday:p_alice:2026", "birthday:bday:p_carol:2026"}
