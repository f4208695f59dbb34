"""`vidx build-index`: pinned Delta version of `clips` -> trained, measured, published index."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidx.config import VidxConfig
from vidx.encode.registry import load_model_record
from vidx.errors import IndexBuildError
from vidx.index.build import build_index
from vidx.index.publish import PublishedIndex, current_version, load_manifest, publish_index
from vidx.tables import delta, table_uri

LOG = logging.getLogger(__name__)
ID_COLUMNS = ["video_id", "clip_idx", "start_s", "end_s"]


@dataclass(frozen=True)
class BuildResult:
    model_id: str
    table_version: int
    published: PublishedIndex | None   # None when the current index is already up to date
    up_to_date: bool


def clip_models(warehouse: str, *, version: int | None = None) -> list[str]:
    ds = delta.to_dataset(table_uri(warehouse, "clips"), version=version)
    return sorted(pc.unique(ds.to_table(columns=["model_id"])["model_id"]).to_pylist())


def _pick_model(warehouse: str, version: int, model_id: str | None) -> str:
    models = clip_models(warehouse, version=version)
    if model_id is not None:
        if model_id not in models:
            raise IndexBuildError(f"no clips for model {model_id!r} at clips version {version}; "
                                  f"models present: {models or 'none'}")
        return model_id
    if len(models) != 1:
        raise IndexBuildError(f"clips version {version} holds models {models or 'none'}; "
                              "choose one with --model-id")
    return models[0]


def embeddings_matrix(column: pa.ChunkedArray | pa.Array, dim: int) -> np.ndarray:
    """list<float32> column -> contiguous (n, dim) float32, checking every row has `dim` values."""
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    lengths = pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    if len(lengths) and (lengths.min() != dim or lengths.max() != dim):
        raise IndexBuildError(f"embeddings have lengths {lengths.min()}..{lengths.max()}, expected {dim}; "
                              "validate the clips table")
    flat = pc.list_flatten(arr).to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return np.ascontiguousarray(flat.reshape(len(arr), dim))


def load_clips(warehouse: str, model_id: str, version: int) -> tuple[pa.Table, np.ndarray]:
    """Id columns joined with each video's uri, sorted by (video_id, clip_idx), and the vectors."""
    clips = delta.read_rows(table_uri(warehouse, "clips"), version=version,
                            columns=[*ID_COLUMNS, "embedding"], equals={"model_id": model_id})
    clips = clips.sort_by([("video_id", "ascending"), ("clip_idx", "ascending")])
    videos = delta.read_rows(table_uri(warehouse, "videos"), columns=["video_id", "uri"],
                             equals={"model_id": model_id})
    uris = dict(zip(videos["video_id"].to_pylist(), videos["uri"].to_pylist(), strict=True))
    ids = clips.select(ID_COLUMNS).append_column(
        "uri", pa.array([uris.get(v, "") for v in clips["video_id"].to_pylist()], pa.string()))
    ids = ids.add_column(0, "faiss_id", pa.array(np.arange(ids.num_rows, dtype=np.int64)))
    dim = len(clips["embedding"][0]) if clips.num_rows else 0
    return ids, embeddings_matrix(clips["embedding"], dim)


def build_from_warehouse(cfg: VidxConfig, *, model_id: str | None = None, version: int | None = None,
                         force: bool = False, skip_validation: bool = False,
                         set_current: bool = True) -> BuildResult:
    """`skip_validation` bypasses the `index.require_validation` gate (development only);
    `set_current` False writes the version without moving CURRENT (`vidx index promote` does)."""
    clips_uri = table_uri(cfg.warehouse, "clips")
    pinned = version if version is not None else delta.latest_version(clips_uri)
    if pinned is None:
        raise IndexBuildError(f"no clips table under {cfg.warehouse}; run `vidx embed` first")
    model_id = _pick_model(cfg.warehouse, pinned, model_id)
    current = current_version(cfg.warehouse, model_id)
    if current is not None and not force:
        manifest = load_manifest(cfg.warehouse, model_id, current)
        if manifest.get("table_version") == pinned:
            LOG.info("index %s already built from clips version %d: up to date", current, pinned)
            return BuildResult(model_id, pinned, None, True)
    extra: dict[str, Any] = {}
    if cfg.index.require_validation and not skip_validation:
        from vidx.quality.records import require_validated

        passed = require_validated(cfg.warehouse, model_id, pinned)  # DataQualityError when not
        extra["validation"] = {"validation_id": passed["validation_id"], "results_uri": passed["results_uri"]}
    else:
        LOG.warning("building from clips version %d without checking its validation", pinned)
    ids, vectors = load_clips(cfg.warehouse, model_id, pinned)
    if len(vectors) == 0:
        raise IndexBuildError(f"clips version {pinned} has no vectors for {model_id}")
    LOG.info("building index over %d x %d vectors (clips version %d)", *vectors.shape, pinned)
    built = build_index(vectors, cfg.index)
    model: dict[str, Any] = load_model_record(cfg.warehouse, model_id) or {"model_id": model_id}
    published = publish_index(built, ids, warehouse=cfg.warehouse, model_id=model_id, table_version=pinned,
                              model=model, extra=extra, set_current=set_current)
    return BuildResult(model_id, pinned, published, False)
