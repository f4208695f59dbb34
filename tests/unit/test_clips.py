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


def test_last_window_ends_at_a_fractional_duration():
    # issue 15: 1 sample/s of a 3.43 s video used to end its only clip at 4.0 s (last sample + 1 s)
    w = fixed_windows(np.array([0.0, 1.0, 2.0, 3.0]), clip_seconds=4, duration_s=103 / 30, sample_fps=1)
    assert w.start_s.tolist() == [0.0] and w.end_s.tolist() == [103 / 30]
    w = fixed_windows(np.arange(0, 10, 1.0), clip_seconds=4, duration_s=9.5, sample_fps=1)
    assert w.start_s.tolist() == [0, 4, 8] and w.end_s.tolist() == [4, 8, 9.5]


def test_video_shorter_than_a_sample_step_gets_one_clip_of_its_length():
    w = fixed_windows(np.array([0.0]), clip_seconds=4, duration_s=0.1, sample_fps=1)
    assert w.clip_idx.tolist() == [0] and w.end_s.tolist() == [0.1]


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


def _scene_embeddings(scene_lengths, seed=0, noise=0.02):
    rng = np.random.default_rng(seed)
    rows = []
    for length in scene_lengths:
        base = rng.normal(size=16)
        rows += [base + noise * rng.normal(size=16) for _ in range(length)]
    return l2_normalize(np.array(rows))


def test_adaptive_static_scene_few_clips_busy_scene_many():
    from vidx.encode.clips import adaptive_windows

    static = _scene_embeddings([30])
    t = np.arange(30, dtype=float)
    w = adaptive_windows(t, static, threshold=0.15, min_seconds=2, max_seconds=10, duration_s=30.0, sample_fps=1)
    assert len(w.clip_idx) == 3                      # only max_seconds cuts a static scene
    busy = _scene_embeddings([3, 2, 4, 3, 2, 5, 3, 2, 3, 3])
    w2 = adaptive_windows(t, busy, threshold=0.15, min_seconds=2, max_seconds=10, duration_s=30.0, sample_fps=1)
    assert w2.start_s.tolist() == [0, 3, 5, 9, 12, 14, 19, 22, 24, 27]   # cuts exactly at scene changes
    assert (np.diff(w2.start_s) >= 2).all() and (w2.end_s > w2.start_s).all()
    assert w2.end_s[-1] == 30 and (w2.end_s[:-1] == w2.start_s[1:]).all()
    assert (np.diff(w2.clip_idx) > 0).all()


def test_adaptive_respects_min_seconds():
    from vidx.encode.clips import adaptive_windows

    flicker = _scene_embeddings([1] * 12)
    t = np.arange(12, dtype=float)
    w = adaptive_windows(t, flicker, threshold=0.15, min_seconds=3, max_seconds=10, duration_s=None, sample_fps=1)
    assert (np.diff(w.start_s) >= 3).all()
