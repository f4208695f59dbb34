"""Work units: a whole video or a time range of one, sized to be cheap to retry, and bins of
units balanced by bytes so Spark tasks finish at about the same time."""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class WorkUnit:
    unit_id: str          # "<video_id>:<unit_idx>"
    video_id: str
    uri: str
    unit_idx: int
    n_units: int
    start_s: float
    end_s: float          # exclusive; math.inf when the duration is unknown
    est_bytes: int


def unit_seconds(max_unit_seconds: float, clip_seconds: float) -> float:
    """Unit length: the largest multiple of the clip length <= max_unit_seconds (at least one clip),
    so no clip window ever straddles two units and a split video yields exactly the same clips."""
    return max(1, math.floor(max_unit_seconds / clip_seconds + 1e-9)) * clip_seconds


def plan_units(videos: list[tuple[str, str, int, float | None]], *, max_unit_seconds: float,
               clip_seconds: float) -> list[WorkUnit]:
    """Cut `(video_id, uri, size_bytes, duration_s)` into units of at most `max_unit_seconds`.

    Bytes are assumed uniform over a video's duration, which is what bitrate-controlled encoders
    produce closely enough for balancing.
    """
    step = unit_seconds(max_unit_seconds, clip_seconds)
    units: list[WorkUnit] = []
    for video_id, uri, size, duration in videos:
        if duration is None or not math.isfinite(duration) or duration <= 0:
            units.append(WorkUnit(f"{video_id}:0", video_id, uri, 0, 1, 0.0, math.inf, size))
            continue
        n = max(1, math.ceil(duration / step - 1e-9))
        for i in range(n):
            start, end = i * step, (duration if i == n - 1 else (i + 1) * step)
            est = round(size * (end - start) / duration)
            units.append(WorkUnit(f"{video_id}:{i}", video_id, uri, i, n, start,
                                  math.inf if i == n - 1 else end, est))
    return units


def balance_units(units: list[WorkUnit], n_bins: int) -> list[list[WorkUnit]]:
    """Longest-processing-time-first bin packing by est_bytes (within 4/3 of optimal).

    Deterministic: ties broken by unit_id. Empty bins are dropped.
    """
    if n_bins <= 0:
        raise ValueError("n_bins must be positive")
    bins: list[list[WorkUnit]] = [[] for _ in range(n_bins)]
    heap = [(0, i) for i in range(n_bins)]
    for unit in sorted(units, key=lambda u: (-u.est_bytes, u.unit_id)):
        load, idx = heapq.heappop(heap)
        bins[idx].append(unit)
        heapq.heappush(heap, (load + max(unit.est_bytes, 1), idx))
    return [b for b in bins if b]
