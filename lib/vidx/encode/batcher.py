"""Overlapped decode -> encode with full batches across clip and video boundaries.

A bounded pool of decoder threads (each driving its own decoder subprocess, so the GIL is not the
limit) runs ahead of the encoder by `prefetch` units. Decoded frames from consecutive units are
packed into batches of exactly `batch_size` frames, so a short unit never sends a half-empty
batch to the model; each unit is handed back, in order, as soon as all its frames are encoded.

With token clustering the encoder needs every frame of a clip in the same forward pass (its
segments are clustered together), so `encode_clips_batched` packs whole clips instead: batches of
at most `batch_size` frames (a longer clip goes alone), still across unit and video boundaries.
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
    embeddings: np.ndarray | None = None      # (frames, dim): per-frame path
    clip_lengths: list[int] | None = None     # frames of each clip, in order: per-clip path
    clip_embeddings: np.ndarray | None = None  # (clips, dim): per-clip path
    segment_embeddings: list[np.ndarray] | None = None  # per clip (segments, dim): per-clip path
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
    if item.clip_lengths is not None:
        return item._filled == len(item.clip_lengths)
    return item._filled == len(item.decoded.frames)


ClipEncoder = Callable[[np.ndarray, list[int]], tuple[np.ndarray, list[np.ndarray]]]


def encode_clips_batched(decoded: Iterable[UnitResult], encode: ClipEncoder, *, batch_size: int, dim: int,
                         clip_lengths: Callable[[UnitResult], list[int]]) -> Iterator[UnitResult]:
    """Fill `clip_embeddings` / `segment_embeddings` of each decoded unit, whole clips per batch.

    `clip_lengths(item)` gives the frame count of each clip of a unit (its frames are clip after
    clip, in time order); `encode(frames, lengths)` returns ((clips, dim) clip vectors, one
    (segments, dim) array per clip). Units come back in input order once all their clips are done.
    """
    import time

    pend = _Pending()
    lengths: list[int] = []

    def flush() -> None:
        t0 = time.perf_counter()
        clips, segments = encode(np.concatenate(pend.frames), lengths)
        seconds = time.perf_counter() - t0
        for pos, (owner, j) in enumerate(pend.owners):
            if owner.clip_embeddings is None or owner.segment_embeddings is None:
                raise RuntimeError("clips queued for a unit without an embedding buffer")
            owner.clip_embeddings[j] = clips[pos]
            owner.segment_embeddings[j] = segments[pos]
            owner._filled += 1
            owner.encode_s += seconds * lengths[pos] / max(1, sum(lengths))
        pend.frames, pend.owners, pend.buffered = [], [], 0
        lengths.clear()

    for item in decoded:
        pend.items.append(item)
        frames = None if item.error is not None else item.decoded.frames
        if frames is not None and len(frames):
            item.clip_lengths = [int(n) for n in clip_lengths(item)]
            if sum(item.clip_lengths) != len(frames) or min(item.clip_lengths) < 1:
                raise ValueError(f"clip lengths {item.clip_lengths} do not cover the unit's {len(frames)} frames")
            item.clip_embeddings = np.empty((len(item.clip_lengths), dim), dtype=np.float32)
            item.segment_embeddings = [np.empty((0, dim), np.float32)] * len(item.clip_lengths)
            start = 0
            for j, n in enumerate(item.clip_lengths):
                if pend.buffered and pend.buffered + n > batch_size:
                    flush()  # the clip would not fit: never split it across forward passes
                pend.frames.append(frames[start:start + n])
                pend.owners.append((item, j))
                lengths.append(n)
                pend.buffered += n
                start += n
                if pend.buffered >= batch_size:
                    flush()
        while pend.items and _complete(pend.items[0]):
            yield pend.items.popleft()
    if pend.buffered:
        flush()
    while pend.items:
        yield pend.items.popleft()


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
