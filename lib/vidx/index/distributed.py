"""Build an index over vectors that live in Spark: the driver trains once, partitions add, the driver merges.

The source is a DataFrame of (`faiss_id` long, `embedding` array<float>) with ids 0..n-1, e.g. a
pinned clips table read through its Delta log (README: `spark.read.option("basePath", T)
.parquet(*DeltaTable(T).file_uris())`) with ids assigned in clip order, or `vectors_frame` over
an in-memory matrix. Passes over the data:

1. one aggregate: n, id range, distinct ids;
2. fetch the training sample and the held-out queries to the driver (both are small: at most
   256 x nlist and `index.eval_queries` rows; `spark.driver.maxResultSize` must exceed them);
3. exact top-k of the queries, computed per partition and merged on the driver;
4. fetch the evaluation set (the queries' neighbours plus random rows, `index.select_sample`);
5. per chosen candidate: the trained, empty index is broadcast (faiss.serialize_index bytes);
   each partition adds its rows with their faiss ids and writes one shard through vidx.storage to
   the scratch folder (a hidden `.tmp-build-*` folder under the model's index registry path);
   the driver merges the shards in order of their smallest id, with `merge_from` in RAM, or with
   `merge_ondisk` into an `index.ivfdata` file when the candidate's estimated size exceeds
   `index.ondisk_above`.

The selection (vidx.index.select) is the same as a single-process build's, with the same seeded
samples, so both choose the same index; when each partition holds ascending, contiguous ids
(vectors_frame does), every inverted list is identical too and searches return the same ids and
distances.
"""

from __future__ import annotations

import functools
import io
import logging
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from faiss.contrib.ondisk import merge_ondisk
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from vidx import storage
from vidx.config import IndexConfig
from vidx.errors import IndexBuildError
from vidx.index import devices, ondisk, select
from vidx.index.build import BuiltIndex, build_index, deserialize, drop_self, sample_rows
from vidx.index.params import choose_nlist, choose_params, choose_train_size
from vidx.index.publish import TMP_PREFIX, _model_root

LOG = logging.getLogger(__name__)

SHARD_SCHEMA = "uri string, codes_uri string, count long, min_id long"
TOPK_SCHEMA = "k long, ids binary, scores binary"


@dataclass(frozen=True)
class Shard:
    uri: str
    codes_uri: str  # refine codes and ids (refine candidates only), else ""
    count: int
    min_id: int


def scratch_uri(warehouse: str, model_id: str) -> str:
    """A fresh hidden folder under the model's registry path (registry gc removes it if a build dies)."""
    return storage.join(_model_root(warehouse, model_id), f"{TMP_PREFIX}build-{uuid.uuid4().hex[:12]}")


def vectors_frame(spark: SparkSession, vectors: np.ndarray, partitions: int) -> DataFrame:
    """(faiss_id, embedding) over an in-memory matrix, in `partitions` ascending contiguous id ranges.

    For tests and benchmarks: the matrix is broadcast, so it must fit each executor's memory.
    """
    shared = spark.sparkContext.broadcast(np.ascontiguousarray(vectors, dtype=np.float32))
    # spark.range splits 0..n-1 into contiguous, ordered slices: one shard per slice.
    ids = spark.range(0, len(vectors), numPartitions=partitions).withColumnRenamed("id", "faiss_id")
    return ids.mapInArrow(functools.partial(_attach_vectors, shared=shared), "faiss_id long, embedding array<float>")


def remove_scratch(built: BuiltIndex) -> None:
    """Delete the folder holding an on-disk build's `.ivfdata` (after publishing, which keeps its own copy)."""
    if built.scratch:
        shutil.rmtree(built.scratch, ignore_errors=True)


def build_index_distributed(spark: SparkSession, source: DataFrame, cfg: IndexConfig, *, scratch: str,
                            dim: int | None = None) -> BuiltIndex:
    """Choose, train (driver), fill (Spark partitions) and merge (driver) an index over `source`.

    `scratch` is the folder URI for shards (see scratch_uri); shards are deleted before returning.
    With on-disk lists the returned BuiltIndex's `ivfdata` lies in `built.scratch`, a local folder
    to remove with remove_scratch once published. Below the flat threshold everything is collected
    and built in memory as build_index would.
    """
    started = time.perf_counter()
    frame = source.select("faiss_id", "embedding")
    n = _check_ids(frame)
    first = frame.first()
    dim = dim or (len(first["embedding"]) if first is not None else 0)
    if choose_params(n, dim, cfg).kind == "flat":
        return build_index(fetch_rows(frame, np.arange(n, dtype=np.int64), dim), cfg)
    t0 = time.perf_counter()
    data = spark_eval_set(frame, n, dim, cfg)
    data.seconds = time.perf_counter() - t0
    shards_uri = storage.join(scratch, "shards")
    built: BuiltIndex | None = None
    try:
        add_all = functools.partial(_add_all, spark=spark, frame=frame, cfg=cfg, shards_uri=shards_uri,
                                    scratch=scratch, n=n)
        built = select.select_and_build(data, n, dim, cfg, add_all, started=started, on_disk_capable=True)
    finally:
        # Shards are merged (or copied into the .ivfdata) by now; only on-disk lists outlive the build.
        _remove_tree(shards_uri if built is not None and built.ivfdata else scratch)
    if built.ivfdata:  # the whole local scratch folder goes once published; a remote one is empty by now
        built.scratch = storage.local_path(scratch) if storage.is_local(scratch) else str(Path(built.ivfdata).parent)
    return built


def spark_eval_set(frame: DataFrame, n: int, dim: int, cfg: IndexConfig) -> select.EvalSet:
    """The same training sample, queries, neighbours and evaluation set as select.local_eval_set."""
    train_size = choose_train_size(n, choose_nlist(n), cfg.train_per_list)
    query_ids, train_rows = sample_rows(n, min(cfg.eval_queries, n), train_size, cfg.seed)
    wanted = np.union1d(query_ids, train_rows)
    fetched = fetch_rows(frame, wanted, dim)
    queries = np.ascontiguousarray(fetched[np.searchsorted(wanted, query_ids)])
    keep = select.neighbours_kept(n, len(query_ids), cfg.select_sample)
    truth = drop_self(exact_topk(frame, queries, keep + 1, dim), query_ids, keep)
    db_ids = select.eval_db_ids(n, truth, cfg.select_sample, cfg.seed)
    return select.EvalSet(train=fetched[np.searchsorted(wanted, train_rows)], query_ids=query_ids,
                          queries=queries, truth=truth, db_ids=db_ids, db=fetch_rows(frame, db_ids, dim))


def fetch_rows(frame: DataFrame, ids: np.ndarray, dim: int) -> np.ndarray:
    """Vectors of the sorted `ids`, in that order (one filtered pass; the ids travel in the task closure)."""
    table = frame.mapInArrow(functools.partial(_filter_rows, wanted=ids), "faiss_id long, embedding array<float>"
                             ).toArrow().sort_by("faiss_id")
    got = table["faiss_id"].to_numpy()
    if len(got) != len(ids) or not np.array_equal(got, ids):
        raise IndexBuildError(f"fetched {len(got)} of {len(ids)} sampled rows; faiss ids must be unique 0..n-1")
    return _matrix(table["embedding"].combine_chunks(), dim)


def exact_topk(frame: DataFrame, queries: np.ndarray, k: int, dim: int) -> np.ndarray:
    """Exact inner-product top-k ids of `queries` over every row, (nq, k), merged from per-partition top-k."""
    parts = frame.mapInArrow(functools.partial(_partition_topk, queries=queries, k=k, dim=dim), TOPK_SCHEMA).collect()
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    for row in parts:
        kk = int(row["k"])
        heap.add_result(np.frombuffer(row["scores"], np.float32).reshape(-1, kk),
                        np.frombuffer(row["ids"], np.int64).reshape(-1, kk))
    heap.finalize()
    return heap.I.astype(np.int64)


def _check_ids(frame: DataFrame) -> int:
    row = frame.agg(F.count("*").alias("n"), F.min("faiss_id").alias("lo"), F.max("faiss_id").alias("hi"),
                    F.count_distinct("faiss_id").alias("distinct")).first()
    if row is None or not row["n"]:
        raise IndexBuildError("the vector source is empty; embed some videos first")
    n = int(row["n"])
    if (row["lo"], row["hi"], row["distinct"]) != (0, n - 1, n):
        raise IndexBuildError(f"faiss ids must be unique and cover 0..{n - 1}; got {row['distinct']} distinct ids "
                              f"in {row['lo']}..{row['hi']} over {n} rows. Number the rows before building.")
    return n


def _add_all(trained: faiss.Index, cand: select.Candidate, *, spark: SparkSession, frame: DataFrame,
             cfg: IndexConfig, shards_uri: str, scratch: str, n: int) -> tuple[faiss.Index, str | None]:
    """Broadcast `trained`, fill one shard per partition, merge them on the driver."""
    on_disk = cand.on_disk_ok and cand.estimate(n) > cfg.ondisk_above
    refine = cand.params.k_factor > 0
    payload = spark.sparkContext.broadcast(faiss.serialize_index(trained).tobytes())
    try:
        task = functools.partial(_fill_shard, trained=payload, shards_uri=shards_uri, refine=refine)
        rows = frame.mapInArrow(task, SHARD_SCHEMA).collect()
    finally:
        payload.destroy()
    shards = sorted((Shard(r["uri"], r["codes_uri"], int(r["count"]), int(r["min_id"])) for r in rows if r["count"]),
                    key=lambda s: s.min_id)
    LOG.info("%d shards of %s filled (%d vectors); merging %s", len(shards), cand.params.factory,
             sum(s.count for s in shards), "on disk" if on_disk else "in memory")
    if on_disk:
        return _merge_on_disk(trained, shards, scratch)
    return merge_shards(trained, shards, n), None


def merge_shards(trained: faiss.Index, shards: list[Shard], n: int) -> faiss.Index:
    """`merge_from` every shard into `trained`, in order (refine codes are placed by id)."""
    index: Any = trained
    base: Any = faiss.downcast_index(index.base_index) if hasattr(index, "base_index") else index
    codes: np.ndarray | None = None
    for shard in shards:
        part = deserialize(storage.read_bytes(shard.uri))
        base.merge_from(part, 0)  # ids were added explicitly, so no shift
        if shard.codes_uri:
            with np.load(io.BytesIO(storage.read_bytes(shard.codes_uri))) as z:
                if codes is None:
                    codes = np.empty((n, z["codes"].shape[1]), np.uint8)
                codes[z["ids"]] = z["codes"]
    if codes is not None:
        # The refine index numbers vectors 0..n-1 in add order, so codes go in faiss id order.
        index.refine_index.add_sa_codes(codes)
        index.ntotal = n
    return index


def _merge_on_disk(trained: faiss.Index, shards: list[Shard], scratch: str) -> tuple[faiss.Index, str]:
    """merge_ondisk into `<local folder>/index.ivfdata`; shards on an object store are downloaded first."""
    folder = Path(storage.local_path(scratch)) / "ondisk" if storage.is_local(scratch) else Path(
        tempfile.mkdtemp(prefix="vidx-ondisk-"))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, shard in enumerate(shards):
        if storage.is_local(shard.uri):
            paths.append(storage.local_path(shard.uri))
        else:  # merge_ondisk memory-maps shard files, so they must be local
            local = folder / f"shard-{i}.faiss"
            local.write_bytes(storage.read_bytes(shard.uri))
            paths.append(str(local))
    ivfdata = str(folder / ondisk.IVFDATA_FILE)
    merge_ondisk(trained, paths, ivfdata)
    return trained, ivfdata


def _remove_tree(uri: str) -> None:
    fs, path = storage.filesystem(uri)
    try:
        fs.delete_dir(path)
    except (OSError, FileNotFoundError):
        LOG.debug("scratch %s already gone", uri)


# ---- executor side: module-level functions so Spark pickles them by reference ----

def _matrix(column: pa.Array | pa.ChunkedArray, dim: int) -> np.ndarray:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    flat = pc.list_flatten(arr).to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    if flat.size != len(arr) * dim or not np.isfinite(flat).all():
        raise IndexBuildError(f"embeddings must all hold {dim} finite values; validate the clips table")
    return np.ascontiguousarray(flat.reshape(len(arr), dim))


def _attach_vectors(batches: Iterator[pa.RecordBatch], shared: Any) -> Iterator[pa.RecordBatch]:
    vectors = shared.value
    for batch in batches:
        ids = batch.column(0).to_numpy()
        flat = pa.array(vectors[ids].reshape(-1))
        offsets = pa.array(np.arange(0, len(ids) + 1, dtype=np.int32) * vectors.shape[1])
        yield pa.RecordBatch.from_arrays([batch.column(0), pa.ListArray.from_arrays(offsets, flat)],
                                         names=["faiss_id", "embedding"])


def _filter_rows(batches: Iterator[pa.RecordBatch], wanted: np.ndarray) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        mask = np.isin(batch.column(0).to_numpy(), wanted, assume_unique=False)
        if mask.any():
            yield batch.filter(pa.array(mask))


def _partition_topk(batches: Iterator[pa.RecordBatch], queries: np.ndarray, k: int,
                    dim: int) -> Iterator[pa.RecordBatch]:
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    for batch in batches:
        ids = batch.column(0).to_numpy().astype(np.int64)
        flat = faiss.IndexFlatIP(dim)
        flat.add(_matrix(batch.column(1), dim))
        scores, local = flat.search(queries, min(k, len(ids)))
        heap.add_result(scores, np.where(local >= 0, ids[np.maximum(local, 0)], -1))
    heap.finalize()
    yield pa.RecordBatch.from_pydict({"k": [k], "ids": [heap.I.astype(np.int64).tobytes()],
                                      "scores": [heap.D.astype(np.float32).tobytes()]})


def _fill_shard(batches: Iterator[pa.RecordBatch], trained: Any, shards_uri: str,
                refine: bool) -> Iterator[pa.RecordBatch]:
    """Add this partition's rows to a copy of the broadcast trained index and write it as one shard."""
    from pyspark import TaskContext

    index: Any = deserialize(trained.value)
    base, on_gpu = devices.to_device(faiss.downcast_index(index.base_index) if refine else index)
    all_ids, all_codes, min_id = [], [], -1
    for batch in batches:
        ids = batch.column(0).to_numpy().astype(np.int64)
        if not len(ids):
            continue
        vectors = _matrix(batch.column(1), int(index.d))
        devices.add_chunks(base, vectors, ids)
        min_id = int(ids.min()) if min_id < 0 else min(min_id, int(ids.min()))
        if refine:  # the refine stage cannot take ids: keep its codes with their ids for the driver
            all_ids.append(ids)
            all_codes.append(index.refine_index.sa_encode(vectors))
    base = devices.from_device(base, on_gpu)
    ctx = TaskContext.get()
    name = f"shard-{ctx.partitionId() if ctx else 0:05d}-{ctx.attemptNumber() if ctx else 0}-{uuid.uuid4().hex[:8]}"
    uri = storage.join(shards_uri, f"{name}.faiss")  # unique per attempt: a retried task never clobbers
    storage.write_bytes_atomic(uri, faiss.serialize_index(base).tobytes())
    codes_uri = ""
    if all_ids:
        buf = io.BytesIO()
        np.savez(buf, ids=np.concatenate(all_ids), codes=np.concatenate(all_codes))
        codes_uri = storage.join(shards_uri, f"{name}.codes.npz")
        storage.write_bytes_atomic(codes_uri, buf.getvalue())
    yield pa.RecordBatch.from_pydict({"uri": [uri], "codes_uri": [codes_uri], "count": [int(base.ntotal)],
                                      "min_id": [min_id]})
