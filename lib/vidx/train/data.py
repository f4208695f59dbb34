"""Training batches for `vidx train-tiny`: captioned frames rendered straight from the synth world.

Frames are drawn with the same code that renders evaluation videos (`vidx.synth`), at archive-like
sizes and aspect ratios, then brought to the model's input the way the decoder does it (shorter
side resized to the input size with a bilinear filter, centre square kept), so training sees what
search sees minus the video codec. Half of each batch can be "hard negatives": a scene that differs
from its neighbour in exactly one attribute, which teaches shape, count and background, not only colour.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from PIL import Image

from vidx.synth import draw
from vidx.synth.videos import make_scene
from vidx.synth.world import ASPECTS, SHAPE_COLORS, AttributeSplit, render_frame, sample_attributes, sample_background

LOG = logging.getLogger(__name__)

Attrs = tuple[str, str, int, str]  # (shape, colour, count, background)


@dataclass(frozen=True)
class BatchSpec:
    batch_size: int = 128
    image_size: int = 64
    hard_share: float = 0.5               # share of samples that differ from the previous in one attribute
    render_heights: tuple[int, int] = (72, 160)  # drawn at this height, then resized like the decoder does


def _variant(rng: np.random.Generator, attrs: Attrs, split: AttributeSplit) -> Attrs:
    """`attrs` with exactly one of shape, colour, count, background changed, staying on the seen side."""
    shape, color, count, bg = attrs
    for _ in range(20):
        which = int(rng.integers(4))
        if which == 0:
            new = (str(rng.choice(draw.SHAPES)), color, count, bg)
        elif which == 1:
            new = (shape, str(rng.choice([c for c in SHAPE_COLORS if c != bg])), count, bg)
        elif which == 2:
            new = (shape, color, int(rng.choice(split.counts)), bg)
        else:
            new = (shape, color, count, sample_background(rng, color))
        if new != attrs and split.combo(new[1], new[0]) == "seen" and new[3] != new[1]:
            return new
    return sample_attributes(rng, split, "seen")


def sample_batch_attributes(rng: np.random.Generator, split: AttributeSplit, spec: BatchSpec) -> list[Attrs]:
    """`spec.batch_size` distinct scene attribute tuples (distinct captions: no false negatives)."""
    out: list[Attrs] = []
    seen: set[Attrs] = set()
    while len(out) < spec.batch_size:
        hard = bool(out) and rng.random() < spec.hard_share
        attrs = _variant(rng, out[-1], split) if hard else sample_attributes(rng, split, "seen")
        if attrs not in seen:
            seen.add(attrs)
            out.append(attrs)
    return out


def _frame_size(rng: np.random.Generator, spec: BatchSpec) -> tuple[int, int]:
    aw, ah = ASPECTS[int(rng.integers(len(ASPECTS)))]
    height = int(rng.integers(spec.render_heights[0], spec.render_heights[1] + 1)) // 2 * 2
    width = max(16, round(height * aw / ah / 2) * 2)
    if rng.random() < 0.2:  # some portrait frames too
        width, height = height, width
    return width, height


def to_model_input(frame: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (size, size, 3) uint8: shorter side to `size` (bilinear, antialiased), centre crop."""
    h, w = frame.shape[:2]
    scale = size / min(h, w)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    image = Image.fromarray(frame).resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def render_batch(rng: np.random.Generator, attrs: list[Attrs], spec: BatchSpec) -> tuple[np.ndarray, list[str]]:
    """(N, S, S, 3) uint8 frames and their captions, one random frame per attribute tuple."""
    frames = np.empty((len(attrs), spec.image_size, spec.image_size, 3), np.uint8)
    captions = []
    for i, (shape, color, count, bg) in enumerate(attrs):
        scene = make_scene(0.0, 10.0, shape=shape, color=color, count=count, background=bg)
        width, height = _frame_size(rng, spec)
        frame = render_frame(scene, width, height, float(rng.uniform(0, 10)), rng)
        frames[i] = to_model_input(frame, spec.image_size)
        captions.append(scene.caption)
    return frames, captions


def training_batch(rng: np.random.Generator, split: AttributeSplit, spec: BatchSpec) -> tuple[np.ndarray, list[str]]:
    return render_batch(rng, sample_batch_attributes(rng, split, spec), spec)
