"""URIs to filesystems, and atomic artifact writes.

Every artifact is written to a temporary name and then renamed (`os.replace` locally), so a reader
never sees half a file. On object stores a single PUT is already atomic; the rename there is a
copy, which is why version folders are immutable and only the small `CURRENT` pointer moves.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs

from vidx.errors import ArchiveError


def is_local(uri: str) -> bool:
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def local_path(uri: str) -> str:
    """The absolute local path of a `file://` or plain-path URI."""
    if uri.startswith("file://"):
        return urlparse(uri).path
    return str(Path(uri).expanduser().resolve())


def normalize_uri(uri: str) -> str:
    """Absolute local paths for local URIs; remote URIs unchanged (minus a trailing slash)."""
    return local_path(uri) if is_local(uri) else uri.rstrip("/")


def join(base: str, *parts: str) -> str:
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it for any local, s3://, gs://, hdfs:// or fsspec URI."""
    if is_local(uri):
        return pafs.LocalFileSystem(), local_path(uri)
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, ValueError, OSError) as exc:
        arrow_error: Exception = exc
    try:  # fall back to any fsspec implementation (gcsfs, adlfs, http...) wrapped for pyarrow
        import fsspec

        fs, path = fsspec.core.url_to_fs(uri)
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path
    except (ImportError, ValueError, OSError) as exc:
        raise ArchiveError(f"cannot open {uri!r}: {arrow_error}; {exc}. Install the filesystem's "
                           "package (e.g. s3fs, gcsfs) or pass a local path.") from exc


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Write `data` to `uri` so that readers see either the old or the new content, never a mix."""
    fs, path = filesystem(uri)
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return
    with fs.open_output_stream(path) as out:  # one PUT: atomic on object stores
        out.write(data)


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as src:
        return bytes(src.read())


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound
