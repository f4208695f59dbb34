"""Sampling math, independent of any decoder: which instants to sample and which frame shows them.

Sample times live on a grid anchored at t=0 of the video (t_k = k / fps), never at the start of a
work unit, so a video split into time ranges yields exactly the timestamps of one unsplit run.
Times are seconds relative to the video's first frame (decord's convention).
"""

from __future__ import annotations

import logging
import math

import numpy as np

LOG = logging.getLogger(__name__)

# Grid positions are computed as ceil(t * fps - _GRID_EPS): t * fps for t = 8.0, fps = 1 may come out
# as 8.000000000001 through float error, and must still give k = 8, not 9.
_GRID_EPS = 1e-6


def _grid_index(t: float, fps: float) -> int:
    return max(0, math.ceil(t * fps - _GRID_EPS))


def sample_times(start_s: float, end_s: float, fps: float) -> np.ndarray:
    """All grid times k / fps (k >= 0) with start_s <= t < end_s, as float64 seconds.

    Adjacent ranges [a, b) and [b, c) partition the grid exactly: both use the same rounded index
    for b, so no sample is lost or duplicated at a split point.
    """
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"sample fps must be a positive finite number, got {fps!r}")
    if not (math.isfinite(start_s) and math.isfinite(end_s)):
        raise ValueError(f"start_s and end_s must be finite, got {start_s!r}, {end_s!r}")
    k0, k1 = _grid_index(start_s, fps), _grid_index(end_s, fps)
    if k1 <= k0:
        return np.zeros(0, dtype=np.float64)
    return np.arange(k0, k1, dtype=np.float64) / fps


def frame_indices_for_times(frame_pts: np.ndarray, times: np.ndarray, *,
                            tolerance_s: float = 1e-3) -> np.ndarray:
    """For each time, the index (into `frame_pts`) of the frame displayed then.

    That is the frame with the largest pts <= t + tolerance_s; times before the first frame map to
    the first frame. The tolerance absorbs timestamp rounding (decord returns float32, Matroska
    stores milliseconds), which would otherwise pick the previous frame when a sample lands exactly
    on a frame boundary. Works for variable frame rates; unsorted pts are handled with a stable
    argsort (the earliest-listed frame wins among equal pts); NaN pts are never selected.
    Returns int64 indices into the original `frame_pts`.
    """
    pts = np.asarray(frame_pts, dtype=np.float64).ravel()
    t = np.asarray(times, dtype=np.float64).ravel()
    valid = np.flatnonzero(~np.isnan(pts))
    if valid.size == 0:
        if t.size:
            raise ValueError("no frame has a valid (non-NaN) timestamp")
        return np.zeros(0, dtype=np.int64)
    order = valid[np.argsort(pts[valid], kind="stable")]
    sorted_pts = pts[order]
    # Among equal pts keep the first listed frame: search for the last position with pts <= t,
    # then step back to the first of its run of equal values.
    pos = np.searchsorted(sorted_pts, t + tolerance_s, side="right") - 1
    pos = np.clip(pos, 0, sorted_pts.size - 1)
    first_of_run = np.searchsorted(sorted_pts, sorted_pts[pos], side="left")
    return order[first_of_run].astype(np.int64)


def decode_size(width: int, height: int, target: int) -> tuple[int, int]:
    """(w, h) to ask the decoder for, so that the shorter side is `target` and the aspect is kept."""
    if width <= 0 or height <= 0 or target <= 0:
        raise ValueError(f"sizes must be positive, got {width}x{height} -> {target}")
    if width <= height:
        return target, max(1, round(height * target / width))
    return max(1, round(width * target / height)), target


def center_crop(frames: np.ndarray, size: int) -> np.ndarray:
    """Central (size x size) window of (N, H, W, C) frames; H and W must both be >= size."""
    if frames.ndim != 4:
        raise ValueError(f"expected (N, H, W, C) frames, got shape {frames.shape}")
    h, w = frames.shape[1:3]
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from {w}x{h} frames")
    y0, x0 = (h - size) // 2, (w - size) // 2
    return frames[:, y0 : y0 + size, x0 : x0 + size]


def rotate_frames(frames: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a display rotation (degrees counter-clockwise, multiple of 90) to (N, H, W, C) frames."""
    k = (round(rotation / 90)) % 4
    if k == 0:
        return frames
    return np.ascontiguousarray(np.rot90(frames, k=k, axes=(1, 2)))
