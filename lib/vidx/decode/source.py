"""Local paths for decoders: decord and PyAV need a seekable local file, not a URI."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import PurePosixPath

from vidx import storage
from vidx.errors import DecodeError, WorkUnitError

LOG = logging.getLogger(__name__)

_CHUNK = 8 << 20  # 8 MiB reads: few round trips to object stores, bounded memory


@contextmanager
def local_copy(uri: str, *, tmp_dir: str | None = None) -> Iterator[str]:
    """Yield a local path for `uri`: the file itself when local, else a temp copy deleted on exit.

    A missing remote object raises `DecodeError(unreadable)` (the video's fault, do not retry);
    other storage errors raise `WorkUnitError` so that Spark retries the unit.
    """
    if storage.is_local(uri):
        yield storage.local_path(uri)
        return
    fs, path = storage.filesystem(uri)
    # Keep the extension: some demuxers (and our own logs) rely on it.
    fd, tmp = tempfile.mkstemp(prefix="vidx-", suffix=PurePosixPath(path).suffix, dir=tmp_dir)
    try:
        try:
            with os.fdopen(fd, "wb") as out, fs.open_input_stream(path) as src:
                shutil.copyfileobj(src, out, _CHUNK)
        except FileNotFoundError as exc:
            raise DecodeError(f"{uri}: object not found", error_class="unreadable") from exc
        except OSError as exc:
            raise WorkUnitError(f"{uri}: download failed ({exc}); the unit will be retried") from exc
        LOG.debug("copied %s to %s (%d bytes)", uri, tmp, os.path.getsize(tmp))
        yield tmp
    finally:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
