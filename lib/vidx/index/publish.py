"""The index registry: `{warehouse}/indexes/{model_id}/{version}/` plus a `CURRENT` pointer.

Layout of one model::

    indexes/<model_id>/CURRENT                 text: the served version
    indexes/<model_id>/<version>/index.faiss   faiss.serialize_index bytes
    indexes/<model_id>/<version>/ids.parquet   row i describes faiss id i
    indexes/<model_id>/<version>/manifest.json params, recall, size, candidates tried, sha256 of every file
    indexes/<model_id>/<version>/index.ivfdata on-disk inverted lists (distributed builds above
                                               index.ondisk_above only; see vidx.index.ondisk)

Version folders are immutable and only `CURRENT` moves, so a reader either sees the old index or
the new one. A version folder without `manifest.json` is incomplete and invisible to readers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from vidx import storage
from vidx.errors import ConfigError, IndexBuildError, IndexIntegrityError, IndexNotFoundError
from vidx.index import ondisk
from vidx.index.build import BuiltIndex, deserialize, index_memory
from vidx.index.params import IndexParams
from vidx.index.pointer import read_current, swap_current

LOG = logging.getLogger(__name__)

FORMAT_VERSION = 1
INDEX_FILE = "index.faiss"
IDS_FILE = "ids.parquet"
MANIFEST_FILE = "manifest.json"
CURRENT_FILE = "CURRENT"
IVFDATA_FILE = ondisk.IVFDATA_FILE
TMP_PREFIX = ".tmp-"
_RESERVED_KEYS = frozenset({"format_version", "version", "model_id", "model", "table_version", "params",
                            "nprobe", "count", "dim", "recall_at_10", "eval_queries", "build_seconds",
                            "built_at", "files", "factory", "index_bytes", "memory_bytes", "bytes_per_vector",
                            "on_disk", "selection", "qps"})


@dataclass
class PublishedIndex:
    version: str
    uri: str
    manifest: dict[str, Any]


@dataclass
class LoadedIndex:
    index: faiss.Index
    ids: pa.Table
    manifest: dict[str, Any]
    params: IndexParams
    version: str


def publish_index(built: BuiltIndex, ids: pa.Table | str, *, warehouse: str, model_id: str, table_version: int,
                  model: dict[str, Any], extra: dict[str, Any] | None = None,
                  set_current: bool = True) -> PublishedIndex:
    """Write a new immutable version of `model_id`'s index and point `CURRENT` at it (unless
    `set_current` is False: then `vidx index promote VERSION` publishes it later).

    `ids` row i describes faiss id i (columns are the caller's, e.g. faiss_id, video_id, clip_idx,
    start_s, end_s, uri): a table, or the path of a local Parquet file holding it (a large id map
    written piece by piece). `extra` keys are added to the manifest's top level.
    """
    _check_ids(built, ids)
    clash = sorted(_RESERVED_KEYS & set(extra or {}))
    if clash:
        raise IndexBuildError(f"extra manifest keys {clash} collide with reserved keys; rename them")
    root = _model_root(warehouse, model_id)
    seen = read_current(root) if set_current else (None, None)  # CURRENT moves only if still this
    # The index goes to a local file with faiss.write_index (no serialised copy of it in memory),
    # next to the registry when it is local so placing it is a hard link.
    scratch = _scratch_dir(root)
    try:
        index_file = str(Path(scratch) / INDEX_FILE)
        faiss.write_index(built.index, index_file)
        return _publish_files(built, index_file, ids if isinstance(ids, str) else memoryview(_parquet_bytes(ids)),
                              root=root, model_id=model_id, table_version=table_version, model=model, extra=extra,
                              set_current=set_current, seen=seen)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _scratch_dir(root: str) -> str:
    if storage.is_local(root):
        Path(storage.local_path(root)).mkdir(parents=True, exist_ok=True)
        return tempfile.mkdtemp(prefix=f"{TMP_PREFIX}publish-", dir=storage.local_path(root))
    return tempfile.mkdtemp(prefix="vidx-publish-")


def _publish_files(built: BuiltIndex, index_file: str, ids: memoryview | str, *, root: str, model_id: str,
                   table_version: int, model: dict[str, Any], extra: dict[str, Any] | None,
                   set_current: bool, seen: tuple[str | None, str | None]) -> PublishedIndex:
    now = datetime.now(UTC)
    version = f"{now:%Y%m%dT%H%M%S}Z-t{table_version}-{uuid.uuid4().hex[:8]}"
    files: dict[str, memoryview | str] = {INDEX_FILE: index_file, IDS_FILE: ids}
    if built.ivfdata:  # on-disk lists: index.faiss names this file, opened from the same folder
        if Path(built.ivfdata).name != IVFDATA_FILE:
            raise IndexBuildError(f"on-disk lists must be named {IVFDATA_FILE}, got {built.ivfdata}")
        files[IVFDATA_FILE] = built.ivfdata
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION, "version": version, "model_id": model_id, "model": model,
        "table_version": table_version, "params": asdict(built.params), "nprobe": built.nprobe,
        "count": int(built.index.ntotal), "dim": built.dim, "recall_at_10": built.recall_at_10,
        "eval_queries": built.eval_queries, "build_seconds": round(built.build_seconds, 3),
        "built_at": now.isoformat(timespec="seconds"), **_size_record(built),
        "files": {name: _file_entry(data) for name, data in files.items()},
        **(extra or {}),
    }
    files[MANIFEST_FILE] = memoryview(json.dumps(manifest, indent=2, sort_keys=True).encode())
    try:
        if _renames_folders(root):
            _write_version_local(storage.local_path(root), version, files)
        else:
            _write_version_object_store(storage.join(root, version), files)
        if set_current:  # only if CURRENT is still what it was before this version was written
            swap_current(root, version, expected=seen)
    except (OSError, pa.ArrowException) as exc:
        raise IndexBuildError(f"could not publish index version {version} under {root}: {exc}. "
                              "Check that the warehouse is writable and has space.") from exc
    LOG.info("published %s/%s (%d vectors, recall@10 %.3f)", root, version, manifest["count"],
             built.recall_at_10)
    return PublishedIndex(version=version, uri=storage.join(root, version), manifest=manifest)


def current_version(warehouse: str, model_id: str) -> str | None:
    """The version `CURRENT` points at, or None when the model has never been published."""
    uri = storage.join(_model_root(warehouse, model_id), CURRENT_FILE)
    if not storage.exists(uri):
        return None
    return storage.read_bytes(uri).decode().strip() or None


def list_versions(warehouse: str, model_id: str) -> list[str]:
    """Complete versions (those with a manifest) of `model_id`, oldest first."""
    return sorted(v for m, v in _manifests(_model_root(warehouse, None)) if m == model_id)


def list_models(warehouse: str) -> list[str]:
    """Model ids with at least one complete version."""
    return sorted({m for m, _ in _manifests(_model_root(warehouse, None))})


def load_index(warehouse: str, model_id: str | None = None, version: str | None = None) -> LoadedIndex:
    """Load and verify a published index.

    `model_id` None: the only model in the registry. `version` None: the one `CURRENT` names.
    Every file is checked against the manifest's sha256 before it is deserialised.
    """
    model_id = model_id or _only_model(warehouse)
    if version is None:
        version = current_version(warehouse, model_id)
        if version is None:
            raise IndexNotFoundError(f"no index published for model {model_id!r} in {warehouse}; "
                                     f"run `vidx build-index --warehouse {warehouse}`")
    version_uri = storage.join(_model_root(warehouse, model_id), version)
    manifest = load_manifest(warehouse, model_id, version)
    on_disk = bool(manifest.get("on_disk"))
    blobs = {name: _read_verified(version_uri, name, manifest) for name in (INDEX_FILE, IDS_FILE)
             if not (on_disk and name == INDEX_FILE)}
    try:
        index = (ondisk.open_published(version_uri, manifest, INDEX_FILE) if on_disk
                 else deserialize(blobs[INDEX_FILE]))
        ids = pq.read_table(pa.BufferReader(blobs[IDS_FILE]))
        params = IndexParams(**manifest["params"])
    except (RuntimeError, TypeError, pa.ArrowException) as exc:
        raise IndexIntegrityError(f"index version {version_uri} cannot be read: {exc}; "
                                  "rebuild it with `vidx build-index`") from exc
    if not int(index.ntotal) == ids.num_rows == manifest.get("count"):
        raise IndexIntegrityError(f"{version_uri}: index holds {index.ntotal} vectors, {IDS_FILE} "
                                  f"{ids.num_rows} rows, manifest count {manifest.get('count')}; rebuild it")
    LOG.info("loaded index %s (%d vectors)", version_uri, ids.num_rows)
    return LoadedIndex(index=index, ids=ids, manifest=manifest, params=params, version=version)


def _size_record(built: BuiltIndex) -> dict[str, Any]:
    """Chosen layout, size and (when selected) the candidates tried, for the manifest's top level."""
    index_bytes, memory_bytes = built.index_bytes, built.memory_bytes
    if not index_bytes:  # built by hand (tests, tools): measure now
        index_bytes, memory_bytes = index_memory(built.index, built.ivfdata)
    record: dict[str, Any] = {"factory": built.params.factory, "index_bytes": index_bytes,
                              "memory_bytes": memory_bytes, "on_disk": built.ivfdata is not None,
                              "bytes_per_vector": round(index_bytes / max(1, int(built.index.ntotal)), 2)}
    if built.selection is not None:
        record["selection"] = built.selection
    if built.qps is not None:
        record["qps"] = built.qps
    return record


def _file_entry(data: memoryview | str) -> dict[str, Any]:
    if isinstance(data, str):  # a local file too large to hold in memory (on-disk lists)
        return {"sha256": ondisk.sha256_file(data), "bytes": os.path.getsize(data)}
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": data.nbytes}


def _renames_folders(root: str) -> bool:
    """Whether a whole version folder can be renamed into place atomically (local filesystems only)."""
    return storage.is_local(root)


def _model_root(warehouse: str, model_id: str | None) -> str:
    root = storage.join(storage.normalize_uri(warehouse), "indexes")
    if model_id is None:
        return root
    if not model_id or "/" in model_id or "\\" in model_id or model_id.startswith("."):
        raise ConfigError(f"model_id {model_id!r} must be a single path segment without '/' "
                          "that does not start with '.'")
    return storage.join(root, model_id)


def _manifests(indexes_root: str) -> list[tuple[str, str]]:
    """(model_id, version) of every `<model>/<version>/manifest.json` under `indexes_root`."""
    fs, base = storage.filesystem(indexes_root)
    base = base.rstrip("/")
    found = []
    # One recursive listing is one round trip per page on object stores, unlike a probe per folder.
    for info in fs.get_file_info(pafs.FileSelector(base, recursive=True, allow_not_found=True)):
        if info.type != pafs.FileType.File or not info.path.startswith(base + "/"):
            continue
        parts = info.path[len(base) + 1:].split("/")
        if len(parts) == 3 and parts[2] == MANIFEST_FILE and not parts[1].startswith("."):
            found.append((parts[0], parts[1]))
    return found


def _only_model(warehouse: str) -> str:
    models = list_models(warehouse)
    if not models:
        raise IndexNotFoundError(f"no index has been published in {warehouse}; "
                                 f"run `vidx build-index --warehouse {warehouse}` first")
    if len(models) > 1:
        raise IndexNotFoundError(f"{warehouse} holds indexes for several models ({', '.join(models)}); "
                                 "say which one to load (model_id / --model-id)")
    return models[0]


def load_manifest(warehouse: str, model_id: str, version: str) -> dict[str, Any]:
    """The parsed, format-checked manifest of one complete version (files are not verified here)."""
    if not version or "/" in version or version.startswith("."):
        raise IndexNotFoundError(f"{version!r} is not an index version name; "
                                 f"versions of {model_id!r}: {list_versions(warehouse, model_id) or 'none'}")
    uri = storage.join(_model_root(warehouse, model_id), version, MANIFEST_FILE)
    if not storage.exists(uri):
        raise IndexNotFoundError(f"index version {version!r} of model {model_id!r} does not exist or is "
                                 f"incomplete (no {MANIFEST_FILE}); complete versions: "
                                 f"{list_versions(warehouse, model_id) or 'none'}")
    try:
        manifest = json.loads(storage.read_bytes(uri))
    except ValueError as exc:
        raise IndexIntegrityError(f"{uri} is not valid JSON ({exc}); rebuild the index") from exc
    required = ("format_version", "params", "files", "count")
    missing = [k for k in required if k not in manifest] if isinstance(manifest, dict) else list(required)
    if missing or not isinstance(manifest["files"], dict):
        raise IndexIntegrityError(f"{uri} is malformed (missing {missing}); rebuild the index")
    if manifest["format_version"] != FORMAT_VERSION:
        raise IndexIntegrityError(f"{uri} has format_version {manifest['format_version']}, this vidx "
                                  f"reads {FORMAT_VERSION}; upgrade vidx or rebuild the index")
    return manifest


def _read_verified(version_uri: str, name: str, manifest: dict[str, Any]) -> bytes:
    entry = manifest["files"].get(name)
    if not isinstance(entry, dict) or "sha256" not in entry:
        raise IndexIntegrityError(f"manifest of {version_uri} has no checksum for {name}; rebuild the index")
    uri = storage.join(version_uri, name)
    try:
        data = storage.read_bytes(uri)
    except (OSError, pa.ArrowException) as exc:
        raise IndexIntegrityError(f"{name} of {version_uri} cannot be read ({exc}); "
                                  "rebuild the index") from exc
    digest = hashlib.sha256(data).hexdigest()
    if digest != entry["sha256"] or len(data) != entry.get("bytes", len(data)):
        raise IndexIntegrityError(f"{name} of {version_uri} fails its checksum (sha256 {digest}, "
                                  f"{len(data)} bytes; manifest says {entry['sha256']}, "
                                  f"{entry.get('bytes')} bytes): the file is corrupt or was modified. "
                                  "Load another version or rebuild the index.")
    return data


def _check_ids(built: BuiltIndex, ids: pa.Table | str) -> None:
    parts: Iterator[pa.Table]
    if isinstance(ids, str):  # one row group at a time: the map may be larger than the index itself
        parquet = pq.ParquetFile(ids)
        rows, names = parquet.metadata.num_rows, parquet.schema_arrow.names
        parts = (parquet.read_row_group(g, columns=["faiss_id"]) for g in range(parquet.num_row_groups))
    else:
        rows, names, parts = ids.num_rows, ids.column_names, iter([ids])
    if rows != built.index.ntotal:
        raise IndexBuildError(f"ids table has {rows} rows but the index holds {built.index.ntotal} "
                              "vectors; pass exactly one ids row per indexed vector, in faiss id order")
    if "faiss_id" not in names:
        return
    start = 0
    for part in parts:
        expected = pa.array(np.arange(start, start + part.num_rows, dtype=np.int64))
        if not pc.all(pc.equal(part["faiss_id"].cast(pa.int64()), expected)).as_py():
            raise IndexBuildError("ids.faiss_id must equal the row position (0..n-1); sort the ids "
                                  "table by faiss_id and pass the rows the vectors were added in")
        start += part.num_rows


def _parquet_bytes(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    return sink.getvalue()


def _write_version_local(root: str, version: str, files: dict[str, memoryview | str]) -> None:
    """Write the version under a hidden temporary folder, then rename the whole folder into place."""
    tmp = Path(root) / f"{TMP_PREFIX}{version}"
    tmp.mkdir(parents=True)
    try:
        for name, data in files.items():
            if isinstance(data, str):
                ondisk.place_file(data, tmp / name)
                continue
            with open(tmp / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, Path(root) / version)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(root)


def _write_version_object_store(version_uri: str, files: dict[str, memoryview | str]) -> None:
    """Object stores cannot rename a folder atomically: write in place, manifest last.

    Until the manifest exists, readers ignore the folder, so a crash leaves only invisible debris.
    """
    fs, base = storage.filesystem(version_uri)
    fs.create_dir(base, recursive=True)
    for name in sorted(files, key=lambda n: n == MANIFEST_FILE):
        data = files[name]
        if isinstance(data, str):
            ondisk.upload_file(data, storage.join(version_uri, name))
            continue
        with fs.open_output_stream(f"{base}/{name}") as out:  # one PUT per file
            out.write(data)


def _fsync_dir(path: str) -> None:
    # Makes the rename durable; not every OS / filesystem allows opening a directory.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
