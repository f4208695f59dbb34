"""Issue 15: every decodable video yields clips that tile its duration (no Spark).

Each video goes through the embed stage's own steps - probe (`_probe_one`), `plan_units`, decode in
the isolated decoder subprocess (`_decode_unit`), fixed windows (`_fixed`) - minus the encoder.
The files are index-coded (frame i is uniformly `index_color(i % 64)`), so the frame behind every
sample is checked against the truth, not against another decoder.

The issue's file: an MPEG-4 Part 2 AVI, 1920x1080, 30 fps, 103 frames (3.43 s) whose stream
declares B-frames but uses none. decord (FFmpeg 4.1) gives every frame of it the timestamp
AV_NOPTS_VALUE x time base (about -3.07e17 s), so every sample time was dropped as "past the last
frame": zero frames, zero clips, and the video was recorded `ok`.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from vidx.archive import plan_units
from vidx.config import load_config
from vidx.decode.decoder import _decord_size, _frame_stamps, _open_reader
from vidx.decode.probe import probe
from vidx.decode.pyav_frames import stamps_usable
from vidx.decode.source import TaskDownloads
from vidx.spark.stages import _decode_unit, _fixed, _probe_one
from vidx.synth import read_index, write_index_video

IMAGE_SIZE = 32
# What XviD/DivX-style encoders write: B-frames declared (low_delay = 0); on content that changes
# every frame the adaptive decision (b_strategy 1) picks none, so every frame is I or P.
DECLARED_B = {"bf": "1", "b_strategy": "1"}
NTSC = Fraction(30000, 1001)


def _clips(path: Path, **overrides: float) -> tuple[list[tuple[float, float]], list[np.ndarray], list[int]]:
    """(clip spans, sample times per clip, frame index read from each sampled frame)."""
    cfg = load_config(env={}, overrides=dict(overrides))
    facts = _probe_one(str(path), cfg)
    assert facts.get("error") is None, facts
    units = plan_units([("v", str(path), path.stat().st_size, facts["duration_s"])],
                       max_unit_seconds=cfg.archive.max_unit_seconds, clip_seconds=cfg.clips.seconds)
    spans: list[tuple[float, float]] = []
    times: list[np.ndarray] = []
    seen: list[int] = []
    for u in units:
        unit = {"unit_id": u.unit_id, "video_id": u.video_id, "uri": u.uri, "start_s": u.start_s,
                "end_s": u.end_s, "duration_s": facts["duration_s"]}
        decoded = _decode_unit(cfg, unit, IMAGE_SIZE, TaskDownloads({}))
        windows = _fixed(cfg, unit, decoded.times)
        spans += list(zip(windows.start_s.tolist(), windows.end_s.tolist(), strict=True))
        times += [decoded.times[windows.frame_clip == i] for i in range(len(windows.clip_idx))]
        seen += [read_index(f) for f in decoded.frames]
    return spans, times, seen


def _assert_tiles(spans: list[tuple[float, float]], duration: float, fps: float) -> None:
    assert spans, "a decodable video must yield at least one clip"
    assert spans[0][0] == 0.0
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end == pytest.approx(start, abs=1e-9)
    assert all(end > start for start, end in spans)
    assert spans[-1][1] == pytest.approx(duration, abs=1.0 / fps + 1e-6)


def _assert_frames_match(times: list[np.ndarray], seen: list[int], rate: Fraction) -> None:
    """Each sample shows the frame displayed at its time; the decoder's 1 ms boundary tolerance may
    pick the next frame when that one starts within 1 ms after the sample (1.001 s at 29.97 fps)."""
    t = np.concatenate(times)
    assert len(seen) == len(t)
    shown = np.floor(t * float(rate) + 1e-6).astype(int)
    starting = np.floor((t + 1.5e-3) * float(rate)).astype(int)
    for got, a, b, when in zip(seen, shown, starting, t, strict=True):
        assert got in {a % 64, b % 64}, f"t={when}: frame {got}, expected {a % 64}"


def test_issue15_1080p_mpeg4_avi_gets_one_clip_covering_it(tmp_path: Path) -> None:
    path = tmp_path / "issue15.avi"
    rate = write_index_video(path, n_frames=103, fps=30, width=1920, height=1080, options=DECLARED_B)
    info = probe(str(path))
    assert (info.codec, info.width, info.height, info.fps, info.n_frames) == ("mpeg4", 1920, 1080, 30.0, 103)
    assert info.duration_s == pytest.approx(103 / 30)
    # The cause: decord has no usable timestamp for any frame of this file.
    reader = _open_reader(str(path), *_decord_size(info, IMAGE_SIZE), 1)
    stamps = _frame_stamps(str(path), reader, len(reader))
    del reader
    assert len(stamps) == 103 and not stamps_usable(stamps) and np.all(stamps[:, 0] < -1e15)
    spans, times, seen = _clips(path)
    assert len(spans) == 1 and spans[0] == (0.0, pytest.approx(103 / 30))
    assert np.concatenate(times).tolist() == [0.0, 1.0, 2.0, 3.0]
    _assert_frames_match(times, seen, rate)


# container x frame rate x length; AVI holds the issue's kind of MPEG-4 stream, the others H.264.
MATRIX = [(suffix, fps, seconds) for suffix in (".mp4", ".mkv", ".avi", ".mov")
          for fps in (Fraction(25), NTSC) for seconds in (1.0, 3.4)]


@pytest.mark.parametrize(("suffix", "fps", "seconds"), MATRIX,
                         ids=[f"{s[1:]}-{float(f):.2f}fps-{d}s" for s, f, d in MATRIX])
def test_clips_tile_the_duration(tmp_path: Path, suffix: str, fps: Fraction, seconds: float) -> None:
    n_frames = round(seconds * fps)
    path = tmp_path / f"v{suffix}"
    rate = write_index_video(path, n_frames=n_frames, fps=fps, width=320, height=180,
                             options=DECLARED_B if suffix == ".avi" else None)
    spans, times, seen = _clips(path)
    assert len(spans) == 1 == math.ceil(n_frames / rate / 4)  # shorter than one 4 s clip: one clip
    _assert_tiles(spans, float(n_frames / rate), float(rate))
    _assert_frames_match(times, seen, rate)


@pytest.mark.parametrize("options", [DECLARED_B, {"bf": "2"}, {}], ids=["declared-b", "b-frames", "no-b"])
def test_avi_split_into_units_tiles_with_short_clips(tmp_path: Path, options: dict[str, str]) -> None:
    # 1 s clips and 2 s units: the second unit starts mid-file, so the decoder seeks.
    path = tmp_path / "split.avi"
    rate = write_index_video(path, n_frames=102, fps=NTSC, width=320, height=180, options=options)
    spans, times, seen = _clips(path, **{"clips.seconds": 1.0, "archive.max_unit_seconds": 2.0,
                                         "decode.sample_fps": 4.0})
    assert [round(s, 6) for s, _ in spans] == [0.0, 1.0, 2.0, 3.0]
    _assert_tiles(spans, float(102 / rate), float(rate))
    _assert_frames_match(times, seen, rate)
