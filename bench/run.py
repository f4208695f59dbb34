"""`make bench`: decode, encode, token clustering and Spark overhead, side by side in one run.

Writes bench/results/<UTC time>.json. Videos are generated (30 fps H.264, 360p and 1080p); set
BENCH_VIDEOS=/path/to/folder to also measure real footage. Figures are throughput on THIS machine;
nothing here is a test threshold.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

LOG = logging.getLogger("bench")
RESULTS = Path(__file__).parent / "results"


def machine() -> dict[str, Any]:
    cpu = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.is_available(), "bf16_cpu": "avx512_bf16" in open("/proc/cpuinfo").read()}


def bench_decode(path: Path, image_size: int = 224) -> dict[str, float]:
    """Sparse (vidx: 1 frame/s by timestamp, resized in decord) vs decoding every frame and dropping."""
    import decord

    from vidx.decode.decoder import decode_range
    from vidx.decode.probe import probe

    info = probe(str(path))
    t0 = time.perf_counter()
    sparse = decode_range(str(path), start_s=0, end_s=info.duration_s + 1, sample_fps=1.0, image_size=image_size)
    sparse_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1)
    step = max(1, round(info.fps))
    kept = 0
    for i in range(len(vr)):  # decode all, keep one per second: what a naive reader does
        frame = vr.next()
        if i % step == 0:
            kept += int(frame.shape[0] > 0)
    full_s = time.perf_counter() - t0
    sparse_fps, full_fps = len(sparse.times) / sparse_s, kept / full_s
    return {"file": path.name, "duration_s": info.duration_s, "height": info.height, "sampled": len(sparse.times),
            "sparse_fps": sparse_fps, "full_fps": full_fps, "speedup": sparse_fps / full_fps}


def bench_encode(videos: list[Path], model: str, pretrained: str, batch: int) -> dict[str, Any]:
    """Bare forward (tensor prepared) vs vidx's whole embed path (decode, prefetch, batch, encode)."""
    from vidx.config import load_config
    from vidx.encode.batcher import decode_ahead, encode_batched
    from vidx.encode.embedder import encode_frames
    from vidx.encode.models import ModelSpec, load_model
    from vidx.encode.precision import with_precision
    from vidx.spark.stages import _decode_unit

    cfg = load_config(env={}, overrides={"encode.model": model, "encode.pretrained": pretrained})
    lm, precision = with_precision(load_model(ModelSpec(model, pretrained), device="cpu"), "auto")
    x = torch.randn(batch, 3, lm.image_size, lm.image_size).to(next(lm.model.parameters()).dtype)
    with torch.inference_mode():
        lm.model.encode_image(x)
        t0 = time.perf_counter()
        reps = 3
        for _ in range(reps):
            lm.model.encode_image(x)
        bare = reps * batch / (time.perf_counter() - t0)
    units = [{"unit_id": f"{p.name}:0", "video_id": p.name, "uri": str(p), "start_s": 0.0,
              "end_s": float("inf"), "duration_s": None} for p in videos]
    t0 = time.perf_counter()
    decoded = decode_ahead(units, lambda u: _decode_unit(cfg, u, lm.image_size), workers=2, prefetch=4)
    n = 0
    for item in encode_batched(decoded, lambda f: encode_frames(lm, f, batch_size=len(f)), batch_size=batch,
                               dim=lm.dim):
        n += 0 if item.embeddings is None else len(item.embeddings)
    pipeline = n / (time.perf_counter() - t0)
    return {"model": model, "precision": precision, "batch": batch, "bare_ips": bare, "pipeline_ips": pipeline,
            "efficiency": pipeline / bare, "frames": n}


def bench_spark(videos_dir: Path, workdir: Path) -> dict[str, Any]:
    """`vidx embed` on local[2] (session start included) vs the same units through EmbedTask in-process."""
    import pyarrow as pa

    from vidx.archive import list_archive, plan_units
    from vidx.config import load_config
    from vidx.decode.probe import probe
    from vidx.encode.models import ModelSpec, model_id_for
    from vidx.spark.embed import run_embed
    from vidx.spark.stages import UNITS_IN, EmbedTask

    cfg = load_config(env={}, overrides={"warehouse": str(workdir / "w"), "spark.master": "local[2]",
                                         "spark.conf": {"spark.ui.enabled": "false"}})
    t0 = time.perf_counter()
    report = run_embed(cfg, str(videos_dir))
    local_wall = time.perf_counter() - t0
    files = list_archive(str(videos_dir), cfg.archive.extensions)
    units = plan_units([(f.video_id, f.uri, f.size_bytes, probe(f.uri).duration_s) for f in files],
                       max_unit_seconds=cfg.archive.max_unit_seconds, clip_seconds=cfg.clips.seconds)
    rows = [{"bin": 0, "unit_id": u.unit_id, "video_id": u.video_id, "uri": u.uri, "start_s": u.start_s,
             "end_s": u.end_s, "duration_s": None} for u in units]
    model_id = model_id_for(ModelSpec(cfg.encode.model, cfg.encode.pretrained))
    task = EmbedTask(cfg=cfg, run_id="bench", model_id=model_id, clips_uri=str(workdir / "inprocess"))
    t0 = time.perf_counter()
    out = list(task(iter([pa.RecordBatch.from_pylist(rows, schema=UNITS_IN)])))
    inprocess = time.perf_counter() - t0
    return {"local_wall_s": local_wall, "inprocess_wall_s": inprocess, "overhead": local_wall / inprocess,
            "videos": len(files), "frames": report.frames, "clips": report.clips, "model": cfg.encode.model,
            "result_batches": len(out)}


def bench_token_clustering(model: str, pretrained: str) -> dict[str, Any]:
    from vidx.encode.centerclip import TokenClustering
    from vidx.encode.centerclip_bench import bench_token_clustering as bench
    from vidx.encode.models import ModelSpec, load_model

    lm = load_model(ModelSpec(model, pretrained), device="cpu")
    return dict(bench(lm.model, frames_per_clip=4, n_clips=24, clustering=TokenClustering(enabled=True)))


def make_videos(root: Path) -> dict[str, list[Path]]:
    from vidx.synth import write_video

    out: dict[str, list[Path]] = {"360p": [], "1080p": [], "archive": []}
    write_video(root / "v360.mp4", duration_s=30, fps=30, width=640, height=360, seed=1)
    out["360p"].append(root / "v360.mp4")
    write_video(root / "v1080.mp4", duration_s=12, fps=30, width=1920, height=1080, seed=2)
    out["1080p"].append(root / "v1080.mp4")
    for i in range(10):  # the "5-minute archive": 10 x 30 s
        path = root / "archive" / f"a{i:02d}.mp4"
        write_video(path, duration_s=30, fps=25, width=320, height=240, seed=10 + i)
        out["archive"].append(path)
    return out


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    model = os.environ.get("BENCH_MODEL", "ViT-B-32")
    result: dict[str, Any] = {"machine": machine(), "started_at": datetime.now(UTC).isoformat()}
    with tempfile.TemporaryDirectory(prefix="vidx-bench-") as tmp:
        root = Path(tmp)
        videos = make_videos(root)
        decode = [bench_decode(p) for p in videos["360p"] + videos["1080p"]]
        real = sorted(Path(os.environ["BENCH_VIDEOS"]).rglob("*.mp4")) if os.environ.get("BENCH_VIDEOS") else []
        decode += [bench_decode(p) for p in real[:5]]
        result["decode"] = {"sparse_fps": float(np.mean([d["sparse_fps"] for d in decode])),
                            "full_fps": float(np.mean([d["full_fps"] for d in decode])),
                            "speedup": float(np.mean([d["speedup"] for d in decode])), "files": decode}
        result["encode"] = bench_encode(videos["archive"][:4], model, "random", 32)
        result["token_clustering"] = {"random_" + model: bench_token_clustering(model, "random")}
        result["spark"] = bench_spark(root / "archive", root / "spark")
    result["finished_at"] = datetime.now(UTC).isoformat()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2, default=float))
    print(json.dumps(result, indent=2, default=float))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
