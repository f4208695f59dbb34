"""Moments: adjacent clip hits of one video merged into one start/end span.

A query scores clips; a person wants the stretch of video that matches. For each video among the
hits, clips whose score lies within `drop` of that video's best clip qualify, and runs of
qualifying clips with gaps of at most `max_gap` clips merge into one moment spanning from the
first to the last clip of the run (a gap clip lies inside the span and belongs to that moment;
`n_clips` counts every clip the span covers). Clips of the video that did not qualify are grouped
the same way relative to the best of those left, and never across a span already taken, so every
fetched clip belongs to exactly one moment, moments never overlap, and k moments come back
whenever k clips match. Moments are ranked by their best clip's score.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vidx.config import SearchConfig
from vidx.serve.query import Modality, Searcher
from vidx.serve.rows import ClipRows, Hit

LOG = logging.getLogger(__name__)

# Widening stops here: beyond it a query asks for more than a page of moments can show.
MAX_MOMENT_CLIPS = 100_000
# Each widening multiplies the clips fetched by this, when k x fanout clips made fewer than k moments.
WIDEN = 4


@dataclass(frozen=True)
class ScoredClip:
    video_id: str
    uri: str
    clip_idx: int
    start_s: float
    end_s: float
    score: float
    position: int  # order of the clip within its video; consecutive clips differ by 1


@dataclass(frozen=True)
class Moment:
    video_id: str
    uri: str
    start_s: float
    end_s: float
    score: float
    best_clip_idx: int
    n_clips: int

    def as_dict(self) -> dict[str, Any]:
        return {"video_id": self.video_id, "uri": self.uri, "start_s": self.start_s, "end_s": self.end_s,
                "score": self.score, "best_clip_idx": self.best_clip_idx, "n_clips": self.n_clips}


def _moment(run: list[ScoredClip]) -> Moment:
    best = max(run, key=lambda c: (c.score, -c.position))
    first, last = run[0], run[-1]
    return Moment(first.video_id, first.uri, first.start_s, last.end_s, best.score, best.clip_idx,
                  last.position - first.position + 1)


def _video_moments(clips: list[ScoredClip], drop: float, max_gap: int) -> list[Moment]:
    """Level by level: the best unclaimed clip sets the threshold, qualifying clips form runs, and
    every position a run spans is claimed (a later run never crosses it). O(n log n)."""
    order = sorted(clips, key=lambda c: (-c.score, c.position))
    claimed: set[int] = set()
    moments: list[Moment] = []
    i = 0
    while i < len(order):
        if order[i].position in claimed:  # a gap clip of an earlier moment
            i += 1
            continue
        threshold = order[i].score - drop
        qualifying = []
        while i < len(order) and order[i].score >= threshold:
            if order[i].position not in claimed:
                qualifying.append(order[i])
            i += 1
        run: list[ScoredClip] = []
        for clip in sorted(qualifying, key=lambda c: c.position):
            between = range(run[-1].position + 1, clip.position) if run else range(0)
            if run and len(between) <= max_gap and not any(p in claimed for p in between):
                run.append(clip)
                continue
            if run:
                moments.append(_moment(run))
                claimed.update(range(run[0].position, run[-1].position + 1))
            run = [clip]
        if run:
            moments.append(_moment(run))
            claimed.update(range(run[0].position, run[-1].position + 1))
    return moments


def group_moments(clips: Iterable[ScoredClip], *, drop: float, max_gap: int = 1) -> list[Moment]:
    """Moments of `clips` (any order; a clip repeated keeps its best score), best first."""
    if drop < 0 or max_gap < 0:
        raise ValueError(f"drop and max_gap must be >= 0, got {drop}, {max_gap}")
    by_video: dict[str, dict[int, ScoredClip]] = {}
    for clip in clips:
        seen = by_video.setdefault(clip.video_id, {})
        if clip.position not in seen or clip.score > seen[clip.position].score:
            seen[clip.position] = clip
    moments = [m for video in by_video.values() for m in _video_moments(list(video.values()), drop, max_gap)]
    return sorted(moments, key=lambda m: (-m.score, m.video_id, m.start_s))


def scored(hits: Sequence[Hit], rows: ClipRows) -> list[ScoredClip]:
    """Hits with their clip positions from the index's id map."""
    if not hits:
        return []
    positions = rows.positions(np.array([h.row for h in hits], dtype=np.int64))
    return [ScoredClip(h.video_id, h.uri, h.clip_idx, h.start_s, h.end_s, h.score, int(p))
            for h, p in zip(hits, positions, strict=True)]


def search_moments(search: Callable[[int], list[Hit]], rows: ClipRows, k: int, *, fanout: int,
                   drop: float, max_gap: int = 1) -> list[Moment]:
    """The k best moments. `search(n)` returns the top n clip hits (filters already applied).

    k x fanout clips are fetched; when they merge into fewer than k moments and more clips may
    exist, the fetch widens (x WIDEN) up to the index size or MAX_MOMENT_CLIPS.
    """
    limit = max(1, min(len(rows), MAX_MOMENT_CLIPS))
    n = min(limit, k * fanout)
    while True:
        hits = search(n)
        moments = group_moments(scored(hits, rows), drop=drop, max_gap=max_gap)
        if len(moments) >= k or len(hits) < n or n >= limit:
            return moments[:k]
        LOG.debug("%d clips made %d < %d moments; fetching %d", n, len(moments), k, min(limit, n * WIDEN))
        n = min(limit, n * WIDEN)


def searcher_moments(searcher: Searcher, vector: np.ndarray, k: int, *, modality: Modality,
                     cfg: SearchConfig) -> list[Moment]:
    """`vidx search --moments`: the k best moments for one query vector of the index's model."""
    query = vector.reshape(1, -1)
    return search_moments(lambda n: searcher.search_vectors(query, n, modality=modality)[0], searcher.rows, k,
                          fanout=cfg.moment_fanout, drop=cfg.moment_drop)
