"""Exactly-once, incremental, fault-tolerant embed runs on a real standalone Spark cluster.

Every run is `spark-submit --master spark://127.0.0.1:PORT jobs/embed.py ...` against a master and
two workers started with pyspark's sbin/spark-daemon.sh. Each fault test compares its tables with a
clean run's: same rows, zero duplicate (video_id, model_id, clip_idx), no uncommitted file visible.
"""

from __future__ import annotations

import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.integration.cluster import Cluster, free_port
from vidx.cli import main
from vidx.synth import write_bad_files, write_video
from vidx.tables import delta, table_uri
from vidx.tables.checkpoint import run_dir

# precision pinned: each fault run's warehouse is compared with the clean one's, model_id included, and
# `auto` is decided per warehouse by a speed probe (a loaded machine could decide differently)
CONFIG = """
archive: {max_unit_seconds: 4, commit_every: 3}
decode: {timeout_s: 5, max_duration_s: 60}
encode: {precision: fp32}
"""
EXPECTED_ERRORS = {"zero_byte.mp4": "corrupt", "truncated.mp4": "corrupt", "random_bytes.mp4": "corrupt",
                   "notes.mp4": "corrupt", "hang_me.mp4": "timeout", "too_long.mp4": "too_large"}
HANG = {"spark.executorEnv.VIDX_FAULT_DECODE_HANG": "hang_me"}


def make_archive(root: Path) -> Path:
    specs = [("a.mp4", 10, 25), ("b.mkv", 8, 30), ("sub/c.mov", 12, 24), ("d.mp4", 9, 15), ("e.avi", 8, 25)]
    for i, (name, dur, fps) in enumerate(specs):
        write_video(root / name, duration_s=dur, fps=fps, width=160, height=120, seed=100 + i)
    for name, path in write_bad_files(root / "bad").items():
        assert EXPECTED_ERRORS[name]
        assert path.exists()
    shutil.copy(root / "a.mp4", root / "bad" / "hang_me.mp4")
    write_video(root / "bad" / "too_long.mp4", duration_s=70, fps=2, width=64, height=48, seed=7)
    return root


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster"), free_port(), free_port())
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def config_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "vidx.yaml"
    path.write_text(CONFIG)
    return path


def embed(cluster, archive, warehouse, config_file, *extra, env=None, conf=None, background=False):
    sub = cluster.submit(str(archive), "--warehouse", str(warehouse), "--config", str(config_file), *extra,
                         env=env, conf={**HANG, **(conf or {})}, background=background)
    if not background:
        assert sub.proc.returncode == 0, sub.output[-4000:]
    return sub


def clips(warehouse) -> list[dict]:
    return delta.read_table(table_uri(str(warehouse), "clips"),
                            columns=["video_id", "model_id", "clip_idx", "run_id"]).to_pylist()


def videos(warehouse) -> dict[str, dict]:
    rows = delta.read_table(table_uri(str(warehouse), "videos")).to_pylist()
    return {r["uri"]: r for r in rows}


def keys(rows) -> Counter:
    return Counter((r["video_id"], r["model_id"], r["clip_idx"]) for r in rows)


def orphans(warehouse, name="clips") -> set[str]:
    uri = table_uri(str(warehouse), name)
    live = {u.replace("file://", "") for u in delta.file_uris(uri)}
    on_disk = {str(p) for p in Path(uri).rglob("*.parquet")}
    return on_disk - live


def assert_same_as_clean(warehouse, clean):
    rows = clips(warehouse)
    counts = keys(rows)
    assert max(counts.values()) == 1, [k for k, n in counts.items() if n > 1]
    assert set(counts) == set(keys(clean["clips"]))
    assert {u: v["status"] for u, v in videos(warehouse).items()} == clean["status"]


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.3)
    raise TimeoutError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def clean(cluster, config_file, tmp_path_factory):
    archive = make_archive(tmp_path_factory.mktemp("archive"))
    warehouse = tmp_path_factory.mktemp("clean") / "w"
    t0 = time.time()
    embed(cluster, archive, warehouse, config_file)
    wall = time.time() - t0
    rows = clips(warehouse)
    print(f"clean cluster run: {len(rows)} clips in {wall:.1f} s")
    return {"archive": archive, "warehouse": warehouse, "clips": rows,
            "status": {u: v["status"] for u, v in videos(warehouse).items()}, "wall": wall}


def test_bad_corpus_every_good_file_indexed_and_right_error_class(clean):
    rows = videos(clean["warehouse"])
    assert len(rows) == 5 + len(EXPECTED_ERRORS)
    for uri, row in rows.items():
        name = Path(uri).name
        if name in EXPECTED_ERRORS:
            assert row["status"] == "failed" and row["error_class"] == EXPECTED_ERRORS[name], row
            assert row["error"]
        else:
            assert row["status"] == "ok" and row["n_clips"] > 0, row
    counts = keys(clean["clips"])
    assert max(counts.values()) == 1 and len({vid for vid, _, _ in counts}) == 5
    assert not orphans(clean["warehouse"])


def test_unchanged_rerun_commits_no_clips_version(cluster, clean, config_file):
    before = delta.latest_version(table_uri(str(clean["warehouse"]), "clips"))
    embed(cluster, clean["archive"], clean["warehouse"], config_file)
    assert delta.latest_version(table_uri(str(clean["warehouse"]), "clips")) == before
    assert_same_as_clean(clean["warehouse"], clean)


def test_driver_killed_after_checkpoints_rerun_redoes_only_the_rest(cluster, clean, config_file, tmp_path):
    warehouse = tmp_path / "w"
    slow = {"spark.executorEnv.VIDX_FAULT_UNIT_DELAY_S": "1"}
    sub = embed(cluster, clean["archive"], warehouse, config_file, "--run-id", "r-kill", conf=slow, background=True)
    clips_uri = table_uri(str(warehouse), "clips")
    wait_for(lambda: delta.table_exists(clips_uri) and (delta.latest_version(clips_uri) or 0) >= 1, 240,
             "two committed checkpoints")
    sub.kill()
    done_before = len(clips(warehouse))
    assert 0 < done_before < len(clean["clips"])
    embed(cluster, clean["archive"], warehouse, config_file, "--run-id", "r-kill")
    assert_same_as_clean(warehouse, clean)
    runs = delta.read_table(table_uri(str(warehouse), "runs")).to_pylist()
    (rerun,) = [r for r in runs if r["run_id"] == "r-kill" and r["status"] == "succeeded"]
    total_units = sum(1 for _ in clean["clips"])  # with 4 s units, one unit per clip here
    print(f"killed after {done_before} clips; rerun embedded {rerun['n_units']} of {total_units} units")
    assert 0 < rerun["n_units"] < total_units


def test_driver_killed_between_files_and_commit_no_duplicates_orphans_vacuumed(cluster, clean, config_file,
                                                                               tmp_path):
    warehouse = tmp_path / "w"
    sub = embed(cluster, clean["archive"], warehouse, config_file, "--run-id", "r-crash",
                env={"VIDX_FAULT_KILL_DRIVER_BEFORE_COMMIT": "2"}, background=True)
    assert sub.wait() != 0
    assert orphans(warehouse), "batch 2's files should exist uncommitted"
    assert not (Path(run_dir(str(warehouse), "r-crash")) / "batch-000002.json").exists()
    embed(cluster, clean["archive"], warehouse, config_file, "--run-id", "r-crash")
    assert_same_as_clean(warehouse, clean)
    assert main(["tables", "vacuum", "--retention-hours", "0", "--force", "--warehouse", str(warehouse)]) == 0
    assert not orphans(warehouse) and not orphans(warehouse, "videos")
    assert_same_as_clean(warehouse, clean)


def test_add_modify_delete_exactly_those_changes_in_tables_and_index(cluster, config_file, tmp_path):
    from vidx.config import load_config
    from vidx.index.from_table import build_from_warehouse
    from vidx.index.publish import load_index
    from vidx.quality.validate import validate_warehouse

    archive = make_archive(tmp_path / "archive")
    warehouse = tmp_path / "w"
    embed(cluster, archive, warehouse, config_file)
    # the archive is half bad files on purpose: let the failed share pass the publish gate
    cfg = load_config(env={}, overrides={"warehouse": str(warehouse), "quality.max_failed_share": 1.0})
    assert all(v.success for v in validate_warehouse(cfg))
    first = build_from_warehouse(cfg).published.manifest
    before = clips(warehouse)
    vid = {Path(u).name: v for u, v in videos(warehouse).items()}
    write_video(archive / "new.mp4", duration_s=6, fps=25, width=160, height=120, seed=55)
    write_video(archive / "b.mkv", duration_s=13, fps=30, width=160, height=120, seed=56)   # modified
    (archive / "d.mp4").unlink()                                                           # deleted
    embed(cluster, archive, warehouse, config_file)
    after = clips(warehouse)
    counts = keys(after)
    assert max(counts.values()) == 1
    per_video = Counter(r["video_id"] for r in after)
    now = {Path(u).name: v for u, v in videos(warehouse).items()}
    assert now["d.mp4"]["status"] == "deleted" and per_video[vid["d.mp4"]["video_id"]] == 0
    assert now["b.mkv"]["status"] == "ok" and now["b.mkv"]["duration_s"] == pytest.approx(13, abs=0.2)
    assert per_video[vid["b.mkv"]["video_id"]] == 4                       # 13 s -> 4 clips (was 2)
    assert per_video[now["new.mp4"]["video_id"]] == 2
    untouched = {vid[n]["video_id"] for n in ("a.mp4", "c.mov", "e.avi")}
    assert {k for k in keys(before) if k[0] in untouched} == {k for k in counts if k[0] in untouched}
    assert len(now) == len(vid) + 1                                        # one row per file, no duplicates
    assert all(v.success for v in validate_warehouse(cfg))
    second = build_from_warehouse(cfg).published.manifest
    assert second["count"] == len(after) == first["count"] - 2 - 3 + 4 + 2
    ids = load_index(str(warehouse)).ids.to_pylist()
    assert vid["d.mp4"]["video_id"] not in {r["video_id"] for r in ids}


def test_worker_killed_mid_job_completes_on_survivor(cluster, clean, config_file, tmp_path):
    warehouse = tmp_path / "w"
    slow = {"spark.executorEnv.VIDX_FAULT_UNIT_DELAY_S": "1"}
    sub = embed(cluster, clean["archive"], warehouse, config_file, conf=slow, background=True)
    clips_uri = table_uri(str(warehouse), "clips")
    wait_for(lambda: delta.table_exists(clips_uri), 240, "the first checkpoint")
    cluster.kill_worker(1)
    assert sub.wait(timeout=400) == 0, sub.output[-4000:]
    assert_same_as_clean(warehouse, clean)
