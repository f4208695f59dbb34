"""Overlapped decode -> encode with full batches across clip and video boundaries.

A bounded pool of decoder threads (each driving its own decoder subprocess, so the GIL is not the
limit) runs ahead of the encoder by `prefetch` units. Decoded frames from consecutive units are
packed into batches of exactly `batch_size` frames, so a short unit never sends a half-empty
batch to the model; each unit is handed back, in order, as soon as all its frames are encoded.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

LOG = logging.getLogger(__name__)


@dataclass
class UnitResult:
    unit: Any
    decoded: Any = None                 # the decoder's result (with .frames), or None on error
    error: Exception | None = None
    embeddings: np.ndarray | None = None
    decode_s: float = 0.0
    encode_s: float = 0.0
    _filled: int = 0


@dataclass
class _Pending:
    items: deque[UnitResult] = field(default_factory=deque)
    frames: list[np.ndarray] = field(default_factory=list)      # slices waiting for a batch
    owners: list[tuple[UnitResult, int]] = field(default_factory=list)
    buffered: int = 0


def _timed_decode(decode: Callable[[Any], Any], unit: Any) -> UnitResult:
    import time

    t0 = time.perf_counter()
    try:
        return UnitResult(unit, decoded=decode(unit), decode_s=time.perf_counter() - t0)
    except Exception as exc:  # the caller decides which errors are the video's fault
        return UnitResult(unit, error=exc, decode_s=time.perf_counter() - t0)


def decode_ahead(units: Iterable[Any], decode: Callable[[Any], Any], *, workers: int,
                 prefetch: int) -> Iterator[UnitResult]:
    """Decode units on `workers` threads, at most `prefetch` ahead of the consumer, in input order."""
    window: deque[Future[UnitResult]] = deque()
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="vidx-decode") as pool:
        for unit in units:
            window.append(pool.submit(_timed_decode, decode, unit))
            if len(window) > prefetch:
                yield window.popleft().result()
        while window:
            yield window.popleft().result()


def encode_batched(decoded: Iterable[UnitResult], encode: Callable[[np.ndarray], np.ndarray], *,
                   batch_size: int, dim: int) -> Iterator[UnitResult]:
    """Fill `embeddings` of each decoded unit using full batches that may span several units."""
    import time

    pend = _Pending()

    def flush() -> None:
        t0 = time.perf_counter()
        emb = encode(np.concatenate(pend.frames))
        seconds = time.perf_counter() - t0
        pos = 0
        for owner, n in pend.owners:
            if owner.embeddings is None:
                raise RuntimeError("frames queued for a unit without an embedding buffer")
            owner.embeddings[owner._filled:owner._filled + n] = emb[pos:pos + n]
            owner._filled += n
            owner.encode_s += seconds * n / len(emb)
            pos += n
        pend.frames, pend.owners, pend.buffered = [], [], 0

    def ready() -> Iterator[UnitResult]:
        while pend.items and _complete(pend.items[0]):
            yield pend.items.popleft()

    for item in decoded:
        pend.items.append(item)
        frames = None if item.error is not None else item.decoded.frames
        if frames is not None and len(frames):
            item.embeddings = np.empty((len(frames), dim), dtype=np.float32)
            _queue_frames(pend, item, frames, batch_size, flush)
        yield from ready()
    if pend.buffered:
        flush()
    yield from ready()


def _complete(item: UnitResult) -> bool:
    if item.error is not None or item.decoded is None or not len(item.decoded.frames):
        return True
    return item._filled == len(item.decoded.frames)


def _queue_frames(pend: _Pending, item: UnitResult, frames: np.ndarray, batch_size: int,
                  flush: Callable[[], None]) -> None:
    start = 0
    while start < len(frames):
        take = min(batch_size - pend.buffered, len(frames) - start)
        pend.frames.append(frames[start:start + take])
        pend.owners.append((item, take))
        pend.buffered += take
        start += take
        if pend.buffered == batch_size:
            flush()
