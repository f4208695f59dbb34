"""Archive and warehouse in buckets of a real S3-compatible server (moto, tests/s3kit.py).

- The whole CLI on S3, configured by the standard AWS environment variables alone: embed ->
  validate -> build-index -> search -> serve (hot reload after a second publish) -> sql ->
  tables optimize|vacuum -> index list|promote|rollback|gc. The embed reads each archive byte
  about once although its long videos are split into 3 work units each.
- Two embed runs racing on one warehouse (storage.options, no environment): one lease, and a Delta
  log without lost or duplicated versions; Delta writers racing on one table all land.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pytest
import requests
import yaml

from vidx import storage
from vidx.synth import write_video

VIDX = str(Path(sys.executable).parent / "vidx")
# 3 long videos (12 s = 3 units of 4 s each) and a short one; 320x240 keeps each ~0.8 MB.
VIDEOS = [("long_a.mp4", 12, 1), ("long_b.mkv", 12, 2), ("nested/long_c.mov", 12, 3), ("short_d.mp4", 4, 4)]
MAX_READ_RATIO = 1.1


@pytest.fixture(scope="module")
def archive(s3_server, tmp_path_factory):
    """(bucket, archive URI, total bytes) of a small generated archive uploaded to the server."""
    root = tmp_path_factory.mktemp("s3-archive")
    bucket = s3_server.new_bucket("archive")
    total = 0
    for rel, seconds, seed in VIDEOS:
        path = root / rel
        write_video(path, duration_s=seconds, fps=25, width=320, height=240, seed=seed, scene_seconds=4.0)
        s3_server.client().upload_file(str(path), bucket, f"videos/{rel}")
        total += path.stat().st_size
    return bucket, f"s3://{bucket}/videos", total


def _env(s3_server, tmp_path: Path) -> dict[str, str]:
    """The test process's environment with the standard AWS variables of the server, and nothing
    else S3-specific: no vidx storage options, no other AWS settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "VIDX_"))}
    cfg = {"spark": {"master": "local[2]", "conf": {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2"}},
           # 4 s units: each 12 s video is 3 units; 2 tasks (as many as cores) hold whole videos
           "archive": {"max_unit_seconds": 4, "partitions": 2}, "clips": {"seconds": 4},
           "index": {"flat_below": 64}, "serve": {"reload_interval_s": 0.5}}
    (tmp_path / "vidx.yaml").write_text(yaml.safe_dump(cfg))
    return {**env, **s3_server.env(), "VIDX_CONFIG": str(tmp_path / "vidx.yaml")}


def _vidx(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    done = subprocess.run([VIDX, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"vidx {' '.join(args)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _last_json(out: str):
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def cli_embed(s3_server, archive, tmp_path_factory):
    """`vidx embed s3://...` into a warehouse bucket, as a user runs it; the archive bytes it read."""
    bucket, archive_uri, total = archive
    tmp = tmp_path_factory.mktemp("s3-cli")
    env = _env(s3_server, tmp)
    warehouse = f"s3://{s3_server.new_bucket('warehouse')}/w"
    mark = s3_server.mark()
    _vidx(env, "embed", archive_uri, "-w", warehouse, timeout=600)
    return env, warehouse, s3_server.bytes_served(bucket, mark) / total


def test_embed_reads_each_archive_byte_about_once(cli_embed):
    """Old code: a full download for the probe and one per work unit (ratio ~4 here)."""
    env, warehouse, ratio = cli_embed
    print(f"archive bytes read / archive bytes = {ratio:.3f}")
    units = json.loads(_vidx(env, "sql", "select count(*) as n, count(distinct video_id) as v from videos "
                             "where status = 'ok'", "-w", warehouse, "--format", "json"))
    assert units == [{"n": len(VIDEOS), "v": len(VIDEOS)}]
    assert 1.0 <= ratio <= MAX_READ_RATIO


def _wait_ready(port: int, proc: subprocess.Popen, version: str, timeout_s: float = 120) -> dict:
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            last = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).json()
            if last.get("index_version") == version:
                return last
        except (requests.ConnectionError, ValueError):
            pass
        time.sleep(0.3)
    raise AssertionError(f"server never served {version}; last /readyz: {last}")


def test_cli_end_to_end_on_s3(cli_embed, archive):
    env, w, _ = cli_embed
    archive_uri = archive[1]
    assert _last_json(_vidx(env, "validate", "-w", w, "--json"))["success"]
    v1 = _last_json(_vidx(env, "build-index", "-w", w, "--json"))["version"]
    hits = json.loads(_vidx(env, "search", "a red shape", "--json", "-k", "3", "-w", w))
    assert len(hits) == 3 and all(h["uri"].startswith(archive_uri + "/") for h in hits)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen([VIDX, "serve", "-w", w, "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        _wait_ready(port, server, v1)
        v2 = _last_json(_vidx(env, "build-index", "-w", w, "--force", "--json"))["version"]
        _wait_ready(port, server, v2)  # hot reload: the server follows CURRENT on S3
        found = requests.post(f"http://127.0.0.1:{port}/search", json={"text": "a red shape", "k": 2}, timeout=30)
        assert found.status_code == 200 and found.json()["index_version"] == v2
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(60)

    clips = json.loads(_vidx(env, "sql", "select count(*) as n from clips", "-w", w, "--format", "json"))[0]["n"]
    assert clips >= 9
    optimized = [json.loads(line) for line in _vidx(env, "tables", "optimize", "-w", w).splitlines()]
    assert {o["table"] for o in optimized} >= {"clips", "videos"}
    assert "deleted" in _vidx(env, "tables", "vacuum", "--retention-hours", "0", "--force", "-w", w)
    after = json.loads(_vidx(env, "sql", "select count(*) as n from clips", "-w", w, "--format", "json"))
    assert after[0]["n"] == clips

    listed = json.loads(_vidx(env, "index", "list", "--json", "-w", w))
    assert [(v["version"], v["current"]) for v in listed] == [(v1, False), (v2, True)]
    assert f"{v2} -> {v1}" in _vidx(env, "index", "rollback", "-w", w)
    assert f"{v1} -> {v2}" in _vidx(env, "index", "promote", v2, "-w", w)
    assert f"deleted versions: {v1}" in _vidx(env, "index", "gc", "--keep", "1", "-w", w)
    assert [v["version"] for v in json.loads(_vidx(env, "index", "list", "--json", "-w", w))] == [v2]


@pytest.fixture
def s3_options(s3_server, monkeypatch):
    """The server through `storage.options` only: no AWS variable in this process's environment."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    yield s3_server.options()
    storage.configure({})


def _log_entries(table_uri: str) -> dict[int, list[dict]]:
    fs, path = storage.filesystem(f"{table_uri}/_delta_log")
    infos = fs.get_file_info(pafs.FileSelector(path))
    out = {}
    for info in infos:
        if info.base_name.endswith(".json") and info.base_name[:-5].isdigit():
            with fs.open_input_stream(info.path) as src:
                out[int(info.base_name[:-5])] = [json.loads(line) for line in bytes(src.read()).splitlines() if line]
    return out


def _txn_versions(log: dict[int, list[dict]], app_id: str) -> list[int]:
    return sorted(a["txn"]["version"] for actions in log.values() for a in actions
                  if "txn" in a and a["txn"]["appId"] == app_id)


def test_racing_embeds_one_lease_no_lost_version(spark, s3_server, archive, s3_options, monkeypatch):
    from conftest import TEST_SPARK_CONF
    from vidx.config import load_config
    from vidx.spark.embed import run_embed
    from vidx.tables import table_uri
    from vidx.tables.lock import WarehouseLock, WarehouseLockedError

    cfg = load_config(env={}, overrides={
        "warehouse": f"s3://{s3_server.new_bucket('race')}/w", "storage.options": s3_options,
        "spark.master": "local[2]", "spark.conf": TEST_SPARK_CONF, "archive.max_unit_seconds": 4,
        "archive.partitions": 2, "archive.commit_every": 6})  # 2 checkpoints
    warehouse = cfg.warehouse
    acquire, barrier = WarehouseLock.acquire, threading.Barrier(2)

    def racing_acquire(self):  # both runs reach the lease at the same instant
        barrier.wait(timeout=120)
        acquire(self)

    monkeypatch.setattr(WarehouseLock, "acquire", racing_acquire)
    outcomes: list[object] = [None, None]

    def run(i: int) -> None:
        try:
            outcomes[i] = run_embed(cfg, archive[1], spark=spark, run_id=f"racer-{i}")
        except WarehouseLockedError as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    reports = [o for o in outcomes if not isinstance(o, WarehouseLockedError)]
    assert len(reports) == 1 and sum(isinstance(o, WarehouseLockedError) for o in outcomes) == 1, outcomes
    report = reports[0]
    assert report.checkpoints >= 2 and report.processed == len(VIDEOS)
    for name in ("clips", "videos"):
        log = _log_entries(table_uri(warehouse, name))
        assert sorted(log) == list(range(len(log)))  # contiguous: no version lost
        # each checkpoint's app transaction committed exactly once
        assert _txn_versions(log, report.pipeline_id) == list(range(1, report.checkpoints + 1))


def test_delta_writers_racing_on_s3_all_land(s3_server, s3_options):
    """delta-rs commits by conditional put: racing appends each get their own version."""
    from vidx.tables import delta
    from vidx.tables.files import write_data_file

    storage.configure(s3_options)
    bucket = s3_server.new_bucket("delta")
    uri = f"s3://{bucket}/t"
    schema = pa.schema([("video_id", pa.string()), ("n", pa.int64())])

    def commit(i: int) -> None:
        f = write_data_file(pa.table({"video_id": [f"v{i}"], "n": [i]}, schema=schema), table_uri=uri,
                            partition_values={}, name_hint=f"w{i}")
        delta.commit_files([f], table_uri=uri, schema=schema, partition_by=[], app_id=f"writer-{i}", txn_version=1)

    commit(0)  # the table exists before the race
    mark, n = s3_server.mark(), 6
    barrier = threading.Barrier(n)

    def racer(i: int) -> None:
        barrier.wait(timeout=60)
        commit(i)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(1, n + 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    log = _log_entries(uri)
    assert sorted(log) == list(range(n + 1))
    assert sorted(delta.read_table(uri)["n"].to_pylist()) == list(range(n + 1))
    for i in range(n + 1):
        assert _txn_versions(log, f"writer-{i}") == [1]
    commits = [r for r in s3_server.since(mark) if r.method == "PUT" and "/_delta_log/" in f"/{r.key}"
               and r.key.endswith(".json")]
    assert commits and all(r.if_none_match == "*" for r in commits)  # never an unconditional log write
