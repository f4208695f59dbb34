"""Operations on published index versions: list, promote, rollback, garbage-collect.

Works on any warehouse URI vidx.storage opens (local, s3://, gs://, fsspec). Version folders are
never modified; promote and rollback only rewrite the small `CURRENT` pointer, by a conditional
write on the version they read (vidx.index.pointer), and query servers follow it (hot reload).

Publish order is the version name's UTC timestamp (publish_index names versions
`YYYYmmddTHHMMSSZ-...`), ties within one second broken by the manifest's modification time.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs

from vidx import storage
from vidx.errors import ConfigError, DataQualityError, IndexIntegrityError, IndexNotFoundError
from vidx.index.pointer import read_current, swap_current
from vidx.index.publish import (
    CURRENT_FILE,
    MANIFEST_FILE,
    TMP_PREFIX,
    _model_root,
    current_version,
    list_models,
    load_manifest,
)

LOG = logging.getLogger(__name__)

# A temporary or incomplete folder untouched this long belongs to a publish that died, not one in progress.
STALE_AFTER_S = 3600.0
HASH_BLOCK = 8 << 20
_STAMP_LEN = len("YYYYmmddTHHMMSSZ")


@dataclass(frozen=True)
class VersionInfo:
    version: str
    current: bool
    manifest: dict[str, Any]
    mtime: float

    def summary(self) -> dict[str, Any]:
        m = self.manifest
        return {"version": self.version, "current": self.current, "built_at": m.get("built_at"),
                "count": m.get("count"), "dim": m.get("dim"), "factory": (m.get("params") or {}).get("factory"),
                "nprobe": m.get("nprobe"), "recall_at_10": m.get("recall_at_10"),
                "qps": (m.get("qps") or {}).get("queries_per_second"),
                "table_version": m.get("table_version"),
                "bytes": sum(int(f.get("bytes", 0)) for f in (m.get("files") or {}).values())}


@dataclass
class _Entry:
    """One top-level name under indexes/<model_id>/ as seen in a single recursive listing."""

    name: str
    is_dir: bool = False
    has_manifest: bool = False
    newest_mtime: float = 0.0


@dataclass(frozen=True)
class GcReport:
    removed_versions: list[str] = field(default_factory=list)
    removed_debris: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)


def resolve_model(warehouse: str, model_id: str | None, *, allow_none: bool = False) -> str | None:
    """`model_id` if given, else the only model with a published index (None when there is none
    and `allow_none`); several models without a choice is an error."""
    if model_id is not None:
        return model_id
    models = list_models(warehouse)
    if len(models) == 1:
        return models[0]
    if not models and allow_none:
        return None
    if not models:
        raise IndexNotFoundError(f"no index has been published in {warehouse}; run `vidx build-index` first")
    raise IndexNotFoundError(f"{warehouse} holds indexes of several models ({', '.join(models)}); "
                             "choose one with --model-id")


def _entries(warehouse: str, model_id: str) -> dict[str, _Entry]:
    fs, base = storage.filesystem(_model_root(warehouse, model_id))
    base = base.rstrip("/")
    entries: dict[str, _Entry] = {}
    for info in fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True)):
        rel = info.path[len(base) + 1:].split("/")
        entry = entries.setdefault(rel[0], _Entry(rel[0]))
        entry.is_dir |= len(rel) > 1 or info.type == pafs.FileType.Directory
        entry.has_manifest |= rel[1:] == [MANIFEST_FILE]
        if info.mtime is not None:
            entry.newest_mtime = max(entry.newest_mtime, info.mtime.timestamp())
    return entries


def _order_key(name: str, mtime: float) -> tuple[str, float, str]:
    return name[:_STAMP_LEN], mtime, name


def versions(warehouse: str, model_id: str | None = None) -> list[VersionInfo]:
    """Complete versions of the model, oldest first by publish order."""
    model = resolve_model(warehouse, model_id) or ""
    current = current_version(warehouse, model)
    found = [e for e in _entries(warehouse, model).values() if e.has_manifest and not e.name.startswith(".")]
    found.sort(key=lambda e: _order_key(e.name, e.newest_mtime))
    return [VersionInfo(e.name, e.name == current, load_manifest(warehouse, model, e.name), e.newest_mtime)
            for e in found]


def verify_version(warehouse: str, model_id: str, version: str) -> dict[str, Any]:
    """Check every file of `version` against its manifest's sha256 and size, streaming (no full copy in memory)."""
    manifest = load_manifest(warehouse, model_id, version)
    version_uri = storage.join(_model_root(warehouse, model_id), version)
    fs, base = storage.filesystem(version_uri)
    for name, entry in sorted(manifest["files"].items()):
        digest, size = hashlib.sha256(), 0
        try:
            with fs.open_input_stream(f"{base}/{name}") as src:
                while block := src.read(HASH_BLOCK):
                    digest.update(block)
                    size += len(block)
        except (OSError, pa.ArrowException) as exc:
            raise IndexIntegrityError(f"{name} of {version_uri} cannot be read ({exc}); "
                                      "choose another version or rebuild") from exc
        if digest.hexdigest() != entry.get("sha256") or size != entry.get("bytes", size):
            raise IndexIntegrityError(f"{name} of {version_uri} fails its checksum ({size} bytes, sha256 "
                                      f"{digest.hexdigest()}; manifest: {entry.get('bytes')} bytes, "
                                      f"{entry.get('sha256')}): refusing to serve it. Choose another version.")
    return manifest


def promote(warehouse: str, version: str, model_id: str | None = None, *,
            require_validation: bool = True) -> str | None:
    """Point `CURRENT` at `version` after verifying its files and, with `require_validation`, that the
    clips version it was built from passed validation (the publish gate build-index uses:
    DataQualityError otherwise). Returns the version it pointed at before."""
    model = resolve_model(warehouse, model_id) or ""
    seen = read_current(_model_root(warehouse, model))  # read first: a move during the (long) check is caught
    _move(warehouse, model, version, seen, require_validation)
    return seen[0]


def _move(warehouse: str, model: str, version: str, seen: tuple[str | None, str | None],
          require_validation: bool) -> None:
    manifest = verify_version(warehouse, model, version)
    _gate(warehouse, model, version, manifest, require_validation)
    if seen[0] != version:
        swap_current(_model_root(warehouse, model), version, expected=seen)
        LOG.info("%s: CURRENT %s -> %s", model, seen[0], version)


def _gate(warehouse: str, model: str, version: str, manifest: dict[str, Any], required: bool) -> None:
    from vidx.quality.records import publish_gate

    table_version = manifest.get("table_version")
    if required and not isinstance(table_version, int):
        raise DataQualityError(f"index version {version} of {model} does not record its clips version, so its "
                               "validation cannot be checked; rebuild it (or pass --skip-validation)")
    publish_gate(warehouse, model, int(table_version or 0), required=required)


def rollback(warehouse: str, model_id: str | None = None, *, require_validation: bool = True) -> tuple[str, str]:
    """Promote the version published just before the current one (through the same publish gate).
    Returns (from, to)."""
    model = resolve_model(warehouse, model_id) or ""
    seen = read_current(_model_root(warehouse, model))
    current = seen[0]
    names = [v.version for v in versions(warehouse, model)]
    if current not in names:
        raise IndexNotFoundError(f"CURRENT of {model} names {current!r}, which is not a complete version; "
                                 f"promote one of {names or 'none'} explicitly")
    pos = names.index(current)
    if pos == 0:
        raise IndexNotFoundError(f"{current} is the oldest version of {model}: nothing to roll back to")
    _move(warehouse, model, names[pos - 1], seen, require_validation)  # fails if CURRENT moved since it was read
    return current, names[pos - 1]


def gc(warehouse: str, model_id: str | None = None, *, keep: int = 3, dry_run: bool = False,
       now: float | None = None) -> GcReport:
    """Delete old versions, keeping the newest `keep`, CURRENT, and everything published after CURRENT
    (a fresh publish whose CURRENT move may still be in flight, or the versions a rollback stepped
    back from). Also deletes temporary / incomplete folders and files untouched for an hour."""
    if keep < 1:
        raise ConfigError(f"--keep must be at least 1, got {keep}")
    model = resolve_model(warehouse, model_id) or ""
    now = time.time() if now is None else now
    entries = _entries(warehouse, model)
    current = current_version(warehouse, model)
    ordered = sorted((e for e in entries.values() if e.has_manifest and not e.name.startswith(".")),
                     key=lambda e: _order_key(e.name, e.newest_mtime))
    names = [e.name for e in ordered]
    protected = set(names[-keep:]) | ({current} if current else set())
    if current in names:
        protected |= set(names[names.index(current):])
    doomed = [n for n in names if n not in protected]
    debris = [e.name for e in entries.values()
              if e.name not in (CURRENT_FILE, current) and not e.has_manifest
              and now - e.newest_mtime > STALE_AFTER_S
              and (e.name.startswith(TMP_PREFIX) or (e.is_dir and not e.name.startswith(".")))]
    root = _model_root(warehouse, model)
    for name in doomed + sorted(debris):
        if not dry_run:
            _delete(root, name, entries[name].is_dir)
    LOG.info("%s: gc %s %d versions and %d stale leftovers; kept %d", model, "would delete" if dry_run else "deleted",
             len(doomed), len(debris), len(names) - len(doomed))
    return GcReport(removed_versions=doomed, removed_debris=sorted(debris),
                    kept=[n for n in names if n in protected])


def _delete(root: str, name: str, is_dir: bool) -> None:
    fs, base = storage.filesystem(storage.join(root, name))
    if not is_dir:
        fs.delete_file(base)
        return
    manifest = f"{base}/{MANIFEST_FILE}"
    # Manifest first: a gc interrupted half-way leaves an incomplete folder readers ignore
    # (and the next gc removes), never a complete-looking version with files missing.
    if fs.get_file_info(manifest).type == pafs.FileType.File:
        fs.delete_file(manifest)
    fs.delete_dir(base)
