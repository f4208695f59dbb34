"""`vidx build-index`: pinned Delta version of `clips` -> trained, measured, published index."""

from __future__ import annotations

import logging
import os
import tempfile
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vidx import storage
from vidx.config import VidxConfig
from vidx.encode.registry import load_model_record
from vidx.errors import IndexBuildError
from vidx.index.build import BuiltIndex, build_index
from vidx.index.publish import PublishedIndex, current_version, load_manifest, publish_index
from vidx.tables import delta, table_uri

LOG = logging.getLogger(__name__)
ID_COLUMNS = ["video_id", "clip_idx", "start_s", "end_s"]
# Vectors per Spark partition of a distributed build: each partition becomes one shard that the
# driver reads and merges whole, so a shard stays a small part of the index (500k x 456 B = 228 MB
# for the largest refine candidate at 512-d).
ROWS_PER_PARTITION = 500_000


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


@dataclass(frozen=True)
class SourceFile:
    """One data file of the model at the pinned version: its rows get faiss ids first_id .. first_id+rows-1."""

    uri: str
    first_id: int
    rows: int


def source_files(warehouse: str, model_id: str, version: int) -> list[SourceFile]:
    """The model's data files in faiss-id order (by path: partition folder, then file name), from the
    Delta log. Row r of a file is faiss id first_id + r: the numbering needs no sort, no shuffle and
    no pass over the data, and the driver (ids.parquet) and the executors (vectors) agree on it."""
    uri = table_uri(warehouse, "clips")
    actions = delta.data_files(uri, version=version, equals={"model_id": model_id}).sort_by("rel_path")
    rows = actions["num_records"].to_pylist()
    out, first = [], 0
    for rel, count in zip(actions["rel_path"].to_pylist(), rows, strict=True):
        file_uri = storage.join(uri, rel)
        n = int(count) if count is not None else _parquet_rows(file_uri)  # files written without stats
        out.append(SourceFile(file_uri, first, n))
        first += n
    return out


def _parquet_rows(uri: str) -> int:
    fs, path = storage.filesystem(uri)
    with fs.open_input_file(path) as src:
        return int(pq.ParquetFile(src).metadata.num_rows)


def read_file(uri: str, columns: list[str]) -> pa.Table:
    fs, path = storage.filesystem(uri)
    with fs.open_input_file(path) as src:
        return pq.read_table(src, columns=columns)


class _Uris:
    """video_id -> uri of one model's videos, looked up in Arrow (no Python dict of every video)."""

    def __init__(self, warehouse: str, model_id: str) -> None:
        videos = delta.read_rows(table_uri(warehouse, "videos"), columns=["video_id", "uri"],
                                 equals={"model_id": model_id})
        self.ids, self.uris = videos["video_id"], videos["uri"]

    def of(self, video_ids: pa.ChunkedArray | pa.Array) -> pa.Array:
        pos = pc.index_in(video_ids, value_set=self.ids)
        found = pc.take(self.uris, pc.fill_null(pos, 0)) if len(self.ids) else pa.nulls(len(video_ids), pa.string())
        return pc.if_else(pc.is_null(pos), "", found)


def _with_ids(clips: pa.Table, first_id: int, uris: _Uris) -> pa.Table:
    ids = clips.select(ID_COLUMNS).append_column("uri", uris.of(clips["video_id"]))
    return ids.add_column(0, "faiss_id", pa.array(np.arange(first_id, first_id + ids.num_rows, dtype=np.int64)))


def load_ids(warehouse: str, model_id: str, version: int) -> pa.Table:
    """The id map: row i (faiss id i) is the i-th clip in source_files order, with its video's uri."""
    uris = _Uris(warehouse, model_id)
    parts = [_with_ids(read_file(f.uri, ID_COLUMNS), f.first_id, uris)
             for f in source_files(warehouse, model_id, version)]
    return pa.concat_tables(parts) if parts else _with_ids(pa.table({c: [] for c in ID_COLUMNS}), 0, uris)


def write_ids(warehouse: str, model_id: str, files: list[SourceFile], path: str) -> int:
    """Stream the id map (see load_ids) into a local Parquet file, one data file at a time; its row count."""
    uris = _Uris(warehouse, model_id)
    writer: pq.ParquetWriter | None = None
    n = 0
    try:
        for f in files:
            part = _with_ids(read_file(f.uri, ID_COLUMNS), f.first_id, uris)
            writer = writer or pq.ParquetWriter(path, part.schema)
            writer.write_table(part)
            n += part.num_rows
    finally:
        if writer is not None:
            writer.close()
    return n


def load_clips(warehouse: str, model_id: str, version: int) -> tuple[pa.Table, np.ndarray]:
    """The id map (see load_ids) and the vectors in the same order, in memory (driver builds, small N)."""
    uris = _Uris(warehouse, model_id)
    ids, vectors = [], []
    dim = 0
    for f in source_files(warehouse, model_id, version):
        clips = read_file(f.uri, [*ID_COLUMNS, "embedding"])
        ids.append(_with_ids(clips, f.first_id, uris))
        dim = dim or (len(clips["embedding"][0]) if clips.num_rows else 0)
        vectors.append(embeddings_matrix(clips["embedding"], dim))
    if not ids:
        return load_ids(warehouse, model_id, version), np.zeros((0, 0), np.float32)
    return pa.concat_tables(ids), np.concatenate(vectors)


def clips_frame(spark: Any, files: list[SourceFile], partitions: int) -> Any:
    """(faiss_id, embedding) on Spark, numbered as source_files says, read by the executors from the
    pinned version's data files (never through the driver). Partition p reads a contiguous run of
    files, so its ids ascend and are contiguous: the shards merge into the single-process index."""
    from vidx.index.distributed import read_vectors

    runs = _contiguous_runs(files, partitions)
    rdd = spark.sparkContext.parallelize([[(f.uri, f.first_id) for f in run] for run in runs], len(runs))
    frame = spark.createDataFrame(rdd.flatMap(lambda run: run), "uri string, first_id long")
    return frame.mapInArrow(read_vectors, "faiss_id long, embedding array<float>")


def _contiguous_runs(files: list[SourceFile], partitions: int) -> list[list[SourceFile]]:
    """`files` cut into at most `partitions` consecutive runs of about equal row counts."""
    total = sum(f.rows for f in files)
    per = max(1, -(-total // max(1, partitions)))
    runs: list[list[SourceFile]] = [[]]
    for f in files:
        if runs[-1] and f.first_id >= per * len(runs):
            runs.append([])
        runs[-1].append(f)
    return [r for r in runs if r]


def _build(cfg: VidxConfig, model_id: str, pinned: int, spark: Any, tmp: str) -> tuple[pa.Table | str, BuiltIndex]:
    """The id map (a table, or the path of a Parquet file under `tmp`) and the index: on the driver
    below `index.distributed_above` vectors, else on Spark, where the driver never holds the vectors
    nor the whole id map (it streams ids.parquet file by file)."""
    files = source_files(cfg.warehouse, model_id, pinned)
    n = sum(f.rows for f in files)  # from the log's per-file record counts: no data is read
    if n == 0:
        raise IndexBuildError(f"clips version {pinned} has no vectors for {model_id}")
    if n < cfg.index.distributed_above:
        ids, vectors = load_clips(cfg.warehouse, model_id, pinned)
        LOG.info("building index over %d x %d vectors (clips version %d)", *vectors.shape, pinned)
        return ids, build_index(vectors, cfg.index)
    from vidx.index.distributed import build_index_distributed, scratch_uri
    from vidx.spark.session import get_spark

    spark = spark or get_spark(cfg.spark)
    LOG.info("building index over %d vectors on Spark (clips version %d, %d files)", n, pinned, len(files))
    partitions = max(spark.sparkContext.defaultParallelism, -(-n // ROWS_PER_PARTITION))
    dim = len(read_file(files[0].uri, ["embedding"])["embedding"][0])
    built = build_index_distributed(spark, clips_frame(spark, files, partitions), cfg.index,
                                    scratch=scratch_uri(cfg.warehouse, model_id), dim=dim, n=n)
    ids_path = os.path.join(tmp, "ids.parquet")
    write_ids(cfg.warehouse, model_id, files, ids_path)
    return ids_path, built


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
    from vidx.quality.records import publish_gate

    extra: dict[str, Any] = {}
    # DataQualityError when the pinned version did not pass `vidx validate`
    gate = publish_gate(cfg.warehouse, model_id, pinned, required=cfg.index.require_validation and not skip_validation)
    if gate is not None:
        extra["validation"] = gate
    with tempfile.TemporaryDirectory(prefix="vidx-build-") as tmp:
        ids, built = _build(cfg, model_id, pinned, spark, tmp)
        model: dict[str, Any] = load_model_record(cfg.warehouse, model_id) or {"model_id": model_id}
        published = publish_index(built, ids, warehouse=cfg.warehouse, model_id=model_id, table_version=pinned,
                                  model=model, extra=extra, set_current=set_current)
    if built.scratch:  # an on-disk build's local .ivfdata: the published version holds its own copy
        from vidx.index.distributed import remove_scratch

        remove_scratch(built)
    return BuildResult(model_id, pinned, published, False)
