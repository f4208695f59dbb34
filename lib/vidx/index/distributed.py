"""Build an index over vectors that live in Spark: the driver trains once, partitions add, the driver merges.

The source is a DataFrame of (`faiss_id` long, `embedding` array<float>) with ids 0..n-1, e.g. a
pinned clips table whose data files the executors read themselves, numbered from the Delta log
(vidx.index.from_table.clips_frame), or `vectors_frame` over an in-memory matrix. Passes over the data:

1. one aggregate: n, id range, distinct ids (skipped when the caller knows n: a table read by
   vidx.index.from_table numbers its rows from the Delta log);
2. fetch the training sample and the held-out queries to the driver (at most 256 x nlist and
   `index.eval_queries` rows): each partition writes its rows to the scratch folder and the driver
   reads them into one preallocated matrix, so nothing large goes through the JVM driver;
3. exact top-k of the queries, computed per partition and merged on the driver;
4. fetch the evaluation set (the queries' neighbours plus random rows, `index.select_sample`);
5. per chosen candidate: the trained, empty index is broadcast (faiss.serialize_index bytes);
   each partition adds its rows with their faiss ids and writes one shard through vidx.storage to
   the scratch folder (a hidden `.tmp-build-*` folder under the model's index registry path);
   the driver merges the shards in order of their smallest id, with `merge_from` in RAM (one shard
   read at a time; refine codes copied straight into the index's preallocated code array), or
   with `merge_ondisk` into an `index.ivfdata` file when the candidate's estimated size exceeds
   `index.ondisk_above`. The driver's peak memory is the index plus one shard, plus the
   training sample (freed before the fill; see vidx.index.select).

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
                            dim: int | None = None, n: int | None = None) -> BuiltIndex:
    """Choose, train (driver), fill (Spark partitions) and merge (driver) an index over `source`.

    `scratch` is the folder URI for shards (see scratch_uri); shards are deleted before returning.
    With on-disk lists the returned BuiltIndex's `ivfdata` lies in `built.scratch`, a local folder
    to remove with remove_scratch once published. Below the flat threshold everything is collected
    and built in memory as build_index would.
    """
    started = time.perf_counter()
    frame = source.select("faiss_id", "embedding")
    n = n or _check_ids(frame)
    if not dim:
        first = frame.first()
        dim = len(first["embedding"]) if first is not None else 0
    if choose_params(n, dim, cfg).kind == "flat":
        return build_index(fetch_rows(frame, np.arange(n, dtype=np.int64), dim, scratch=scratch), cfg)
    t0 = time.perf_counter()
    data = spark_eval_set(frame, n, dim, cfg, scratch=scratch)
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


def spark_eval_set(frame: DataFrame, n: int, dim: int, cfg: IndexConfig, *, scratch: str) -> select.EvalSet:
    """The same training sample, queries, neighbours and evaluation set as select.local_eval_set."""
    train_size = choose_train_size(n, choose_nlist(n), cfg.train_per_list)
    query_ids, train_rows = sample_rows(n, min(cfg.eval_queries, n), train_size, cfg.seed)
    wanted = np.union1d(query_ids, train_rows)
    fetched = fetch_rows(frame, wanted, dim, scratch=scratch)
    queries = np.ascontiguousarray(fetched[np.searchsorted(wanted, query_ids)])
    train = _compact(fetched, np.searchsorted(wanted, train_rows))
    keep = select.neighbours_kept(n, len(query_ids), cfg.select_sample)
    truth = drop_self(exact_topk(frame, queries, keep + 1, dim), query_ids, keep)
    db_ids = select.eval_db_ids(n, truth, cfg.select_sample, cfg.seed)
    return select.EvalSet(train=train, query_ids=query_ids, queries=queries, truth=truth, db_ids=db_ids,
                          db=fetch_rows(frame, db_ids, dim, scratch=scratch))


def _compact(rows: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """rows[keep] for ascending `keep`, moved to the front of `rows` in place (the training sample
    is most of the fetched rows: a fancy-indexed copy would double the driver's largest array)."""
    for lo in range(0, len(keep), 65_536):
        part = keep[lo:lo + 65_536]  # sources at or after their destinations: a forward copy is safe
        rows[lo:lo + len(part)] = rows[part]
    return rows[:len(keep)]


def fetch_rows(frame: DataFrame, ids: np.ndarray, dim: int, *, scratch: str) -> np.ndarray:
    """Vectors of the sorted `ids`, in that order: one filtered pass (the ids travel in the task
    closure) where each partition writes its rows under `scratch`; the driver reads them back one
    file at a time into a preallocated matrix (nothing large is collected through the JVM)."""
    folder = storage.join(scratch, f"rows-{uuid.uuid4().hex[:8]}")
    task = functools.partial(_write_rows, wanted=ids, folder=folder)
    parts = frame.mapInArrow(task, "uri string, count long").collect()
    out = np.empty((len(ids), dim), dtype=np.float32)
    seen = np.zeros(len(ids), dtype=bool)
    try:
        for row in parts:
            if not row["count"]:
                continue
            with pa.ipc.open_file(pa.BufferReader(storage.read_bytes(row["uri"]))) as reader:
                table = reader.read_all()
            got = table["faiss_id"].to_numpy()
            pos = np.searchsorted(ids, got)
            known = pos < len(ids)
            if not known.all() or not np.array_equal(ids[pos], got) or seen[pos].any():
                raise IndexBuildError("fetched rows with unknown or repeated faiss ids; ids must be unique 0..n-1")
            out[pos] = _matrix(table["embedding"], dim)
            seen[pos] = True
    finally:
        _remove_tree(folder)
    if not seen.all():
        raise IndexBuildError(f"fetched {int(seen.sum())} of {len(ids)} sampled rows; faiss ids must be unique 0..n-1")
    return out


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
    """`merge_from` every shard into `trained`, one shard in memory at a time (refine codes go by id
    straight into the refine index's code array, sized once: no second copy of them)."""
    index: Any = trained
    base: Any = faiss.downcast_index(index.base_index) if hasattr(index, "base_index") else index
    codes: np.ndarray | None = None
    placed = 0
    for shard in shards:
        part = deserialize(storage.read_bytes(shard.uri))
        merge_ivf(base, part)
        del part
        if shard.codes_uri:
            with np.load(io.BytesIO(storage.read_bytes(shard.codes_uri))) as z:
                ids, shard_codes = z["ids"], z["codes"]
                if codes is None:
                    codes = _refine_codes(index, n, shard_codes.shape[1])
                codes[ids] = shard_codes
                placed += len(ids)
    if codes is not None:
        # The refine index numbers vectors 0..n-1 in add order, so codes sit in faiss id order.
        if placed != n:
            raise IndexBuildError(f"shards carried refine codes of {placed} vectors, expected {n}")
        index.refine_index.ntotal = n
        index.ntotal = n
    return index


def merge_ivf(base: Any, part: Any) -> None:
    """`base.merge_from(part, 0)` (ids were added explicitly, so no shift), around a faiss bug.

    faiss 1.15's BlockInvertedLists::add_entries (the lists of fast-scan indexes) compares a list's
    entry count with the block size in bytes: appending to a list that already holds a positive
    multiple of `block_size` entries copies every block of the list again, past its end (heap
    corruption: random crashes once shards are many). Those lists - block-aligned, so nothing needs
    repacking - are appended here as whole blocks, then emptied in `part` before the merge.
    """
    faiss_any: Any = faiss  # BlockInvertedLists is missing from faiss' type stubs
    dst: Any = faiss_any.downcast_InvertedLists(faiss.extract_index_ivf(base).invlists)
    src: Any = faiss_any.downcast_InvertedLists(faiss.extract_index_ivf(part).invlists)
    if isinstance(dst, faiss_any.BlockInvertedLists):
        block = int(dst.block_size)
        for lst in range(int(dst.nlist)):
            have, extra = int(dst.list_size(lst)), int(src.list_size(lst))
            if have and extra and have % block == 0:
                _append_blocks(dst, src, lst, have, extra)
                src.resize(lst, 0)
    base.merge_from(part, 0)


def _append_blocks(dst: Any, src: Any, lst: int, have: int, extra: int) -> None:
    per, block = int(dst.n_per_block), int(dst.block_size)
    dst.resize(lst, have + extra)
    nbytes = -(-extra // per) * block
    offset = have // per * block
    faiss.rev_swig_ptr(dst.get_codes(lst), offset + nbytes)[offset:] = faiss.rev_swig_ptr(src.get_codes(lst), nbytes)
    faiss.rev_swig_ptr(dst.get_ids(lst), have + extra)[have:] = faiss.rev_swig_ptr(src.get_ids(lst), extra)


def _refine_codes(index: Any, n: int, code_size: int) -> np.ndarray:
    """A writable (n, code_size) view of the refine index's own code array, resized to n vectors."""
    refine: Any = faiss.downcast_index(index.refine_index)
    if int(refine.code_size) != code_size or refine.ntotal:
        raise IndexBuildError(f"refine codes of {code_size} B do not fit {type(refine).__name__} "
                              f"({refine.code_size} B per vector, {refine.ntotal} already added)")
    refine.codes.resize(n * code_size)
    return faiss.rev_swig_ptr(refine.codes.data(), n * code_size).reshape(n, code_size)


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


def _write_rows(batches: Iterator[pa.RecordBatch], wanted: np.ndarray, folder: str) -> Iterator[pa.RecordBatch]:
    """Write this partition's rows whose faiss id is in `wanted` to one Arrow file under `folder`."""
    from pyspark import TaskContext

    kept = []
    for batch in batches:
        mask = np.isin(batch.column(0).to_numpy(), wanted, assume_unique=False)
        if mask.any():
            kept.append(batch.filter(pa.array(mask)))
    count = sum(b.num_rows for b in kept)
    uri = ""
    if count:
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, kept[0].schema) as writer:
            for b in kept:
                writer.write_batch(b)
        ctx = TaskContext.get()
        uri = storage.join(folder, f"part-{ctx.partitionId() if ctx else 0:05d}-{uuid.uuid4().hex[:8]}.arrow")
        storage.write_bytes_atomic(uri, sink.getvalue().to_pybytes())
    yield pa.RecordBatch.from_pydict({"uri": [uri], "count": [count]})


def read_vectors(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """(uri, first_id) rows -> (faiss_id, embedding) batches of those Parquet files, in file order."""
    import pyarrow.parquet as pq

    for batch in batches:
        for uri, first_id in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
            fs, path = storage.filesystem(uri)
            with fs.open_input_file(path) as src:
                next_id = int(first_id)
                for part in pq.ParquetFile(src).iter_batches(batch_size=8192, columns=["embedding"]):
                    ids = pa.array(np.arange(next_id, next_id + part.num_rows, dtype=np.int64))
                    next_id += part.num_rows
                    yield pa.RecordBatch.from_arrays([ids, part.column(0)], names=["faiss_id", "embedding"])


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
