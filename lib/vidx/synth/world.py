"""A captioned synthetic world with attribute splits: training frames and held-out evaluation archives.

A scene is `count` moving `shape`s of one `color` on a `background` (a solid palette colour or a
tinted pattern), captioned like "two red triangles on a striped background". `AttributeSplit` holds
(colour, shape) pairs out of training, so an evaluation can ask for combinations the model never saw
(no "purple star" in training) as well as seen ones on videos it never saw (a new seed).

Everything is deterministic given the seed. Evaluation archives are real encoded videos (PyAV),
so they go through the same decode path as any archive; training frames are rendered directly.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vidx.synth import draw
from vidx.synth.videos import Scene, _codec_for, _SceneRenderer, make_scene, write_video

LOG = logging.getLogger(__name__)

SHAPE_COLORS: tuple[str, ...] = tuple(c for c in draw.PALETTE if c != "black")
PATTERNS: tuple[str, ...] = ("gradient", "stripes", "checker")
COUNTS: tuple[int, ...] = (1, 2, 3, 4)
# One held-out colour per shape, all colours different: every shape and every colour still occurs
# in training with other partners, so the held-out pairs test composition, not new words.
DEFAULT_HELDOUT: tuple[tuple[str, str], ...] = (
    ("purple", "star"), ("red", "diamond"), ("green", "ring"), ("yellow", "cross"),
    ("blue", "triangle"), ("orange", "circle"), ("pink", "square"),
)
Combo = Literal["seen", "unseen", "any"]


@dataclass(frozen=True)
class AttributeSplit:
    """(colour, shape) pairs that training never shows; everything else is "seen"."""

    heldout: frozenset[tuple[str, str]] = frozenset(DEFAULT_HELDOUT)
    counts: tuple[int, ...] = COUNTS

    def combo(self, color: str, shape: str) -> Literal["seen", "unseen"]:
        return "unseen" if (color, shape) in self.heldout else "seen"

    def pairs(self, which: Combo) -> list[tuple[str, str]]:
        """(colour, shape) pairs of one side of the split, in a fixed order."""
        every = [(c, s) for c in SHAPE_COLORS for s in draw.SHAPES]
        return [p for p in every if which == "any" or self.combo(*p) == which]

    def as_dict(self) -> dict[str, Any]:
        return {"heldout": sorted([list(p) for p in self.heldout]), "counts": list(self.counts)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AttributeSplit:
        return cls(frozenset((str(c), str(s)) for c, s in data["heldout"]), tuple(int(n) for n in data["counts"]))


def sample_background(rng: np.random.Generator, color: str, solid_share: float = 0.5) -> str:
    """A solid palette colour other than the shapes' colour, or a pattern name."""
    if rng.random() < solid_share:
        return str(rng.choice([c for c in draw.PALETTE if c != color]))
    return str(rng.choice(PATTERNS))


def sample_attributes(rng: np.random.Generator, split: AttributeSplit, which: Combo = "seen",
                      ) -> tuple[str, str, int, str]:
    """(shape, colour, count, background) with the (colour, shape) pair on the `which` side."""
    pairs = split.pairs(which)
    color, shape = pairs[int(rng.integers(len(pairs)))]
    count = int(rng.choice(split.counts))
    return shape, color, count, sample_background(rng, color)


# Frame geometries (width, height) at which scenes are drawn: 4:3, 16:9, 1:1 and 3:2 like archives.
ASPECTS: tuple[tuple[int, int], ...] = ((4, 3), (16, 9), (1, 1), (3, 2))


def render_frame(scene: Scene, width: int, height: int, t: float, rng: np.random.Generator) -> np.ndarray:
    """One (height, width, 3) uint8 frame of `scene` at time t (random positions, noise, tint)."""
    renderer = _SceneRenderer(scene, width, height, rng)
    noise = draw.coarse_noise(rng, width, height, n=1)[0]
    return renderer.render(t, noise, 0)


@dataclass(frozen=True)
class ArchiveSpec:
    """Shape of a generated evaluation archive."""

    n_videos: int = 12
    scenes_per_video: tuple[int, int] = (2, 5)
    scene_seconds: tuple[float, float] = (3.0, 10.0)
    unseen_share: float = 0.3           # share of scenes drawn from held-out (colour, shape) pairs
    sizes: tuple[tuple[int, int], ...] = ((128, 96), (160, 90), (96, 96), (144, 96))
    fps: tuple[float, ...] = (10.0, 12.0, 15.0)
    suffixes: tuple[str, ...] = (".mp4", ".mkv", ".mov")
    split: AttributeSplit = field(default_factory=AttributeSplit)


def _archive_scenes(rng: np.random.Generator, spec: ArchiveSpec, used: set[tuple[str, str, str]],
                    ) -> list[Scene]:
    n = int(rng.integers(spec.scenes_per_video[0], spec.scenes_per_video[1] + 1))
    scenes: list[Scene] = []
    start = 0.0
    for _ in range(n):
        which: Combo = "unseen" if rng.random() < spec.unseen_share else "seen"
        for _try in range(100):  # distinct content across the archive: one right answer per caption
            shape, color, count, bg = sample_attributes(rng, spec.split, which)
            if (shape, color, bg) not in used:
                break
        used.add((shape, color, bg))
        end = round(start + float(rng.uniform(*spec.scene_seconds)), 3)
        scenes.append(make_scene(start, end, shape=shape, color=color, count=count, background=bg))
        start = end
    return scenes


def make_captioned_archive(directory: str | Path, *, seed: int, spec: ArchiveSpec | None = None) -> Path:
    """Write `spec.n_videos` videos of captioned scenes and `truth.json`; return the truth file.

    truth.json: `{"seed", "split", "videos": [{"path", "uri", "duration_s", ..., "scenes": [{"start_s",
    "end_s", "caption", "shape", "color", "count", "background", "combo"}]}]}` with `uri` the
    absolute path the archive listing will report and `combo` "seen" or "unseen".
    """
    spec = spec or ArchiveSpec()
    directory = Path(directory).resolve()
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    used: set[tuple[str, str, str]] = set()
    videos: list[dict[str, Any]] = []
    for i in range(spec.n_videos):
        scenes = _archive_scenes(rng, spec, used)
        width, height = spec.sizes[i % len(spec.sizes)]
        fps = spec.fps[i % len(spec.fps)]
        path = directory / f"video_{i:03d}{spec.suffixes[i % len(spec.suffixes)]}"
        duration = scenes[-1].end_s
        write_video(path, duration_s=duration, fps=fps, width=width, height=height,
                    seed=seed * 10_000 + i, scenes=scenes)
        videos.append({"path": path.name, "uri": str(path), "width": width, "height": height, "fps": fps,
                       "duration_s": duration, "codec": _codec_for(path, None),
                       "scenes": [{**asdict(s), "combo": spec.split.combo(s.color, s.shape)} for s in scenes]})
    truth = {"seed": seed, "split": spec.split.as_dict(), "videos": videos}
    out = directory / "truth.json"
    out.write_text(json.dumps(truth, indent=1), encoding="utf-8")
    n_scenes = sum(len(v["scenes"]) for v in videos)
    LOG.info("captioned archive in %s: %d videos, %d scenes", directory, len(videos), n_scenes)
    return out


def make_distractor_archive(directory: str | Path, *, seed: int, n_clips: int, n_videos: int = 4,
                            clip_seconds: float = 4.0, size: tuple[int, int] = (64, 48)) -> list[Path]:
    """Slideshow videos (one frame per `clip_seconds`) of shape-free backgrounds: `n_clips` clips of
    content no caption describes, to pad an evaluation index past the size where vidx stops using an
    exact index, so "index vs exact" measures what IVF-PQ loses. Cheap: one rendered frame per clip.
    """
    directory = Path(directory).resolve()
    rng = np.random.default_rng(seed)
    per_video = -(-n_clips // n_videos)
    paths = []
    for i in range(n_videos):
        count = min(per_video, n_clips - i * per_video)
        if count <= 0:
            break
        scenes = []
        for j in range(count):
            background = sample_background(rng, "black")
            shape_color = str(rng.choice([c for c in SHAPE_COLORS if c != background]))
            # count 0: the background alone (pattern, tint, noise), never a captioned object
            scenes.append(make_scene(j * clip_seconds, (j + 1) * clip_seconds, shape="circle", color=shape_color,
                                     count=0, background=background))
        path = directory / f"distractor_{i:02d}.mp4"
        write_video(path, duration_s=count * clip_seconds, fps=1.0 / clip_seconds, width=size[0], height=size[1],
                    seed=seed * 1000 + i, scenes=scenes)
        paths.append(path)
    LOG.info("distractor archive in %s: %d videos, %d clips", directory, len(paths), n_clips)
    return paths
