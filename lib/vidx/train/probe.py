"""A quick retrieval probe for a model being trained: no video, no tables, rendered frames only.

Renders held-out scenes (a seed of their own, seen and unseen attribute combinations), pools a few
frames per scene into one vector as clips do, and measures text -> scene Recall@K. It is a proxy
for `vidx eval` (which goes through real videos, Delta tables and the published index), cheap
enough to print at the end of `vidx train-tiny`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import open_clip
import torch

from vidx.synth.videos import _SceneRenderer, make_scene
from vidx.synth.world import AttributeSplit, sample_attributes
from vidx.train.data import to_model_input
from vidx.train.loop import images_to_tensor

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeResult:
    n_scenes: int
    recall: dict[str, dict[int, float]]   # "seen" / "unseen" / "all" -> {k: recall}

    def summary(self) -> str:
        parts = [f"{name} " + " ".join(f"R@{k} {v:.2f}" for k, v in rec.items())
                 for name, rec in self.recall.items()]
        return f"probe over {self.n_scenes} rendered scenes: " + "; ".join(parts)


def _scene_frames(rng: np.random.Generator, attrs: tuple[str, str, int, str], size: int,
                  n_frames: int) -> np.ndarray:
    shape, color, count, bg = attrs
    scene = make_scene(0.0, float(n_frames), shape=shape, color=color, count=count, background=bg)
    width, height = (160, 120) if rng.random() < 0.5 else (192, 108)
    renderer = _SceneRenderer(scene, width, height, rng)
    noise = np.zeros((height, width, 1), np.int16)
    return np.stack([to_model_input(renderer.render(float(t), noise, t), size) for t in range(n_frames)])


def probe_model(model: Any, tokenizer: Any, *, split: AttributeSplit, seed: int = 12345, n_scenes: int = 120,
                unseen_share: float = 0.3, n_frames: int = 4, ks: tuple[int, ...] = (1, 5)) -> ProbeResult:
    """Text -> scene recall of `model` over `n_scenes` distinct rendered scenes."""
    rng = np.random.default_rng(seed)
    pre = open_clip.get_model_preprocess_cfg(model)
    size = int(pre["size"][0] if isinstance(pre["size"], tuple | list) else pre["size"])
    attrs: list[tuple[str, str, int, str]] = []
    while len(attrs) < n_scenes:
        candidate = sample_attributes(rng, split, "unseen" if rng.random() < unseen_share else "seen")
        if candidate[:2] + candidate[3:] not in {a[:2] + a[3:] for a in attrs}:
            attrs.append(candidate)
    frames = np.concatenate([_scene_frames(rng, a, size, n_frames) for a in attrs])
    captions = [make_scene(0, 1, shape=s, color=c, count=n, background=b).caption for s, c, n, b in attrs]
    was_training = model.training
    model.eval()
    with torch.inference_mode():
        img = model.encode_image(images_to_tensor(frames, pre["mean"], pre["std"]))
        img = torch.nn.functional.normalize(img, dim=-1).view(n_scenes, n_frames, -1).mean(1)
        txt = model.encode_text(tokenizer(captions))
        sims = torch.nn.functional.normalize(txt, dim=-1) @ torch.nn.functional.normalize(img, dim=-1).T
    model.train(was_training)
    rank = (sims > sims.diagonal()[:, None]).sum(1).numpy() + 1  # 1-based rank of the right scene
    combos = np.array([split.combo(c, s) for s, c, _, _ in attrs])
    recall: dict[str, dict[int, float]] = {}
    for name in ("seen", "unseen", "all"):
        mask = combos == name if name != "all" else np.ones(len(combos), bool)
        if mask.any():
            recall[name] = {k: float((rank[mask] <= k).mean()) for k in ks}
    return ProbeResult(n_scenes, recall)
