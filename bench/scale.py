"""`make bench-scale`: how the driver's wall time and peak memory grow with the warehouse (issue 12).

For each size N (default 1M, 3M and 10M clips x 512-d) it writes a synthetic warehouse straight to
Delta (bench/scale_data.py: no decoding), then runs each stage in a FRESH Python process, so that
process's peak RSS (getrusage ru_maxrss) is that stage's alone:

    checkpoint   an incremental embed checkpoint replacing 100 videos: known videos + archive diff,
                 then the real build_checkpoint / save_and_commit (the 100 videos' new clip files
                 are written beforehand by a separate process, as executors would)
    validate     `vidx validate` of the latest clips version (great-expectations gate)
    build-index  distributed `vidx build-index` (Spark local[2]; its JVM is reported apart)
    sql          an aggregate and a brute-force nearest-neighbour query (DuckDB over the table)
    serve        `vidx serve` start until ready, then 1,000 vector queries; the server's peak RSS
    optimize     `vidx tables optimize` (compaction + z-order of every bucket)

Results: bench/results/scale-<N>.json per size and bench/results/scale-summary.json (each stage's
growth from the smallest to the largest size run). Nothing here is a test threshold.

    .venv/bin/python -m bench.scale --sizes 1000000                  # one size, ~1 h on 2 busy cores
    .venv/bin/python -m bench.scale --sizes 1000000,3000000,10000000 --root /big/disk
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

LOG = logging.getLogger("bench.scale")
RESULTS = Path(__file__).parent / "results"
STAGES = ("checkpoint", "validate", "build-index", "sql", "serve", "optimize")
CHANGED_VIDEOS = 100
QUERIES = 1000
# The families that reach the default 0.95 recall target on this data: the 8-bit PQ candidates never
# do (recall@10 0.80 / 0.93 at 100k) yet cost minutes of codebook training each whatever N is, OPQ
# more. And the smallest allowed k-means sample: the build stays about memory, not k-means time.
INDEX_OVERRIDES = {"index.candidates": ["ivfpq_refine", "ivfflat"], "index.train_per_list": 30,
                   "index.distributed_above": 1}
SPARK_OVERRIDES = {"spark.master": "local[2]", "spark.conf": {"spark.ui.enabled": "false"}}


def rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # Linux: KiB


def _config(root: str) -> Any:
    from vidx.config import load_config

    return load_config(env={}, overrides={"warehouse": root, **INDEX_OVERRIDES, **SPARK_OVERRIDES})


# ---- stages: each runs in its own process (python -m bench.scale --stage NAME ...) ----

def stage_checkpoint(root: str, n: int) -> dict[str, Any]:
    from bench.scale_data import ARCHIVE, archive_files
    from vidx.archive.diff import diff_archive
    from vidx.spark.commit import BatchInput, build_checkpoint, save_and_commit
    from vidx.spark.embed import known_videos
    from vidx.tables import delta, rewrite, table_uri
    from vidx.tables.lock import WarehouseLock

    prepared = json.loads((Path(root) / "checkpoint-input.json").read_text())
    model_id, changed = prepared["model_id"], set(prepared["video_ids"])
    listing = [f if f.video_id not in changed else type(f)(f.uri, f.size_bytes + 1, f.mtime_us, f.video_id)
               for f in archive_files(prepared["videos"])]  # what list_archive returns: 100 files changed
    opened = _count_opened(rewrite)
    t0 = time.perf_counter()
    diff = diff_archive(listing, known_videos(root, model_id), archive_root=ARCHIVE)
    diff_s = time.perf_counter() - t0
    probes = {v: {"duration_s": 400.0, "fps": 30.0, "width": 640, "height": 360, "codec": "h264"} for v in changed}
    units = [{"kind": "unit", "unit_id": f"{v}:0", "video_id": v, "error_class": None, "error": None,
              "n_clips": 100, "n_frames": 400, "decode_s": 0.0, "encode_s": 0.0} for v in sorted(changed)]
    results = [{"kind": "file", "file": f} for f in prepared["files"]] + units
    inp = BatchInput(1, diff.todo, list(diff.deleted), diff.replaced_ids, probes, results)
    run_id = "bench-checkpoint"
    with WarehouseLock(root, run_id):
        cp = build_checkpoint(inp, warehouse=root, run_id=run_id, model_id=model_id)
        versions = save_and_commit(cp, warehouse=root, pipeline_id=f"vidx-embed:{model_id}:{run_id}",
                                   model_id=model_id)
    clips_files = len(delta.file_uris(table_uri(root, "clips")))
    return {"changed": len(diff.todo), "diff_s": round(diff_s, 2), "versions": list(versions),
            "clip_files_opened": sum("/tables/clips/" in p for p in opened),
            "videos_files_opened": sum("/tables/videos/" in p for p in opened),
            "clip_files_rewritten": len(cp.clips.removes), "clip_files_in_table": clips_files}


def _count_opened(module: Any) -> list[str]:
    """Paths the rewrite opens (its id-column probe included)."""
    opened: list[str] = []
    real = module.filesystem

    def counting(uri: str) -> Any:
        fs, root = real(uri)

        class Counting:
            def open_input_file(self, path: str) -> Any:
                opened.append(path)
                return fs.open_input_file(path)

        return Counting(), root

    module.filesystem = counting
    return opened


def stage_validate(root: str, n: int) -> dict[str, Any]:
    from vidx.quality.validate import validate_warehouse

    (rec,) = validate_warehouse(_config(root))
    return {"success": rec.success, "n_rows": rec.n_rows, "n_videos": rec.n_videos, "failed": rec.failed_expectations}


def stage_build_index(root: str, n: int) -> dict[str, Any]:
    from vidx.index.from_table import build_from_warehouse

    result = build_from_warehouse(_config(root))
    manifest = result.published.manifest if result.published else {}
    return {"factory": manifest.get("factory"), "index_bytes": manifest.get("index_bytes"),
            "memory_bytes": manifest.get("memory_bytes"), "recall_at_10": manifest.get("recall_at_10"),
            "nprobe": manifest.get("nprobe"), "count": manifest.get("count"),
            "train_vectors": (manifest.get("selection") or {}).get("train_vectors"),
            "build_seconds": manifest.get("build_seconds")}


def stage_sql(root: str, n: int) -> dict[str, Any]:
    import numpy as np

    from bench.scale_data import Generator
    from vidx.tables.sql import run_sql

    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    agg = run_sql(root, "select count(*) as clips, count(distinct video_id) as videos, "
                        "avg(end_s - start_s) as mean_s from clips")
    out["aggregate_s"], out["aggregate"] = round(time.perf_counter() - t0, 2), agg.to_pylist()[0]
    query = Generator().vectors(np.array([n + 7]), salt=9)[0]
    literal = "[" + ",".join(f"{v:.6f}" for v in query) + "]::FLOAT[]"
    t0 = time.perf_counter()
    top = run_sql(root, f"select video_id, clip_idx, list_cosine_similarity(embedding, {literal}) as score "
                        "from clips order by score desc limit 10")
    out["nearest_s"], out["nearest_top_score"] = round(time.perf_counter() - t0, 2), top["score"][0].as_py()
    return out


def stage_serve(root: str, n: int) -> dict[str, Any]:
    import numpy as np
    import requests

    from bench.scale_data import Generator

    port = _free_port()
    cmd = [sys.executable, "-c", "from vidx.cli import main; raise SystemExit(main())", "serve", "--warehouse", root,
           "--port", str(port)]
    t0 = time.perf_counter()
    # The server's log goes to this process's stderr (the bench log): a pipe nobody reads would block it.
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=sys.stderr)
    url = f"http://127.0.0.1:{port}"
    try:
        ready_s = _wait_ready(url, proc, t0)
        queries = Generator().vectors(np.arange(n, n + QUERIES // 100 + 1), salt=5)[:QUERIES]
        with requests.Session() as session:
            t1 = time.perf_counter()
            for q in queries:
                resp = session.post(f"{url}/search", json={"vector": q.tolist(), "k": 10}, timeout=60)
                resp.raise_for_status()
            query_s = time.perf_counter() - t1
        peak = _vm_hwm_mb(proc.pid)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return {"ready_s": round(ready_s, 2), "queries": QUERIES, "query_s": round(query_s, 2),
            "qps": round(QUERIES / query_s, 1), "server_peak_rss_mb": peak}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_ready(url: str, proc: subprocess.Popen[bytes], t0: float) -> float:
    import requests

    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vidx serve exited ({proc.returncode}); see the bench log")
        try:
            if requests.get(f"{url}/readyz", timeout=5).status_code == 200:
                return time.perf_counter() - t0
        except requests.ConnectionError:
            pass
        time.sleep(0.5)
    raise RuntimeError("vidx serve was not ready within an hour")


def _vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


def stage_optimize(root: str, n: int) -> dict[str, Any]:
    from vidx.cli import main

    code = main(["tables", "optimize", "--warehouse", root, "--table", "clips", "--table", "videos"])
    return {"exit_code": code}


def prepare_checkpoint(root: str, n: int) -> dict[str, Any]:
    """Executor side of the checkpoint stage: the new clip files of 100 changed videos."""
    import numpy as np

    from bench.scale_data import CLIPS_PER_VIDEO, Generator, archive_files, clips_table
    from vidx.tables import clips_layout, table_uri, write_clip_files

    videos = n // CLIPS_PER_VIDEO
    numbers = np.linspace(0, videos - 1, CHANGED_VIDEOS).astype(int)
    files = [archive_files(videos)[i] for i in numbers]
    model_id = str(json.loads((Path(root) / "generated.json").read_text())["model_id"])
    uri = table_uri(root, "clips")
    table = clips_table(files, numbers, Generator().vectors(numbers, salt=1), model_id, "bench-checkpoint")
    written = write_clip_files(table, clips_uri=uri, layout=clips_layout(uri), model_id=model_id,
                               name_hint="bench-checkpoint-p0-a0")
    out = {"model_id": model_id, "videos": videos, "video_ids": [f.video_id for f in files],
           "files": [f.to_json() for f in written]}
    (Path(root) / "checkpoint-input.json").write_text(json.dumps(out))
    return {"files": len(written)}


def generate(root: str, n: int) -> dict[str, Any]:
    from bench.scale_data import Generator, write_warehouse

    out = write_warehouse(root, n, Generator())
    (Path(root) / "generated.json").write_text(json.dumps(out))
    return out


# Imported before the baseline is taken: `rss_after_imports_mb` is the libraries' fixed cost, and
# `peak_above_imports_mb` what the stage's work added on top of it.
STAGE_IMPORTS = {"checkpoint": ["vidx.spark.embed", "vidx.spark.commit"], "validate": ["vidx.quality.validate",
                 "great_expectations", "pandas"], "build-index": ["vidx.index.from_table", "vidx.index.distributed"],
                 "sql": ["vidx.tables.sql", "duckdb"], "serve": ["requests"], "optimize": ["vidx.cli", "deltalake"]}

STAGE_FUNCS = {"generate": generate, "prepare-checkpoint": prepare_checkpoint, "checkpoint": stage_checkpoint,
               "validate": stage_validate, "build-index": stage_build_index, "sql": stage_sql,
               "serve": stage_serve, "optimize": stage_optimize}


def run_stage_here(name: str, root: str, n: int) -> None:
    """Child process: run one stage, print one JSON line with its wall time and peak RSS."""
    import importlib

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    for module in STAGE_IMPORTS.get(name, []):
        importlib.import_module(module)
    baseline = rss_mb()
    t0 = time.perf_counter()
    extra = STAGE_FUNCS[name](root, n)
    wall = time.perf_counter() - t0
    peak = rss_mb()
    print(json.dumps({"stage": name, "wall_s": round(wall, 2), "peak_rss_mb": round(peak, 1),
                      "rss_after_imports_mb": round(baseline, 1), "peak_above_imports_mb": round(peak - baseline, 1),
                      "children_peak_rss_mb": round(rss_mb(resource.RUSAGE_CHILDREN), 1), **extra}, default=str))


def run_stage(name: str, root: str, n: int, log: Path) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.scale", "--stage", name, "--root", root, "--n", str(n)]
    LOG.info("N=%d: %s", n, name)
    with open(log, "a") as err:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True, check=False)
    if proc.returncode != 0:
        return {"stage": name, "error": f"exit {proc.returncode}; see {log}"}
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def du_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def run_size(n: int, base: Path, stages: list[str], keep: bool) -> dict[str, Any]:
    root = base / f"scale-{n}"
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    log = base / f"scale-{n}.log"
    out: dict[str, Any] = {"n_clips": n, "dim": 512, "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                           "load_avg_1m_at_start": os.getloadavg()[0], "index_overrides": INDEX_OVERRIDES,
                           "stages": {}}
    for name in ["generate", "prepare-checkpoint", *stages]:
        result = run_stage(name, str(root), n, log)
        out["stages"][name] = result
        LOG.info("N=%d %s: %s", n, name, json.dumps(result, default=str)[:300])
        if "error" in result and name in ("generate", "prepare-checkpoint"):
            break
    out["disk_bytes_after"] = du_bytes(root)
    out["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    if not keep:
        shutil.rmtree(root, ignore_errors=True)
    return out


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per stage: wall time and peak RSS at each size, and their growth from the smallest to the largest."""
    sizes = sorted(results, key=lambda r: r["n_clips"])
    summary: dict[str, Any] = {"sizes": [r["n_clips"] for r in sizes], "stages": {}}
    for stage in STAGES:
        rows = [r["stages"].get(stage, {}) for r in sizes]
        if not all("wall_s" in row for row in rows):
            continue
        entry: dict[str, Any] = {"wall_s": [row["wall_s"] for row in rows],
                                 "peak_rss_mb": [row["peak_rss_mb"] for row in rows],
                                 "peak_above_imports_mb": [row.get("peak_above_imports_mb") for row in rows]}
        if stage == "serve":
            entry["server_peak_rss_mb"] = [row["server_peak_rss_mb"] for row in rows]
        if stage == "build-index":
            # The target: driver RSS <= 1.5 x index size + a constant; this residual is that constant.
            entry["index_mb"] = [round((row.get("index_bytes") or 0) / 2**20, 1) for row in rows]
            entry["rss_minus_1_5x_index_mb"] = [round(rss - 1.5 * idx, 1) for rss, idx in
                                                zip(entry["peak_rss_mb"], entry["index_mb"], strict=True)]
        if len(rows) > 1:
            entry["wall_growth"] = round(rows[-1]["wall_s"] / max(rows[0]["wall_s"], 1e-9), 2)
            entry["rss_growth"] = round(rows[-1]["peak_rss_mb"] / max(rows[0]["peak_rss_mb"], 1e-9), 2)
        summary["stages"][stage] = entry
    return summary


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    tmp.replace(path)  # temp-then-rename: a reader never sees half a result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1000000,3000000,10000000", help="clip counts, comma-separated")
    ap.add_argument("--root", default=os.environ.get("BENCH_SCALE_ROOT", "/tmp/vidx-bench-scale"),
                    help="where the warehouses go (10M x 512 needs ~45 GB free); deleted after each size")
    ap.add_argument("--stages", default=",".join(STAGES), help="stages to run, comma-separated")
    ap.add_argument("--keep", action="store_true", help="keep each warehouse instead of deleting it")
    ap.add_argument("--stage", help=argparse.SUPPRESS)  # internal: run one stage in this process
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.stage:
        run_stage_here(args.stage, args.root, args.n)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    RESULTS.mkdir(exist_ok=True)
    base = Path(args.root)
    base.mkdir(parents=True, exist_ok=True)
    machine = {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
               "python": platform.python_version()}
    for n in [int(s) for s in args.sizes.split(",")]:
        result = run_size(n, base, [s for s in args.stages.split(",") if s], args.keep) | {"machine": machine}
        _write_json(RESULTS / f"scale-{n}.json", result)
    results = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("scale-[0-9]*.json"))]
    _write_json(RESULTS / "scale-summary.json", summarize(results))
    print(json.dumps(summarize(results), indent=2))


if __name__ == "__main__":
    main()
