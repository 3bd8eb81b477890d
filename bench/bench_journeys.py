"""Journeys (客户旅程) at scale: a 1M-person SMS campaign, the scheduler, trigger-to-first-action latency.

Three figures (issue 6), each next to a baseline measured in the same run:

1. **campaign** — a static audience of ``--people`` (1,000,000) profiles with Chinese names and
   +86 mobiles (built in DuckDB, cached under ``/tmp/tessera-bench-journeys/cache``; ``--reuse``),
   an SMS channel pointing at the fake provider (``tests/fakes/sms_provider.py``, its own process,
   ``batch_size`` ``--sms-batch``), ``create_campaign`` for the audience, then the worker's rounds in
   this process — run due entries (admit), advance everyone (stepping), dispatch the outbox (guards,
   templates, channel, records) — until the outbox is empty; the provider's record file must hold
   ``--people`` unique messages. Baseline: the hand-written way — read the phones and names from
   DuckDB and POST the same batches to a second provider process with httpx (no journey, no guards,
   no durability). Target: ≤ 5 min.
2. **scheduler** — ``--scheduler-people`` (200,000) of them enter ``entry → wait 1 day → exit``;
   the clock moves a day and ``advance_due`` rounds step them all (person-steps/s). Baseline: a
   SQLAlchemy executemany UPDATE of the same journey_instances rows with the same columns, batch
   size and commits (the floor of the operational store). Target: ≥ 10,000 person-steps/s.
3. **trigger** — a real ``tessera serve`` process with a published ``Signed Up → SMS`` journey
   (the SMS channel points at a receiver in this process that records ``time.time()`` per message);
   ``--trigger-rate`` (1,000) ``Signed Up`` events/s for ``--trigger-seconds`` (30) through
   ``/v1/batch`` (batches of 50 every 50 ms, open loop), each event's send time in a property and
   each a different person (identified first). Latency = receive time − send time, per message.
   Baseline: the ``/v1/batch`` round trip of the same batches (collection alone). Target: p95 ≤ 1 s.

Guards: quiet hours and frequency caps are off (``""``) so nothing is held; consent, opt-out and
address checks and the rate limit (``--rate``, default the setting's 5,000/s) stay on.

Each run works in its own directory ``/tmp/tessera-bench-journeys/run-<pid>`` (removed at the end
unless ``--keep``); only the built profile store is shared (``cache/``). The campaign stops at
``--campaign-budget`` (600 s, twice the target, so that the default run ends in ~15 min) and then
projects its total from the measured rates; ``--campaign-budget 0`` runs it to the end.
``--breakdown`` times the functions inside the phases (and inside the server, for the trigger
figure); ``--profile`` runs cProfile over the campaign's phases.

    .venv/bin/python bench/bench_journeys.py [--people 1000000] [--reuse] [--only campaign|scheduler|trigger]
        [--scheduler-people 200000] [--trigger-rate 1000] [--trigger-seconds 30] [--postgres URL]
        [--campaign-budget 600] [--breakdown] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import httpx
import orjson

sys.path.insert(0, str(Path(__file__).parent))

from sqlalchemy import bindparam, func, select, update

from journey_world import (
    API_KEY,
    BENCH_DIR,
    CAMPAIGN_TARGETS,
    NOW,
    SERVER_TARGETS,
    ProviderProcess,
    Receiver,
    Timers,
    cached_store,
    describe,
    operational_url,
)
from tessera.clock import FrozenClock, SystemClock
from tessera.runtime import Instance
from tessera.services import channels as channels_service
from tessera.services import journeys as journeys_service
from tessera.services.journey_dispatch import Dispatcher
from tessera.services.journey_runner import advance_due, run_entries
from tessera.settings import JourneySettings, Settings, load_settings
from tessera.stores.models import AudienceRow, JourneyInstanceRow, JourneyOutboxRow

SMS_TEXT = "{{ profile.name }}您好！双十一会员日：全场满300减50，今晚24点截止，详询门店。回T退订"
SMS_TEXT_EN = "Hi {{ profile.name }}! Member day: 50 off every 300 until midnight. Reply T to opt out"
CAMPAIGN_TARGET_S = 300.0
STEPS_TARGET = 10_000.0
P95_TARGET_S = 1.0


@dataclass
class Figure:
    """One headline figure with its target and baseline (for the summary block)."""

    name: str
    value: str
    verdict: str
    baseline: str
    details: list[str] = field(default_factory=list)


def journey_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Guards that hold messages off (quiet hours, caps); consent / address checks stay on."""
    out: dict[str, Any] = {"worker": False, "quiet_hours": "", "cap_email": "", "cap_sms": "", "cap_push": "",
                           "cap_wechat": ""}  # fmt: skip
    if args.rate is not None:
        out["rate_per_second"] = args.rate
    if args.batch_size is not None:
        out["batch_size"] = args.batch_size
    if args.dispatch_batch is not None:
        out["dispatch_batch"] = args.dispatch_batch
    return out


def make_settings(args: argparse.Namespace, url: str) -> Settings:
    return load_settings(store={"operational_url": url, "duckdb_memory_limit": args.memory_limit},
                         journeys=journey_settings(args))  # fmt: skip


def add_static_audience(inst: Instance, audience_id: str, name: str, count: int) -> None:
    """A static audience of profiles 1..count: members in DuckDB, its row in the operational store."""
    now = inst.clock.now()
    with inst.analytic.transaction() as cur:
        cur.execute("DELETE FROM audience_members WHERE audience_id = ?", [audience_id])
        cur.execute(
            "INSERT INTO audience_members SELECT $a, profile_idx, profile_id, $now FROM profiles "
            "WHERE profile_idx <= $k ORDER BY profile_idx",
            {"a": audience_id, "now": now.replace(tzinfo=None), "k": count},
        )
    inst.analytic.changed("audience_members")
    with inst.operational.session() as s:
        s.add(AudienceRow(
            id=audience_id, name=name, name_en=None, description="bench_journeys", kind="static",
            definition={"type": "attribute", "field": "city", "op": "is_set"}, schedule=None, status="active",
            version=1, created_at=now, updated_at=now, refreshed_at=now, next_refresh_at=None, member_count=count,
        ))  # fmt: skip


def sms_channel(inst: Instance, url: str, batch: int) -> None:
    channels_service.create_channel(inst=inst, draft=channels_service.ChannelDraft(
        name="sms_bench", kind="sms", config={"url": url, "from": "TESSERA", "api_key": API_KEY, "batch_size": batch}))  # fmt: skip


def ratio(ours: float, base: float) -> str:
    return f"{ours / base:.2f}x" if base > 0 else "n/a"


def verdict(met: bool, miss: str) -> str:
    return "met" if met else f"missed by {miss}"


@contextmanager
def profiled(enabled: bool, label: str, top: int = 35) -> Iterator[None]:
    """cProfile around a block (``--profile``): prints the top functions by own and cumulative time."""
    if not enabled:
        yield
        return
    prof = cProfile.Profile()
    prof.enable()
    try:
        yield
    finally:
        prof.disable()
        for key in ("tottime", "cumulative"):
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats(key).print_stats(top)
            print(f"--- profile of {label}, by {key} ---")
            print("\n".join(buf.getvalue().splitlines()[: top + 12]))


# --- 1. campaign ----------------------------------------------------------------------------------


def campaign(args: argparse.Namespace, run_dir: Path, data: Path) -> Figure:
    n = args.people
    budget = args.campaign_budget or float("inf")
    provider = ProviderProcess(run_dir / "campaign-provider.jsonl")
    base_provider = ProviderProcess(run_dir / "campaign-baseline.jsonl")
    timers = Timers(CAMPAIGN_TARGETS) if args.breakdown else None
    try:
        with operational_url(args.postgres, run_dir, "campaign") as url:
            inst = Instance(data, settings=make_settings(args, url), clock=SystemClock())
            js: JourneySettings = inst.settings.journeys
            print(f"operational store: {describe(url)}")
            add_static_audience(inst, "aud_bench_all", "双十一全体会员", n)
            sms_channel(inst, provider.url, args.sms_batch)
            t = time.perf_counter()
            journey = journeys_service.create_campaign(inst=inst, draft=journeys_service.CampaignDraft(
                name="双十一会员日短信", name_en="Member day SMS", audience_id="aud_bench_all", channel="sms",
                channel_name="sms_bench", template={"body": {"zh": SMS_TEXT, "en": SMS_TEXT_EN}}))  # fmt: skip
            t_create = time.perf_counter() - t
            dispatcher = Dispatcher(inst)
            if timers is not None:
                timers.install()
            phases: dict[str, float] = {}
            rounds = {"step": 0, "dispatch": 0, "idle": 0}
            sent = failed = suppressed = held = 0
            stopped: str | None = None
            # The worker's round (journey_worker.one_round), phase by phase: due entries, then everyone
            # due is stepped, then the outbox is dispatched.
            t0 = time.perf_counter()
            with profiled(args.profile, "entry/admit"):
                runs = run_entries(inst=inst)
            phases["entry/admit"] = time.perf_counter() - t0
            admitted = sum(r.entered for r in runs)
            assert [r.error for r in runs if r.error] == [], [r.error for r in runs]
            t = time.perf_counter()
            steps = 0
            with profiled(args.profile, "stepping"):
                while True:
                    got = advance_due(inst=inst, limit=js.batch_size)
                    steps += got
                    rounds["step"] += 1
                    if got < js.batch_size:
                        break
                    if time.perf_counter() - t0 > budget:
                        stopped = "stepping"
                        break
            phases["stepping"] = time.perf_counter() - t
            t = time.perf_counter()
            # stopped while stepping: dispatch for a while to measure its rate
            until = t + args.dispatch_sample if stopped else t0 + budget
            with profiled(args.profile, "dispatch"):
                while True:
                    r = dispatcher.dispatch_once()
                    rounds["dispatch"] += 1
                    sent, failed, suppressed, held = (sent + r.sent, failed + r.failed, suppressed + r.suppressed,
                                                      held + r.held)  # fmt: skip
                    if r.taken == 0:
                        break
                    if r.sent + r.failed + r.suppressed + r.held + r.retried == 0:
                        rounds["idle"] += 1  # the rate limiter granted nothing: the worker would wait too
                        time.sleep(0.01)
                    if time.perf_counter() > until:
                        stopped = stopped or "dispatch"
                        break
            phases["dispatch"] = time.perf_counter() - t
            total = time.perf_counter() - t0
            if timers is not None:
                timers.uninstall()
            with inst.operational.session() as s:
                statuses = dict(
                    s.execute(select(JourneyOutboxRow.status, func.count()).group_by(JourneyOutboxRow.status)).all()
                )
            dispatcher.close()
            inst.close()
        lines, unique = provider.received()
        # baseline: the obvious hand-written way, same batches, another provider process
        t = time.perf_counter()
        base_n = hand_written_campaign(data / "analytics.duckdb", base_provider.url, args.sms_batch)
        base = time.perf_counter() - t
        base_lines, base_unique = base_provider.received()
    finally:
        provider.stop()
        base_provider.stop()
    print(f"campaign {journey.id}: created and published in {t_create:.2f} s; {len(runs)} run, {admitted:,} admitted")
    step_rate = steps / phases["stepping"]
    send_rate = unique / phases["dispatch"] if phases["dispatch"] > 0 else 0.0
    for name, secs, note in (
        ("entry/admit", phases["entry/admit"], f"{admitted:,} admitted ({admitted / phases['entry/admit']:,.0f}/s)"),
        ("stepping", phases["stepping"], f"{steps:,} steps ({step_rate:,.0f}/s), {rounds['step']} rounds of "
                                         f"{js.batch_size}"),
        ("dispatch", phases["dispatch"], f"{unique:,} messages ({send_rate:,.0f}/s), {rounds['dispatch']} rounds of "
                                         f"{js.dispatch_batch}, {rounds['idle']} waiting for the rate limiter "
                                         f"({js.rate_per_second:g}/s)"),
    ):  # fmt: skip
        print(f"  {name:<12} {secs:8.1f} s   {note}")
    print(f"  {'total':<12} {total:8.1f} s")
    if timers is not None:
        timers.report({k: v for k, v in phases.items() if k != "entry/admit"})
    print(f"  outbox: {statuses}; sent {sent:,}, failed {failed:,}, suppressed {suppressed:,}, held {held:,}")
    print(f"  provider received {lines:,} messages, {unique:,} unique; {unique / total:,.0f} messages/s end to end")
    print(f"  baseline (DuckDB read + httpx POSTs of {args.sms_batch}, no journey): {base_n:,} messages in {base:.1f} s "
          f"({base_n / base:,.0f}/s); provider got {base_unique:,} unique of {base_lines:,}")  # fmt: skip
    details = [", ".join(f"{k} {v:.1f} s" for k, v in phases.items()), f"operational store {describe(url, short=True)}"]
    if stopped is None:
        ok = unique == n and total <= CAMPAIGN_TARGET_S
        miss = f"{total - CAMPAIGN_TARGET_S:.0f} s" if total > CAMPAIGN_TARGET_S else f"{n - unique:,} undelivered"
        value = f"{total:.1f} s ({unique:,} unique messages, {unique / total:,.0f}/s)"
        fig_ratio = ratio(total, base)
    else:
        # Projected from the measured rates (stepping slows down with the rows still active, so the
        # rate of the first part is the slower one; the projection errs long, if anything).
        projected = phases["entry/admit"] + admitted / step_rate + (admitted / send_rate if send_rate else float("inf"))
        print(f"  stopped in {stopped} at the {args.campaign_budget:.0f} s budget (--campaign-budget): {unique:,} of "
              f"{n:,} delivered; projected total from the measured rates: {projected:.0f} s")  # fmt: skip
        ok = False
        miss = f"~{projected - CAMPAIGN_TARGET_S:.0f} s (projected)"
        value = (f"{unique:,} of {n:,} delivered in the {total:.0f} s budget; ~{projected:.0f} s projected "
                 f"(stepping {step_rate:,.0f}/s, dispatch {send_rate:,.0f}/s)")  # fmt: skip
        fig_ratio = ratio(projected, base) + " (projected)"
    return Figure(
        name=f"campaign, {n:,} people fully delivered to the fake SMS provider",
        value=value,
        verdict=f"target <= 5 min: {verdict(ok, miss)}",
        baseline=f"DuckDB read + httpx POSTs of the same batches, no journey: {base:.1f} s ({base_n / base:,.0f}/s); "
        f"ours = {fig_ratio}",
        details=details,
    )


def hand_written_campaign(path: Path, url: str, batch: int) -> int:
    """Read phone + name of the audience from DuckDB, POST batches of ``batch`` to the provider."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        rows = con.execute(
            "SELECT m.profile_id, i.id_value, json_extract_string(a.traits, '$.name') FROM audience_members m "
            "JOIN profile_identifiers i ON i.profile_idx = m.profile_idx AND i.id_type = 'phone' "
            "JOIN profile_attributes a ON a.profile_idx = m.profile_idx WHERE m.audience_id = 'aud_bench_all'"
        ).fetchall()
    finally:
        con.close()
    text = SMS_TEXT.replace("{{ profile.name }}", "{}")
    headers = {"authorization": f"Bearer {API_KEY}", "content-type": "application/json"}
    with httpx.Client(timeout=30) as client:
        for i in range(0, len(rows), batch):
            body = {"messages": [{"to": phone, "from": "TESSERA", "body": text.format(name), "message_id": f"b-{pid}"}
                                 for pid, phone, name in rows[i : i + batch]]}  # fmt: skip
            client.post(url, content=orjson.dumps(body), headers=headers).raise_for_status()
    return len(rows)


# --- 2. scheduler ---------------------------------------------------------------------------------


def scheduler(args: argparse.Namespace, run_dir: Path, data: Path) -> Figure:
    k = min(args.scheduler_people, args.people)
    start = NOW.replace(tzinfo=UTC)
    clock = FrozenClock(start)
    with operational_url(args.postgres, run_dir, "scheduler") as url:
        inst = Instance(data, settings=make_settings(args, url), clock=clock)
        batch = inst.settings.journeys.batch_size
        print(f"operational store: {describe(url)}")
        add_static_audience(inst, "aud_bench_sched", "调度基准人群", k)
        draft = journeys_service.JourneyDraft(name="等待一天", definition={
            "nodes": [
                {"id": "in", "type": "entry", "data": {"audience": {"audience_id": "aud_bench_sched"}}},
                {"id": "wait", "type": "wait", "data": {"mode": "duration", "span": {"days": 1}}},
                {"id": "out", "type": "exit"},
            ],
            "edges": [{"source": "in", "target": "wait"}, {"source": "wait", "target": "out"}],
        })  # fmt: skip
        jid = journeys_service.create_journey(inst=inst, draft=draft).id
        journeys_service.publish(inst=inst, journey_id=jid)

        def drain() -> tuple[int, float, int]:
            t = time.perf_counter()
            steps = rounds = 0
            while True:
                got = advance_due(inst=inst, limit=batch)
                steps += got
                rounds += 1
                if got < batch:
                    return steps, time.perf_counter() - t, rounds

        t = time.perf_counter()
        runs = run_entries(inst=inst)
        t_admit = time.perf_counter() - t
        admitted = sum(r.entered for r in runs)
        entry_steps, t_entry, _ = drain()
        clock.advance(timedelta(days=1, seconds=1))
        timers = Timers(tuple(t for t in CAMPAIGN_TARGETS if t[0] == "stepping")) if args.breakdown else None
        if timers is not None:
            timers.install()
        with profiled(args.profile, "timer steps"):
            timer_steps, t_timer, rounds = drain()
        if timers is not None:
            timers.uninstall()
        with inst.operational.session() as s:
            statuses = dict(
                s.execute(
                    select(JourneyInstanceRow.status, func.count())
                    .where(JourneyInstanceRow.journey_id == jid)
                    .group_by(JourneyInstanceRow.status)
                ).all()
            )
        base = store_floor(inst, jid, batch)
        inst.close()
    rate = timer_steps / t_timer
    base_rate = timer_steps / base
    print(f"{admitted:,} admitted in {t_admit:.1f} s ({admitted / t_admit:,.0f}/s)")
    print(f"  fresh entries  entry -> wait:  {entry_steps:,} steps in {t_entry:.1f} s ({entry_steps / t_entry:,.0f}/s)")
    print(f"  a day later    wait -> exit:   {timer_steps:,} steps in {t_timer:.1f} s ({rate:,.0f}/s, "
          f"{rounds} rounds of {batch})")  # fmt: skip
    if timers is not None:
        timers.report({"stepping": t_timer})
    print(f"  states afterwards: {statuses}")
    print(f"  baseline: executemany UPDATE of the same {timer_steps:,} rows, same columns and batches: {base:.2f} s "
          f"({base_rate:,.0f} rows/s)")  # fmt: skip
    ok = rate >= STEPS_TARGET and timer_steps == k
    return Figure(
        name=f"scheduler, {k:,} people due a day later (wait -> exit)",
        value=f"{rate:,.0f} person-steps/s ({timer_steps:,} in {t_timer:.1f} s)",
        verdict=f"target >= 10,000/s: {verdict(ok, f'{STEPS_TARGET - rate:,.0f}/s')}",
        baseline=f"executemany UPDATE of the same rows (the store's floor): {base_rate:,.0f} rows/s; "
        f"ours = {t_timer / base:.1f}x its time",
        details=[
            f"fresh entries (entry -> wait) {entry_steps / t_entry:,.0f}/s; admitting {admitted / t_admit:,.0f}/s"
        ],
    )


def store_floor(inst: Instance, journey_id: str, batch: int) -> float:
    """Time an executemany UPDATE of the journey's instance rows (the columns ``_advance`` writes), in
    transactions of ``batch`` rows — the same statement and values, so nothing changes."""
    cols = ("node_id", "status", "due_at", "wait_event", "state", "updated_at", "ended_at", "converted_at")
    table: Any = JourneyInstanceRow.__table__
    with inst.operational.session() as s:
        rows = [
            {"b_id": r.id, **{c: getattr(r, c) for c in cols}}
            for r in s.execute(select(table).where(table.c.journey_id == journey_id).order_by(table.c.id))
        ]
    stmt = update(table).where(table.c.id == bindparam("b_id")).values({c: bindparam(c) for c in cols})
    t = time.perf_counter()
    for i in range(0, len(rows), batch):
        with inst.operational.engine.begin() as con:
            con.execute(stmt, rows[i : i + batch])
    return time.perf_counter() - t


# --- 3. trigger to first action -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``tessera serve`` in a child process (as tests/conftest.py ServerProcess)."""

    def __init__(self, data: Path, env: dict[str, str], timers_out: Path | None = None) -> None:
        self.data = data
        info = data / "server.json"
        info.unlink(missing_ok=True)
        self.log = open(data.parent / "server.log", "wb")  # noqa: SIM115 (closed by stop)
        serve = ["serve", "--data-dir", str(data), "--port", str(free_port())]
        if timers_out is None:
            cmd = [sys.executable, "-m", "tessera.cli.main", *serve]
        else:  # the same server with the journey worker's and loader's functions timed (--breakdown)
            cmd = [
                sys.executable,
                str(Path(__file__).parent / "journey_world.py"),
                "timed-serve",
                str(timers_out),
                *serve,
            ]
        self.proc = subprocess.Popen(cmd, env={**os.environ, "TESSERA_LOG_LEVEL": "warning", **env}, stdout=self.log,
                                     stderr=subprocess.STDOUT)  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.output()}")
            if info.exists():
                try:
                    got = orjson.loads(info.read_bytes())
                except orjson.JSONDecodeError:
                    got = None
                if got and got.get("pid") == self.proc.pid:
                    self.url, self.token = str(got["url"]), str(got["admin_token"])
                    return
            time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.output()}")

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-3000:]

    def admin(self, method: str, path: str) -> Any:
        r = httpx.request(method, self.url + path, headers={"Authorization": f"Bearer {self.token}"}, timeout=300)
        r.raise_for_status()
        return r.json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def phone_of(k: int) -> str:
    return f"+86139{(k * 7919 + 104729) % 100_000_000:08d}"


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def open_loop(url: str, write_key: str, people: range, rate: float, per_batch: int,
                    sent_at: dict[str, float]) -> tuple[float, list[float], int]:  # fmt: skip
    """Send one ``Signed Up`` per person at ``rate`` events/s in batches of ``per_batch`` on a fixed
    schedule (a slow answer does not delay the next batch); returns (seconds, round trips, errors)."""
    interval = per_batch / rate
    trips: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=url, auth=(write_key, ""), timeout=30, limits=limits) as client:

        async def post(ks: list[int]) -> None:
            nonlocal errors
            t = time.time()
            batch = []
            for k in ks:
                sent_at[phone_of(k)] = t
                batch.append({"type": "track", "event": "Signed Up", "userId": f"u{k}", "messageId": str(uuid.uuid4()),
                              "timestamp": datetime.fromtimestamp(t, UTC).isoformat(),
                              "properties": {"sent_at": t, "method": "phone"}})  # fmt: skip
            r = await client.post("/v1/batch", content=orjson.dumps({"batch": batch}),
                                  headers={"content-type": "application/json"})  # fmt: skip
            trips.append(time.time() - t)
            if r.status_code != 200:
                errors += 1

        tasks = []
        ks = list(people)
        t0 = time.perf_counter()
        for j, i in enumerate(range(0, len(ks), per_batch)):
            delay = t0 + j * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(ks[i : i + per_batch])))
        span = time.perf_counter() - t0 + interval  # the last batch left at span - interval
        await asyncio.gather(*tasks)
        return span, trips, errors


def trigger(args: argparse.Namespace, run_dir: Path) -> Figure:
    per_batch = 50
    n_events = int(args.trigger_rate * args.trigger_seconds)
    warm = 200
    root = run_dir / "trigger"
    shutil.rmtree(root, ignore_errors=True)
    data = root / "data"
    data.mkdir(parents=True)
    receiver = Receiver()
    env = {"TESSERA_JOURNEYS_QUIET_HOURS": "", "TESSERA_JOURNEYS_CAP_SMS": "", "TESSERA_JOURNEYS_CAP_EMAIL": "",
           "TESSERA_JOURNEYS_CAP_PUSH": "", "TESSERA_JOURNEYS_CAP_WECHAT": ""}  # fmt: skip
    if args.rate is not None:
        env["TESSERA_JOURNEYS_RATE_PER_SECOND"] = str(args.rate)
    server: Server | None = None
    timers_out: Path | None = None
    try:
        with operational_url(args.postgres, root, "trigger") as url:
            env["TESSERA_STORE_OPERATIONAL_URL"] = url
            print(f"operational store: {describe(url)}")
            settings = load_settings(
                store={"operational_url": url}, journeys={**journey_settings(args), "worker": True}
            )
            inst = Instance(data, settings=settings)
            from tessera.services.sources import create_source

            with inst.operational.session() as s:
                write_key = create_source(session=s, name="官方App", kind="app", now=inst.clock.now()).write_key
            sms_channel(inst, receiver.url, args.sms_batch)
            draft = journeys_service.JourneyDraft(name="注册欢迎短信", definition={
                "nodes": [
                    {"id": "joined", "type": "entry", "data": {"event": {"name": "Signed Up"}}},
                    {"id": "sms", "type": "sms", "data": {"channel": "sms_bench", "template": {"body": {
                        "zh": "{{ profile.name }}，欢迎加入！新人券已到账，回T退订", "en": "Welcome {{ profile.name }}!"}}}},
                ],
                "edges": [{"source": "joined", "target": "sms"}],
            })  # fmt: skip
            jid = journeys_service.create_journey(inst=inst, draft=draft).id
            journeys_service.publish(inst=inst, journey_id=jid)
            inst.close()
            timers_out = root / "server-timers.json" if args.breakdown else None
            server = Server(data, env, timers_out)
            people = warm + n_events
            t = time.perf_counter()
            with httpx.Client(base_url=server.url, auth=(write_key, ""), timeout=60) as client:
                for i in range(0, people, 500):
                    batch = [{"type": "identify", "userId": f"u{k}", "messageId": f"id-{k}",
                              "traits": {"name": f"会员{k}", "phone": phone_of(k), "sms_consent": True}}
                             for k in range(i, min(people, i + 500))]  # fmt: skip
                    client.post("/v1/batch", content=orjson.dumps({"batch": batch}),
                                headers={"content-type": "application/json"}).raise_for_status()  # fmt: skip
            server.admin("POST", "/v1/admin/flush")
            print(f"{people:,} people identified and loaded in {time.perf_counter() - t:.1f} s")
            sent_at: dict[str, float] = {}
            asyncio.run(open_loop(server.url, write_key, range(warm), 200, 20, sent_at))  # warm-up, not counted
            receiver.wait_for(warm, 30)
            warm_got = len(receiver.got)
            with receiver.lock:
                receiver.got.clear()
            sent_at.clear()
            elapsed, trips, errors = asyncio.run(
                open_loop(server.url, write_key, range(warm, warm + n_events), args.trigger_rate, per_batch, sent_at)
            )
            got = receiver.wait_for(n_events, 120)
            health = httpx.get(server.url + "/healthz", timeout=10).json()
    finally:
        if server is not None:
            server.stop()
        receiver.stop()
    with receiver.lock:
        lat = [at - sent_at[to] for to, _body, at in receiver.got.values() if to in sent_at]
    rate = n_events / elapsed
    print(f"warm-up: {warm_got} of {warm} messages; load: {n_events:,} events in {elapsed:.1f} s ({rate:,.0f}/s), "
          f"{errors} batches refused; {got:,} messages received ({n_events - got:,} missing after 120 s)")  # fmt: skip
    if not lat:
        raise RuntimeError(f"no message arrived; server said {health}")
    p50, p95, p99 = (pct(lat, q) for q in (0.5, 0.95, 0.99))
    b50, b95, b99 = (pct(trips, q) for q in (0.5, 0.95, 0.99))
    print(f"  trigger -> SMS at the provider: p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, "
          f"p99 {p99 * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms, mean {statistics.fmean(lat) * 1000:.0f} ms")  # fmt: skip
    print(f"  baseline: /v1/batch round trip of the same {len(trips)} batches of {per_batch}: p50 {b50 * 1000:.0f} ms, "
          f"p95 {b95 * 1000:.0f} ms, p99 {b99 * 1000:.0f} ms")  # fmt: skip
    if timers_out is not None and timers_out.exists():
        timers = Timers(SERVER_TARGETS)
        timers.load(timers_out)
        print("  where the server's time went (warm-up, load and drain; wall time, threads share the GIL):")
        timers.report({"loader": None, "worker": None})
    if health.get("journey_worker_error"):
        print(f"  journey worker error: {health['journey_worker_error']}")
    complete = got == n_events
    ok = p95 <= P95_TARGET_S and complete and rate >= 0.95 * args.trigger_rate
    miss = f"{(p95 - P95_TARGET_S) * 1000:.0f} ms" if p95 > P95_TARGET_S else f"{n_events - got:,} messages missing"
    return Figure(
        name=f"trigger -> first action (SMS received), {rate:,.0f} Signed Up events/s for {elapsed:.0f} s",
        value=f"p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms ({len(lat):,} messages)",
        verdict=f"target p95 <= 1 s: {verdict(ok, miss)}",
        baseline=f"/v1/batch round trip of the same batches (collection alone): p50 {b50 * 1000:.0f} ms, "
        f"p95 {b95 * 1000:.0f} ms; ours p95 = {p95 / b95:.0f}x",
    )


# --- main -----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=1_000_000, help="profiles in the store = the campaign's audience")
    ap.add_argument("--reuse", action="store_true", help="reuse the cached store of this size if it exists")
    ap.add_argument("--only", choices=["campaign", "scheduler", "trigger"])
    ap.add_argument("--scheduler-people", type=int, default=200_000)
    ap.add_argument("--trigger-rate", type=float, default=1000.0)
    ap.add_argument("--trigger-seconds", type=float, default=30.0)
    ap.add_argument("--postgres", metavar="URL", help="operational store in a fresh schema of this PostgreSQL")
    ap.add_argument("--sms-batch", type=int, default=100, help="messages per SMS provider request")
    ap.add_argument("--rate", type=float, help="journeys.rate_per_second (default: the setting's)")
    ap.add_argument("--batch-size", type=int, help="journeys.batch_size (default: the setting's)")
    ap.add_argument("--dispatch-batch", type=int, help="journeys.dispatch_batch (default: the setting's)")
    ap.add_argument("--memory-limit", default="4GB")
    ap.add_argument(
        "--campaign-budget",
        type=float,
        default=600.0,
        help="stop the campaign after this many seconds and project the total from the measured "
        "rates (0 = run to the end)",
    )
    ap.add_argument(
        "--dispatch-sample",
        type=float,
        default=30.0,
        help="seconds of dispatching to measure its rate when the budget ran out while stepping",
    )
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="time the functions inside stepping and dispatch (timing wrappers; small overhead)",
    )
    ap.add_argument("--profile", action="store_true", help="cProfile the timed phases (slower; for finding costs)")
    ap.add_argument("--keep", action="store_true", help="keep this run's directory (stores, record files, server log)")
    args = ap.parse_args()
    run_dir = BENCH_DIR / f"run-{os.getpid()}"  # this run's stores and record files (runs may overlap)
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        run(args, run_dir)
    finally:
        if args.keep:
            print(f"kept {run_dir}")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)


def run(args: argparse.Namespace, run_dir: Path) -> None:
    started = time.perf_counter()
    figures: list[Figure] = []
    parts: list[tuple[str, Callable[[], Figure]]] = []
    data = run_dir / "data"
    if args.only in (None, "campaign", "scheduler"):
        t = time.perf_counter()
        _, built = cached_store(args.people, reuse=args.reuse, into=data)
        if built is None:
            print(f"reused the cached store of {args.people:,} profiles (copied in {time.perf_counter() - t:.1f} s)")
        else:
            print(f"built {args.people:,} profiles (names, +86 mobiles, attributes) in {built:.1f} s; cached")
    if args.only in (None, "campaign"):
        parts.append(("campaign", lambda: campaign(args, run_dir, data)))
    if args.only in (None, "scheduler"):
        parts.append(("scheduler", lambda: scheduler(args, run_dir, data)))
    if args.only in (None, "trigger"):
        parts.append(("trigger", lambda: trigger(args, run_dir)))
    for name, fn in parts:
        print(f"\n== {name} ==")
        fig = fn()
        figures.append(fig)
        print(f"{fig.name}: {fig.value} ({fig.verdict})")
    command = ".venv/bin/python bench/bench_journeys.py " + shlex.join(sys.argv[1:])
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print("\n== summary (for the README: | what | command | result | baseline (same run) | target |) ==")
    for fig in figures:
        extra = "; ".join(fig.details)
        print(f"| {fig.name} | `{command}` | **{fig.value}**{'; ' + extra if extra else ''} | {fig.baseline} "
              f"| {fig.verdict} |")  # fmt: skip
    try:
        code = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).parent, text=True,
                              capture_output=True, timeout=10).stdout.strip() or "?"  # fmt: skip
    except OSError:
        code = "?"
    print(f"\ncode {code}; machine: {os.cpu_count()} cores, load average {load} at the end; whole run "
          f"{time.perf_counter() - started:.0f} s")  # fmt: skip
    print(f"reproduce: {command}")


if __name__ == "__main__":
    main()
