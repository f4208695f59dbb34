"""Measuring CenterCLIP token clustering: speed-up, fidelity and neighbour overlap vs the exact path.

Used by bench/run.py and bench/token_clustering.py; kept apart from the encoder itself.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
import open_clip
import torch

from vidx.encode.centerclip import TokenClustering, encode_clips, segment_bounds, vision_tower

LOG = logging.getLogger(__name__)


def synthetic_clips(model: Any, frames_per_clip: int, n_clips: int, *, seed: int = 0) -> torch.Tensor:
    """(n_clips * frames_per_clip, 3, S, S) normalised frames of the synthetic world, clip after clip.

    One scene per clip, one frame per second of slow motion: neighbouring frames are alike, as in
    real video sampled at 1 fps (white noise would make every token its own cluster).
    """
    from vidx.synth.world import AttributeSplit, make_scene, render_frame, sample_attributes

    vit = vision_tower(model)
    size = int(vit.image_size[0])
    pre = open_clip.get_model_preprocess_cfg(getattr(model, "model", model))
    rng = np.random.default_rng(seed)
    frames = []
    for c in range(n_clips):
        shape, color, count, background = sample_attributes(rng, AttributeSplit(), "any")
        scene = make_scene(0.0, float(frames_per_clip), shape=shape, color=color, count=count, background=background)
        # The same renderer seed for every frame of a clip: same objects and background, moving over time.
        frames += [render_frame(scene, size, size, float(t), np.random.default_rng(seed * 100_003 + c))
                   for t in range(frames_per_clip)]
    x = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(pre.get("mean", open_clip.OPENAI_DATASET_MEAN)).view(1, 3, 1, 1)
    std = torch.tensor(pre.get("std", open_clip.OPENAI_DATASET_STD)).view(1, 3, 1, 1)
    return (x - mean) / std


def overlap_at_k(a: np.ndarray, b: np.ndarray, k: int = 10) -> float:
    """Mean share of each row's top-k cosine neighbours (itself excluded) that a and b agree on."""
    k = min(k, len(a) - 1)
    if k < 1:
        return float("nan")

    def neighbours(x: np.ndarray) -> np.ndarray:
        sim = x @ x.T
        np.fill_diagonal(sim, -np.inf)
        return np.argsort(-sim, axis=1, kind="stable")[:, :k]

    pairs = zip(neighbours(a), neighbours(b), strict=True)
    return float(np.mean([len(set(r.tolist()) & set(s.tolist())) / k for r, s in pairs]))


def block_flops_ratio(model: Any, frames_per_clip: int, clustering: TokenClustering) -> float:
    """Baseline / clustered transformer-block FLOPs of one clip (stem, head and k-medoids left out).

    A block on L tokens of width W costs ~2 (L (4 + 2 mlp_ratio) W^2 + 2 L^2 W): the load-free bound
    of the speedup, to read the timings of a busy machine against.
    """
    vit = vision_tower(model)
    width, depth = vit.transformer.width, len(vit.transformer.resblocks)
    mlp = vit.transformer.resblocks[0].mlp.c_fc.out_features / width
    tokens = vit.grid_size[0] * vit.grid_size[1]

    def block(n: int) -> float:
        return 2.0 * (n * (4 + 2 * mlp) * width**2 + 2 * n * n * width)

    late = sum((depth - clustering.layer) * block(min(clustering.centers, (b - a) * tokens) + 1)
               for a, b in segment_bounds(frames_per_clip, clustering.segments))
    return frames_per_clip * depth * block(tokens + 1) / (frames_per_clip * clustering.layer * block(tokens + 1) + late)


def _alternating_pass(model: Any, frames: torch.Tensor, step: int, frames_per_clip: int,
                      modes: dict[str, TokenClustering]) -> tuple[dict[str, float], dict[str, list[np.ndarray]]]:
    """One pass over `frames` in batches of `step`, each batch in every mode (order flipped per batch)."""
    seconds = dict.fromkeys(modes, 0.0)
    out: dict[str, list[np.ndarray]] = {name: [] for name in modes}
    for i, lo in enumerate(range(0, len(frames), step)):
        batch = frames[lo:lo + step]
        for name in list(modes)[:: 1 if i % 2 == 0 else -1]:
            start = time.perf_counter()
            enc = encode_clips(model, batch, [frames_per_clip] * (len(batch) // frames_per_clip),
                               clustering=modes[name])
            seconds[name] += time.perf_counter() - start
            out[name] += [e.clip_embedding.numpy() for e in enc]
    return seconds, out


def bench_token_clustering(model: Any, frames_per_clip: int, n_clips: int, clustering: TokenClustering,
                           *, batch_frames: int = 64, repeats: int = 2, seed: int = 0,
                           frames: torch.Tensor | None = None) -> dict[str, Any]:
    """{speedup, fidelity_cosine, clustered_ips, baseline_ips, overlap_at_10, ...} on synthetic clips.

    fidelity_cosine: mean cosine of clustered vs baseline clip embeddings of the same clip;
    overlap_at_10: mean share of each clip's 10 nearest other clips that both agree on. Baseline and
    clustered batches alternate so load changes on a shared machine hit both; images/s are totals
    over `repeats` passes. A `layer` deeper than the model becomes half its depth (reported).
    `frames` (clip after clip, normalised) replaces the rendered synthetic clips, e.g. decoded video.
    """
    depth = len(vision_tower(model).transformer.resblocks)
    if clustering.layer > depth:
        LOG.warning("layer %d > model depth %d: benchmarking layer %d", clustering.layer, depth, depth // 2)
        clustering = dataclasses.replace(clustering, layer=depth // 2)
    modes = {"off": dataclasses.replace(clustering, enabled=False), "on": dataclasses.replace(clustering, enabled=True)}
    if frames is None:
        frames = synthetic_clips(model, frames_per_clip, n_clips, seed=seed)
    else:  # decoded video: whole clips only
        n_clips = len(frames) // frames_per_clip
        frames = frames[:n_clips * frames_per_clip]
    step = max(1, batch_frames // frames_per_clip) * frames_per_clip
    _alternating_pass(model, frames[:step], step, frames_per_clip, modes)  # warm-up
    seconds, out = _alternating_pass(model, frames, step, frames_per_clip, modes)
    for _ in range(1, max(1, repeats)):
        more, _ = _alternating_pass(model, frames, step, frames_per_clip, modes)
        seconds = {name: seconds[name] + more[name] for name in seconds}
    base, clus = np.stack(out["off"]), np.stack(out["on"])
    cos, images = (base * clus).sum(1), len(frames) * max(1, repeats)
    return {"speedup": seconds["off"] / seconds["on"], "fidelity_cosine": float(cos.mean()),
            "fidelity_cosine_min": float(cos.min()), "clustered_ips": images / seconds["on"],
            "baseline_ips": images / seconds["off"], "overlap_at_10": overlap_at_k(base, clus, 10),
            "block_flops_ratio": block_flops_ratio(model, frames_per_clip, clustering),
            # How alike unrelated clips already are: a fidelity cosine means little unless far above it.
            "baseline_mean_cosine_between_clips": float((base @ base.T)[~np.eye(len(base), dtype=bool)].mean()),
            "frames_per_clip": frames_per_clip, "n_clips": n_clips, "batch_frames": step,
            "repeats": max(1, repeats), "clustering": dataclasses.asdict(modes["on"]),
            "torch_threads": torch.get_num_threads()}
