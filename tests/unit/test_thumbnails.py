"""Clip thumbnails: the decoded frame nearest each clip's midpoint, as a small JPEG."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vidx.encode.clips import fixed_windows
from vidx.encode.thumbnails import clip_thumbnails, jpeg, midpoint_frames


def test_midpoint_frame_per_clip():
    times = np.arange(0.0, 10.0, 1.0)                  # 1 fps, 4 s clips: [0,4) [4,8) [8,10)
    w = fixed_windows(times, clip_seconds=4.0, duration_s=10.0, sample_fps=1.0)
    # midpoints 2.0, 6.0, 9.0 -> frames 2, 6, 9
    assert midpoint_frames(times, w.frame_clip, w.start_s, w.end_s).tolist() == [2, 6, 9]


def test_midpoint_ties_take_the_earlier_frame_and_clips_must_own_frames():
    times = np.array([0.5, 1.5])
    assert midpoint_frames(times, np.array([0, 0]), np.array([0.0]), np.array([2.0])).tolist() == [0]
    with pytest.raises(ValueError):
        midpoint_frames(times, np.array([0, 0]), np.array([0.0, 2.0]), np.array([2.0, 4.0]))


def test_jpeg_downscales_but_never_upscales():
    big = np.zeros((224, 224, 3), np.uint8)
    small = np.zeros((64, 64, 3), np.uint8)
    assert Image.open(io.BytesIO(jpeg(big, width=160, quality=80))).size == (160, 160)
    assert Image.open(io.BytesIO(jpeg(small, width=160, quality=80))).size == (64, 64)


def test_clip_thumbnails_show_the_midpoint_frame():
    # frame i is a flat grey of level 20 * i: the picked frame is readable from the JPEG
    frames = np.stack([np.full((64, 64, 3), 20 * i, np.uint8) for i in range(10)])
    times = np.arange(10.0)
    w = fixed_windows(times, clip_seconds=4.0, duration_s=10.0, sample_fps=1.0)
    thumbs = clip_thumbnails(frames, times, w.frame_clip, w.start_s, w.end_s, width=160, quality=90)
    assert len(thumbs) == 3
    levels = [int(np.asarray(Image.open(io.BytesIO(t)).convert("L")).mean().round()) for t in thumbs]
    assert levels == pytest.approx([40, 120, 180], abs=2)
    assert all(t[:3] == b"\xff\xd8\xff" for t in thumbs)  # JPEG magic
