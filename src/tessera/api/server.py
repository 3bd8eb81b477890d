"""Running the server: ``tessera serve`` and the demo's server."""

from __future__ import annotations

import gzip
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import httpx
import uvicorn

from tessera.api.app import create_app
from tessera.runtime import Instance


def _config(app: Any, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop" if _has("uvloop") else "asyncio",
        http="httptools" if _has("httptools") else "h11",
        access_log=False,
        log_level=os.environ.get("TESSERA_LOG_LEVEL", "warning"),
        timeout_graceful_shutdown=10,
    )


class _Server(uvicorn.Server):
    """uvicorn's server, minus re-raising SIGTERM/SIGINT after shutdown: our cleanup must run."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        captured = getattr(self, "_captured_signals", None)
        if isinstance(captured, list):
            captured.clear()


def _has(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def serve(
    instance: Instance,
    *,
    host: str,
    port: int,
    on_ready: Callable[[str, str], None] | None = None,
) -> None:
    """Run the server until SIGINT/SIGTERM. Writes ``server.json`` so the CLI can find it."""
    # The loader thread shares the GIL with the event loop: hand it over every millisecond, not five.
    sys.setswitchinterval(0.001)
    local_token = secrets.token_urlsafe(32)
    app = create_app(instance, local_token=local_token)
    server = _Server(_config(app, host, port))
    url = f"http://{host}:{port}"
    info_path = instance.data_dir.server_file

    def announce() -> None:
        deadline = time.monotonic() + 600
        while not server.started and time.monotonic() < deadline:
            if server.should_exit:
                return
            time.sleep(0.02)
        if not server.started:
            return
        fd = os.open(info_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"pid": os.getpid(), "url": url, "admin_token": local_token}, f)
        if on_ready is not None:
            on_ready(url, local_token)

    threading.Thread(target=announce, name="announce", daemon=True).start()
    try:
        server.run()
    finally:
        try:
            info = json.loads(info_path.read_text())
            if info.get("pid") == os.getpid():
                info_path.unlink()
        except (OSError, ValueError):
            pass
        instance.close()


def send_batches(url: str, write_key: str, messages: list[dict[str, Any]], *, batch_size: int = 100) -> int:
    """Send messages through the real collection path (gzip, basic auth); returns accepted count."""
    accepted = 0
    with httpx.Client(base_url=url, auth=(write_key, ""), timeout=30) as client:
        for i in range(0, len(messages), batch_size):
            body = json.dumps({"batch": messages[i : i + batch_size]}, ensure_ascii=False).encode()
            r = client.post(
                "/v1/batch",
                content=gzip.compress(body),
                headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
            )
            r.raise_for_status()
            accepted += int(r.json()["accepted"])
    return accepted


def run_demo_server(
    instance: Instance,
    *,
    host: str,
    port: int,
    live_messages: list[dict[str, Any]],
    write_key: str,
    admin_token: str,
    print_ready: Callable[[str, int], None],
) -> None:
    """Start the server, send the demo's live messages through /v1/batch, then announce and block."""

    def on_ready(url: str, local_token: str) -> None:
        accepted = send_batches(url, write_key, live_messages) if live_messages else 0
        httpx.post(f"{url}/v1/admin/flush", headers={"Authorization": f"Bearer {local_token}"}, timeout=120)
        print_ready(url, accepted)

    serve(instance, host=host, port=port, on_ready=on_ready)
