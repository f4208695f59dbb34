"""Moment grouping on hand-made score sequences, and the fetch widening that makes k count moments."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from vidx.serve.moments import ScoredClip, group_moments, search_moments
from vidx.serve.rows import ClipRows


def clips(video: str, scores: list[float | None], *, seconds: float = 4.0,
          idx: list[int] | None = None) -> list[ScoredClip]:
    """One video's fetched clips: scores[i] is clip i's score, None = not fetched."""
    out = []
    for pos, score in enumerate(scores):
        if score is not None:
            clip_idx = idx[pos] if idx else pos
            out.append(ScoredClip(video, f"/a/{video}.mp4", clip_idx, pos * seconds, (pos + 1) * seconds, score, pos))
    return out


def spans(moments) -> list[tuple[str, float, float, float, int, int]]:
    return [(m.video_id, m.start_s, m.end_s, round(m.score, 3), m.best_clip_idx, m.n_clips) for m in moments]


def test_clips_within_drop_of_the_best_merge_with_a_one_clip_gap():
    # qualifying (>= 0.45): clips 1, 2, 4; clip 3 is a one-clip gap, so 1..4 is one moment
    got = group_moments(clips("v", [0.10, 0.50, 0.48, 0.20, 0.47, 0.10]), drop=0.05)
    assert spans(got)[0] == ("v", 4.0, 20.0, 0.5, 1, 4)
    # what did not qualify is grouped relative to the best of it: clips 0 and 5, apart
    assert sorted(spans(got)[1:]) == [("v", 0.0, 4.0, 0.1, 0, 1), ("v", 20.0, 24.0, 0.1, 5, 1)]


def test_a_gap_of_two_clips_splits_the_moment():
    got = group_moments(clips("v", [0.50, 0.10, 0.10, 0.49]), drop=0.05)
    assert spans(got)[:2] == [("v", 0.0, 4.0, 0.5, 0, 1), ("v", 12.0, 16.0, 0.49, 3, 1)]
    assert spans(got)[2] == ("v", 4.0, 12.0, 0.1, 1, 2)  # the two weak clips merge with each other


def test_unfetched_gap_clip_is_spanned_and_counted():
    got = group_moments(clips("v", [0.50, None, 0.47]), drop=0.05)
    assert spans(got) == [("v", 0.0, 12.0, 0.5, 0, 3)]


def test_drop_zero_merges_only_ties_and_scores_below_the_drop_stay_out():
    assert spans(group_moments(clips("v", [0.5, 0.5, 0.4]), drop=0.0)) == [
        ("v", 0.0, 8.0, 0.5, 0, 2), ("v", 8.0, 12.0, 0.4, 2, 1)]
    # 0.44 is more than 0.05 below 0.50: its own moment
    assert len(group_moments(clips("v", [0.50, 0.44]), drop=0.05)) == 2


def test_a_later_moment_never_crosses_an_earlier_one():
    # clip 1 wins alone; 0 and 2 qualify together at the next level but clip 1 lies between them
    got = group_moments(clips("v", [0.30, 0.90, 0.30]), drop=0.05)
    assert spans(got) == [("v", 4.0, 8.0, 0.9, 1, 1), ("v", 0.0, 4.0, 0.3, 0, 1), ("v", 8.0, 12.0, 0.3, 2, 1)]


def test_moments_rank_by_best_score_across_videos_and_never_mix_videos():
    got = group_moments(clips("a", [0.30, 0.31]) + clips("b", [0.60, 0.20, 0.58]) + clips("c", [0.45]), drop=0.05)
    # b's 0.20 is the gap clip inside b's moment, not a moment of its own
    assert [(m.video_id, m.score) for m in got] == [("b", 0.60), ("c", 0.45), ("a", 0.31)]
    assert spans(got)[0] == ("b", 0.0, 12.0, 0.6, 0, 3)
    assert spans(got)[2] == ("a", 0.0, 8.0, 0.31, 1, 2)


def test_adjacency_is_by_position_not_clip_number():
    # adaptive clips are numbered by their first sample (0, 7, 15): neighbours all the same
    got = group_moments(clips("v", [0.5, 0.49, 0.48], idx=[0, 7, 15]), drop=0.05)
    assert spans(got) == [("v", 0.0, 12.0, 0.5, 0, 3)]


def test_repeated_clip_keeps_its_best_score_and_input_order_does_not_matter():
    base = clips("v", [0.1, 0.5, 0.48, 0.2])
    repeated = [*base, ScoredClip("v", "/a/v.mp4", 3, 12.0, 16.0, 0.49, 3)]
    rng = np.random.default_rng(0)
    shuffled = [repeated[i] for i in rng.permutation(len(repeated))]
    assert spans(group_moments(shuffled, drop=0.05)) == spans(group_moments(repeated, drop=0.05))
    assert spans(group_moments(repeated, drop=0.05))[0] == ("v", 4.0, 16.0, 0.5, 1, 3)


def test_negative_drop_is_refused():
    with pytest.raises(ValueError):
        group_moments([], drop=-0.1)


def _rows(n_videos: int, per_video: int) -> ClipRows:
    vids = [f"v{i}" for i in range(n_videos) for _ in range(per_video)]
    idx = [j for _ in range(n_videos) for j in range(per_video)]
    return ClipRows(pa.table({"video_id": vids, "uri": [f"/a/{v}.mp4" for v in vids], "clip_idx": idx,
                              "start_s": [4.0 * j for j in idx], "end_s": [4.0 * (j + 1) for j in idx]}))


def test_k_counts_moments_and_the_fetch_widens_until_k_come_back():
    rows = _rows(n_videos=3, per_video=20)
    # every clip scores alike within its video, so each video is ONE moment whatever is fetched
    scores = np.array([1.0 - 0.1 * (r // 20) - 0.0001 * (r % 20) for r in range(len(rows))])
    order = np.argsort(-scores, kind="stable")
    asked: list[int] = []

    def search(n: int):
        asked.append(n)
        return [rows.hit(int(r), float(scores[r])) for r in order[:n]]

    got = search_moments(search, rows, 3, fanout=2, drop=0.05)
    assert [m.video_id for m in got] == ["v0", "v1", "v2"] and [m.n_clips for m in got] == [20, 20, 20]
    assert asked == [6, 24, 60]  # 6 clips were one moment; widened x4 until the index was exhausted
    assert len(search_moments(search, rows, 2, fanout=25, drop=0.05)) == 2  # 50 clips: enough at once


def test_fewer_moments_than_k_when_the_archive_holds_fewer():
    rows = _rows(n_videos=2, per_video=3)
    hits = [rows.hit(r, 0.5) for r in range(len(rows))]
    got = search_moments(lambda n: hits[:n], rows, 10, fanout=10, drop=0.05)
    assert [(m.video_id, m.n_clips) for m in got] == [("v0", 3), ("v1", 3)]
