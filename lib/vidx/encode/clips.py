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
    one sample step after its last frame when the container's duration is missing or not after
    that frame, so the windows tile [0, duration).
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
    # The duration ends a window only when it lies after the window's last sample; a missing or
    # too-short duration (a wrong header) falls back to one sample step after that sample. A video
    # shorter than one window thus gets one clip [0, duration].
    last_end = np.where(limit > last_t, limit, last_t + 1.0 / sample_fps)
    capped = np.minimum(end, last_end)
    end = np.where(capped > start, capped, end)
    return ClipWindows(present.astype(np.int32), start.astype(np.float64), end.astype(np.float64),
                       frame_clip.astype(np.int64))


def adaptive_windows(times: np.ndarray, emb: np.ndarray, *, threshold: float, min_seconds: float,
                     max_seconds: float, duration_s: float | None, sample_fps: float) -> ClipWindows:
    """Cut a new clip when a frame drifts from the running clip centre by more than `threshold`
    (cosine distance), once the clip is `min_seconds` long; never let a clip exceed `max_seconds`.

    Static scenes become few clips and busy scenes many. clip_idx is the sample-grid index of the
    clip's first frame (round(start * fps)): unique and increasing within a video, and the same
    whether or not the video was split into units (units start on the grid), but not contiguous.
    """
    n = len(times)
    if n == 0:
        return fixed_windows(times, clip_seconds=max_seconds, duration_s=duration_s, sample_fps=sample_fps)
    starts = [0]
    centre = emb[0].astype(np.float64).copy()
    count = 1
    for i in range(1, n):
        length = times[i] - times[starts[-1]]
        unit_centre = centre / max(np.linalg.norm(centre), 1e-12)
        drift = 1.0 - float(emb[i] @ unit_centre)
        if length >= max_seconds - 1e-9 or (drift > threshold and length >= min_seconds - 1e-9):
            starts.append(i)
            centre, count = emb[i].astype(np.float64).copy(), 1
        else:
            centre += emb[i]
            count += 1
    frame_clip = np.zeros(n, dtype=np.int64)
    for k, s in enumerate(starts):
        frame_clip[s:] = k
    start = np.asarray(times)[starts].astype(np.float64)
    last = np.asarray(times)[n - 1] + 1.0 / sample_fps
    limit = duration_s if duration_s is not None and math.isfinite(duration_s) else last
    end = np.append(start[1:], max(min(last, max(limit, times[n - 1])), start[-1] + 1e-6))
    idx = np.rint(start * sample_fps).astype(np.int32)
    return ClipWindows(idx, start, end, frame_clip)
