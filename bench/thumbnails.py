"""What clip thumbnails cost the embed stage: the same work units through EmbedTask (decode, encode,
pool, thumbnails, Parquet) with `thumbnails.enabled` on and off, alternating, in one process.

    .venv/bin/python -m bench.thumbnails [--models vidx-tiny:synthetic-v1 ViT-B-32:random] [--pairs 5]

Figures: medians of the paired runs' throughput (frames/s) and the median of the per-pair cost,
plus the time spent inside the thumbnail code itself (a direct, load-independent share of the
wall time). Writes bench/results/thumbnails-<UTC time>.json; bench/run.py includes the same case.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

LOG = logging.getLogger("bench.thumbnails")
RESULTS = Path(__file__).parent / "results"


class _Timed:
    """Wraps vidx.encode.thumbnails.clip_thumbnails to add up its time, clips and bytes."""

    def __init__(self) -> None:
        import vidx.encode.thumbnails as thumbs

        self.module, self.real = thumbs, thumbs.clip_thumbnails
        self.seconds, self.clips, self.bytes = 0.0, 0, 0

    def __call__(self, *args: Any, **kw: Any) -> list[bytes]:
        t0 = time.perf_counter()
        out = self.real(*args, **kw)
        self.seconds += time.perf_counter() - t0
        self.clips += len(out)
        self.bytes += sum(len(b) for b in out)
        return out

    def __enter__(self) -> _Timed:
        self.module.clip_thumbnails = self  # type: ignore[assignment]
        return self

    def __exit__(self, *_: object) -> None:
        self.module.clip_thumbnails = self.real


def bench_thumbnails(videos: list[Path], model: str, pretrained: str, pairs: int = 5) -> dict[str, Any]:
    """EmbedTask over `videos` (one unit each) with thumbnails on and off, alternating."""
    import pyarrow as pa

    from vidx.config import load_config
    from vidx.decode.probe import probe
    from vidx.encode.models import ModelSpec, load_model
    from vidx.encode.registry import plan_in_process
    from vidx.spark import stages
    from vidx.spark.stages import UNITS_IN, EmbedTask

    stages._MODELS.clear()  # the per-worker model cache: a previous model must not be reused
    base = load_config(env={}, overrides={"encode.model": model, "encode.pretrained": pretrained})
    base, model_id = plan_in_process(base, load_model(ModelSpec(model, pretrained), device="cpu"))
    rows = [{"bin": 0, "unit_id": f"{p.name}:0", "video_id": p.name, "uri": str(p), "start_s": 0.0,
             "end_s": float("inf"), "duration_s": probe(str(p)).duration_s} for p in videos]
    batch = pa.RecordBatch.from_pylist(rows, schema=UNITS_IN)
    with tempfile.TemporaryDirectory(prefix="vidx-thumbs-") as tmp:
        def run(enabled: bool, tag: str) -> tuple[float, int]:
            cfg = base.with_overrides({"thumbnails.enabled": enabled})
            task = EmbedTask(cfg=cfg, run_id="bench", model_id=model_id, clips_uri=f"{tmp}/{tag}")
            t0 = time.perf_counter()
            out = pa.Table.from_batches(list(task(iter([batch]))))
            frames = int(np.nansum(out["n_frames"].to_numpy(zero_copy_only=False).astype(float)))
            return time.perf_counter() - t0, frames

        run(True, "warm-on")  # model, decoder subprocesses, allocator
        run(False, "warm-off")
        on, off = [], []
        with _Timed() as timed:
            for i in range(pairs):  # alternate, and swap which goes first, so drift hits both alike
                order = [(True, on), (False, off)] if i % 2 == 0 else [(False, off), (True, on)]
                for enabled, runs in order:
                    runs.append(run(enabled, f"{'on' if enabled else 'off'}-{i}"))
    frames = on[0][1]
    on_fps = [frames / s for s, _ in on]
    off_fps = [frames / s for s, _ in off]
    paired = [1.0 - a / b for a, b in zip(on_fps, off_fps, strict=True)]
    wall_on = sum(s for s, _ in on)
    return {"model": model, "pretrained": pretrained, "videos": len(videos), "frames_per_run": frames, "pairs": pairs,
            "with_fps": on_fps, "without_fps": off_fps, "median_with_fps": float(np.median(on_fps)),
            "median_without_fps": float(np.median(off_fps)),
            "cost": 1.0 - float(np.median(on_fps)) / float(np.median(off_fps)),
            "median_paired_cost": float(np.median(paired)), "paired_costs": paired,
            "thumbnail_s_per_clip": timed.seconds / max(1, timed.clips),
            "thumbnail_share_of_wall": timed.seconds / wall_on, "clips_per_run": timed.clips // pairs,
            "mean_thumbnail_bytes": timed.bytes / max(1, timed.clips)}


def archive_videos(root: Path, n: int = 6) -> list[Path]:
    """Footage like bench/run.py's archive: 320x240 H.264, 30 s, 25 fps, x264's default keyframes."""
    from vidx.synth import write_video

    paths = []
    for i in range(n):
        path = root / f"a{i:02d}.mp4"
        write_video(path, duration_s=30, fps=25, width=320, height=240, seed=10 + i)
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vidx-tiny:synthetic-v1", "ViT-B-32:random"])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--videos", type=int, default=6)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import os

    result: dict[str, Any] = {"started_at": datetime.now(UTC).isoformat(), "load_avg_1m_at_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="vidx-thumbs-videos-") as tmp:
        videos = archive_videos(Path(tmp), args.videos)
        result["runs"] = {spec: bench_thumbnails(videos, *spec.split(":", 1), pairs=args.pairs)
                          for spec in args.models}
    result["finished_at"] = datetime.now(UTC).isoformat()
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"thumbnails-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
