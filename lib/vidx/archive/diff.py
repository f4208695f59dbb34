"""What an incremental run must do: compare the archive listing with the `videos` table."""

from __future__ import annotations

from dataclasses import dataclass, field

from vidx.archive.listing import VideoFile


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


def _under(uri: str, root: str) -> bool:
    return uri == root or uri.startswith(root.rstrip("/") + "/")


def diff_archive(files: list[VideoFile], known: dict[str, KnownVideo], *, archive_root: str,
                 full_refresh: bool = False, retry_failed: bool = False) -> ArchiveDiff:
    """Classify each listed file as new / changed / unchanged, and each known, still-live file under
    `archive_root` that is no longer listed as deleted. Files outside `archive_root` are not
    touched, so one warehouse can index several archives with separate runs."""
    out = ArchiveDiff()
    listed = set()
    for f in files:
        listed.add(f.video_id)
        seen = known.get(f.video_id)
        if seen is None or seen.status == "deleted":
            out.new.append(f)
        elif (seen.size_bytes, seen.mtime_us) != f.fingerprint:
            out.changed.append(f)
        elif full_refresh:
            out.refreshed.append(f)
        elif retry_failed and seen.status == "failed":
            out.retried.append(f)
        else:
            out.unchanged += 1
    for vid, seen in known.items():
        if vid not in listed and seen.status != "deleted" and _under(seen.uri, archive_root):
            out.deleted.append(seen)
    out.deleted.sort(key=lambda k: k.uri)
    return out
