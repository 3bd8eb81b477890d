"""Shared fixtures: data dirs, sources, and a real server process on a free loopback port."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tessera.runtime import Instance
from tessera.services import sources as sources_service
from tessera.services import tokens as tokens_service
from tessera.stores.operational import OperationalStore, sqlite_url


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_source(data_dir: Path, name: str = "官方App", kind: str = "app") -> str:
    """Create a source in the data dir's operational store; return its write key."""
    inst = Instance(data_dir)
    try:
        with inst.operational.session() as s:
            return sources_service.create_source(session=s, name=name, kind=kind, now=datetime.now(UTC)).write_key
    finally:
        inst.close()


def make_token(data_dir: Path) -> str:
    inst = Instance(data_dir)
    try:
        with inst.operational.session() as s:
            return tokens_service.create_token(session=s, name="tests", now=datetime.now(UTC)).token
    finally:
        inst.close()


class ServerProcess:
    """``tessera serve`` in a child process, as a user runs it."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.env = {**os.environ, "TESSERA_LOG_LEVEL": "warning", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.admin_token = ""

    def start(self, timeout: float = 60) -> ServerProcess:
        port = free_port()
        info_file = self.data_dir / "server.json"
        info_file.unlink(missing_ok=True)
        self.log = open(self.data_dir.parent / f"server-{port}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tessera.cli.main", "serve", "--data-dir", str(self.data_dir), "--port", str(port)],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.output()}")
            if info_file.exists():
                try:
                    info = json.loads(info_file.read_text())
                except ValueError:
                    info = None
                if info and info.get("pid") == self.proc.pid:
                    self.url, self.admin_token = info["url"], info["admin_token"]
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"server did not start in {timeout}s: {self.output()}")

    def output(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return Path(self.log.name).read_text(errors="replace")[-4000:]

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def admin(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return httpx.request(method, self.url + path, headers=self.admin_headers, timeout=120, **kw)

    def flush(self) -> None:
        r = self.admin("POST", "/v1/admin/flush")
        assert r.status_code == 200, r.text

    def alive(self) -> bool:
        try:
            return httpx.get(self.url + "/healthz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self.log.close()

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None:
                self.log.close()
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)
        finally:
            self.log.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    d = tmp_path / "tessera-data"
    d.mkdir()
    return d


@pytest.fixture
def write_key(data_dir: Path) -> str:
    return make_source(data_dir)


@pytest.fixture
def server(data_dir: Path, write_key: str) -> Iterator[ServerProcess]:
    proc = ServerProcess(data_dir).start()
    yield proc
    proc.stop()


PG_BASE = os.environ.get("TESSERA_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh schema in the real PostgreSQL (database ``test``); dropped afterwards.

    Fails (never skips) when ``TESSERA_REQUIRE_POSTGRES=1`` (CI) and the server is not there.
    """
    import uuid

    import psycopg

    try:
        con = psycopg.connect(PG_BASE, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        if os.environ.get("TESSERA_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"PostgreSQL is required but not reachable at {PG_BASE}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {PG_BASE} (scripts/test.sh starts it)")
    schema = "t_" + uuid.uuid4().hex[:12]
    con.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        con.execute(f'DROP SCHEMA "{schema}" CASCADE')
        con.close()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def op_store(request: pytest.FixtureRequest, tmp_path: Path) -> OperationalStore:
    """The operational store on SQLite and on the real PostgreSQL (each test runs on both)."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path / "operational.sqlite")
    else:
        url = request.getfixturevalue("pg_url")
    s = OperationalStore(url)
    request.addfinalizer(s.close)
    return s


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo brand (1,500 users), built once per session; copy it before writing to it."""
    from typer.testing import CliRunner

    from tessera.cli.main import app as cli

    root = tmp_path_factory.mktemp("demo") / "data"
    result = CliRunner().invoke(cli, ["demo", "--users", "1500", "--no-serve", "--data-dir", str(root), "--live", "0"])
    assert result.exit_code == 0, result.output
    return root
