"""Overlapped decode/encode: order kept, full batches across units, errors passed through."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np

from vidx.encode.batcher import decode_ahead, encode_batched, encode_clips_batched


def _decode(unit):
    n, fail = unit
    if fail:
        raise ValueError(f"bad unit {n}")
    time.sleep(0.01)
    return SimpleNamespace(frames=np.full((n, 2, 2, 3), n, dtype=np.uint8))


def test_full_batches_across_units_in_order():
    units = [(3, False), (0, False), (5, False), (2, True), (1, False), (7, False)]
    sizes = []

    def encode(frames):
        sizes.append(len(frames))
        return np.repeat(frames[:, 0, 0, :1].astype(np.float32), 4, axis=1)

    out = list(encode_batched(decode_ahead(units, _decode, workers=2, prefetch=3), encode, batch_size=4, dim=4))
    assert [r.unit for r in out] == units
    assert sizes == [4, 4, 4, 4]                      # 16 frames in full batches of 4 (last one too)
    for r in out:
        n, fail = r.unit
        if fail:
            assert isinstance(r.error, ValueError) and r.embeddings is None
        elif n:
            np.testing.assert_array_equal(r.embeddings, np.full((n, 4), n, dtype=np.float32))
    assert out[0].decode_s > 0


def test_prefetch_is_bounded():
    running = []
    lock = threading.Lock()
    in_flight = 0

    def decode(unit):
        nonlocal in_flight
        with lock:
            in_flight += 1
            running.append(in_flight)
        time.sleep(0.02)
        with lock:
            in_flight -= 1
        return SimpleNamespace(frames=np.zeros((1, 2, 2, 3), np.uint8))

    consumed = 0
    for _ in decode_ahead(range(12), decode, workers=4, prefetch=2):
        consumed += 1
        time.sleep(0.01)
    assert consumed == 12 and max(running) <= 3


def test_whole_clips_per_batch_across_units_in_order():
    """Token clustering needs a clip's frames in one forward pass: clips are never split, batches
    hold at most batch_size frames (a longer clip goes alone), and units keep their order."""
    units = [(5, False), (0, False), (3, True), (7, False), (2, False)]
    clip_plan = {5: [2, 3], 7: [4, 1, 2], 2: [2]}  # frames per clip of each unit
    batches = []

    def encode(frames, lengths):
        batches.append(list(lengths))
        assert sum(lengths) == len(frames)
        clips, segments, start = [], [], 0
        for n in lengths:
            value = frames[start, 0, 0, 0]
            assert (frames[start:start + n, 0, 0, 0] == value).all()  # one unit's frames per clip
            clips.append(np.full(4, value * 10 + n, np.float32))
            segments.append(np.full((min(n, 2), 4), value, np.float32))
            start += n
        return np.stack(clips), segments

    out = list(encode_clips_batched(decode_ahead(units, _decode, workers=2, prefetch=2), encode, batch_size=4,
                                    dim=4, clip_lengths=lambda item: clip_plan[item.unit[0]]))
    assert [r.unit for r in out] == units
    assert batches == [[2], [3], [4], [1, 2], [2]]  # 2+3 > 4: flushed before; never a split clip
    for r in out:
        n, fail = r.unit
        if fail:
            assert isinstance(r.error, ValueError) and r.clip_embeddings is None
        elif n:
            expected = [n * 10 + k for k in clip_plan[n]]
            np.testing.assert_array_equal(r.clip_embeddings[:, 0], expected)
            assert [s.shape for s in r.segment_embeddings] == [(min(k, 2), 4) for k in clip_plan[n]]
            assert r.encode_s >= 0 and r.clip_lengths == clip_plan[n]


def test_clip_lengths_must_cover_the_unit():
    import pytest

    with pytest.raises(ValueError, match="do not cover"):
        list(encode_clips_batched(decode_ahead([(3, False)], _decode, workers=1, prefetch=1),
                                  lambda f, n: (np.zeros((len(n), 4), np.float32), []), batch_size=4, dim=4,
                                  clip_lengths=lambda item: [2]))
