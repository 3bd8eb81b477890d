"""The README's first command, as a user runs it: `tessera demo` serves, and its printed requests work."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.slow


def _pasteable_commands(text: str) -> list[str]:
    lines = text.splitlines()
    out = []
    i = 0
    while i < len(lines):
        if lines[i].startswith("curl "):
            cmd = lines[i]
            while cmd.endswith("\\") and i + 1 < len(lines):
                i += 1
                cmd = cmd[:-1] + lines[i]
            out.append(cmd)
        i += 1
    return out


def test_demo_serves_and_its_printed_requests_work(tmp_path: Path) -> None:
    data = tmp_path / "demo-data"
    port = free_port()
    env = {**os.environ, "COLUMNS": "250", "TESSERA_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tessera.cli.main", "demo", "--users", "300", "--live", "200",
         "--data-dir", str(data), "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
    )  # fmt: skip
    output: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if "Ctrl-C" in line:
                break
        text = "".join(output)
        assert "Ctrl-C" in text, text
        url = f"http://127.0.0.1:{port}"
        assert url in text
        token = re.search(r"tsk_[\w-]+", text)
        assert token is not None, text
        auth = {"Authorization": f"Bearer {token.group(0)}"}
        before = httpx.get(url + "/v1/admin/stats", headers=auth).json()["totals"]
        assert before["events"] > 200 and before["orders"] > 0 and before["customers"] > 0
        commands = _pasteable_commands(text)
        assert len(commands) >= 4, text
        for cmd in commands:
            done = subprocess.run(["bash", "-c", cmd + " -s -w '\\n%{http_code}'"], capture_output=True, text=True,
                                  timeout=30)  # fmt: skip
            assert done.returncode == 0 and done.stdout.rstrip().endswith("200"), (cmd, done.stdout, done.stderr)
        assert httpx.post(url + "/v1/admin/flush", headers=auth, timeout=60).status_code == 200
        after = httpx.get(url + "/v1/admin/stats", headers=auth).json()["totals"]
        # the pasted track + a batch of two; the loyalty worker may add system events meanwhile
        # (Points Expiring notices of its first daily round, a Tier Changed on a pasted order)
        assert after["events"] >= before["events"] + 3
        info = json.loads((data / "server.json").read_text())
        assert info["url"] == url
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        finally:
            if proc.stdout is not None:
                proc.stdout.close()
    assert proc.returncode == 0
    assert not (data / "server.json").exists()
