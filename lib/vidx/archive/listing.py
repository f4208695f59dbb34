"""List an archive on any pyarrow/fsspec filesystem and fingerprint each video file."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import pyarrow.fs as pafs

from vidx.errors import ArchiveError
from vidx.storage import child_uri, filesystem, normalize_uri

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class VideoFile:
    """A file's identity (uri -> video_id) and fingerprint (size, mtime): a changed fingerprint
    means the content must be re-embedded; the id stays, so its rows are replaced, not duplicated."""

    uri: str
    size_bytes: int
    mtime_us: int
    video_id: str

    @property
    def fingerprint(self) -> tuple[int, int]:
        return (self.size_bytes, self.mtime_us)


def video_id_for(uri: str) -> str:
    """Stable id from the normalised uri: the same file gets the same id in every run and process."""
    return hashlib.sha1(uri.encode("utf-8")).hexdigest()[:20]


def _visible(path: str, root: str) -> bool:
    rel = path[len(root):].lstrip("/")
    return not any(part.startswith((".", "_")) for part in rel.split("/"))


def list_archive(archive_uri: str, extensions: Iterable[str]) -> list[VideoFile]:
    """All files under `archive_uri` (recursively) whose suffix is one of `extensions`, sorted by uri.

    Hidden (`.x`) and underscore (`_x`) paths are skipped: they are tool scratch space (Spark,
    Delta logs, partial uploads), never videos.
    """
    archive_uri = normalize_uri(archive_uri)
    fs, root = filesystem(archive_uri)
    info = fs.get_file_info(root)
    if info.type == pafs.FileType.NotFound:
        raise ArchiveError(f"archive {archive_uri} does not exist; check the path or URI")
    exts = tuple(e.lower() for e in extensions)
    is_file = info.type == pafs.FileType.File
    infos = [info] if is_file else fs.get_file_info(pafs.FileSelector(root, recursive=True))
    files = []
    for item in infos:
        if item.type != pafs.FileType.File or not item.path.lower().endswith(exts):
            continue
        if info.type != pafs.FileType.File and not _visible(item.path, root):
            continue
        # root URI + relative path: keeps the authority (HDFS namenode, bucket) the listing drops
        uri = child_uri(archive_uri, root, item.path)
        mtime_us = int(item.mtime_ns // 1000) if item.mtime_ns is not None else 0
        files.append(VideoFile(uri=uri, size_bytes=int(item.size or 0), mtime_us=mtime_us,
                               video_id=video_id_for(uri)))
    files.sort(key=lambda f: f.uri)
    LOG.info("listed %d video files (%.1f MB) under %s", len(files),
             sum(f.size_bytes for f in files) / 1e6, archive_uri)
    return files
