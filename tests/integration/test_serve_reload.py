"""Hot reload: new versions swap in under load without a failed request; broken versions never do."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from indexkit import build_tiny, model_record, publish_built, publish_tiny
from servekit import running_server, server_config, stage_version
from vidx.index import registry

pytestmark = pytest.mark.integration

CLIENTS = 8
REQUESTS_PER_CLIENT = 150
LOAD_DEADLINE_S = 120.0


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garbage_index_with_matching_checksum(version_dir: Path) -> None:
    """Checksums right, bytes wrong: only deserialisation can catch it."""
    import hashlib

    bad = b"not a faiss index" * 10
    (version_dir / "index.faiss").write_bytes(bad)
    manifest = json.loads((version_dir / "manifest.json").read_text())
    manifest["files"]["index.faiss"] = {"sha256": hashlib.sha256(bad).hexdigest(), "bytes": len(bad)}
    (version_dir / "manifest.json").write_text(json.dumps(manifest))


BROKEN = [
    ("tampered index", lambda d: _flip_byte(d / "index.faiss"), "checksum"),
    ("truncated index", lambda d: _truncate(d / "index.faiss"), "checksum"),
    ("truncated ids", lambda d: _truncate(d / "ids.parquet"), "checksum"),
    ("garbage manifest", lambda d: (d / "manifest.json").write_text("{not json"), "not valid JSON"),
    ("undeserialisable index", _garbage_index_with_matching_checksum, "cannot be read"),
]


def test_reload_and_broken_versions_keep_serving(tmp_path):
    w = tmp_path / "w"
    v1, _ = publish_tiny(w, n=500, seed=1)
    with running_server(server_config(w)) as server:
        server.wait_version(v1.version)
        v2, vectors = publish_tiny(w, n=600, seed=2, table_version=2)
        server.wait_version(v2.version)
        assert server.search(vector=vectors[0].tolist())["index_version"] == v2.version
        for i, (what, damage, message) in enumerate(BROKEN):
            bad = stage_version(tmp_path / f"scratch{i}", w, damage, n=400, seed=10 + i)
            status = server.wait_until(lambda s, bad=bad: (s["reload_error"] or {}).get("version") == bad)
            assert status["ready"] and status["index_version"] == v2.version, what
            assert message in status["reload_error"]["error"], (what, status)
            assert server.search(vector=vectors[3].tolist())["index_version"] == v2.version
        # A version whose model cannot be loaded is refused the same way.
        bad_model, _ = publish_tiny(w, n=300, seed=30, model=model_record(name="no-such-model"), probes=False)
        status = server.wait_until(lambda s: (s["reload_error"] or {}).get("version") == bad_model.version)
        assert "no-such-model" in status["reload_error"]["error"] and status["index_version"] == v2.version
        metrics = server.get("/metrics").text
        assert "vidx_index_reload_failing 1.0" in metrics
        assert f'vidx_index_loads_total{{result="failed"}} {float(len(BROKEN) + 1)}' in metrics
        # Rolling CURRENT back to the served version clears the alarm.
        registry.promote(str(w), v2.version, require_validation=False)  # generated vectors: nothing to validate
        server.wait_until(lambda s: s["reload_error"] is None)
        assert "vidx_index_reload_failing 0.0" in server.get("/metrics").text


def test_not_ready_until_something_loadable_is_published(tmp_path):
    w = tmp_path / "w"
    with running_server(server_config(w)) as server:
        status = server.wait_until(lambda s: "published index" in s.get("reason", ""))
        assert not status["ready"] and server.get("/readyz").status_code == 503
        resp = server.post("/search", {"vector": [0.1] * 128})
        assert resp.status_code == 503 and "no index is loaded" in resp.json()["error"]
        assert server.get("/healthz").status_code == 200
        assert "vidx_index_ready 0.0" in server.get("/metrics").text
        bad, _ = publish_tiny(w, n=300, model=model_record(pretrained="/nonexistent/ckpt.pt"), probes=False)
        status = server.wait_until(lambda s: (s["reload_error"] or {}).get("version") == bad.version)
        assert not status["ready"] and "ckpt.pt" in status["reason"] and "ModelLoadError" in status["reason"]
        good, _ = publish_tiny(w, n=300, seed=4, table_version=2)
        assert server.wait_version(good.version)["ready"]


def _client(url: str, queries: np.ndarray, seed: int, out: dict, start_gate: threading.Event) -> None:
    """One load-test client: a fixed number of /search calls on one keep-alive connection."""
    rng = np.random.default_rng(seed)
    session = requests.Session()
    start_gate.wait(30)
    deadline = time.monotonic() + LOAD_DEADLINE_S
    for i in range(REQUESTS_PER_CLIENT):
        if time.monotonic() > deadline:
            out["errors"].append("client deadline")
            break
        body: dict = {"vector": queries[rng.integers(len(queries))].tolist(), "k": 10}
        if i % 4 == 1:
            body["uri_prefix"] = "/archive/cats/"
        if i % 10 == 3:
            body = {"text": "a red square on grey", "k": 10}
        started = time.perf_counter()
        try:
            resp = session.post(url, json=body, timeout=30)
            payload = resp.json()
            if resp.status_code == 200 and len(payload["results"]) == 10:
                out["versions"].append(payload["index_version"])
            else:
                out["errors"].append(f"{resp.status_code}: {resp.text[:200]}")
        except (requests.RequestException, ValueError) as exc:
            out["errors"].append(f"{type(exc).__name__}: {exc}")
        out["latency"].append(time.perf_counter() - started)
        out["done"] += 1


def test_load_with_publish_mid_run(tmp_path):
    w = tmp_path / "w"
    v1, vectors = publish_tiny(w, n=10_000, ivf=True, seed=1)
    next_index, _ = build_tiny(n=10_000, ivf=True, seed=2)  # trained now; written and published mid-run
    with running_server(server_config(w)) as server:
        server.wait_version(v1.version)
        gate = threading.Event()
        outs = [{"latency": [], "versions": [], "errors": [], "done": 0} for _ in range(CLIENTS)]
        threads = [threading.Thread(target=_client, args=(server.url + "/search", vectors, i, outs[i], gate))
                   for i in range(CLIENTS)]
        for t in threads:
            t.start()
        started = time.perf_counter()
        gate.set()
        while sum(o["done"] for o in outs) < CLIENTS * REQUESTS_PER_CLIENT // 5 and time.perf_counter() - started < 60:
            time.sleep(0.01)
        published_at = time.perf_counter()
        v2 = publish_built(w, next_index, table_version=2)
        server.wait_version(v2.version)
        swap_s = time.perf_counter() - published_at
        assert sum(o["done"] for o in outs) < CLIENTS * REQUESTS_PER_CLIENT, "reload did not happen under load"
        for t in threads:
            t.join(LOAD_DEADLINE_S + 30)
        wall = time.perf_counter() - started
        assert not any(t.is_alive() for t in threads)
    errors = [e for o in outs for e in o["errors"]]
    latency = np.array([x for o in outs for x in o["latency"]])
    total = len(latency)
    print(f"\nload test: {CLIENTS} clients x {REQUESTS_PER_CLIENT} requests = {total} in {wall:.1f} s "
          f"({total / wall:.0f} QPS incl. a publish + reload); latency p50 {np.percentile(latency, 50) * 1e3:.1f} ms, "
          f"p99 {np.percentile(latency, 99) * 1e3:.1f} ms; failed {len(errors)}; publish -> serving v2 {swap_s:.2f} s")
    assert errors == []
    assert total == CLIENTS * REQUESTS_PER_CLIENT
    seen = {v for o in outs for v in o["versions"]}
    assert seen == {v1.version, v2.version}
    for o in outs:  # each client switches once, and never back
        switch = o["versions"].index(v2.version) if v2.version in o["versions"] else len(o["versions"])
        assert set(o["versions"][:switch]) <= {v1.version} and set(o["versions"][switch:]) <= {v2.version}
    assert sum(o["versions"][-1] == v2.version for o in outs) == CLIENTS
