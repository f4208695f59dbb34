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


def _video_groups(units: list[WorkUnit], share: float) -> list[list[WorkUnit]]:
    """A video's units stay together (one task, one download of the video) unless the video alone
    outweighs a bin's fair `share`; then it is cut into the fewest runs of consecutive units that
    each fit the share, so a very long video still spreads over several tasks."""
    by_video: dict[str, list[WorkUnit]] = {}
    for unit in sorted(units, key=lambda u: (u.video_id, u.unit_idx)):
        by_video.setdefault(unit.video_id, []).append(unit)
    groups: list[list[WorkUnit]] = []
    for mine in by_video.values():
        weights = [max(u.est_bytes, 1) for u in mine]
        pieces = min(len(mine), max(1, math.ceil(sum(weights) / share - 1e-9)))
        target = sum(weights) / pieces
        runs: list[list[WorkUnit]] = [[] for _ in range(pieces)]
        done = 0
        for unit, weight in zip(mine, weights, strict=True):
            # by the unit's middle byte: non-decreasing, so each run is consecutive units
            runs[min(pieces - 1, int((done + weight / 2) / target))].append(unit)
            done += weight
        groups.extend(r for r in runs if r)
    return groups


def balance_units(units: list[WorkUnit], n_bins: int) -> list[list[WorkUnit]]:
    """Longest-processing-time-first bin packing by est_bytes (within 4/3 of optimal) of groups of
    one video's units (`_video_groups`): a task downloads each remote video it holds once, so a
    video split across k tasks is read k times.

    Deterministic: ties broken by the group's first unit_id. Empty bins are dropped.
    """
    if n_bins <= 0:
        raise ValueError("n_bins must be positive")
    share = sum(max(u.est_bytes, 1) for u in units) / n_bins
    groups = _video_groups(units, share)
    bins: list[list[WorkUnit]] = [[] for _ in range(n_bins)]
    heap = [(0, i) for i in range(n_bins)]
    weight = {id(g): sum(max(u.est_bytes, 1) for u in g) for g in groups}
    for group in sorted(groups, key=lambda g: (-weight[id(g)], g[0].unit_id)):
        load, idx = heapq.heappop(heap)
        bins[idx].extend(group)
        heapq.heappush(heap, (load + weight[id(group)], idx))
    return [b for b in bins if b]
