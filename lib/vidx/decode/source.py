"""Where decoders get their bytes: local files as they are, remote objects read once per task.

- Probe: PyAV reads the container header through `RangedReader`, a seekable stream of ranged
  reads, so a probe fetches the index and the first frame's packets, never the whole file.
- Decode: decord needs a seekable local file, so a Spark task downloads each remote video it
  holds once (`TaskDownloads`), keeps the copy until its last unit of that video is decoded, and
  deletes it then. A local path is never copied.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import pyarrow.fs as pafs

from vidx import storage
from vidx.errors import DecodeError, WorkUnitError

LOG = logging.getLogger(__name__)

_CHUNK = 8 << 20  # 8 MiB reads: few round trips to object stores, bounded memory
_MIN_FETCH = 16 << 10  # first ranged read at a new position; doubles while reads stay sequential
_MAX_FETCH = 8 << 20
_CACHED_BLOCKS = 4  # demuxers jump between the header, the index and the first packets


class RangedReader(io.RawIOBase):
    """A read-only seekable stream over a remote object: each miss is one ranged GET.

    Sequential reads double the fetch size (16 KiB up to 8 MiB), so a large index costs a few
    requests, and a seek starts small again, so a probe that reads a header and the first
    packets fetches little more than those. The last few blocks are kept for back-and-forth seeks.
    """

    def __init__(self, source: Any, size: int) -> None:
        super().__init__()
        self._src = source  # a pyarrow RandomAccessFile: read_at(n, offset) is one ranged read
        self._size = size
        self._pos = 0
        self._blocks: OrderedDict[int, bytes] = OrderedDict()
        self._next_start = -1
        self._fetch = _MIN_FETCH
        self.fetched = 0  # bytes read from the store (tests and logs)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def _block(self, pos: int) -> tuple[int, bytes]:
        for start, data in self._blocks.items():
            if start <= pos < start + len(data):
                self._blocks.move_to_end(start)
                return start, data
        self._fetch = min(self._fetch * 2, _MAX_FETCH) if pos == self._next_start else _MIN_FETCH
        data = bytes(self._src.read_at(min(self._fetch, self._size - pos), pos))
        self.fetched += len(data)
        self._next_start = pos + len(data)
        self._blocks[pos] = data
        while len(self._blocks) > _CACHED_BLOCKS:
            self._blocks.popitem(last=False)
        return pos, data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        if self._pos >= self._size or not len(view):
            return 0
        start, data = self._block(self._pos)
        chunk = data[self._pos - start:self._pos - start + len(view)]
        view[:len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def close(self) -> None:
        with suppress(Exception):
            self._src.close()
        super().close()


@contextmanager
def open_ranged(uri: str) -> Iterator[RangedReader]:
    """A `RangedReader` over `uri`. A missing or empty object raises `DecodeError` (the video's
    fault); other storage errors raise `WorkUnitError` so that Spark retries."""
    fs, path = storage.filesystem(uri)
    try:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise DecodeError(f"{uri}: object not found; check the archive listing is current",
                              error_class="unreadable")
        if info.type != pafs.FileType.File:
            raise DecodeError(f"{uri}: is a directory, not a video file", error_class="unreadable")
        if not info.size:
            raise DecodeError(f"{uri}: empty file (0 bytes); the upload or copy probably failed",
                              error_class="corrupt")
        reader = RangedReader(fs.open_input_file(path), int(info.size))
    except OSError as exc:
        raise WorkUnitError(f"{uri}: cannot open for reading ({exc}); the unit will be retried") from exc
    try:
        yield reader
    finally:
        LOG.debug("read %d of %d bytes of %s", reader.fetched, reader._size, uri)
        reader.close()


def probe_uri(uri: str) -> Any:
    """Probe a local path in place, or a remote object through ranged reads (no copy)."""
    from vidx.decode.probe import probe

    if storage.is_local(uri):
        return probe(storage.local_path(uri))
    with open_ranged(uri) as reader:
        return probe(uri, source=reader)


def _download(uri: str, tmp_dir: str | None) -> str:
    fs, path = storage.filesystem(uri)
    # Keep the extension: some demuxers (and our own logs) rely on it.
    fd, tmp = tempfile.mkstemp(prefix="vidx-", suffix=PurePosixPath(path).suffix, dir=tmp_dir)
    try:
        with os.fdopen(fd, "wb") as out, fs.open_input_stream(path) as src:
            shutil.copyfileobj(src, out, _CHUNK)
    except FileNotFoundError as exc:
        os.unlink(tmp)
        raise DecodeError(f"{uri}: object not found", error_class="unreadable") from exc
    except OSError as exc:
        os.unlink(tmp)
        raise WorkUnitError(f"{uri}: download failed ({exc}); the unit will be retried") from exc
    except BaseException:
        os.unlink(tmp)
        raise
    LOG.debug("copied %s to %s (%d bytes)", uri, tmp, os.path.getsize(tmp))
    return tmp


@contextmanager
def local_copy(uri: str, *, tmp_dir: str | None = None) -> Iterator[str]:
    """Yield a local path for `uri`: the file itself when local, else a temp copy deleted on exit.

    A missing remote object raises `DecodeError(unreadable)` (the video's fault, do not retry);
    other storage errors raise `WorkUnitError` so that Spark retries the unit.
    """
    if storage.is_local(uri):
        yield storage.local_path(uri)
        return
    tmp = _download(uri, tmp_dir)
    try:
        yield tmp
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)


@dataclass
class _Copy:
    left: int  # units of this task still to decode from the copy
    lock: threading.Lock = field(default_factory=threading.Lock)
    path: str | None = None


class TaskDownloads:
    """The local copies of one task's remote videos: each downloaded once, by the first unit that
    needs it (others wait for it), and deleted after the task's last unit of that video.

    `uses` counts the task's units per uri. Disk use is bounded by the videos whose units are in
    flight: with a task's units ordered by video, that is at most `decode.workers + decode.prefetch`
    videos, usually one or two. `close()` deletes whatever a failed task left behind.
    """

    def __init__(self, uses: Mapping[str, int], *, tmp_dir: str | None = None) -> None:
        self._copies = {uri: _Copy(n) for uri, n in uses.items()}
        self._lock = threading.Lock()
        self._tmp_dir = tmp_dir
        self.downloads = 0

    @contextmanager
    def path(self, uri: str) -> Iterator[str]:
        if storage.is_local(uri):
            yield storage.local_path(uri)
            return
        with self._lock:
            copy = self._copies.setdefault(uri, _Copy(1))
        try:
            with copy.lock:
                if copy.path is None:  # a failed download is not cached: the next unit tries again
                    copy.path = _download(uri, self._tmp_dir)
                    self.downloads += 1
            yield copy.path
        finally:
            with self._lock:
                copy.left -= 1
                done = copy.left <= 0
                if done:
                    self._copies.pop(uri, None)
            if done:
                self._remove(copy)

    @staticmethod
    def _remove(copy: _Copy) -> None:
        with copy.lock:
            if copy.path is not None:
                with suppress(FileNotFoundError):
                    os.unlink(copy.path)
                copy.path = None

    def close(self) -> None:
        with self._lock:
            copies, self._copies = list(self._copies.values()), {}
        for copy in copies:
            self._remove(copy)
