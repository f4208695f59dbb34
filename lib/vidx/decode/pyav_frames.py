"""Sampled frames through PyAV, for files whose decord frame index has no usable timestamps.

decord 0.6.0 indexes a video by the pts of its demuxed packets, read with its bundled FFmpeg 4.1.
An AVI stores no presentation times, only a frame counter (dts); when its MPEG-4 Part 2 stream
declares B-frames (`low_delay=0`, as XviD/DivX and FFmpeg's `-bf N` write), FFmpeg 4.1 leaves
the pts of every I/P packet unset (AV_NOPTS_VALUE) and decord reports those frames at about
-3.07e17 s. If every frame is I/P (B-frames declared, none chosen), all sample times fall
"after the last frame" and the video silently yields no frames; with real B-frames the index is
sorted by the bogus times and decord returns wrong frames. PyAV's newer FFmpeg infers those pts,
so such files are decoded here, sequentially, with the same selection rule as decord's path:
each sample time shows the frame with the largest presentation time <= t (+ tolerance).

Times are seconds from the first frame in presentation order (`presentation_origin`): for an
AVI with B-frames FFmpeg numbers that frame 1, not 0 (the stream's start time is dts-based).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from fractions import Fraction
from functools import partial

import av
import av.error
import numpy as np

from vidx.errors import DecodeError

LOG = logging.getLogger(__name__)

# decord's timestamps of frames whose packets carry no pts: (INT64_MIN - start) * time_base, i.e.
# far beyond any real video. Anything past this many seconds, or before -1 s, is not a timestamp.
_PLAUSIBLE_S = 1e9
# Packets read to find the first presentation time: a GOP's reordering never reaches that far.
_ORIGIN_PACKETS = 64
# Seek this far before the first sample time: the decoder needs the keyframe before it anyway.
_SEEK_MARGIN_S = 1.0


def stamps_usable(stamps: np.ndarray) -> bool:
    """Whether decord's (n, 2) [start, end) frame times are real timestamps (see module doc)."""
    starts = np.asarray(stamps, dtype=np.float64)[:, 0]
    return bool(starts.size and np.all(np.isfinite(starts)) and starts.min() >= -1.0
                and starts.max() < _PLAUSIBLE_S)


def presentation_origin(path: str) -> tuple[int, Fraction] | None:
    """(pts of the first frame in presentation order, time base), or None without timestamps.

    Packets before the stream's start time (cut away by an mp4 edit list, never displayed) do not
    count; an AVI's start time comes from dts, so its first displayed frame is at or after it.
    """
    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        if stream.time_base is None:
            return None
        start = stream.start_time
        seen: list[int] = []
        try:
            for i, packet in enumerate(container.demux(stream)):
                if packet.pts is not None and (start is None or packet.pts >= start):
                    seen.append(packet.pts)
                if i + 1 >= _ORIGIN_PACKETS:
                    break
        except av.error.FFmpegError as exc:  # a damaged file still has its first packets' pts
            LOG.debug("%s: origin scan stopped early: %s", path, exc)
        if seen:
            return min(seen), stream.time_base
        return (start, stream.time_base) if start is not None else None


def _frames(path: str, origin: tuple[int, Fraction] | None, seek_s: float, fps: float,
            threads: int) -> Iterator[tuple[float | None, float, av.VideoFrame]]:
    """(time or None, display duration, frame) in presentation order, from the keyframe at or
    before `seek_s` (0: from the start). Without pts a time is None; the caller places the frame."""
    step = 1.0 / fps if fps > 0 else 1e-3
    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_count = threads
        if threads != 1:
            stream.thread_type = "AUTO"
        if origin is not None and seek_s > 0:
            container.seek(origin[0] + int(seek_s / origin[1]), stream=stream, backward=True)
        for frame in container.decode(stream):
            if frame.pts is None or origin is None:
                yield None, step, frame
                continue
            duration = float(frame.duration * origin[1]) if frame.duration else step
            yield float((frame.pts - origin[0]) * origin[1]), duration, frame


class _Picker:
    """Takes frames in presentation order and keeps those a sample time shows (the frame with the
    largest time <= t + tolerance; times before the first frame show the first frame). Each kept
    frame is converted (resize + RGB) once, however many samples show it."""

    def __init__(self, times: np.ndarray, tolerance_s: float, size: tuple[int, int], *, seeked: bool) -> None:
        self.times, self.tol, self.size, self.seeked = times, tolerance_s, size, seeked
        self.images: list[np.ndarray] = []
        self.chosen: list[int] = []          # image index per assigned time
        self.chosen_t: list[float] = []      # that frame's presentation time
        self.overshot = False                # a seek landed after the first time: start over
        self._prev: tuple[float, float, av.VideoFrame] | None = None
        self._prev_image = -1

    @property
    def never_decoded(self) -> bool:
        return self._prev is None and not self.overshot

    @property
    def done(self) -> bool:
        return self.overshot or len(self.chosen) == len(self.times)

    def _take_prev(self) -> None:
        if self._prev is None:
            return
        t_frame, _, frame = self._prev
        if self._prev_image < 0:
            self.images.append(frame.reformat(width=self.size[0], height=self.size[1], format="rgb24",
                                              interpolation="BILINEAR").to_ndarray())
            self._prev_image = len(self.images) - 1
        self.chosen.append(self._prev_image)
        self.chosen_t.append(t_frame)

    def _next_before(self, t_frame: float) -> bool:
        return not self.done and self.times[len(self.chosen)] + self.tol < t_frame

    def add(self, t_frame: float | None, duration: float, frame: av.VideoFrame) -> None:
        if t_frame is None:  # no pts: one interval after the previous frame, known only from the start
            if self.seeked:
                self.overshot = True
                return
            t_frame = 0.0 if self._prev is None else self._prev[0] + self._prev[1]
        if self._prev is None:
            if self.seeked and self._next_before(t_frame):
                self.overshot = True
                return
            self._prev = (t_frame, duration, frame)
            while self._next_before(t_frame):  # times before the first frame show the first frame
                self._take_prev()
            return
        while self._next_before(t_frame):
            self._take_prev()
        self._prev, self._prev_image = (t_frame, duration, frame), -1

    def finish(self) -> None:
        """Times within the last frame's display interval show it; later ones are past the end."""
        if self._prev is None or self.overshot:
            return
        while not self.done and self.times[len(self.chosen)] < self._prev[0] + self._prev[1]:
            self._take_prev()


def decode_sampled(path: str, times: np.ndarray, *, fps: float, size: tuple[int, int], tolerance_s: float,
                   threads: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unique frames (U, h, w, 3) in stored orientation, frame index per kept time, the chosen
    frame's time per kept time), for the sample `times` (sorted) that fall within the video.

    Seeks to the keyframe before the first time when timestamps allow, else decodes from the start.
    Raises `DecodeError` (class `corrupt`) when FFmpeg fails or no frame decodes.
    """
    try:
        origin = presentation_origin(path)
        seek_s = max(0.0, float(times[0]) - _SEEK_MARGIN_S) if len(times) and origin is not None else 0.0
        pick = partial(_pick, path, times, origin=origin, fps=fps, size=size, tolerance_s=tolerance_s,
                       threads=threads)
        picker = pick(seek_s=seek_s)
        if picker.overshot:  # the seek went past the first time: start from the beginning
            LOG.debug("%s: seek to %.3f s overshot; decoding from the start", path, seek_s)
            picker = pick(seek_s=0.0)
    except av.error.FFmpegError as exc:
        raise DecodeError(f"{path}: PyAV decoding failed ({exc.strerror}); the file is damaged or "
                          "truncated", error_class="corrupt") from exc
    if picker.never_decoded:
        raise DecodeError(f"{path}: no frame decodes", error_class="corrupt")
    images = np.stack(picker.images) if picker.images else np.zeros((0, size[1], size[0], 3), np.uint8)
    return images, np.asarray(picker.chosen, np.int64), np.asarray(picker.chosen_t, np.float64)


def _pick(path: str, times: np.ndarray, *, origin: tuple[int, Fraction] | None, seek_s: float, fps: float,
          size: tuple[int, int], tolerance_s: float, threads: int) -> _Picker:
    picker = _Picker(times, tolerance_s, size, seeked=seek_s > 0)
    for t_frame, duration, frame in _frames(path, origin, seek_s, fps, threads):
        picker.add(t_frame, duration, frame)
        if picker.done:
            break
    picker.finish()
    return picker
