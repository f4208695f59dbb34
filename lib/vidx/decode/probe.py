"""Fast metadata probe with PyAV: container header plus one decoded frame.

Decoding the first frame costs a few milliseconds but proves the codec is usable and gives the
display rotation, which PyAV exposes on frames only.

Error classes: a missing, unreadable or directory path is `unreadable` (the operator can fix
access; the bytes were never seen). A zero-byte file is `corrupt`: the file is readable and its
content is simply not a video, so retrying cannot help, exactly as for garbage or truncated files.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from io import IOBase
from typing import cast

import av
import av.error

from vidx.errors import DecodeError

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoInfo:
    """What the decoder needs to know. `width`/`height` are as stored (before rotation);
    `rotation` is the display rotation in degrees counter-clockwise: 0, 90, 180 or 270."""

    duration_s: float
    fps: float
    width: int
    height: int
    codec: str
    n_frames: int | None
    rotation: int


def check_readable(path: str) -> None:
    """Raise `DecodeError` for paths that cannot be a readable video file, before any decoder."""
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise DecodeError(f"{path}: no such file; check the archive listing is current",
                          error_class="unreadable") from exc
    except OSError as exc:
        raise DecodeError(f"{path}: cannot stat ({exc.strerror})", error_class="unreadable") from exc
    if os.path.isdir(path):
        raise DecodeError(f"{path}: is a directory, not a video file", error_class="unreadable")
    if not os.access(path, os.R_OK):
        raise DecodeError(f"{path}: permission denied; grant read access to the indexing user",
                          error_class="unreadable")
    if st.st_size == 0:
        raise DecodeError(f"{path}: empty file (0 bytes); the upload or copy probably failed",
                          error_class="corrupt")


def _open(path: str, source: IOBase | None = None) -> av.container.InputContainer:
    try:
        return cast(av.container.InputContainer, av.open(source if source is not None else path, "r",
                                                         metadata_errors="ignore"))
    except (av.error.FileNotFoundError, av.error.PermissionError, av.error.IsADirectoryError) as exc:
        raise DecodeError(f"{path}: cannot read ({exc.strerror})", error_class="unreadable") from exc
    except av.error.FFmpegError as exc:
        raise DecodeError(f"{path}: not a readable video container ({exc.strerror}); the file is "
                          "truncated, corrupt or not a video", error_class="corrupt") from exc


def _fps(stream: av.video.stream.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate is not None and rate > 0 and float(rate) < 1000:
            return float(rate)
    return 0.0


def _header_duration(container: av.container.InputContainer,
                     stream: av.video.stream.VideoStream) -> float | None:
    # The stream's own duration excludes other streams and any start offset; the container's
    # duration is the end time of all streams, so subtract the container start.
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        start = container.start_time or 0
        return max(0.0, (container.duration - start) / av.time_base)
    return None


def _first_frame(path: str, container: av.container.InputContainer,
                 stream: av.video.stream.VideoStream) -> av.VideoFrame:
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.DecoderNotFoundError as exc:
        raise DecodeError(f"{path}: no decoder for this video codec", error_class="unsupported_codec") \
            from exc
    except av.error.FFmpegError as exc:
        raise DecodeError(f"{path}: first frame does not decode ({exc.strerror}); the file is corrupt "
                          "or truncated", error_class="corrupt") from exc
    raise DecodeError(f"{path}: the video stream has no decodable frame", error_class="corrupt")


def _scan_duration(container: av.container.InputContainer, stream: av.video.stream.VideoStream,
                   fps: float) -> float:
    """Last packet end relative to the stream start: the fallback for headers without duration."""
    start = stream.start_time or 0
    end = None
    try:
        for packet in container.demux(stream):
            if packet.pts is not None:
                stop = packet.pts + (packet.duration or 0)
                end = stop if end is None else max(end, stop)
    except av.error.FFmpegError as exc:  # a damaged tail still leaves a usable estimate
        LOG.debug("duration scan stopped early: %s", exc)
    if end is None or stream.time_base is None:
        return 0.0
    seconds = float((end - start) * stream.time_base)
    return seconds if seconds > 0 or fps <= 0 else 1.0 / fps


def probe(path: str, *, source: IOBase | None = None) -> VideoInfo:
    """Header facts of the first video stream. Raises `DecodeError` (see module doc for classes).

    `source`: a seekable stream of the file's bytes (ranged reads of a remote object, see
    vidx.decode.source); `path` then only names the file in messages."""
    if source is None:
        check_readable(path)
    with _open(path, source) as container:
        if not container.streams.video:
            raise DecodeError(f"{path}: no video stream (audio-only or data file)", error_class="corrupt")
        stream = container.streams.video[0]
        if stream.codec_context is None:
            raise DecodeError(f"{path}: the video codec is unknown to this FFmpeg build; "
                              "transcode the file (e.g. to H.264)", error_class="unsupported_codec")
        fps = _fps(stream)
        duration = _header_duration(container, stream)
        frame = _first_frame(path, container, stream)
        if duration is None:
            duration = _scan_duration(container, stream, fps)
        n_frames = stream.frames if stream.frames and stream.frames > 0 else None
        if fps <= 0 and n_frames and duration > 0:
            fps = n_frames / duration
        rotation = round((frame.rotation or 0) / 90) * 90 % 360
        return VideoInfo(duration_s=duration, fps=fps, width=frame.width, height=frame.height,
                         codec=stream.codec_context.name, n_frames=n_frames, rotation=rotation)

