import numpy as np

from vidx.encode.clips import fixed_windows
from vidx.encode.embedder import l2_normalize, pool_clips


def test_windows_aligned_to_video_time():
    times = np.arange(0, 10, 1.0)
    w = fixed_windows(times, clip_seconds=4, duration_s=10.0, sample_fps=1)
    assert w.clip_idx.tolist() == [0, 1, 2]
    assert w.start_s.tolist() == [0, 4, 8]
    assert w.end_s.tolist() == [4, 8, 10]
    assert np.bincount(w.frame_clip).tolist() == [4, 4, 2]


def test_unit_range_keeps_global_clip_numbers():
    times = np.arange(8, 16, 1.0)
    w = fixed_windows(times, clip_seconds=4, duration_s=100.0, sample_fps=1)
    assert w.clip_idx.tolist() == [2, 3]


def test_missing_or_short_duration_ends_after_last_frame():
    times = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    for duration in (None, 2.0, float("nan")):
        w = fixed_windows(times, clip_seconds=4, duration_s=duration, sample_fps=1)
        assert w.end_s.tolist() == [4, 6]
        assert (w.end_s > w.start_s).all()


def test_empty():
    w = fixed_windows(np.array([]), clip_seconds=4, duration_s=1.0, sample_fps=1)
    assert len(w.clip_idx) == 0


def test_pool_is_renormalised_mean():
    rng = np.random.default_rng(0)
    emb = l2_normalize(rng.normal(size=(6, 8)))
    pooled = pool_clips(emb, np.array([0, 0, 0, 1, 1, 1]), 2)
    expected = l2_normalize(np.stack([emb[:3].mean(0), emb[3:].mean(0)]))
    np.testing.assert_allclose(pooled, expected, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1, atol=1e-6)
