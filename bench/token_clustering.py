"""Speed and fidelity of CenterCLIP token clustering (`vidx.encode.centerclip`) against the per-frame baseline.

Frames: clips of the synthetic captioned world (`vidx.synth.world`), one scene per clip, one frame
per second of slow motion, so neighbouring frames are similar as in real video at 1 fps. Both
paths see the same batches (`batch_frames` frames per call, whole clips); the timed passes are
interleaved (baseline, clustered, baseline, ...) so load changes on a shared machine hit both, and
the best pass of each is kept.

    .venv/bin/python bench/token_clustering.py                       # vidx-tiny and ViT-B-32, random weights
    .venv/bin/python bench/token_clustering.py --models ViT-B-16 --clips 32

Writes bench/results/token_clustering_<model>.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch

from vidx.encode.centerclip import ClipEncoding, TokenClustering, encode_clips
from vidx.synth.world import AttributeSplit, make_scene, render_frame, sample_attributes

LOG = logging.getLogger("bench.token_clustering")
RESULTS = Path(__file__).parent / "results"


def synthetic_clips(model: Any, frames_per_clip: int, n_clips: int, *, seed: int = 0) -> torch.Tensor:
    """(n_clips * frames_per_clip, 3, S, S) normalised frames, clip after clip."""
    inner = getattr(model, "model", model)
    size = int(inner.visual.image_size[0])  # open_clip stores (H, W); vidx frames are square
    pre = open_clip.get_model_preprocess_cfg(inner)
    rng = np.random.default_rng(seed)
    frames = []
    for c in range(n_clips):
        shape, color, count, background = sample_attributes(rng, AttributeSplit(), "any")
        scene = make_scene(0.0, float(frames_per_clip), shape=shape, color=color, count=count,
                           background=background)
        # Same renderer seed for every frame of a clip: same objects and background, moving over time.
        frames += [render_frame(scene, size, size, float(t), np.random.default_rng(seed * 100_003 + c))
                   for t in range(frames_per_clip)]
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(pre["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(pre["std"]).view(1, 3, 1, 1)
    return (x - mean) / std


def overlap_at_k(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's top-k cosine neighbours (itself excluded) that a and b have in common."""
    k = min(k, len(a) - 1)
    if k < 1:
        return float("nan")

    def neighbours(x: np.ndarray) -> np.ndarray:
        sim = x @ x.T
        np.fill_diagonal(sim, -np.inf)
        return np.argsort(-sim, axis=1, kind="stable")[:, :k]

    na, nb = neighbours(a), neighbours(b)
    return float(np.mean([len(set(r) & set(s)) / k for r, s in zip(na, nb, strict=True)]))


def _encode_all(model: Any, frames: torch.Tensor, per_call: int, frames_per_clip: int,
                clustering: TokenClustering) -> tuple[list[ClipEncoding], float]:
    out: list[ClipEncoding] = []
    start = time.perf_counter()
    for lo in range(0, len(frames), per_call * frames_per_clip):
        batch = frames[lo:lo + per_call * frames_per_clip]
        out += encode_clips(model, batch, [frames_per_clip] * (len(batch) // frames_per_clip),
                            clustering=clustering)
    return out, time.perf_counter() - start


def bench_token_clustering(model: Any, frames_per_clip: int, n_clips: int, clustering: TokenClustering,
                           *, batch_frames: int = 64, repeats: int = 2, seed: int = 0) -> dict[str, Any]:
    """{speedup, fidelity_cosine, clustered_ips, baseline_ips, overlap_at_10, ...} for `model`.

    fidelity_cosine: mean cosine between clustered and baseline clip embeddings of the same clip.
    overlap_at_10: for each clip, the share of its 10 nearest other clips (cosine) that both agree on.
    """
    on = dataclasses.replace(clustering, enabled=True)
    off = dataclasses.replace(clustering, enabled=False)
    frames = synthetic_clips(model, frames_per_clip, n_clips, seed=seed)
    per_call = max(1, batch_frames // frames_per_clip)
    _encode_all(model, frames[:per_call * frames_per_clip], per_call, frames_per_clip, on)  # warm-up
    _encode_all(model, frames[:per_call * frames_per_clip], per_call, frames_per_clip, off)
    best = {"off": float("inf"), "on": float("inf")}
    results: dict[str, list[ClipEncoding]] = {}
    for _ in range(max(1, repeats)):
        for name, cfg in (("off", off), ("on", on)):
            results[name], seconds = _encode_all(model, frames, per_call, frames_per_clip, cfg)
            best[name] = min(best[name], seconds)
    base = np.stack([r.clip_embedding.numpy() for r in results["off"]])
    clus = np.stack([r.clip_embedding.numpy() for r in results["on"]])
    cos = (base * clus).sum(1)
    pairwise = base @ base.T
    n_images = len(frames)
    return {
        "speedup": best["off"] / best["on"],
        "fidelity_cosine": float(cos.mean()),
        "fidelity_cosine_min": float(cos.min()),
        "clustered_ips": n_images / best["on"],
        "baseline_ips": n_images / best["off"],
        "overlap_at_10": overlap_at_k(base, clus, 10),
        # Context for the cosines: with random weights every clip embeds alike, so high fidelity is cheap.
        "baseline_mean_cosine_between_clips": float(pairwise[~np.eye(len(base), dtype=bool)].mean()),
        "frames_per_clip": frames_per_clip, "n_clips": n_clips, "batch_frames": per_call * frames_per_clip,
        "clustering": dataclasses.asdict(on), "torch_threads": torch.get_num_threads(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vidx-tiny", "ViT-B-32"])
    parser.add_argument("--frames-per-clip", type=int, default=4)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--layer", type=int, default=TokenClustering.layer)
    parser.add_argument("--segments", type=int, default=TokenClustering.segments)
    parser.add_argument("--centers", type=int, default=TokenClustering.centers)
    parser.add_argument("--iters", type=int, default=TokenClustering.iters)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import vidx.encode.models  # noqa: F401 - registers vidx-tiny with open_clip

    RESULTS.mkdir(exist_ok=True)
    clustering = TokenClustering(enabled=True, layer=args.layer, segments=args.segments, centers=args.centers,
                                 iters=args.iters)
    for name in args.models:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            model = open_clip.create_model(name, pretrained=None).eval()
        result = bench_token_clustering(model, args.frames_per_clip, args.clips, clustering, repeats=args.repeats)
        result.update(model=name, weights="random", machine=platform.processor() or platform.machine(),
                      cpus=os.cpu_count(), load_avg_1m=os.getloadavg()[0])
        LOG.info("%s: %s", name, json.dumps(result))
        (RESULTS / f"token_clustering_{name}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
