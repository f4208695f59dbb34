"""`vidx serve` as a real process: starts, becomes ready, answers, stops on SIGTERM; refuses ambiguity."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from indexkit import publish_tiny
from modelids import clips_id
from vidx.index import load_index, publish_index
from vidx.index.build import BuiltIndex

pytestmark = pytest.mark.integration

VIDX = str(Path(sys.executable).parent / "vidx")
START_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_vidx_serve_process(tmp_path):
    published, vectors = publish_tiny(tmp_path, n=500, probes=False)
    port = free_port()
    env = {**os.environ, "VIDX_SERVE__RELOAD_INTERVAL_S": "0.5"}
    proc = subprocess.Popen([VIDX, "serve", "-w", str(tmp_path), "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        ready = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
                if ready.status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        assert ready is not None and ready.status_code == 200, proc.stdout.read() if proc.poll() is not None else ""
        assert ready.json()["index_version"] == published.version
        out = requests.post(f"http://127.0.0.1:{port}/search", json={"vector": vectors[9].tolist(), "k": 2},
                            timeout=10).json()
        assert out["results"][0]["clip_idx"] == 0 and out["results"][0]["video_id"] == "vid009"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    log = proc.stdout.read() if proc.stdout else ""
    # uvicorn shuts down gracefully, then re-raises the signal it caught (exit status -15).
    assert proc.returncode in (0, -signal.SIGTERM), log
    assert "Application shutdown complete" in log


def test_vidx_serve_refuses_several_models_without_model_id(tmp_path):
    publish_tiny(tmp_path, n=300, probes=False)
    loaded = load_index(str(tmp_path))
    built = BuiltIndex(loaded.index, loaded.params, 0, 1.0, 300, 128, 0.0, 0)
    publish_index(built, loaded.ids, warehouse=str(tmp_path), model_id=clips_id("other", "x"), table_version=1,
                  model={"name": "vidx-tiny", "pretrained": "random"})
    result = subprocess.run([VIDX, "serve", "-w", str(tmp_path), "--port", str(free_port())],
                            check=False, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--model-id" in result.stdout + result.stderr
