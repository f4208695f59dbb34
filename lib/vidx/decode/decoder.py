"""Decode sampled frames of a time range with decord (resize inside the decoder), plus a slow
PyAV reference decoder that tests compare against.

Timestamps are seconds from the video's first frame: decord subtracts the stream start time, and
the reference does the same, so files whose first pts is not 0 (MPEG-TS, edited mp4) line up.
decord 0.6.0 applies the display rotation itself (before scaling to the requested size), so the
size asked of it is in display orientation and its frames are not rotated again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import av
import av.error
import numpy as np

from vidx.decode.probe import VideoInfo, check_readable, probe
from vidx.decode.pyav_frames import decode_sampled, presentation_origin, stamps_usable
from vidx.decode.sampling import (
    center_crop,
    decode_size,
    frame_indices_for_times,
    rotate_frames,
    sample_times,
)
from vidx.errors import DecodeError

LOG = logging.getLogger(__name__)

# decord 0.6.0 fails with "DECORDArrayCopyFromTo: The size must exactly match" for these output
# widths, whatever the height or source (measured for widths 8..400). One extra column avoids it;
# the centre crop removes it again.
_DECORD_BAD_WIDTHS = frozenset({8, 12, 16, 24, 48, 72})


@dataclass(frozen=True)
class DecodedFrames:
    frames: np.ndarray  # (N, S, S, 3) uint8 RGB, centre-cropped to S, display rotation applied
    pts: np.ndarray  # (N,) float64 presentation time (s) of the frame chosen for each sample
    times: np.ndarray  # (N,) float64 the sample times (those past the video's end are dropped)

    def __len__(self) -> int:
        return int(self.times.shape[0])


def empty_frames(image_size: int) -> DecodedFrames:
    return DecodedFrames(np.zeros((0, image_size, image_size, 3), np.uint8),
                         np.zeros(0, np.float64), np.zeros(0, np.float64))


def _tolerance(times: np.ndarray) -> float:
    # decord reports float32 seconds: at t = 10 h one float32 step is ~4 ms, so widen the
    # boundary tolerance with the magnitude of t (still well below a frame interval).
    top = float(np.max(np.abs(times))) if times.size else 0.0
    return 1e-3 + 2.0 * float(np.spacing(np.float32(top)))


def _decord_message(exc: BaseException) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    useful = [ln for ln in lines if "Error" in ln or "failed" in ln or "ERROR" in ln] or lines or ["?"]
    return useful[0][:300]


def _open_reader(path: str, width: int, height: int, threads: int):  # -> decord.VideoReader
    import decord  # heavy native import: only where decoding happens

    try:
        return decord.VideoReader(path, ctx=decord.cpu(0), width=width, height=height,
                                  num_threads=threads)
    except (RuntimeError, decord.DECORDError) as exc:  # type: ignore[attr-defined]
        raise DecodeError(f"{path}: decord cannot open the video: {_decord_message(exc)}",
                          error_class="corrupt") from exc


def _frame_stamps(path: str, reader, n: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """(n, 2) float64 [start, end) seconds of every frame, from decord's packet index."""
    import decord

    try:
        stamps = np.asarray(reader.get_frame_timestamp(np.arange(n)), dtype=np.float64)
    except (RuntimeError, decord.DECORDError) as exc:  # type: ignore[attr-defined]
        raise DecodeError(f"{path}: cannot read frame timestamps: {_decord_message(exc)}",
                          error_class="corrupt") from exc
    return stamps.reshape(n, 2)


def _video_end(starts: np.ndarray, ends: np.ndarray, fps: float) -> float:
    """End of the last frame; a zero-length last frame still shows for one frame interval."""
    last_start, last_end = float(np.nanmax(starts)), float(np.nanmax(ends))
    if last_end > last_start:
        return last_end
    return last_start + (1.0 / fps if fps > 0 else 1e-3)


def _decord_size(info: VideoInfo, image_size: int) -> tuple[int, int]:
    """Output size to request from decord: display orientation, avoiding its bad widths."""
    quarter_turn = info.rotation % 180 == 90
    w, h = decode_size(info.height if quarter_turn else info.width,
                       info.width if quarter_turn else info.height, image_size)
    return (w + 1 if w in _DECORD_BAD_WIDTHS else w), h


def decode_range(path: str, *, start_s: float, end_s: float, sample_fps: float, image_size: int,
                 info: VideoInfo | None = None, threads: int = 1) -> DecodedFrames:
    """Frames displayed at the grid times k / sample_fps in [start_s, end_s), via decord.

    The decoder resizes (shorter side = image_size) before RGB conversion, then the centre
    square is kept. Each distinct frame is decoded once even when several samples show it.
    Files whose decord index has no usable timestamps are decoded with PyAV instead
    (`vidx.decode.pyav_frames`). Raises `DecodeError` (class `corrupt` for decoder failures).
    """
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    times = sample_times(start_s, end_s, sample_fps)
    if info is None:
        info = probe(path)
    else:
        check_readable(path)  # decord's own error for a missing file says only "Error reading"
    if times.size == 0:
        return empty_frames(image_size)
    reader = _open_reader(path, *_decord_size(info, image_size), threads)
    try:
        n = len(reader)
        if n == 0:
            raise DecodeError(f"{path}: decord found no frames", error_class="corrupt")
        stamps = _frame_stamps(path, reader, n)
        if not stamps_usable(stamps):
            batch = None
        else:
            # Truncated files can hold fewer frames than the header's duration promises.
            times = times[times < _video_end(stamps[:, 0], stamps[:, 1], info.fps)]
            if times.size == 0:
                return empty_frames(image_size)
            idx = frame_indices_for_times(stamps[:, 0], times, tolerance_s=_tolerance(times))
            unique, inverse = np.unique(idx, return_inverse=True)
            batch = _get_batch(path, reader, unique)
    finally:
        del reader  # frees decoder buffers now, not at the next GC
    if batch is None:
        return _decode_pyav(path, times, info, image_size, threads)
    frames = center_crop(batch, image_size)  # already in display orientation (see module doc)
    return DecodedFrames(np.ascontiguousarray(frames[inverse.ravel()]), stamps[idx, 0], times)


def _decode_pyav(path: str, times: np.ndarray, info: VideoInfo, image_size: int, threads: int) -> DecodedFrames:
    """The PyAV path for files decord cannot place in time (see `vidx.decode.pyav_frames`)."""
    LOG.info("%s: decord's frame index has no usable timestamps (e.g. an MPEG-4 AVI declaring "
             "B-frames); decoding with PyAV", path)
    images, idx, pts = decode_sampled(path, times, fps=info.fps, size=_stored_size(info, image_size),
                                      tolerance_s=_tolerance(times), threads=threads)
    if idx.size == 0:
        return empty_frames(image_size)
    frames = rotate_frames(center_crop(images, image_size), info.rotation)
    return DecodedFrames(np.ascontiguousarray(frames[idx]), pts, times[: idx.size])


def _stored_size(info: VideoInfo, image_size: int) -> tuple[int, int]:
    """The `_decord_size` output size in stored orientation (PyAV frames are rotated afterwards)."""
    w, h = _decord_size(info, image_size)
    return (h, w) if info.rotation % 180 == 90 else (w, h)


def _get_batch(path: str, reader, indices: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    import decord

    try:
        batch = reader.get_batch(indices.tolist()).asnumpy()
    except (RuntimeError, decord.DECORDError) as exc:  # type: ignore[attr-defined]
        raise DecodeError(f"{path}: decoding failed (damaged or truncated data): {_decord_message(exc)}",
                          error_class="corrupt") from exc
    if batch.ndim != 4 or batch.shape[0] != len(indices) or batch.shape[-1] != 3:
        raise DecodeError(f"{path}: decoder returned frames of shape {batch.shape}, expected "
                          f"({len(indices)}, H, W, 3)", error_class="corrupt")
    return batch


def decode_reference(path: str, times: np.ndarray, image_size: int) -> DecodedFrames:
    """Slow, simple reference: decode every frame with PyAV and pick the displayed one per time.

    Same selection rule, output size, kind of resize (swscale bilinear on the YUV frame, like
    decord's filter graph), crop and rotation as `decode_range`; for tests and debugging only.
    Times count from the first frame in presentation order, as in `vidx.decode.pyav_frames`.
    """
    info = probe(path)
    w, h = _stored_size(info, image_size)  # PyAV frames are in stored orientation; rotated after the crop
    pts: list[float] = []
    images: list[np.ndarray] = []
    last_duration = 1.0 / info.fps if info.fps > 0 else 1e-3
    try:
        origin = presentation_origin(path)
        with av.open(path) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                if frame.pts is None or origin is None:
                    continue
                pts.append(float((frame.pts - origin[0]) * origin[1]))
                if frame.duration:
                    last_duration = float(frame.duration * origin[1])
                images.append(frame.reformat(width=w, height=h, format="rgb24",
                                             interpolation="BILINEAR").to_ndarray())
    except av.error.FFmpegError as exc:
        raise DecodeError(f"{path}: reference decode failed ({exc.strerror})",
                          error_class="corrupt") from exc
    if not pts:
        raise DecodeError(f"{path}: no decodable frames", error_class="corrupt")
    frame_pts = np.asarray(pts)
    t = np.asarray(times, dtype=np.float64)
    t = t[t < frame_pts.max() + last_duration]
    if t.size == 0:
        return empty_frames(image_size)
    idx = frame_indices_for_times(frame_pts, t, tolerance_s=_tolerance(t))
    stack = np.stack([images[i] for i in idx])
    frames = rotate_frames(center_crop(stack, image_size), info.rotation)
    return DecodedFrames(np.ascontiguousarray(frames), frame_pts[idx], t)
