"""Fixed clip windows over sampled frames."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClipWindows:
    clip_idx: np.ndarray       # (C,) int32 window numbers present in this range
    start_s: np.ndarray        # (C,) float64
    end_s: np.ndarray          # (C,) float64
    frame_clip: np.ndarray     # (N,) int, position in clip_idx of each frame


def fixed_windows(times: np.ndarray, *, clip_seconds: float, duration_s: float | None,
                  sample_fps: float) -> ClipWindows:
    """Assign sample times to windows [i*L, (i+1)*L) on the video's own time axis.

    Windows are numbered from t=0, not from the unit start, so a video split into units yields
    the same clip_idx values as an unsplit one. The last window ends at the video's duration, or
    one sample step after its last frame when the container's duration is missing or too short.
    """
    if len(times) == 0:
        empty = np.empty(0)
        return ClipWindows(empty.astype(np.int32), empty, empty, empty.astype(np.int64))
    idx = np.floor(np.asarray(times) / clip_seconds + 1e-9).astype(np.int64)
    present, frame_clip = np.unique(idx, return_inverse=True)
    start = present * clip_seconds
    end = (present + 1) * clip_seconds
    last_t = np.zeros(len(present))
    np.maximum.at(last_t, frame_clip, np.asarray(times))
    limit = duration_s if duration_s is not None and math.isfinite(duration_s) else -math.inf
    floor_end = last_t + 1.0 / sample_fps
    capped = np.minimum(end, np.maximum(limit, floor_end))
    end = np.where(capped > start, capped, end)
    return ClipWindows(present.astype(np.int32), start.astype(np.float64), end.astype(np.float64),
                       frame_clip.astype(np.int64))
