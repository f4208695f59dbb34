"""HTTP byte ranges (RFC 9110 section 14) over any pyarrow filesystem, for GET /media.

A browser's <video> asks for `Range: bytes=N-` and seeks with further ranges; the reply streams
only those bytes. Files are read with `open_input_file` + `read_at`, which pyarrow's S3/GCS
filesystems (and fsspec ones through FSSpecHandler) turn into ranged GETs, so seeking in a
10 GB object-store video never downloads the whole object.
"""

from __future__ import annotations

import logging
import mimetypes
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import PurePosixPath

import pyarrow.fs as pafs
from starlette.concurrency import run_in_threadpool

LOG = logging.getLogger(__name__)

# Large enough that an object-store GET per chunk is efficient, small enough to stream promptly.
CHUNK_BYTES = 512 * 1024
# What browsers expect for the archive formats vidx lists (mimetypes lacks several of them).
VIDEO_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
               ".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".mpg": "video/mpeg", ".mpeg": "video/mpeg",
               ".ts": "video/mp2t"}


class RangeNotSatisfiable(Exception):
    """The Range header names no byte of the file (answered 416 with `Content-Range: bytes */size`)."""


@dataclass(frozen=True)
class ByteRange:
    start: int
    end: int  # inclusive, as in Content-Range

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range `header` asks for, clipped to the file; None to send the whole file.

    Other units and multi-range requests are ignored (a server may always answer 200 with the
    whole representation); a bytes range that is malformed or starts past the end raises
    RangeNotSatisfiable.
    """
    if header is None:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    spec = spec.strip()
    if "," in spec:
        return None
    first, dash, last = spec.partition("-")
    first, last = first.strip(), last.strip()
    if not dash or not (first.isdigit() or last.isdigit()) or (first and not first.isdigit()) \
            or (last and not last.isdigit()):
        raise RangeNotSatisfiable(f"malformed range {header!r}")
    if not first:  # suffix range: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(f"range {header!r} selects no byte of a {size}-byte file")
        return ByteRange(max(0, size - n), size - 1)
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        raise RangeNotSatisfiable(f"range {header!r} selects no byte of a {size}-byte file")
    return ByteRange(start, min(end, size - 1))


def content_type(uri: str) -> str:
    suffix = PurePosixPath(uri.split("?", 1)[0]).suffix.lower()
    return VIDEO_TYPES.get(suffix) or mimetypes.guess_type(f"x{suffix}")[0] or "application/octet-stream"


async def stream_file(fs: pafs.FileSystem, path: str, start: int, length: int) -> AsyncIterator[bytes]:
    """`length` bytes of the file from `start`, in chunks read off the event loop."""
    handle = await run_in_threadpool(fs.open_input_file, path)
    try:
        offset, remaining = start, length
        while remaining > 0:
            chunk = await run_in_threadpool(handle.read_at, min(CHUNK_BYTES, remaining), offset)
            data = bytes(chunk)
            if not data:  # the file shrank under us: stop rather than loop
                LOG.warning("%s ended at byte %d, %d bytes short", path, offset, remaining)
                return
            yield data
            offset += len(data)
            remaining -= len(data)
    finally:
        handle.close()
