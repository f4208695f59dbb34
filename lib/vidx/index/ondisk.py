"""Indexes whose inverted lists live in an `.ivfdata` file next to `index.faiss`, served from disk.

`faiss.contrib.ondisk.merge_ondisk` writes the lists to one file and the index records that file's
absolute path. A published version keeps the file beside `index.faiss` under IVFDATA_FILE and is
opened with IO_FLAG_ONDISK_SAME_DIR (look for it in the index file's folder, wherever the version
was copied) | IO_FLAG_READ_ONLY (map it read-only: version folders are immutable). The operating
system pages the lists in as queries touch them, so the index may be larger than RAM.

Never IO_FLAG_MMAP: with faiss 1.15.1, searching a merge_ondisk index opened with it segfaults
(tests/integration/test_index_distributed.py probes the loader in a subprocess for that reason).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import faiss
import pyarrow as pa

from vidx import storage
from vidx.errors import IndexIntegrityError

LOG = logging.getLogger(__name__)

IVFDATA_FILE = "index.ivfdata"
# SKIP_PRECOMPUTE_TABLE: as every vidx load (vidx.index.build.PQ_TABLES_OFF).
OPEN_FLAGS = faiss.IO_FLAG_ONDISK_SAME_DIR | faiss.IO_FLAG_READ_ONLY | faiss.IO_FLAG_SKIP_PRECOMPUTE_TABLE
HASH_BLOCK = 8 << 20


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(HASH_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def place_file(src: str, dst: Path) -> None:
    """Put `src` at `dst`: a hard link when both are on one filesystem (no copy of a huge file), else a copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    with open(dst, "rb") as fh:
        os.fsync(fh.fileno())


def upload_file(src: str, uri: str) -> None:
    """Stream `src` to an object-store `uri` (one multipart PUT)."""
    fs, path = storage.filesystem(uri)
    with open(src, "rb") as fh, fs.open_output_stream(path) as out:
        while block := fh.read(HASH_BLOCK):
            out.write(block)


def open_published(version_uri: str, manifest: dict[str, Any], index_file: str,
                   cache_dir: str | None = None) -> faiss.Index:
    """Open a published on-disk index after checking both files against the manifest's sha256.

    Local versions are opened in place; remote ones are first downloaded to `cache_dir`
    (default: a per-version folder under the system temp dir, reused while its files verify).
    """
    if storage.is_local(version_uri):
        folder = Path(storage.local_path(version_uri))
    else:
        folder = Path(cache_dir or tempfile.gettempdir()) / "vidx-ondisk" / Path(version_uri).name
        _download(version_uri, folder, (index_file, IVFDATA_FILE), manifest)
    for name in (index_file, IVFDATA_FILE):
        _verify(folder / name, name, manifest, version_uri)
    try:
        index = faiss.read_index(str(folder / index_file), OPEN_FLAGS)
    except RuntimeError as exc:
        raise IndexIntegrityError(f"on-disk index {version_uri} cannot be opened: {exc}; rebuild it") from exc
    LOG.info("opened on-disk index %s (lists in %s)", version_uri, folder / IVFDATA_FILE)
    return index


def _verify(path: Path, name: str, manifest: dict[str, Any], version_uri: str) -> None:
    entry = manifest["files"].get(name)
    if not isinstance(entry, dict) or "sha256" not in entry:
        raise IndexIntegrityError(f"manifest of {version_uri} has no checksum for {name}; rebuild the index")
    try:
        digest, size = sha256_file(path), path.stat().st_size
    except OSError as exc:
        raise IndexIntegrityError(f"{name} of {version_uri} cannot be read ({exc}); rebuild the index") from exc
    if digest != entry["sha256"] or size != entry.get("bytes", size):
        raise IndexIntegrityError(f"{name} of {version_uri} fails its checksum (sha256 {digest}, {size} bytes; "
                                  f"manifest says {entry['sha256']}, {entry.get('bytes')} bytes): the file is "
                                  "corrupt or was modified. Load another version or rebuild the index.")


def _download(version_uri: str, folder: Path, names: tuple[str, ...], manifest: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        target = folder / name
        entry = manifest["files"].get(name) or {}
        if target.exists() and target.stat().st_size == entry.get("bytes") and sha256_file(target) == entry.get(
                "sha256"):
            continue  # already cached by an earlier load of this immutable version
        fs, path = storage.filesystem(storage.join(version_uri, name))
        tmp = folder / f".tmp-{name}"
        try:
            with fs.open_input_stream(path) as src, open(tmp, "wb") as out:
                while block := src.read(HASH_BLOCK):
                    out.write(block)
            os.replace(tmp, target)  # temp-then-rename: a crashed download never looks complete
        except (OSError, pa.ArrowException) as exc:
            tmp.unlink(missing_ok=True)
            raise IndexIntegrityError(f"{name} of {version_uri} cannot be downloaded ({exc})") from exc
