"""Value and lifecycle model tags on small real stores built by hand: RFM scores and groups (fixed
thresholds checked by hand, quantiles against a plain-Python reading of the documented rule),
every lifecycle stage and AIPL stage, incremental runs equal to full ones on randomised stores
(late events, re-imported orders, merges), CLV against :mod:`tessera.domain.clv` called directly,
and the catalogue filling in the models' enum values."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pytest

from tessera.domain import clv as clv_model
from tessera.domain.tags import Tag
from tessera.services import tag_catalogue, tag_runs
from tessera.services.tag_catalogue import CatalogueError
from tessera.services.tag_runs import context, run_tags
from tessera.services.tag_values import RunResult
from tessera.tagmodels import models, shape_body
from tessera.tagmodels.lifecycle import AIPL, STAGES
from tessera.tagmodels.purchases import local_day, state
from tessera.tagmodels.rfm import GROUPS
from tests.tags.handmade import HandStore

NOW = datetime(2026, 3, 1, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai: ago(d) is d local days back
T0 = NOW.replace(tzinfo=None)
EVENT_NAMES = ["Order Completed", "Product Viewed", "Signed In", "首页"]
IDS = pa.list_(pa.struct([("id_type", pa.string()), ("id_value", pa.string())]))


def ago(days: float, now: datetime = T0) -> datetime:
    return now - timedelta(days=days)


class Store(HandStore):
    """An instance whose analytic store the test fills directly. Profile p starts with observation
    1000 + p; ``link`` adds more observations to a profile (or moves one: a merge)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, now=NOW, event_names=EVENT_NAMES)
        self._events: list[tuple[Any, ...]] = []
        self._orders: dict[str, tuple[Any, ...]] = {}

    @property
    def now(self) -> datetime:
        return self.clock.now().replace(tzinfo=None)

    def profiles(self, idxs: list[int], first_seen: datetime | None = None) -> None:
        n = len(idxs)
        self._insert("profiles", {"profile_idx": pa.array(idxs, pa.int32()), "profile_id": [f"p_{i}" for i in idxs],
                                  "created_at": [ago(500)] * n})  # fmt: skip
        for i in idxs:
            self.link(1000 + i, i, first_seen or ago(400))

    def link(self, obs: int, profile: int, first_seen: datetime) -> None:
        self.cur.execute("DELETE FROM identity_links WHERE obs_idx = ?", [obs])
        self._insert("identity_links", {
            "obs_idx": pa.array([obs], pa.int64()), "key_hash": pa.array([obs], pa.uint64()), "ids_key": [f"k{obs}"],
            "ids": pa.array([[]], IDS), "first_seen": [first_seen], "profile_idx": pa.array([profile], pa.int32()),
        })  # fmt: skip

    def event(self, p: int, name: str, t: datetime, *, revenue: float | None = None, order_id: str | None = None,
              type: str = "track", obs: int | None = None, received: datetime | None = None) -> None:  # fmt: skip
        """An event, appended (in call order) at the next flush."""
        self._msg += 1
        self._events.append((f"m{self._msg}", type, EVENT_NAMES.index(name) + 1, t, received or t, obs or 1000 + p,
                             order_id, revenue))  # fmt: skip

    def order(self, order_id: str, p: int, t: datetime, total: float, status: str | None = "paid", *,
              import_id: str = "imp1", obs: int | None = None) -> None:  # fmt: skip
        """An order row, written (replacing the row with its id, as an import does) at the next flush."""
        self._orders[order_id] = (obs or 1000 + p, t, total, status, import_id)

    def flush(self) -> None:
        if self._events:
            cols = list(zip(*self._events, strict=True))
            self._insert("events", {
                "message_id": cols[0], "source_id": pa.array([1] * len(cols[0]), pa.int32()), "type": cols[1],
                "event_id": pa.array(cols[2], pa.int32()), "timestamp": cols[3], "received_at": cols[4],
                "identity_idx": pa.array(cols[5], pa.int64()), "order_id": pa.array(cols[6], pa.string()),
                "revenue": pa.array(cols[7], pa.float64()),
            })  # fmt: skip
            self._events = []
        if self._orders:
            ids = list(self._orders)
            self.cur.execute("DELETE FROM orders WHERE list_contains(?, order_id)", [ids])
            cols = list(zip(*self._orders.values(), strict=True))
            self._insert("orders", {"order_id": ids, "identity_idx": pa.array(cols[0], pa.int64()), "ordered_at": cols[1],
                                    "total": cols[2], "status": pa.array(cols[3], pa.string()), "import_id": cols[4]})  # fmt: skip
            self._orders = {}

    def customer(self, p: int, registered: datetime, level: str | None = None) -> None:
        self._insert("customers", {"customer_id": [f"c{p}"], "identity_idx": pa.array([1000 + p], pa.int64()),
                                   "registered_at": [registered], "member_level": pa.array([level], pa.string())})  # fmt: skip

    def tag(self, key: str, model: str, params: dict[str, Any] | None = None) -> Tag:
        body = {"key": key, "name": key, "name_en": key, "category": "value", "kind": "model",
                "model": {"name": model, "params": params or {}}}  # fmt: skip
        with self.inst.operational.session() as s:
            return tag_catalogue.create_tag(session=s, body=body, now=NOW)

    def run(self, *tags: Tag, incremental: bool = False) -> list[RunResult]:
        self.flush()
        results = run_tags(self.inst, list(tags), incremental=incremental)
        assert all(r.status == "succeeded" for r in results), [r.error for r in results]
        return results

    def values(self, key: str) -> dict[int, str]:
        rows = self.cur.execute(
            "SELECT profile_idx, value FROM profile_tags WHERE tag_key = ? ORDER BY profile_idx", [key]
        ).fetchall()
        return {int(p): v for p, v in rows}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path)
    yield s
    s.close()


# -- RFM ---------------------------------------------------------------------------------------------
def _rfm_store(store: Store) -> None:
    """Buyers 1-7 and 9 land in one group each (thresholds); 8 bought before the window, 10 never."""
    store.profiles(list(range(1, 11)))
    # 1: two orders, an event without order id; a cancelled order and its event do not count
    store.order("o1", 1, ago(5), 800)
    store.order("o2", 1, ago(40), 400, "Completed")
    store.event(1, "Order Completed", ago(60), revenue=300)
    store.order("o3", 1, ago(2), 9999, " Cancelled ")
    store.event(1, "Order Completed", ago(2), revenue=9999, order_id="o3")
    # 2: one order present as an order row and as its event: counted once
    store.order("w1", 2, ago(10), 2000)
    store.event(2, "Order Completed", ago(10), revenue=2000, order_id="w1")
    store.order("o4", 3, ago(200), 700)
    store.order("o5", 3, ago(250), 500, None)
    store.order("o6", 4, ago(300), 5000, "shipped")
    for i, d in enumerate((1, 20, 50, 80)):  # 5: four event-only orders, one sent twice
        store.event(5, "Order Completed", ago(d), revenue=100, order_id=f"x{i}")
    store.event(5, "Order Completed", ago(0.5), revenue=100, order_id="x0")
    store.order("o7", 6, ago(30), 100)
    store.order("o8", 7, ago(120), 150)
    store.order("o9", 7, ago(150), 150, "SHIPPED")
    store.order("o10", 8, ago(400), 999)
    store.order("o11", 9, ago(250), 50)
    store.order("o12", 10, ago(3), 500, "已退款")
    store.event(10, "Product Viewed", ago(1))


#: (R days, F, M) per buyer, read off _rfm_store.
RFM_RAW = {1: (5, 3, 1500), 2: (10, 1, 2000), 3: (200, 2, 1200), 4: (300, 1, 5000), 5: (1, 4, 400), 6: (30, 1, 100),
           7: (120, 2, 300), 9: (250, 1, 50)}  # fmt: skip


def test_rfm_with_thresholds_gives_the_groups_worked_out_by_hand(store: Store) -> None:
    _rfm_store(store)
    th = {"method": "threshold", "split": "threshold"}
    tags = [store.tag(f"rfm_{o}", "rfm", {**th, "output": o}) for o in ("group", "score", "r", "recency", "monetary")]
    store.run(*tags)
    assert store.values("rfm_group") == {1: "重要价值", 2: "重要发展", 3: "重要保持", 4: "重要挽留", 5: "一般价值",
                                         6: "一般发展", 7: "一般保持", 9: "一般挽留"}  # fmt: skip
    # R: 1 + edges (30, 90, 180, 270) above R; F: 1 + edges (2, 3, 5, 8) ≤ F; M: 1 + (300, 1000, 3000, 10000) ≤ M
    assert store.values("rfm_score") == {1: "533", 2: "513", 3: "223", 4: "114", 5: "532", 6: "411", 7: "322",
                                         9: "211"}  # fmt: skip
    assert store.values("rfm_r") == {p: s[0] for p, s in store.values("rfm_score").items()}
    assert store.values("rfm_recency") == {p: str(r) for p, (r, _, _) in RFM_RAW.items()}
    assert {p: float(v) for p, v in store.values("rfm_monetary").items()} == {p: m for p, (_, _, m) in RFM_RAW.items()}
    status, details, _ = store.last_run("rfm_group")
    assert status == "succeeded" and details["buyers"] == 8 and details["purchases"] == "rebuilt"


def _quantile_scores(raw: dict[int, tuple[int, int, float]], bins: int) -> dict[int, tuple[int, int, int]]:
    """The documented rule in plain Python: cut point k = the ⌈k·n/bins⌉-th smallest value of −R, F
    and M; score = 1 + cut points the value is above."""
    out: dict[int, list[int]] = {p: [] for p in raw}
    for dim in range(3):
        vals = {p: (-v[0] if dim == 0 else v[dim]) for p, v in raw.items()}
        ordered = sorted(vals.values())
        n = len(ordered)
        cuts = [ordered[(k * n + bins - 1) // bins - 1] for k in range(1, bins)]
        for p, v in vals.items():
            out[p].append(1 + sum(v > c for c in cuts))
    return {p: (s[0], s[1], s[2]) for p, s in out.items()}


@pytest.mark.parametrize("bins", [5, 3])
def test_rfm_quantiles_and_the_mean_split_follow_the_documented_rule(store: Store, bins: int) -> None:
    _rfm_store(store)
    score, group = (
        store.tag("rfm_q_score", "rfm", {"output": "score", "bins": bins}),
        store.tag("rfm_q", "rfm", {"bins": bins}),
    )
    store.run(score, group)
    scores = _quantile_scores(RFM_RAW, bins)
    assert store.values("rfm_q_score") == {p: "".join(map(str, s)) for p, s in scores.items()}
    means = [sum(s[d] for s in scores.values()) / len(scores) for d in range(3)]
    want = {}
    for p, (r, f, m) in scores.items():
        r_hi, f_hi, m_hi = r > means[0], f > means[1], m > means[2]
        want[p] = GROUPS[4 * (not m_hi) + 2 * (not r_hi) + (not f_hi)]
    assert store.values("rfm_q") == want
    details = store.last_run("rfm_q")[1]
    assert details["cut_points"]["recency_days"] == sorted(details["cut_points"]["recency_days"], reverse=True)
    assert details["mean_scores"] == {k: pytest.approx(v) for k, v in zip("rfm", means, strict=True)}
    if bins == 5:  # by hand: −R sorted −300 −250 −200 −120 −30 −10 −5 −1, cut points the 2nd, 4th, 5th, 7th
        assert details["cut_points"]["recency_days"] == [250, 120, 30, 5]
        assert details["cut_points"]["monetary"] == [100, 400, 1200, 2000]
        assert scores[5] == (5, 5, 2) and store.values("rfm_q")[5] == "一般价值"


def test_rfm_window_and_a_narrow_one(store: Store) -> None:
    _rfm_store(store)
    tag = store.tag("rfm_90", "rfm", {"output": "frequency", "window_days": 90})
    store.run(tag)
    # only purchases of the last 90 local days: buyers 1 (3), 2, 5 (4) and 6
    assert store.values("rfm_90") == {1: "3", 2: "1", 5: "4", 6: "1"}


# -- lifecycle and AIPL ------------------------------------------------------------------------------
def test_every_lifecycle_row_of_the_decision_table(store: Store) -> None:
    store.profiles(list(range(1, 13)))
    for d in (10, 50, 120):
        store.order(f"a{d}", 1, ago(d), 100)  # 1: 3 purchases, last 10 days ago → 成熟期
    store.event(2, "Order Completed", ago(10), revenue=50)  # 2: one → 成长期
    for d in (100, 150, 200, 250, 300):
        store.order(f"c{d}", 3, ago(d), 100)  # 3: last 100 days ago → 休眠期
    store.order("d1", 4, ago(200), 100)  # 4: 200 → 流失期
    store.link(1005, 5, ago(10))  # 5: never bought, first seen 10 days ago → 导入期
    store.event(6, "Signed In", ago(20))  # 6: old profile seen 20 days ago → 导入期
    store.event(7, "Product Viewed", ago(100))  # 7: seen 100 days ago → 休眠期
    store.event(8, "Product Viewed", ago(200))  # 8: seen 200 days ago → 流失期
    store.order("e1", 9, ago(90), 100)  # 9: exactly dormant_days → 休眠期
    store.order("e2", 10, ago(89), 100)  # 10: a day less → 成长期
    far = 5_000_000_000  # a sparse observation id: profiles are found by binary search
    store.link(far, 11, ago(300))  # 11: two observations, the newer seen 5 days ago → 导入期
    store.event(11, "Product Viewed", ago(5), obs=far)
    store.order("f1", 12, ago(10), 100, "cancelled")  # 12: only a cancelled order, seen 10 days ago → 导入期
    store.event(12, "Product Viewed", ago(10))
    # 13, 14: profiles without any observation: their own times decide (created 500 days ago, first seen 5)
    store.cur.execute("INSERT INTO profiles (profile_idx, profile_id, created_at, first_seen) VALUES "
                      "(13, 'p_13', ?, NULL), (14, 'p_14', ?, ?)", [ago(500), ago(500), ago(5)])  # fmt: skip
    tag = store.tag("stage", "lifecycle")
    assert tag.enum_values == list(STAGES)
    store.run(tag)
    want = {1: "成熟期", 2: "成长期", 3: "休眠期", 4: "流失期", 5: "导入期", 6: "导入期", 7: "休眠期", 8: "流失期",
            9: "休眠期", 10: "成长期", 11: "导入期", 12: "导入期", 13: "流失期", 14: "导入期"}  # fmt: skip
    assert store.values("stage") == want
    assert store.last_run("stage")[1]["stages"] == {s: list(want.values()).count(s) for s in STAGES}
    # a scoped run (the event-driven path) computes its profiles only
    store.order("g1", 5, ago(1), 100, import_id="imp2")
    store.order("g2", 6, ago(1), 100, import_id="imp2")
    store.flush()
    results = run_tags(store.inst, [tag], scope=[5], incremental=True)
    assert results[0].status == "succeeded" and results[0].profiles == 1
    assert store.values("stage") == {**want, 5: "成长期"}


def test_lifecycle_grace_for_new_profiles_and_registration(store: Store) -> None:
    store.profiles([1, 2], first_seen=ago(50))
    store.customer(2, ago(300))  # registered long before it was first seen
    grace = store.tag("stage_grace", "lifecycle", {"intro_days": 120, "dormant_days": 30, "churn_days": 200})
    plain = store.tag("stage_plain", "lifecycle")
    store.run(grace, plain)
    assert store.values("stage_grace") == {1: "导入期", 2: "休眠期"}
    assert store.values("stage_plain") == {1: "导入期", 2: "导入期"}
    with pytest.raises(ValueError, match="dormant_days must be less than churn_days"):
        shape_body(
            {"kind": "model", "model": {"name": "lifecycle", "params": {"dormant_days": 200, "churn_days": 100}}}
        )


def test_aipl_stages(store: Store) -> None:
    store.profiles(list(range(1, 10)))
    store.order("a", 1, ago(10), 100)
    store.order("b", 1, ago(200), 100)  # 1: two purchases in the year → 忠诚
    store.order("c", 2, ago(10), 100)  # 2: → 购买
    store.event(3, "Product Viewed", ago(10))  # 3: → 兴趣
    store.event(4, "Signed In", ago(10))  # 4: → 认知
    store.event(5, "Product Viewed", ago(40))  # 5: interest too long ago → 认知
    store.event(6, "Signed In", ago(400))  # 6: nothing this year → no value
    store.customer(7, ago(100), "黑钻")  # 7: a 黑钻 member who viewed → 兴趣, or 忠诚 by level
    store.event(7, "Product Viewed", ago(3))
    store.event(8, "首页", ago(5), type="page")  # 8: a page view → 认知, or 兴趣 with page views
    store.order("d", 9, ago(400), 100)  # 9: bought before the year → no value
    plain = store.tag("aipl", "aipl")
    assert plain.enum_values == list(AIPL)
    levels = store.tag("aipl_levels", "aipl", {"loyal_member_levels": ["黑钻"], "interest_page_views": True})
    store.run(plain, levels)
    assert store.values("aipl") == {1: "忠诚", 2: "购买", 3: "兴趣", 4: "认知", 5: "认知", 7: "兴趣", 8: "认知"}
    assert store.values("aipl_levels") == {1: "忠诚", 2: "购买", 3: "兴趣", 4: "认知", 5: "认知", 7: "忠诚", 8: "兴趣"}


def test_a_scoped_run_changes_only_its_profiles(store: Store) -> None:
    _rfm_store(store)
    tag = store.tag("rfm_g", "rfm")
    store.run(tag)
    before = store.values("rfm_g")
    store.order("late", 6, ago(1), 50_000, import_id="imp2")  # 6 becomes a big spender
    store.order("late2", 9, ago(1), 50_000, import_id="imp2")
    store.flush()
    results = run_tags(store.inst, [tag], scope=[6], incremental=True)
    assert results[0].status == "succeeded" and results[0].details["scoped"]
    after = store.values("rfm_g")
    assert after[6] != before[6] and after[9] == before[9]
    assert {p: v for p, v in after.items() if p != 6} == {p: v for p, v in before.items() if p != 6}


def test_a_preview_uses_the_stored_state(store: Store) -> None:
    _rfm_store(store)
    store.run(store.tag("rfm_g", "rfm"))
    store.event(6, "Order Completed", ago(1), revenue=10)  # folded in by the preview, not rebuilt
    store.flush()
    store.clock.advance(timedelta(hours=1))
    got = tag_runs.preview(store.inst, {"kind": "model", "model": {"name": "rfm", "params": {"output": "frequency"}}})
    assert got["holders"] == 8 and {v["value"] for v in got["values"]} == {"1", "2", "3", "4"}
    st = state(store.cur, "purchases")
    assert st is not None and st.built_at == T0 and st.updated_at == T0 + timedelta(hours=1)
    assert store.cur.execute("SELECT count(*) FROM tag_purchases WHERE order_id IS NULL").fetchall()[0][0] == 2


# -- incremental == full -----------------------------------------------------------------------------
def _random_activity(store: Store, rng: random.Random, profiles: int, *, start: float, end: float, tag: str) -> None:
    """Random events and orders between ``start`` and ``end`` days ago (as of the store's now)."""
    now = store.now
    for k in range(rng.randint(10, 40)):
        p = rng.randint(1, profiles)
        t = ago(rng.uniform(end, start), now)
        kind = rng.random()
        if kind < 0.35:
            store.event(p, rng.choice(["Product Viewed", "Signed In"]), t)
        elif kind < 0.6:  # an event-only purchase, maybe with an order id seen before
            oid = rng.choice([None, f"ev{rng.randint(0, 30)}", f"or{rng.randint(0, 30)}"])
            store.event(p, "Order Completed", t, revenue=round(rng.uniform(10, 900), 2), order_id=oid)
        else:  # an order row of this import, new or re-imported with another status
            oid = f"or{rng.randint(0, 30)}" if rng.random() < 0.5 else f"{tag}-{k}"
            status = rng.choice(["paid", "paid", "completed", "refunded", "Cancelled", None])
            store.order(oid, p, t, round(rng.uniform(10, 900), 2), status, import_id=tag)


@pytest.mark.parametrize("seed", range(4))
def test_incremental_runs_equal_full_runs(store: Store, seed: int) -> None:
    rng = random.Random(seed)
    n = 25
    store.profiles(list(range(1, n + 1)))
    _random_activity(store, rng, n, start=400, end=1, tag="imp0")
    tags = [store.tag("g", "rfm"), store.tag("s", "rfm", {"output": "score", "method": "threshold"}),
            store.tag("life", "lifecycle", {"dormant_days": 30, "churn_days": 60}), store.tag("aipl", "aipl")]  # fmt: skip
    store.run(*tags)
    for step in range(3):
        store.clock.advance(timedelta(days=rng.choice([0, 1, 3])))
        _random_activity(store, rng, n, start=2, end=0, tag=f"imp{step + 1}")
        # late arrivals: old timestamps, received now
        store.event(rng.randint(1, n), "Order Completed", ago(rng.uniform(20, 300)), revenue=99.5,
                    received=store.now)  # fmt: skip
        # a merge: the observation the last step added (and its purchase) now belongs to another profile
        if step:
            store.link(4999 + step, rng.randint(1, n), ago(30))
        store.link(5000 + step, rng.randint(1, n), ago(30))
        store.event(0, "Order Completed", ago(3, store.now), revenue=10, obs=5000 + step)
        incremental = store.run(*tags, incremental=True)
        assert {r.details.get("purchases") for r in incremental} == {"updated"}
        got = {t.key: store.values(t.key) for t in tags}
        full = store.run(*tags)
        # the first model rebuilds; the others find nothing changed since (a rebuild would give the same)
        assert [r.details["purchases"] for r in full] == ["rebuilt", "rebuilt", "kept", "kept"]
        assert {t.key: store.values(t.key) for t in tags} == got
        assert [(r.added, r.removed) for r in full] == [(0, 0)] * len(tags), step


def test_what_makes_a_run_rebuild_the_state(store: Store) -> None:
    _rfm_store(store)
    tag = store.tag("rfm_g", "rfm")
    store.run(tag)
    store.run(tag, incremental=True)
    assert store.last_run("rfm_g")[1]["purchases"] == "updated"
    store.cur.execute("INSERT INTO identity_log (logged_at, action, reason, run) VALUES (?, 'rebuild', 'test', 'r1')",
                      [T0])  # fmt: skip
    store.run(tag, incremental=True)
    details = store.last_run("rfm_g")[1]
    assert details["purchases"] == "rebuilt" and details["purchases_reason"] == "identity rebuilt since"
    # a deleted event (privacy) is noticed too
    store.cur.execute("DELETE FROM events WHERE message_id = (SELECT min(message_id) FROM events)")
    store.run(tag, incremental=True)
    details = store.last_run("rfm_g")[1]
    assert details["purchases"] == "rebuilt" and details["purchases_reason"] == "events deleted since"
    store.run(tag, incremental=True)
    assert store.last_run("rfm_g")[1]["purchases"] == "updated"
    store.run(tag)  # a full run after an incremental one rebuilds; a second one has nothing to redo
    assert store.last_run("rfm_g")[1]["purchases"] == "rebuilt"
    store.run(tag)
    assert store.last_run("rfm_g")[1]["purchases"] == "kept"


# -- CLV ---------------------------------------------------------------------------------------------
def _clv_store(store: Store, n: int = 300) -> dict[int, list[tuple[int, float]]]:
    """Buyers who buy as BG/NBD says (rate ~ Gamma, dropout after each purchase ~ Beta), over up to
    two years, at noon local time; returns each buyer's (days ago, amount) purchases."""
    rng = np.random.default_rng(11)
    store.profiles(list(range(1, n + 1)))
    history: dict[int, list[tuple[int, float]]] = {}
    for p in range(1, n + 1):
        lam, drop, spend = rng.gamma(0.5, 1 / 10), rng.beta(1, 4), rng.gamma(5, 30)
        first = int(rng.integers(0, 730))
        days, t = [first], float(first)
        while rng.random() > drop or len(days) == 1:
            t -= rng.exponential(1 / lam)
            if t < 0 or (len(days) > 1 and rng.random() < drop):
                break
            days.append(int(t))
        history[p] = [(d, round(float(rng.gamma(4, spend / 4)), 2)) for d in sorted(set(days), reverse=True)]
        for k, (d, amount) in enumerate(history[p]):
            store.order(f"p{p}-{k}", p, ago(d), amount)
    return history


def test_clv_matches_the_domain_functions_and_records_the_fit(store: Store) -> None:
    history = _clv_store(store)
    outputs = ("clv", "alive", "churn_risk", "expected_purchases")
    tags = [store.tag(f"clv_{o}", "clv", {"output": o, "horizon_days": 180}) for o in outputs]
    assert all(t.value_type == "number" and t.enum_values is None for t in tags)
    store.run(*tags)
    ps = sorted(history)
    x = np.array([len(history[p]) - 1 for p in ps], float)
    t_x = np.array([max(d for d, _ in history[p]) - min(d for d, _ in history[p]) for p in ps], float) / 7
    t_end = np.array([max(d for d, _ in history[p]) for p in ps], float) / 7
    m = np.array([np.mean([a for _, a in sorted(history[p], reverse=True)[1:]]) if len(history[p]) > 1 else 0
                  for p in ps])  # fmt: skip
    bg = clv_model.fit_bgnbd(x, t_x, t_end)
    gg = clv_model.fit_gamma_gamma(x, m)
    want = {
        "clv": clv_model.clv(bg, gg, x, t_x, t_end, m, months=6, discount_rate=0.01, period_days=7),
        "alive": clv_model.probability_alive(bg, x, t_x, t_end),
        "expected_purchases": clv_model.expected_purchases(bg, 180 / 7, x, t_x, t_end),
    }
    want["churn_risk"] = 1 - want["alive"]
    for o in outputs:
        got = store.values(f"clv_{o}")
        assert sorted(got) == ps
        digits = {"clv": 2, "expected_purchases": 3}.get(o, 4)
        assert [float(got[p]) for p in ps] == pytest.approx(want[o], abs=1.5 * 10**-digits), o
    status, details, _ = store.last_run("clv_clv")
    assert status == "succeeded"
    assert details["buyers"] == details["fit_buyers"] == len(ps)
    assert details["repeat_buyers"] == int((x > 0).sum()) and details["months"] == 6
    assert details["bgnbd"]["r"] == pytest.approx(bg.r, rel=1e-6)
    assert details["gamma_gamma"]["q"] == pytest.approx(gg.q, rel=1e-6)
    assert 0 < float(store.values("clv_alive")[ps[0]]) <= 1


def test_clv_refuses_with_too_few_repeat_buyers(store: Store) -> None:
    store.profiles([1, 2, 3])
    store.order("a", 1, ago(10), 100)
    store.order("b", 1, ago(20), 100)
    store.order("c", 2, ago(5), 100)
    tag = store.tag("clv", "clv")
    store.flush()
    results = run_tags(store.inst, [tag])
    assert results[0].status == "failed"
    assert "at least 50 repeat buyers" in (results[0].error or "") and "there are 1 among 2" in (results[0].error or "")
    assert store.values("clv") == {}


# -- the catalogue and the registry ------------------------------------------------------------------
def test_model_tags_get_their_enum_values_from_the_model(store: Store) -> None:
    body = {"key": "rfm_group", "name": "RFM分群", "name_en": "RFM group", "category": "value", "kind": "model",
            "model": {"name": "rfm", "params": {"output": "group"}}}  # fmt: skip
    with store.inst.operational.session() as s:
        tag = tag_catalogue.create_tag(session=s, body=body, now=NOW)
    assert tag.value_type == "enum" and tag.enum_values == list(GROUPS)
    assert tag.model is not None and tag.model.params["method"] == "quantile" and tag.model.params["bins"] == 5
    assert store.tag("r3", "rfm", {"output": "r", "bins": 3}).enum_values == ["1", "2", "3"]
    score = store.tag("s2", "rfm", {"output": "score", "bins": 2})
    assert score.enum_values == ["111", "112", "121", "122", "211", "212", "221", "222"]
    assert store.tag("m", "rfm", {"output": "monetary"}).value_type == "number"
    refusals = [
        ({"name": "rfm", "params": {"bins": 12}}, "model.params.bins"),
        ({"name": "rfm", "params": {"method": "threshold", "bins": 3}}, "model.params"),
        ({"name": "rfm", "params": {"colour": "red"}}, "model.params.colour"),
        ({"name": "clv", "params": {"output": "value"}}, "model.params.output"),
    ]
    for model, field in refusals:
        with pytest.raises(CatalogueError) as err, store.inst.operational.session() as s:
            tag_catalogue.create_tag(session=s, body={**body, "key": "x", "model": model}, now=NOW)
        assert err.value.field.startswith(field), (model, err.value.field, err.value.message)
    with pytest.raises(CatalogueError) as err, store.inst.operational.session() as s:
        tag_catalogue.create_tag(session=s, body={**body, "key": "y", "enum_values": ["高", "低"]}, now=NOW)
    assert err.value.field == "enum_values"
    specs = models()
    assert {"rfm", "lifecycle", "aipl", "clv"} <= specs.keys()
    assert specs["rfm"].incremental and specs["lifecycle"].incremental and not specs["clv"].incremental
    assert all(specs[k].title and specs[k].title_en and specs[k].method for k in ("rfm", "lifecycle", "aipl", "clv"))


@pytest.mark.parametrize("tz", ["Europe/Berlin", "America/New_York", "Asia/Shanghai"])
def test_local_days_are_exact_across_daylight_saving_changes(store: Store, tz: str) -> None:
    base = context(store.inst, trigger="manual")
    ctx = dataclasses.replace(base, eval=base.eval.model_copy(update={"timezone": tz}))
    since = datetime(2025, 1, 1)
    times = [since + timedelta(minutes=17 * k) for k in range(0, 60 * 24 * 430 // 17, 7)]
    sql, params = local_day("t", ctx, since)
    store.cur.register("_times", pa.table({"t": times}))
    got = [r[0] for r in store.cur.execute(f"SELECT {sql} FROM _times", params).fetchall()]
    store.cur.unregister("_times")
    want = [t.replace(tzinfo=UTC).astimezone(ZoneInfo(tz)).date() for t in times]
    assert got == want and isinstance(got[0], date)
