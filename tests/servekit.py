"""Run the query server in-process (uvicorn in a thread on a free 127.0.0.1 port) for tests."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
import uvicorn

from vidx import storage
from vidx.config import VidxConfig, load_config
from vidx.index.publish import CURRENT_FILE
from vidx.serve.app import create_app
from vidx.serve.reload import IndexHolder

STARTUP_TIMEOUT_S = 30.0


@dataclass
class Server:
    url: str
    holder: IndexHolder

    def get(self, path: str, **kw: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        if body is not None:
            kw["json"] = body
        return requests.post(self.url + path, timeout=30, **kw)

    def search(self, **body: Any) -> dict[str, Any]:
        resp = self.post("/search", body)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def wait_until(self, check: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        """Poll /readyz until `check(status)` holds; bounded by `timeout`."""
        deadline = time.monotonic() + timeout
        status: dict[str, Any] = {}
        while time.monotonic() < deadline:
            status = self.get("/readyz").json()
            if check(status):
                return status
            time.sleep(0.05)
        raise AssertionError(f"server did not reach the expected state in {timeout} s; last /readyz: {status}")

    def wait_version(self, version: str, timeout: float = 30.0) -> dict[str, Any]:
        return self.wait_until(lambda s: s.get("index_version") == version, timeout)


def server_config(warehouse: str | Path, **overrides: Any) -> VidxConfig:
    return load_config(env={}, overrides={"warehouse": str(warehouse), "serve.reload_interval_s": 0.2,
                                          "serve.max_body_bytes": 1_000_000, **overrides})


@contextmanager
def running_server(cfg: VidxConfig, **kw: Any) -> Iterator[Server]:
    app = create_app(cfg, **kw)
    # proto IPPROTO_TCP, not 0: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP,
    # and without it every response waits ~40 ms for a delayed ACK (Nagle).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield Server(f"http://127.0.0.1:{port}", app.state.holder)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def stage_version(scratch: Path, served: Path, mutate: Callable[[Path], None], **publish_kw: Any) -> str:
    """Publish an index into `scratch`, copy the version into `served`, let `mutate` damage the copy,
    then point `served`'s CURRENT at it (so no server ever sees the intact copy)."""
    from indexkit import model_id, publish_tiny

    published, _ = publish_tiny(scratch, **publish_kw)
    src = Path(published.uri)
    dst = served / "indexes" / model_id() / published.version
    shutil.copytree(src, dst)
    mutate(dst)
    storage.write_bytes_atomic(str(served / "indexes" / model_id() / CURRENT_FILE), f"{published.version}\n".encode())
    return published.version
