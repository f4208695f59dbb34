"""What an incremental run must do: compare the archive listing with the `videos` table.

The known videos come as an Arrow table (`KNOWN_SCHEMA`, one row per video) and are compared in
Arrow/numpy: a million-video table never becomes a million Python objects; only the rows of files
that left the archive do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidx.archive.listing import VideoFile

KNOWN_SCHEMA = pa.schema([("video_id", pa.string()), ("uri", pa.string()), ("size_bytes", pa.int64()),
                          ("mtime_us", pa.int64()), ("status", pa.string())])


@dataclass(frozen=True)
class KnownVideo:
    """The current `videos` row of a file for one model."""

    video_id: str
    uri: str
    size_bytes: int
    mtime_us: int
    status: str


@dataclass
class ArchiveDiff:
    new: list[VideoFile] = field(default_factory=list)
    changed: list[VideoFile] = field(default_factory=list)      # fingerprint differs: replace its rows
    retried: list[VideoFile] = field(default_factory=list)      # failed before, retried on request
    refreshed: list[VideoFile] = field(default_factory=list)    # unchanged, redone by --full-refresh
    deleted: list[KnownVideo] = field(default_factory=list)     # gone from the archive: drop its clips
    unchanged: int = 0

    @property
    def todo(self) -> list[VideoFile]:
        return sorted(self.new + self.changed + self.retried + self.refreshed, key=lambda f: f.uri)

    @property
    def replaced_ids(self) -> set[str]:
        """Videos whose existing rows (videos and clips) must go in the commit that adds new ones."""
        return {f.video_id for f in self.changed + self.retried + self.refreshed}

    @property
    def empty(self) -> bool:
        return not (self.todo or self.deleted)


def known_table(known: Mapping[str, KnownVideo] | pa.Table) -> pa.Table:
    """`known` as a KNOWN_SCHEMA table (a mapping is converted: small inputs, tests)."""
    if isinstance(known, pa.Table):
        return known.select(KNOWN_SCHEMA.names).cast(KNOWN_SCHEMA)
    return pa.Table.from_pylist([vars(k) for k in known.values()], schema=KNOWN_SCHEMA)


def _np(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return column.to_numpy(zero_copy_only=False) if len(column) else np.zeros(0, dtype=bool)


def diff_archive(files: list[VideoFile], known: Mapping[str, KnownVideo] | pa.Table, *, archive_root: str,
                 full_refresh: bool = False, retry_failed: bool = False) -> ArchiveDiff:
    """Classify each listed file as new / changed / unchanged, and each known, still-live file under
    `archive_root` that is no longer listed as deleted. Files outside `archive_root` are not
    touched, so one warehouse can index several archives with separate runs. `known`: one row per
    video (KNOWN_SCHEMA, or a mapping video_id -> KnownVideo)."""
    table = known_table(known)
    ids = pa.array([f.video_id for f in files], pa.string())
    pos = _np(pc.fill_null(pc.index_in(ids, value_set=table["video_id"]), -1)).astype(np.int64)
    gone = _np(pc.equal(table["status"], "deleted"))
    failed = _np(pc.equal(table["status"], "failed"))
    size, mtime = _np(table["size_bytes"]), _np(table["mtime_us"])
    out = ArchiveDiff()
    for f, p in zip(files, pos.tolist(), strict=True):
        if p < 0 or gone[p]:
            out.new.append(f)
        elif (int(size[p]), int(mtime[p])) != f.fingerprint:
            out.changed.append(f)
        elif full_refresh:
            out.refreshed.append(f)
        elif retry_failed and failed[p]:
            out.retried.append(f)
        else:
            out.unchanged += 1
    root = archive_root.rstrip("/")
    under = pc.or_(pc.equal(table["uri"], archive_root), pc.starts_with(table["uri"], root + "/"))
    left = pc.and_(pc.and_(pc.invert(pc.is_in(table["video_id"], value_set=ids)), pc.invert(pc.equal(
        table["status"], "deleted"))), under)
    out.deleted = sorted((KnownVideo(**row) for row in table.filter(left).to_pylist()), key=lambda k: k.uri)
    return out
