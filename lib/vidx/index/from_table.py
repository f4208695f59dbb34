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
from vidx.index.build import BuiltIndex, build_index
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
    return delta.partition_values(table_uri(warehouse, "clips"), "model_id", version=version)


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


SORT_KEYS = [("video_id", "ascending"), ("clip_idx", "ascending")]


def _read_sorted(warehouse: str, model_id: str, version: int, columns: list[str]) -> pa.Table:
    return delta.read_rows(table_uri(warehouse, "clips"), version=version, columns=columns,
                           equals={"model_id": model_id}).sort_by(SORT_KEYS)


def _id_map(clips: pa.Table, warehouse: str, model_id: str) -> pa.Table:
    videos = delta.read_rows(table_uri(warehouse, "videos"), columns=["video_id", "uri"],
                             equals={"model_id": model_id})
    uris = dict(zip(videos["video_id"].to_pylist(), videos["uri"].to_pylist(), strict=True))
    ids = clips.select(ID_COLUMNS).append_column(
        "uri", pa.array([uris.get(v, "") for v in clips["video_id"].to_pylist()], pa.string()))
    return ids.add_column(0, "faiss_id", pa.array(np.arange(ids.num_rows, dtype=np.int64)))


def load_ids(warehouse: str, model_id: str, version: int) -> pa.Table:
    """The id map alone: row i (faiss id i) is the i-th clip by (video_id, clip_idx), with its uri."""
    return _id_map(_read_sorted(warehouse, model_id, version, ID_COLUMNS), warehouse, model_id)


def load_clips(warehouse: str, model_id: str, version: int) -> tuple[pa.Table, np.ndarray]:
    """The id map (see load_ids) and the vectors in the same order."""
    clips = _read_sorted(warehouse, model_id, version, [*ID_COLUMNS, "embedding"])
    dim = len(clips["embedding"][0]) if clips.num_rows else 0
    return _id_map(clips, warehouse, model_id), embeddings_matrix(clips["embedding"], dim)


def clips_frame(spark: Any, warehouse: str, model_id: str, version: int) -> Any:
    """(faiss_id, embedding) on Spark, numbered in load_ids' order, read from the pinned version's
    files (plain `spark.read.parquet(T)` would ignore the Delta log)."""
    from pyspark.sql import functions as F

    uri = table_uri(warehouse, "clips")
    files = [f for f in delta.file_uris(uri, version=version) if f"model_id={model_id}/" in f]
    rows = (spark.read.option("basePath", uri).parquet(*files)
            .select("video_id", "clip_idx", "embedding").orderBy("video_id", "clip_idx"))
    numbered = rows.rdd.zipWithIndex().map(lambda pair: (pair[1], pair[0]["embedding"]))
    frame = spark.createDataFrame(numbered, "faiss_id long, embedding array<float>")
    return frame.withColumn("embedding", F.col("embedding").cast("array<float>"))


def _count(warehouse: str, model_id: str, version: int) -> int:
    """Rows of one model at a version, from Parquet metadata: no data is read."""
    ds = delta.to_dataset(table_uri(warehouse, "clips"), version=version)
    return int(ds.count_rows(filter=pc.field("model_id") == model_id))


def _build(cfg: VidxConfig, model_id: str, pinned: int, spark: Any) -> tuple[pa.Table, BuiltIndex]:
    """The id map and the index: on the driver below `index.distributed_above` vectors, else on Spark."""
    n = _count(cfg.warehouse, model_id, pinned)
    if n == 0:
        raise IndexBuildError(f"clips version {pinned} has no vectors for {model_id}")
    if n < cfg.index.distributed_above:
        ids, vectors = load_clips(cfg.warehouse, model_id, pinned)
        LOG.info("building index over %d x %d vectors (clips version %d)", *vectors.shape, pinned)
        return ids, build_index(vectors, cfg.index)
    from vidx.index.distributed import build_index_distributed, scratch_uri
    from vidx.spark.session import get_spark

    spark = spark or get_spark(cfg.spark)
    LOG.info("building index over %d vectors on Spark (clips version %d)", n, pinned)
    ids = load_ids(cfg.warehouse, model_id, pinned)
    frame = clips_frame(spark, cfg.warehouse, model_id, pinned)
    return ids, build_index_distributed(spark, frame, cfg.index, scratch=scratch_uri(cfg.warehouse, model_id))


def build_from_warehouse(cfg: VidxConfig, *, model_id: str | None = None, version: int | None = None,
                         force: bool = False, skip_validation: bool = False,
                         set_current: bool = True, spark: Any = None) -> BuildResult:
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
    ids, built = _build(cfg, model_id, pinned, spark)
    model: dict[str, Any] = load_model_record(cfg.warehouse, model_id) or {"model_id": model_id}
    published = publish_index(built, ids, warehouse=cfg.warehouse, model_id=model_id, table_version=pinned,
                              model=model, extra=extra, set_current=set_current)
    if built.scratch:  # an on-disk build's local .ivfdata: the published version holds its own copy
        from vidx.index.distributed import remove_scratch

        remove_scratch(built)
    return BuildResult(model_id, pinned, published, False)
