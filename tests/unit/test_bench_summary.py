"""bench/ summary arithmetic on hand-made numbers: pooled speed-ups and geometric means (not means of
per-file ratios), efficiency as the median of paired runs (not a ratio of medians)."""

from __future__ import annotations

import math

import pytest
from bench.summary import geomean, keyframe_class, paired_ratios, summarise_decode, summarise_pairs


def decode_row(name: str, *, sampled: int, sparse_s: float, kept: int, full_s: float, resized_s: float,
               gop_frames: float, fps: float = 30.0, height: int = 360) -> dict:
    """A per-file row as bench.run.bench_decode writes it (raw counts and seconds, and its own ratios)."""
    sparse_fps, full_fps, resized_fps = sampled / sparse_s, kept / full_s, kept / resized_s
    return {"file": name, "fps": fps, "height": height, "gop_frames": gop_frames, "sampled": sampled,
            "sparse_s": sparse_s, "kept": kept, "full_s": full_s, "resized_s": resized_s, "sparse_fps": sparse_fps,
            "full_fps": full_fps, "full_resized_fps": resized_fps, "speedup": sparse_fps / full_fps,
            "speedup_vs_resized": sparse_fps / resized_fps}


def test_decode_speedup_pools_frames_and_seconds_not_per_file_ratios():
    # A: 30 frames sparse in 0.1 s, all frames in 1 s (10x); B: 30 frames in 1 s vs 2 s (2x).
    files = [decode_row("a.mp4", sampled=30, sparse_s=0.1, kept=30, full_s=1.0, resized_s=1.0, gop_frames=30),
             decode_row("b.mp4", sampled=30, sparse_s=1.0, kept=30, full_s=2.0, resized_s=1.5, gop_frames=30)]
    out = summarise_decode(files)
    # pooled: (60 frames / 1.1 s) / (60 frames / 3.0 s) = 3 / 1.1; the mean of ratios would say 6
    assert out["speedup"] == pytest.approx(3.0 / 1.1)
    assert out["sparse_fps"] == pytest.approx(60 / 1.1) and out["full_fps"] == pytest.approx(20.0)
    assert out["speedup_geomean"] == pytest.approx(math.sqrt(10 * 2))
    assert out["speedup_vs_resized"] == pytest.approx(2.5 / 1.1)
    assert out["speedup_range"] == pytest.approx([2.0, 10.0])


def test_decode_pooling_weighs_frames_not_files():
    # different frame counts: pooled over frames, so the 16-frame file counts for less than the 30-frame one
    files = [decode_row("long.mp4", sampled=30, sparse_s=1.0, kept=30, full_s=3.0, resized_s=3.0, gop_frames=250),
             decode_row("short.mp4", sampled=16, sparse_s=0.5, kept=16, full_s=0.5, resized_s=0.5, gop_frames=240)]
    out = summarise_decode(files)
    assert out["speedup"] == pytest.approx((46 / 1.5) / (46 / 3.5))
    assert out["speedup_geomean"] == pytest.approx(math.sqrt(3.0 * 1.0))


def test_per_keyframe_interval_rows_are_pooled_too():
    files = [decode_row("360p_gop30", sampled=30, sparse_s=0.1, kept=30, full_s=1.0, resized_s=1.0, gop_frames=30),
             decode_row("1080p_gop30", sampled=16, sparse_s=0.25, kept=16, full_s=4.0, resized_s=3.0, gop_frames=30,
                        height=1080),
             decode_row("360p_gop60", sampled=30, sparse_s=0.3, kept=30, full_s=1.0, resized_s=1.0, gop_frames=60),
             decode_row("360p_gop250", sampled=30, sparse_s=0.5, kept=30, full_s=1.0, resized_s=1.0, gop_frames=225),
             decode_row("1080p_gop250", sampled=16, sparse_s=1.0, kept=16, full_s=3.0, resized_s=3.0,
                        gop_frames=240, height=1080)]
    groups = summarise_decode(files)["by_keyframe_interval"]
    assert list(groups) == ["<= 1 s", "<= 2 s", "> 2 s"]  # 225- and 240-frame GOPs are one row, not two
    assert groups["<= 1 s"]["speedup"] == pytest.approx((46 / 0.35) / (46 / 5.0))  # not mean(10, 16) = 13
    assert groups["<= 1 s"]["speedup_geomean"] == pytest.approx(math.sqrt(10 * 16))
    assert groups["> 2 s"]["speedup"] == pytest.approx((46 / 1.5) / (46 / 4.0))
    assert groups["> 2 s"]["files"] == ["360p_gop250", "1080p_gop250"]


def test_keyframe_classes():
    assert keyframe_class(25, 25.0) == keyframe_class(15, 30.0) == "<= 1 s"
    assert keyframe_class(60, 30.0) == "<= 2 s"
    assert keyframe_class(250, 30.0) == "> 2 s"


def test_geomean():
    assert geomean([2.0, 8.0]) == pytest.approx(4.0)
    assert geomean([0.5, 2.0]) == pytest.approx(1.0)  # a 2x win and a 2x loss cancel
    with pytest.raises(ValueError):
        geomean([])


def test_efficiency_is_the_median_of_paired_ratios_not_a_ratio_of_medians():
    # pair 2 ran under load: both halves slow. Paired ratios 0.9, 0.6, 0.95 -> median 0.9;
    # median(pipeline) / median(bare) = 57 / 60 = 0.95 would pair a quiet run with a busy one.
    bare, pipeline = [100.0, 50.0, 60.0], [90.0, 30.0, 57.0]
    out = summarise_pairs(bare, pipeline)
    assert out["efficiency"] == pytest.approx(0.9)
    assert out["efficiency_pairs"] == pytest.approx([0.9, 0.6, 0.95])
    assert out["efficiency_range"] == pytest.approx([0.6, 0.95])
    assert out["bare_ips"] == 60.0 and out["pipeline_ips"] == 57.0  # the medians, kept for `vidx plan`


def test_paired_ratios_need_equal_lengths():
    assert paired_ratios([2.0, 3.0], [1.0, 2.0]) == [2.0, 1.5]
    with pytest.raises(ValueError):
        paired_ratios([1.0], [1.0, 2.0])
