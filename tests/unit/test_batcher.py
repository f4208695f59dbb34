"""Overlapped decode/encode: order kept, full batches across units, errors passed through."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import numpy as np

from vidx.encode.batcher import decode_ahead, encode_batched


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
