"""Shared pieces of bench_journeys.py: the profile store, operational stores, SMS endpoints.

* :func:`build_store` fills a migrated analytic store with ``n`` profiles in DuckDB SQL over
  ``range()`` (the approach of bench_audience.py): Chinese names, cities, member levels and
  ``sms_consent`` as traits, one valid +86 mobile number per person as a ``phone`` identifier, and
  ``profile_attributes.updated_at`` later than ``profiles.last_seen`` (nothing is stale).
* :func:`cached_store` keeps one built store per size under ``/tmp/tessera-bench-journeys/cache``
  and copies it into a run's data dir (each run has its own directory and writes its own copy).
* :func:`operational_url` gives a fresh operational store: a new SQLite file, or a new schema in
  PostgreSQL (dropped afterwards).
* :class:`ProviderProcess` runs ``tests/fakes/sms_provider.py`` in its own process, as the issue
  asks; :class:`Receiver` is a minimal in-process endpoint of the same JSON shape that records
  ``time.time()`` per message (for latencies: the fake provider records no receive time).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import orjson

from tessera.demo.texts import GIVEN_FEMALE, GIVEN_MALE, MEMBER_LEVELS, PHONE_PREFIXES, PLACES, SURNAMES
from tessera.stores.analytic import AnalyticStore

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = Path("/tmp/tessera-bench-journeys")
NOW = datetime(2026, 11, 11, 1, 0)  # naive UTC as stored: 09:00 on 双十一 in Shanghai
API_KEY = "bench-sms-key"


def _weighted(items: list[tuple[str, float]], scale: float = 10.0) -> list[str]:
    """A list in which each item appears in proportion to its weight (a uniform pick is weighted)."""
    return [v for v, w in items for _ in range(max(1, round(w * scale)))]


def _u(k: int) -> str:
    """The ``k``-th deterministic uniform [0, 1) draw of row ``i``."""
    return f"((hash(i, {k}) % 1000000) / 1000000.0)"


def _pick(param: str, k: int) -> str:
    return f"${param}[1 + CAST(floor({_u(k)} * len(${param})) AS INTEGER)]"


def build_store(cur: duckdb.DuckDBPyConnection, n: int) -> None:
    """``n`` profiles (idx 1..n) with traits, attributes and one +86 mobile each."""
    params = {
        "n": n,
        "now": NOW,
        "surnames": _weighted([(s, w) for s, _, w in SURNAMES]),
        "male": [c for c, _ in GIVEN_MALE],
        "female": [c for c, _ in GIVEN_FEMALE],
        "cities": _weighted([(c, w) for _, c, w in PLACES]),
        "levels": _weighted(list(zip(MEMBER_LEVELS, (70.0, 18.0, 9.0, 3.0), strict=True)), 1.0),
        "prefixes": _weighted(PHONE_PREFIXES),
    }
    # The 8 digits are a bijection of i (7919 is prime to 10^8): every number is unique, whatever the prefix.
    cur.execute(
        f"""CREATE TEMP TABLE _people AS
        SELECT i, female,
            '+86' || {_pick("prefixes", 10)}
                  || lpad(CAST((i * 7919 + 104729) % 100000000 AS VARCHAR), 8, '0') AS phone,
            {_pick("surnames", 1)}
                || CASE WHEN female THEN {_pick("female", 2)} ELSE {_pick("male", 2)} END
                || CASE WHEN {_u(3)} < 0.6 THEN (CASE WHEN female THEN {_pick("female", 4)} ELSE {_pick("male", 4)} END)
                        ELSE '' END AS name,
            {_pick("cities", 5)} AS city,
            {_pick("levels", 6)} AS level,
            $now - to_seconds(CAST(pow({_u(7)}, 2) * 365 * 86400 AS BIGINT)) - INTERVAL 1 HOUR AS last_seen,
            TIMESTAMP '2022-01-01' + to_seconds(CAST({_u(8)} * 3 * 365 * 86400 AS BIGINT)) AS created
        FROM (SELECT i, {_u(9)} < 0.55 AS female FROM range(1, $n + 1) t(i))""",
        params,
    )
    traits = """json_object('name', name, 'gender', CASE WHEN female THEN '女' ELSE '男' END, 'city', city,
                            'member_level', level, 'sms_consent', true)"""
    cur.execute(
        f"""INSERT INTO profiles (profile_idx, profile_id, created_at, first_seen, last_seen, traits,
                                  anchor_type, anchor_value, created_key)
        SELECT i, 'p_' || substr(md5('phone:' || phone), 1, 20), least(created, last_seen), least(created, last_seen),
               last_seen, {traits}, 'phone', phone, 'phone:' || phone
        FROM _people ORDER BY i"""
    )
    cur.execute(
        f"""INSERT INTO profile_attributes
        SELECT i, {traits}, least(created, last_seen), last_seen, ['miniprogram'], 1 + CAST(hash(i, 20) % 40 AS BIGINT),
               0, 0, NULL, NULL, $now
        FROM _people ORDER BY i""",
        {"now": NOW},
    )
    cur.execute(
        """INSERT INTO profile_identifiers (id_type, id_value, profile_idx, source_id, first_seen, last_seen, linked_at)
        SELECT 'phone', phone, i, 1, least(created, last_seen), last_seen, least(created, last_seen) FROM _people"""
    )
    cur.execute("DROP TABLE _people")
    cur.execute("CREATE TABLE bench_meta AS SELECT $n AS profiles", {"n": n})
    cur.execute("CHECKPOINT")


def check_phones(cur: duckdb.DuckDBPyConnection, step: int = 500) -> None:
    """Every sampled number (1 in ``step``) is a valid E.164 mobile, as the SMS channel checks."""
    from tessera.channels.sms import check_phone

    got = cur.execute(
        "SELECT id_value FROM profile_identifiers WHERE id_type = 'phone' AND hash(id_value) % $m = 0", {"m": step}
    ).fetchall()
    bad = [v for (v,) in got if check_phone(v) is not None]
    assert not bad, f"invalid numbers in the store: {bad[:5]}"


def cached_store(n: int, *, reuse: bool, into: Path) -> tuple[Path, float | None]:
    """Copy a store of ``n`` profiles into the data dir ``into`` (building the cache first unless
    ``reuse`` finds it); returns the data dir and the build time (None when reused)."""
    cache = BENCH_DIR / "cache" / f"profiles-{n}.duckdb"
    built: float | None = None
    if not (reuse and cache.exists()):
        cache.parent.mkdir(parents=True, exist_ok=True)
        fresh = cache.with_name(f"{cache.name}.{os.getpid()}")  # built aside, then renamed: runs may overlap
        fresh.unlink(missing_ok=True)
        t = time.perf_counter()
        store = AnalyticStore(fresh, memory_limit="8GB")
        try:
            build_store(store.cursor(), n)
            check_phones(store.cursor())
        finally:
            store.close()
        Path(f"{fresh}.wal").unlink(missing_ok=True)
        os.replace(fresh, cache)
        built = time.perf_counter() - t
    if into.exists():
        shutil.rmtree(into)
    into.mkdir(parents=True)
    shutil.copyfile(cache, into / "analytics.duckdb")
    return into, built


# --- operational stores ------------------------------------------------------------------------------


@contextmanager
def operational_url(postgres: str | None, run_dir: Path, name: str) -> Iterator[str]:
    """A fresh operational store: SQLite file ``run_dir/name.sqlite`` or a new PostgreSQL schema."""
    if postgres is None:
        path = run_dir / f"{name}.sqlite"
        for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            p.unlink(missing_ok=True)
        yield f"sqlite+pysqlite:///{path}"
        return
    import psycopg

    schema = f"bench_{name}_{secrets.token_hex(4)}"
    with psycopg.connect(postgres, autocommit=True, connect_timeout=5) as con:
        con.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in postgres else "?"
    try:
        yield f"{postgres}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(postgres, autocommit=True, connect_timeout=5) as con:
            con.execute(f'DROP SCHEMA "{schema}" CASCADE')


def describe(url: str, *, short: bool = False) -> str:
    if url.startswith("sqlite"):
        return "SQLite (WAL)" if short else f"SQLite ({url.split(':///', 1)[1]})"
    where = url.split("?", 1)[0]
    return f"PostgreSQL ({where})" if short else f"PostgreSQL ({where}, schema {url.rsplit('%3D', 1)[-1]})"


# --- SMS endpoints -------------------------------------------------------------------------------


class ProviderProcess:
    """``python -m tests.fakes.sms_provider`` in its own process, recording to ``record``."""

    def __init__(self, record: Path) -> None:
        self.record = record
        record.unlink(missing_ok=True)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.sms_provider", "--port", "0", "--api-key", API_KEY,
             "--record", str(record)],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the fake SMS provider did not start (exit {self.proc.poll()})")
        self.url: str = json.loads(line)["url"]

    def received(self) -> tuple[int, int]:
        """(lines in the record file, distinct message ids among them)."""
        ids: set[str] = set()
        lines = 0
        with open(self.record, "rb") as f:
            for line in f:
                lines += 1
                ids.add(orjson.loads(line)["message_id"])
        return lines, len(ids)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


class Receiver:
    """An SMS endpoint in this process speaking the provider's JSON shape; records, per unique
    ``message_id``, ``(to, body, time.time())`` as the request arrives."""

    def __init__(self) -> None:
        self.got: dict[str, tuple[str, str, float]] = {}
        self.lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length", "0")))
                at = time.time()
                body = orjson.loads(raw)
                items = body["messages"] if isinstance(body, dict) and "messages" in body else [body]
                results = []
                with receiver.lock:
                    for m in items:
                        receiver.got.setdefault(m["message_id"], (m["to"], m["body"], at))
                        results.append({"message_id": m["message_id"], "status": "queued",
                                        "provider_id": "r-" + m["message_id"][:12]})  # fmt: skip
                    receiver.lock.notify_all()
                data = orjson.dumps({"results": results} if "messages" in body else results[0])
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/sms"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.got) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.lock.wait(left)
            return len(self.got)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- where the time goes -------------------------------------------------------------------------

_R, _D = "tessera.services.journey_runner", "tessera.services.journey_dispatch"
#: (group, module, class or "", function, label): what --breakdown times in the campaign's phases
CAMPAIGN_TARGETS = (
    ("stepping", _R, "", "load_version", "load_version (session.get + parse cache)"),
    ("stepping", _R, "", "load_people", "load_people (DuckDB facts)"),
    ("stepping", _R, "", "step", "engine step()"),
    ("stepping", _R, "", "insert_ignoring_duplicates", "insert outbox rows"),
    ("dispatch", _D, "", "load_version", "load_version (session.get + parse cache)"),
    ("dispatch", _D, "", "load_people", "load_people (DuckDB facts + tags)"),
    ("dispatch", _D, "", "opted_out", "opted_out"),
    ("dispatch", _D, "", "unsubscribe_url", "unsubscribe_url"),
    ("dispatch", "tessera.services.templates", "", "render", "templates.render"),
    ("dispatch", "tessera.channels.sms", "", "check_phone", "sms.check_phone"),
    ("dispatch", "tessera.channels.sms", "SmsChannel", "_post", "SmsChannel._post (HTTP to the provider)"),
    ("dispatch", _D, "Dispatcher", "_recent", "Dispatcher._recent (frequency-cap lookup)"),
    ("dispatch", _D, "Dispatcher", "_prepare", "Dispatcher._prepare (all of it)"),
    ("dispatch", _D, "Dispatcher", "_send", "Dispatcher._send (all of it)"),
    ("dispatch", _D, "Dispatcher", "_record", "Dispatcher._record (status writes)"),
)
_W = "tessera.services.journey_worker"
#: what the server's threads spend their time on (the trigger figure's --breakdown)
SERVER_TARGETS = (
    ("loader", "tessera.services.loader", "Loader", "load_once", "Loader.load_once (WAL -> DuckDB + inbox)"),
    ("worker", _W, "", "one_round", "one_round (all of it)"),
    ("worker", _W, "", "run_entries", "run_entries"),
    ("worker", _W, "", "consume_inbox", "consume_inbox (all of it)"),
    ("worker", _R, "", "read_inbox", "  read_inbox (DuckDB)"),
    ("worker", _R, "", "admit", "  admit (one call per event and trigger)"),
    ("worker", _W, "", "advance_due", "advance_due (all of it)"),
    ("worker", _R, "", "load_people", "  load_people (runner)"),
    ("worker", _R, "", "load_version", "  load_version (runner)"),
    ("worker", _D, "Dispatcher", "dispatch_once", "dispatch_once (all of it)"),
    ("worker", _D, "", "load_people", "  load_people (dispatch)"),
    ("worker", _D, "", "load_version", "  load_version (dispatch)"),
    ("worker", _D, "", "unsubscribe_url", "  unsubscribe_url"),
    ("worker", _D, "Dispatcher", "_send", "  _send (HTTP + status writes)"),
    ("worker", "tessera.services.journey_facts", "", "refresh_stale", "refresh_stale (inside load_people)"),
)


class Timers:
    """Wall time inside chosen functions: timing wrappers installed on the module or class attributes
    the services look up (nothing else changes; the overhead is ~1 us a call)."""

    def __init__(self, targets: tuple[tuple[str, str, str, str, str], ...]) -> None:
        self.targets = targets
        self.spent: dict[tuple[str, str], list[float]] = {}
        self._saved: list[tuple[Any, str, Any]] = []

    def install(self) -> None:
        import importlib

        for group, module, cls, name, label in self.targets:
            owner: Any = importlib.import_module(module)
            if cls:
                owner = getattr(owner, cls)
            original = getattr(owner, name)
            acc = self.spent.setdefault((group, label), [0.0, 0.0])
            self._saved.append((owner, name, original))
            setattr(owner, name, self._wrap(original, acc))

    @staticmethod
    def _wrap(fn: Callable[..., Any], acc: list[float]) -> Callable[..., Any]:
        def timed(*a: Any, **kw: Any) -> Any:
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                acc[0] += time.perf_counter() - t
                acc[1] += 1

        return timed

    def uninstall(self) -> None:
        for owner, name, original in reversed(self._saved):
            setattr(owner, name, original)
        self._saved.clear()

    def report(self, groups: dict[str, float | None]) -> None:
        """Print each group's rows (``groups``: name → its wall time, or None)."""
        for group, total in groups.items():
            print(f"    inside {group}" + (f" ({total:.1f} s):" if total is not None else ":"))
            for (g, label), (secs, calls) in self.spent.items():
                if g == group and calls:
                    print(f"      {label:<44} {secs:7.1f} s  {calls:>9,.0f} calls  {secs / calls * 1e6:9.1f} us/call")

    def dump(self, path: Path) -> None:
        path.write_text(json.dumps([[g, label, secs, calls] for (g, label), (secs, calls) in self.spent.items()]))

    def load(self, path: Path) -> None:
        for g, label, secs, calls in json.loads(path.read_text()):
            self.spent[(g, label)] = [secs, calls]


def timed_serve(out: Path, argv: list[str]) -> None:
    """``tessera <argv>`` (the server) with :data:`SERVER_TARGETS` timed; totals written to ``out``
    when it exits (SIGTERM makes uvicorn return, so atexit runs)."""
    import atexit

    from tessera.cli.main import main as cli

    timers = Timers(SERVER_TARGETS)
    timers.install()
    atexit.register(timers.dump, out)
    sys.argv = ["tessera", *argv]
    cli()


if __name__ == "__main__":  # python bench/journey_world.py timed-serve OUT.json serve --data-dir …
    assert sys.argv[1] == "timed-serve", sys.argv
    timed_serve(Path(sys.argv[2]), sys.argv[3:])
