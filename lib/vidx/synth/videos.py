"""Synthetic videos with known content (shapes on backgrounds), encoded with PyAV.

Used by tests and demos: every scene has a caption ("two red triangles on a striped background")
so retrieval results can be checked against the truth. Output is deterministic given the seed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from vidx.synth import draw

LOG = logging.getLogger(__name__)

_NUMBERS = ("zero", "one", "two", "three", "four", "five")
_PATTERN_WORDS = {"gradient": "gradient", "stripes": "striped", "checker": "checkered"}
# 4 well-separated levels per channel: survive the RGB -> YUV420 -> RGB round trip (error < 10).
_INDEX_LEVELS = (30, 100, 170, 240)


@dataclass(frozen=True)
class Scene:
    """One stretch of a synthetic video: `count` moving `shape`s of `color` on `background`.

    `background` is a palette colour name (solid) or one of `gradient`, `stripes`, `checker`.
    """

    start_s: float
    end_s: float
    shape: str
    color: str
    count: int
    background: str
    caption: str


def caption_for(shape: str, color: str, count: int, background: str) -> str:
    number = _NUMBERS[count] if count < len(_NUMBERS) else str(count)
    noun = shape if count == 1 else (f"{shape}es" if shape.endswith(("s", "x", "sh", "ch")) else f"{shape}s")
    bg = _PATTERN_WORDS.get(background, background)
    return f"{number} {color} {noun} on a {bg} background"


def make_scene(start_s: float, end_s: float, *, shape: str, color: str, count: int,
               background: str) -> Scene:
    """A Scene with its caption filled in."""
    return Scene(start_s, end_s, shape, color, count, background,
                 caption_for(shape, color, count, background))


def _boundaries(duration_s: float, scene_seconds: float | tuple[float, float],
                rng: np.random.Generator) -> list[tuple[float, float]]:
    if duration_s <= 0:
        return []
    out: list[tuple[float, float]] = []
    start = 0.0
    while start < duration_s - 1e-9:
        if isinstance(scene_seconds, tuple):
            lo, hi = scene_seconds
            length = float(rng.uniform(lo, hi))
        else:
            length = float(scene_seconds)
        if length <= 0:
            raise ValueError(f"scene_seconds must be positive, got {scene_seconds!r}")
        # Fixed lengths: compute from the index so boundaries are exact multiples, not sums.
        end = (len(out) + 1) * length if not isinstance(scene_seconds, tuple) else start + length
        end = min(end, duration_s)
        out.append((start, end))
        start = end
    return out


def random_scenes(duration_s: float, scene_seconds: float | tuple[float, float],
                  rng: np.random.Generator, used: set[tuple[str, str, str]] | None = None) -> list[Scene]:
    """Random scenes covering [0, duration_s); consecutive scenes always differ.

    `used` (shape, colour, background) triples are avoided where possible, so that a whole
    archive can have distinct, recognisable content.
    """
    scenes: list[Scene] = []
    used = used if used is not None else set()
    prev: tuple[str, str, str] | None = None
    for start, end in _boundaries(duration_s, scene_seconds, rng):
        for _ in range(50):
            shape = str(rng.choice(draw.SHAPES))
            color = str(rng.choice([c for c in draw.PALETTE if c != "black"]))
            kind = str(rng.choice(draw.BACKGROUNDS))
            bg = kind if kind != "solid" else str(rng.choice([c for c in draw.PALETTE if c != color]))
            key = (shape, color, bg)
            if key not in used and key != prev:
                break
        used.add(key)
        prev = key
        scenes.append(make_scene(start, end, shape=shape, color=color, count=int(rng.integers(1, 5)),
                                 background=bg))
    return scenes


class _SceneRenderer:
    """Precomputed background, sprite and trajectories for one scene."""

    def __init__(self, scene: Scene, width: int, height: int, rng: np.random.Generator) -> None:
        tint = scene.background if scene.background in draw.PALETTE else str(
            rng.choice([c for c in draw.PALETTE if c not in (scene.color, "black")]))
        kind = "solid" if scene.background in draw.PALETTE else scene.background
        self.bg = draw.background(kind, tint, width, height, rng)
        side = min(width, height)
        size = max(4, int(side / (3.2 + 0.6 * scene.count)))
        self.mask = draw.shape_mask(scene.shape, size)
        self.rgb = np.asarray(draw.PALETTE[scene.color], dtype=np.uint8)
        self.span = np.array([max(width - size, 1), max(height - size, 1)], dtype=np.float64)
        self.pos0 = rng.uniform(0, 1, size=(scene.count, 2)) * self.span
        # Slow motion (a few percent of the frame per second) so neighbouring frames stay similar.
        speed = rng.uniform(0.03, 0.12, size=(scene.count, 2)) * side
        self.vel = speed * rng.choice([-1.0, 1.0], size=(scene.count, 2))
        self.start_s = scene.start_s
        self._noisy: dict[int, np.ndarray] = {}

    def render(self, t: float, noise: np.ndarray, k: int) -> np.ndarray:
        """Frame at time t; `noise` (field number k) perturbs the background only."""
        if k not in self._noisy:  # a few noisy backgrounds per scene, reused cyclically
            self._noisy[k] = np.clip(self.bg.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        frame = self._noisy[k].copy()
        raw = self.pos0 + self.vel * (t - self.start_s)
        # Reflect off the frame edges: a triangle wave of period 2 * span.
        pos = self.span - np.abs(np.mod(raw, 2 * self.span) - self.span)
        for x, y in pos.astype(np.int64):
            draw.paste(frame, self.mask, self.rgb, int(x), int(y))
        return frame


def _codec_for(path: Path, codec: str | None) -> str:
    if codec is not None:
        return codec
    # AVI has no presentation timestamps; MPEG-4 Part 2 is its natural codec and adds variety.
    return "mpeg4" if path.suffix.lower() == ".avi" else "libx264"


def _open_stream(container: av.container.OutputContainer, codec: str, rate: Fraction,
                 size: tuple[int, int], gop: int | None, *,
                 options: dict[str, str] | None = None) -> av.video.stream.VideoStream:
    defaults = {"preset": "ultrafast"} if codec == "libx264" else {}
    stream = container.add_stream(codec, rate=rate, options={**defaults, **(options or {})})
    if not isinstance(stream, av.video.stream.VideoStream):
        raise ValueError(f"{codec!r} is not a video codec")
    width, height = size
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    if codec == "mpeg4":  # the default 200 kb/s turns shapes into mush
        stream.bit_rate = max(400_000, int(width * height * float(rate) * 0.5))
    if gop is not None:
        stream.codec_context.gop_size = gop
    return stream


def _check_size(width: int, height: int) -> None:
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise ValueError(f"width and height must be even and >= 16 for yuv420p, got {width}x{height}")


def write_video(path: str | Path, *, duration_s: float, fps: float = 30, width: int = 320,
                height: int = 240, seed: int = 0, scene_seconds: float | tuple[float, float] = 4.0,
                codec: str | None = None, gop: int | None = None,
                scenes: list[Scene] | None = None, rotation: int = 0) -> list[Scene]:
    """Render and encode a synthetic video; return its scenes (the ground truth).

    The container comes from the suffix. `codec=None` means libx264 (ultrafast, yuv420p), or
    mpeg4 for `.avi`. `gop` is the keyframe interval in frames (encoder default when None).
    `rotation` (degrees counter-clockwise) is stored as display matrix, as phones do.
    """
    path = Path(path)
    _check_size(width, height)
    rng = np.random.default_rng(seed)
    if scenes is None:
        scenes = random_scenes(duration_s, scene_seconds, rng)
    noise = draw.coarse_noise(rng, width, height, n=6)
    rate = Fraction(fps).limit_denominator(1001)
    n_frames = round(duration_s * float(rate))
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = _open_stream(container, _codec_for(path, codec), rate, (width, height), gop)
        if rotation:
            stream.set_display_rotation(rotation)
        k, renderer = -1, None
        for i in range(n_frames):
            t = i / float(rate)
            while k + 1 < len(scenes) and (k < 0 or t >= scenes[k].end_s):
                k, renderer = k + 1, None  # scenes shorter than a frame are skipped
            if renderer is None and scenes:  # one renderer alive at a time bounds memory
                renderer = _SceneRenderer(scenes[k], width, height, rng)
            image = renderer.render(t, noise[i % len(noise)], i % len(noise)) if renderer else \
                np.zeros((height, width, 3), np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    LOG.debug("wrote %s: %d frames, %d scenes", path, n_frames, len(scenes))
    return scenes


def index_color(i: int) -> tuple[int, int, int]:
    """The uniform RGB colour of frame `i` in `write_vfr_video` (64 distinct colours)."""
    return (_INDEX_LEVELS[i % 4], _INDEX_LEVELS[(i // 4) % 4], _INDEX_LEVELS[(i // 16) % 4])


def read_index(rgb: np.ndarray) -> int:
    """Inverse of `index_color` on a (possibly re-encoded, resized) frame: nearest level per channel."""
    mean = rgb.reshape(-1, 3).mean(axis=0)
    levels = np.asarray(_INDEX_LEVELS, dtype=np.float64)
    r, g, b = (int(np.argmin(np.abs(levels - m))) for m in mean)
    return r + 4 * g + 16 * b


def write_vfr_video(path: str | Path, *, n_frames: int = 48, width: int = 128, height: int = 128,
                    gaps_s: tuple[float, ...] = (1 / 30, 1 / 10), start_s: float = 0.0) -> list[float]:
    """A variable-frame-rate H.264 video: frame i is uniformly `index_color(i)`, gaps cycle `gaps_s`.

    The first frame's pts is `start_s` (as in MPEG-TS or edited files). Returns each frame's
    presentation time in seconds as stored (millisecond precision); decoders that count from the
    first frame (decord, `vidx.decode`) report these minus `start_s`.
    """
    _check_size(width, height)
    if not 0 < n_frames <= 64:
        raise ValueError(f"n_frames must be in 1..64 (distinct index colours), got {n_frames}")
    tb = Fraction(1, 1000)
    pts_ms: list[int] = []
    t = round(start_s * 1000)
    for i in range(n_frames):
        pts_ms.append(t)
        t += max(1, round(gaps_s[i % len(gaps_s)] * 1000))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = _open_stream(container, "libx264", Fraction(30), (width, height), None)
        stream.codec_context.time_base = tb
        stream.time_base = tb
        for i, pts in enumerate(pts_ms):
            image = np.empty((height, width, 3), np.uint8)
            image[:] = index_color(i)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = pts, tb
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return [p / 1000 for p in pts_ms]


def write_index_video(path: str | Path, *, n_frames: int, fps: float | Fraction = 30, width: int = 160,
                      height: int = 96, codec: str | None = None, options: dict[str, str] | None = None) -> Fraction:
    """A constant-frame-rate video whose frame i is uniformly `index_color(i % 64)`; returns the rate.

    The container comes from the suffix, the codec as in `write_video` (mpeg4 for `.avi`);
    `options` go to the encoder, e.g. `{"bf": "1", "b_strategy": "1"}` for an MPEG-4 stream that
    declares B-frames but, on content this busy, uses none (what XviD-style AVIs look like).
    """
    path = Path(path)
    _check_size(width, height)
    rate = Fraction(fps).limit_denominator(1001) if not isinstance(fps, Fraction) else fps
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = _open_stream(container, _codec_for(path, codec), rate, (width, height), None, options=options)
        for i in range(n_frames):
            image = np.empty((height, width, 3), np.uint8)
            image[:] = index_color(i % 64)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
    return rate


def write_bad_files(directory: str | Path) -> dict[str, Path]:
    """Files that must fail to probe/decode: empty, truncated mp4, random bytes, text."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    out = {name: directory / name for name in
           ("zero_byte.mp4", "truncated.mp4", "random_bytes.mp4", "notes.mp4")}
    out["zero_byte.mp4"].write_bytes(b"")
    good = directory / ".truncated-source.mp4"
    write_video(good, duration_s=2.0, fps=15, width=160, height=120, seed=7)
    data = good.read_bytes()
    good.unlink()
    # The mp4 muxer writes the index (moov) at the end, so the first 30% has frames but no index.
    out["truncated.mp4"].write_bytes(data[: max(1, int(len(data) * 0.3))])
    out["random_bytes.mp4"].write_bytes(np.random.default_rng(3).bytes(64 * 1024))
    out["notes.mp4"].write_text("meeting notes\nnot a video, despite the name\n" * 50, encoding="utf-8")
    return out


# (relative path, width, height, fps, duration_s, scene_seconds, gop): varied on purpose.
_ARCHIVE_SPECS: tuple[tuple[str, int, int, float, float, float | tuple[float, float], int | None], ...] = (
    ("clip_00.mp4", 320, 240, 30, 12, 4.0, None),
    ("clip_01.mkv", 160, 120, 25, 8, 4.0, 25),
    ("clip_02.mov", 640, 360, 24, 6, 3.0, 48),
    ("clip_03.avi", 320, 240, 15, 10, (2.0, 5.0), 30),
    ("nested/clip_04.mp4", 480, 270, 30, 20, 5.0, 60),
    ("nested/clip_05.mkv", 256, 144, 24, 16, (3.0, 6.0), None),
    ("nested/deeper/clip_06.mp4", 640, 360, 25, 8, 4.0, 250),
    ("clip_07.mov", 200, 150, 15, 14, (2.0, 6.0), 15),
)


def make_sample_archive(directory: str | Path, *, n_videos: int = 8, seed: int = 0,
                        with_corrupt: bool = True) -> list[Path]:
    """A small archive of distinct synthetic videos (+ `broken.mp4` when `with_corrupt`).

    Resolutions 160x120..640x360, 15-30 fps, 6-20 s, mp4/mkv/mov/avi, nested folders.
    Writes `truth.json` (relative path, format and scenes per video) and returns the good paths.
    """
    import json
    from dataclasses import asdict

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    used: set[tuple[str, str, str]] = set()
    paths: list[Path] = []
    truth: dict[str, object] = {"seed": seed, "videos": [], "corrupt": []}
    for i in range(n_videos):
        rel, w, h, fps, dur, scene_s, gop = _ARCHIVE_SPECS[i % len(_ARCHIVE_SPECS)]
        if i >= len(_ARCHIVE_SPECS):  # cycle the specs under new names
            stem, suffix = rel.rsplit(".", 1)
            rel = f"{stem}_{i:03d}.{suffix}"
        scenes = random_scenes(dur, scene_s, rng, used)
        path = directory / rel
        write_video(path, duration_s=dur, fps=fps, width=w, height=h, seed=seed * 1000 + i,
                    gop=gop, scenes=scenes)
        paths.append(path)
        truth["videos"].append({  # type: ignore[attr-defined]
            "path": rel, "width": w, "height": h, "fps": fps, "duration_s": dur,
            "codec": _codec_for(path, None), "scenes": [asdict(s) for s in scenes]})
    if with_corrupt:
        broken = directory / "broken.mp4"
        # Plausible mp4 header followed by garbage: passes an extension filter, fails to open.
        broken.write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
                           + np.random.default_rng(seed + 1).bytes(32 * 1024))
        truth["corrupt"] = ["broken.mp4"]
    (directory / "truth.json").write_text(json.dumps(truth, indent=1), encoding="utf-8")
    LOG.info("sample archive in %s: %d videos%s", directory, len(paths),
             " + broken.mp4" if with_corrupt else "")
    return paths
