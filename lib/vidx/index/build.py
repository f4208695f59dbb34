"""Build a FAISS index over L2-normalised embeddings, measure its recall, and search it.

Faiss ids are row positions 0..n-1 of the input matrix; the caller keeps the row -> clip mapping
(`ids.parquet` in the published index).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np

from vidx.config import IndexConfig
from vidx.errors import ConfigError, IndexBuildError, IndexIntegrityError, ModelMismatchError
from vidx.index.params import IndexParams, choose_params

LOG = logging.getLogger(__name__)

RECALL_K = 10
# Vectors are added (and exact search runs) in chunks so that peak extra memory stays bounded
# whatever n is (64k x 512 float32 = 128 MiB).
ADD_CHUNK = 65_536
# PQ caps recall well below 1.0, and past that cap more probes only cost time. The sweep stops
# once two doublings of nprobe gained less than this, and picks the smallest nprobe within
# this of the best recall seen (a full scan at nprobe = nlist would buy nothing).
RECALL_PLATEAU = 0.002
# IVF-PQ keeps an nlist x m x 256-float residual table (up to 2 GiB) to speed up probing: at 1M x 512
# with PQ64 that is 512 MiB next to 72 MiB of codes, for no measurable gain at 512-d (PQ128, 200k,
# nprobe 8-32, one thread) and 14% more queries/s at 64-d. vidx never builds or loads it
# (IO_FLAG_SKIP_PRECOMPUTE_TABLE), so an IVF-PQ index costs what its codes do.
PQ_TABLES_OFF = -1
# Exact cosines this close to the k-th nearest neighbour's are a tie with it (float rounding of
# equal vectors' scores), not a worse answer: see recall_with_ties.
TIE_TOLERANCE = 1e-5


@dataclass
class BuiltIndex:
    index: faiss.Index
    params: IndexParams
    nprobe: int
    recall_at_10: float
    n: int
    dim: int
    build_seconds: float
    eval_queries: int
    index_bytes: int = 0  # serialised index (plus its .ivfdata file when on disk); 0 = not measured
    memory_bytes: int = 0  # index_bytes plus tables faiss holds in RAM beyond the file (see index_memory)
    ivfdata: str | None = None  # local path of the on-disk inverted lists, None when they are in RAM
    selection: dict[str, Any] | None = None  # candidates tried (vidx.index.select), None when not selected
    scratch: str | None = None  # temporary folder holding `ivfdata` until published (distributed builds)
    qps: dict[str, Any] | None = None  # measure_qps at the chosen nprobe: a report, never a decision input


def build_index(vectors: np.ndarray, cfg: IndexConfig, params: IndexParams | None = None) -> BuiltIndex:
    """Build, measure and return an index over `vectors` (float32, (n, dim), normalised).

    Without `params`: flat below `cfg.flat_below` (see choose_params), otherwise the layout is
    chosen by vidx.index.select from n, dim, `cfg.max_memory` and `cfg.target_recall`, which
    raises IndexBuildError when no candidate reaches the target within the budget.
    With `params`: exactly that layout (no search); its nprobe is the smallest power of two
    reaching `cfg.target_recall` (see `_choose_nprobe` otherwise).
    Recall@10 is measured against exact inner-product search on `cfg.eval_queries` rows sampled
    with `cfg.seed` and excluded from the training sample when n allows. The nprobe is stored in
    the index itself, so `search(..., nprobe=None)` uses it. `build_seconds` covers everything.
    """
    vectors = _validate_vectors(vectors)
    n, dim = vectors.shape
    if params is None:
        params = choose_params(n, dim, cfg)
        if params.kind != "flat":
            # Imported here: select builds on this module's search and measurement helpers.
            from vidx.index.select import build_selected

            return build_selected(vectors, cfg)
        if 4 * n * dim > cfg.max_memory:
            raise IndexBuildError(f"a flat index over {n} x {dim} vectors needs {4 * n * dim} bytes, over "
                                  f"index.max_memory ({cfg.max_memory}); raise index.max_memory")
    started = time.perf_counter()
    train_size = min(params.train_size, n) if params.is_ivf else 0
    query_rows, train_rows = sample_rows(n, min(cfg.eval_queries, n), train_size, cfg.seed)
    try:
        index = _new_index(params, dim, cfg.seed)
        if params.is_ivf:
            LOG.info("training %s on %d of %d vectors", params.factory, train_size, n)
            index.train(np.ascontiguousarray(vectors[train_rows]))
        for start in range(0, n, ADD_CHUNK):
            index.add(np.ascontiguousarray(vectors[start:start + ADD_CHUNK]))
    except RuntimeError as exc:  # faiss reports bad parameters as RuntimeError
        raise IndexBuildError(f"faiss could not build {params.factory} over {n} x {dim} vectors: {exc}. "
                              "Check the index parameters (m must divide dim, nlist <= n).") from exc
    nprobe, recall = 0, 1.0
    if params.is_ivf:
        queries = np.ascontiguousarray(vectors[query_rows])
        _, exact_ids = exact_search(vectors, queries, RECALL_K + 1)
        truth = drop_self(exact_ids, query_rows, RECALL_K)
        nprobe, recall = _choose_nprobe(index, params, queries, query_rows=query_rows, exact_ids=truth,
                                        vectors=vectors, target=cfg.target_recall)
        faiss.extract_index_ivf(index).nprobe = nprobe
    seconds = time.perf_counter() - started
    LOG.info("built %s over %d x %d in %.1f s: recall@10 %.3f at nprobe %d",
             params.factory, n, dim, seconds, recall, nprobe)
    index_bytes, memory_bytes = index_memory(index)
    return BuiltIndex(index=index, params=params, nprobe=nprobe, recall_at_10=recall, n=n, dim=dim,
                      build_seconds=seconds, eval_queries=len(query_rows) if params.is_ivf else 0,
                      index_bytes=index_bytes, memory_bytes=memory_bytes,
                      qps=measure_qps(index, params, vectors[query_rows], nprobe or None))


def measure_qps(index: faiss.Index, params: IndexParams, queries: np.ndarray, nprobe: int | None) -> dict[str, Any]:
    """Queries per second of one batched top-10 search of `queries` at `nprobe`, timed once.

    Recorded in the manifest so that a slow choice (a large nprobe) is visible. It depends on the
    machine and its load, so it is a report only: nothing the build decides or tests assert reads it.
    """
    q = np.ascontiguousarray(queries, dtype=np.float32)
    if len(q) == 0:
        return {"queries_per_second": None, "nprobe": nprobe or 0, "queries": 0, "k": RECALL_K}
    search(index, params, q[:8], RECALL_K, nprobe)  # warm-up: the first call allocates
    t0 = time.perf_counter()
    search(index, params, q, RECALL_K, nprobe)
    seconds = time.perf_counter() - t0
    return {"queries_per_second": round(len(q) / max(seconds, 1e-9), 1), "nprobe": nprobe or 0,
            "queries": len(q), "k": RECALL_K, "threads": faiss.omp_get_max_threads()}


def deserialize(data: np.ndarray | bytes) -> faiss.Index:
    """faiss.deserialize_index without IVF-PQ's precomputed residual table (see PQ_TABLES_OFF)."""
    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8), faiss.IO_FLAG_SKIP_PRECOMPUTE_TABLE)


def index_memory(index: faiss.Index, ivfdata: str | None = None) -> tuple[int, int]:
    """(bytes of the serialised index plus its .ivfdata file, that plus any PQ precomputed table in RAM)."""
    written = [0]

    def count(chunk: bytes) -> int:
        written[0] += len(chunk)
        return len(chunk)

    # Counted, not kept: serialize_index would hold a second copy of a possibly huge index.
    faiss.write_index(index, faiss.PyCallbackIOWriter(count))  # type: ignore[attr-defined]
    size = written[0] + (os.path.getsize(ivfdata) if ivfdata else 0)
    table = 0
    if index.is_trained and not isinstance(index, faiss.IndexFlat):
        ivf = faiss.downcast_index(faiss.extract_index_ivf(index)) if _has_ivf(index) else None
        if ivf is not None and hasattr(ivf, "precomputed_table"):
            table = 4 * int(ivf.precomputed_table.size())
    return size, size + table


def _has_ivf(index: faiss.Index) -> bool:
    try:
        faiss.extract_index_ivf(index)
    except RuntimeError:  # not an IVF index (flat)
        return False
    return True


def sample_rows(n: int, n_queries: int, train_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted row numbers of the recall queries and of the training sample, deterministic in `seed`.

    The two are disjoint when n >= n_queries + train_size; otherwise training takes what it needs
    and may include query rows (training on every vector beats holding queries out).
    """
    rng = np.random.default_rng(seed)
    # rng.choice without replacement avoids materialising an O(n) permutation for huge n.
    drawn = rng.choice(n, size=min(n, n_queries + train_size), replace=False)
    train = drawn[n_queries:] if drawn.size - n_queries >= train_size else drawn[:train_size]
    # Sorted rows read memory (or a memory map) front to back.
    return np.sort(drawn[:n_queries]), np.sort(train)


def search(index: faiss.Index, params: IndexParams, queries: np.ndarray, k: int,
           nprobe: int | None = None, *, selector: faiss.IDSelector | None = None,
           ) -> tuple[np.ndarray, np.ndarray]:
    """Top-k cosine similarities and faiss ids, both shaped (nq, min(k, ntotal)), best first.

    Queries are L2-normalised here so scores are cosines whatever the caller passed. `nprobe`
    None uses the value stored in the index at build time. `selector` restricts the search to
    the ids it accepts (the caller keeps it, and any array it points into, alive). Where IVF
    probing found fewer than k (selected) vectors for a query, the missing slots hold id -1 and
    score -inf.
    """
    if k <= 0:
        raise ConfigError(f"k must be a positive number of results, got {k}")
    if nprobe is not None and nprobe <= 0:
        raise ConfigError(f"nprobe must be positive, got {nprobe}")
    q = _normalise(_as_queries(queries, int(index.d)))
    k_eff = min(k, int(index.ntotal))
    if k_eff == 0:
        return np.empty((q.shape[0], 0), np.float32), np.empty((q.shape[0], 0), np.int64)
    _check_metric(index, params)
    search_params: Any = None
    ivf_params: Any = None  # kept referenced here: a refine wrapper holds only a raw pointer to it
    if params.is_ivf and (nprobe is not None or selector is not None):
        # Per-call parameters leave the shared index untouched, so concurrent searches are safe.
        search_params = ivf_params = faiss.SearchParametersIVF()
        # SearchParametersIVF defaults to nprobe 1, not to the index's own value.
        ivf_params.nprobe = nprobe or faiss.extract_index_ivf(index).nprobe
        if params.k_factor:  # IndexRefine accepts only its own parameter type, wrapping the IVF's
            search_params = faiss.IndexRefineSearchParameters()
            refine: Any = faiss.downcast_index(index)
            search_params.k_factor = float(refine.k_factor)
            search_params.base_index_params = ivf_params
    elif selector is not None:
        search_params = ivf_params = faiss.SearchParameters()
    if selector is not None:
        ivf_params.sel = selector  # the refine stage only re-ranks what the base index selected
    distances, ids = index.search(q, k_eff, params=search_params)
    # On unit vectors ||q - x||^2 = 2 - 2 cos(q, x).
    scores = 1.0 - distances / 2.0 if params.metric == "l2" else distances
    scores = np.where(ids < 0, -np.inf, scores).astype(np.float32)
    return scores, ids.astype(np.int64)


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner-product search (IndexFlatIP), scanning `vectors` in chunks.

    Chunking keeps memory bounded (no full copy of a possibly memory-mapped matrix); per-chunk
    results are merged in a heap. Returns (scores, ids) shaped (nq, min(k, n)).
    """
    n, dim = vectors.shape
    q = _as_queries(queries, dim)
    k_eff = min(k, n)
    heap = faiss.ResultHeap(q.shape[0], k_eff, keep_max=True)
    for start in range(0, n, ADD_CHUNK):
        chunk = faiss.IndexFlatIP(dim)
        chunk.add(np.ascontiguousarray(vectors[start:start + ADD_CHUNK], dtype=np.float32))
        scores, ids = chunk.search(q, min(k_eff, chunk.ntotal))
        heap.add_result(scores, ids + start)
    heap.finalize()
    return heap.D, heap.I.astype(np.int64)


def recall_at_k(approx_ids: np.ndarray, exact_ids: np.ndarray) -> float:
    """Mean over queries of |approx top-k ∩ exact top-k| / k (k = exact_ids.shape[1])."""
    if exact_ids.size == 0:
        return 1.0
    hits = (approx_ids[:, :, None] == exact_ids[:, None, :]) & (approx_ids[:, :, None] >= 0)
    return float(hits.any(axis=2).sum(axis=1).mean() / exact_ids.shape[1])


def recall_with_ties(approx_ids: np.ndarray, exact_ids: np.ndarray, queries: np.ndarray, db: np.ndarray,
                     db_ids: np.ndarray | None = None) -> float:
    """recall@k (k = exact_ids.shape[1]) in which ties with the k-th exact neighbour count as hits.

    A result is a hit when it is one of the exact top k, or when its exact cosine with the query
    reaches the k-th exact neighbour's (within TIE_TOLERANCE). Archives hold many identical clips
    (static shots, black frames, repeated intros), so the k-th neighbour is often one of dozens of
    equal vectors; counting only the ids exact search happened to list would score even an exact
    search (IVF-Flat at nprobe = nlist) below 1. `db` holds the vectors of `db_ids` (sorted; None:
    row i is id i); a result outside `db_ids` counts only through the id match (a miss, since the
    exact neighbours are in `db`), so the estimate can only err low.
    """
    k = exact_ids.shape[1]
    if k == 0:
        return 1.0
    ids = approx_ids[:, :k]
    by_id = ((ids[:, :, None] == exact_ids[:, None, :]) & (ids[:, :, None] >= 0)).any(axis=2)
    kth = _exact_scores(queries, exact_ids[:, -1:], db, db_ids)[:, 0]
    scores = _exact_scores(queries, ids, db, db_ids)
    hits = by_id | (scores >= kth[:, None] - TIE_TOLERANCE)
    return float(hits.sum(axis=1).mean() / k)


def _exact_scores(queries: np.ndarray, ids: np.ndarray, db: np.ndarray, db_ids: np.ndarray | None) -> np.ndarray:
    """Exact cosines of each query with the vectors of its row of `ids`; -inf where unknown or -1."""
    if db_ids is None:
        pos, known = np.clip(ids, 0, len(db) - 1), (ids >= 0) & (ids < len(db))
    else:
        pos = np.clip(np.searchsorted(db_ids, ids), 0, len(db_ids) - 1)
        known = (ids >= 0) & (db_ids[pos] == ids)
    rows = np.asarray(db[pos.reshape(-1)], dtype=np.float32).reshape(*ids.shape, -1)
    scores = np.einsum("qd,qkd->qk", np.asarray(queries, dtype=np.float32), rows)
    return np.where(known, scores, -np.inf)


def drop_self(ids: np.ndarray, query_ids: np.ndarray, k: int) -> np.ndarray:
    """The first `k` ids of each row other than the query's own id.

    Recall queries are rows of the data, held out of training but not of the index; real queries
    are not in the index, so a query finding itself is not counted.
    """
    others = ids != query_ids[:, None]
    order = np.argsort(~others, axis=1, kind="stable")  # keeps rank order, self moved to the end
    return np.take_along_axis(ids, order, axis=1)[:, :k]


def _choose_nprobe(index: faiss.Index, params: IndexParams, queries: np.ndarray, *, query_rows: np.ndarray,
                   exact_ids: np.ndarray, vectors: np.ndarray, target: float) -> tuple[int, float]:
    """Smallest power-of-two nprobe whose recall@10 reaches `target`.

    If none does, the sweep stops at nlist or once recall has plateaued, and returns the smallest
    nprobe within RECALL_PLATEAU of the best recall seen, with a warning.
    """
    probes = [1 << e for e in range(params.nlist.bit_length()) if 1 << e < params.nlist] + [params.nlist]
    seen: list[tuple[int, float]] = []
    for nprobe in probes:
        _, ids = search(index, params, queries, RECALL_K + 1, nprobe)
        recall = recall_with_ties(drop_self(ids, query_rows, RECALL_K), exact_ids, queries, vectors)
        LOG.debug("nprobe %d: recall@10 %.4f", nprobe, recall)
        if recall >= target:
            return nprobe, recall
        seen.append((nprobe, recall))
        if len(seen) >= 3 and recall - seen[-3][1] < RECALL_PLATEAU:
            break
    best = max(r for _, r in seen)
    nprobe, recall = next((p, r) for p, r in seen if r >= best - RECALL_PLATEAU)
    LOG.warning("%s cannot reach recall@10 %.3f (best %.3f); using nprobe %d with recall %.3f. "
                "Lower index.target_recall or use a finer code (smaller dim/m) for higher recall.",
                params.factory, target, best, nprobe, recall)
    return nprobe, recall


def _new_index(params: IndexParams, dim: int, seed: int) -> faiss.Index:
    metric = faiss.METRIC_L2 if params.metric == "l2" else faiss.METRIC_INNER_PRODUCT
    index = faiss.index_factory(dim, params.factory, metric)
    if params.is_ivf:
        ivf: Any = faiss.downcast_index(faiss.extract_index_ivf(index))
        ivf.cp.seed = seed
        if hasattr(ivf, "pq"):
            ivf.pq.cp.seed = seed
        if hasattr(ivf, "do_polysemous_training"):
            # The factory turns on polysemous training, which we never search with and which took
            # ~7x the rest of training (8 s vs 1 s for IVF1024,PQ8 on 40k x 64).
            ivf.do_polysemous_training = False
        if hasattr(ivf, "use_precomputed_table"):
            ivf.use_precomputed_table = PQ_TABLES_OFF
    if params.k_factor:
        refine: Any = index
        refine.k_factor = float(params.k_factor)
    return index


def _validate_vectors(vectors: np.ndarray) -> np.ndarray:
    if not isinstance(vectors, np.ndarray):
        raise IndexBuildError(f"vectors must be a numpy array, got {type(vectors).__name__}")
    if vectors.ndim != 2:
        raise IndexBuildError(f"vectors must be a 2-D (n, dim) array, got shape {vectors.shape}")
    if vectors.dtype != np.float32:
        raise IndexBuildError(f"vectors must be float32, got {vectors.dtype}; convert with "
                              ".astype(np.float32) (embeddings are stored as float32)")
    if vectors.shape[0] == 0 or vectors.shape[1] == 0:
        raise IndexBuildError(f"cannot build an index over an empty {vectors.shape} matrix; "
                              "embed some videos first or check the table version")
    for start in range(0, vectors.shape[0], ADD_CHUNK):  # chunked: no n x dim boolean temporary
        if not np.isfinite(vectors[start:start + ADD_CHUNK]).all():
            raise IndexBuildError("vectors contain NaN or infinite values (rows near "
                                  f"{start}..{start + ADD_CHUNK}); re-run the embed stage for them")
    return vectors


def _as_queries(queries: np.ndarray, dim: int) -> np.ndarray:
    q = np.asarray(queries, dtype=np.float32)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2 or q.shape[1] != dim:
        raise ModelMismatchError(f"queries have shape {np.shape(queries)} but the index holds {dim}-d "
                                 "vectors; encode queries with the model the index was built with")
    if not np.isfinite(q).all():
        raise ModelMismatchError("query embeddings contain NaN or infinite values; check the query encoder")
    return np.ascontiguousarray(q)


def _normalise(q: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(q, axis=1, keepdims=True)
    return np.ascontiguousarray(q / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def _check_metric(index: faiss.Index, params: IndexParams) -> None:
    expected = faiss.METRIC_L2 if params.metric == "l2" else faiss.METRIC_INNER_PRODUCT
    if int(index.metric_type) != expected:
        raise IndexIntegrityError(f"index metric {index.metric_type} does not match params.metric "
                                  f"{params.metric!r}; the manifest and index file disagree")
