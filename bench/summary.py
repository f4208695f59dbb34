"""The summary arithmetic of bench/run.py, kept free of torch so unit tests can check it on hand-made numbers.

How figures are combined (README: Performance):
- a speed-up over several files is POOLED: total frames / total seconds of one method over the same
  for the other. A mean of per-file ratios lets one short, fast file outweigh the rest; the geometric
  mean of the per-file ratios is given next to it (the typical file, symmetric in both directions).
- an efficiency from repeated runs is the MEDIAN OF PAIRED RATIOS: each pipeline run over the bare
  run measured right next to it, so a burst of load hits both halves of a pair. The ratio of two
  separate medians can pair a quiet pipeline run with a busy bare one.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any


def geomean(values: Iterable[float]) -> float:
    """Geometric mean of positive numbers."""
    logs = [math.log(v) for v in values]
    if not logs:
        raise ValueError("geometric mean of no values")
    return math.exp(sum(logs) / len(logs))


def pooled_rate(frames: Iterable[float], seconds: Iterable[float]) -> float:
    """Total frames / total seconds."""
    return sum(frames) / sum(seconds)


def paired_ratios(numerators: Sequence[float], denominators: Sequence[float]) -> list[float]:
    """numerators[i] / denominators[i]: run i of one kind over the run of the other kind next to it."""
    return [n / d for n, d in zip(numerators, denominators, strict=True)]


def summarise_pairs(bare: Sequence[float], pipeline: Sequence[float]) -> dict[str, Any]:
    """Efficiency of alternating (bare, pipeline) throughput runs: the median of the per-pair ratios."""
    ratios = paired_ratios(pipeline, bare)
    return {"efficiency": statistics.median(ratios), "efficiency_pairs": ratios,
            "efficiency_range": [min(ratios), max(ratios)], "bare_ips": statistics.median(bare),
            "pipeline_ips": statistics.median(pipeline), "bare_runs": list(bare), "pipeline_runs": list(pipeline)}


def keyframe_class(gop_frames: float, fps: float) -> str:
    """Which keyframe-interval row a file belongs to: at 1 sample/s, what a seek can skip."""
    interval_s = gop_frames / fps
    if interval_s <= 1.05:  # a keyframe every second or more often (phone cameras)
        return "<= 1 s"
    if interval_s <= 2.1:  # streaming encoders
        return "<= 2 s"
    return "> 2 s"  # x264's default of 250 frames and other long GOPs


def _pooled(files: Sequence[dict[str, Any]]) -> dict[str, Any]:
    sparse = pooled_rate((f["sampled"] for f in files), (f["sparse_s"] for f in files))
    full = pooled_rate((f["kept"] for f in files), (f["full_s"] for f in files))
    resized = pooled_rate((f["kept"] for f in files), (f["resized_s"] for f in files))
    ratios = [f["speedup"] for f in files]
    return {"sparse_fps": sparse, "full_fps": full, "full_resized_fps": resized, "speedup": sparse / full,
            "speedup_vs_resized": sparse / resized, "speedup_geomean": geomean(ratios),
            "speedup_vs_resized_geomean": geomean(f["speedup_vs_resized"] for f in files),
            "speedup_range": [min(ratios), max(ratios)], "n_files": len(files)}


def summarise_decode(files: list[dict[str, Any]]) -> dict[str, Any]:
    """Pooled decode speed-ups (and geometric means of the per-file ones), overall and per keyframe class.

    Each file row needs sampled/sparse_s (vidx's sparse decode), kept/full_s (every frame decoded,
    one a second kept) and resized_s (the same with the decoder resizing), plus its per-file speedup,
    speedup_vs_resized, gop_frames and fps (bench.run.bench_decode).
    """
    by_class: dict[str, list[dict[str, Any]]] = {}
    for f in files:
        by_class.setdefault(keyframe_class(f["gop_frames"], f["fps"]), []).append(f)
    order = ["<= 1 s", "<= 2 s", "> 2 s"]
    return {**_pooled(files),
            "by_keyframe_interval": {k: {**_pooled(by_class[k]), "files": [f["file"] for f in by_class[k]]}
                                     for k in order if k in by_class},
            "files": files}
