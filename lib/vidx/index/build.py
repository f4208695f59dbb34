"""Build a FAISS index over L2-normalised embeddings, measure its recall, and search it.

Faiss ids are row positions 0..n-1 of the input matrix; the caller keeps the row -> clip mapping
(`ids.parquet` in the published index).
"""

from __future__ import annotations

import logging
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


def build_index(vectors: np.ndarray, cfg: IndexConfig, params: IndexParams | None = None) -> BuiltIndex:
    """Train (on a seeded sample), fill and evaluate an index over `vectors` (float32, (n, dim), normalised).

    Recall@10 is measured against exact inner-product search on `cfg.eval_queries` rows sampled
    with `cfg.seed` and excluded from the training sample when n allows. For IVF the chosen nprobe
    is the smallest power of two reaching `cfg.target_recall` (see `_choose_nprobe` otherwise)
    and is stored in the index itself, so `search(..., nprobe=None)` uses it.
    `build_seconds` covers training, adding and the recall measurement.
    """
    vectors = _validate_vectors(vectors)
    n, dim = vectors.shape
    params = params or choose_params(n, dim, cfg)
    started = time.perf_counter()
    train_size = min(params.train_size, n) if params.kind == "ivfpq" else 0
    query_rows, train_rows = sample_rows(n, min(cfg.eval_queries, n), train_size, cfg.seed)
    try:
        index = _new_index(params, dim, cfg.seed)
        if params.kind == "ivfpq":
            LOG.info("training %s on %d of %d vectors", params.factory, train_size, n)
            index.train(np.ascontiguousarray(vectors[train_rows]))
        for start in range(0, n, ADD_CHUNK):
            index.add(np.ascontiguousarray(vectors[start:start + ADD_CHUNK]))
    except RuntimeError as exc:  # faiss reports bad parameters as RuntimeError
        raise IndexBuildError(f"faiss could not build {params.factory} over {n} x {dim} vectors: {exc}. "
                              "Check the index parameters (m must divide dim, nlist <= n).") from exc
    nprobe, recall = 0, 1.0
    if params.kind == "ivfpq":
        queries = np.ascontiguousarray(vectors[query_rows])
        _, exact_ids = exact_search(vectors, queries, RECALL_K)
        nprobe, recall = _choose_nprobe(index, params, queries, exact_ids, cfg.target_recall)
        faiss.extract_index_ivf(index).nprobe = nprobe
    seconds = time.perf_counter() - started
    LOG.info("built %s over %d x %d in %.1f s: recall@10 %.3f at nprobe %d",
             params.factory, n, dim, seconds, recall, nprobe)
    return BuiltIndex(index=index, params=params, nprobe=nprobe, recall_at_10=recall, n=n, dim=dim,
                      build_seconds=seconds, eval_queries=len(query_rows) if params.kind == "ivfpq" else 0)


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
    if params.kind == "ivfpq" and (nprobe is not None or selector is not None):
        # Per-call parameters leave the shared index untouched, so concurrent searches are safe.
        search_params = faiss.SearchParametersIVF()
        # SearchParametersIVF defaults to nprobe 1, not to the index's own value.
        search_params.nprobe = nprobe or faiss.extract_index_ivf(index).nprobe
    elif selector is not None:
        search_params = faiss.SearchParameters()
    if selector is not None:
        search_params.sel = selector
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


def _choose_nprobe(index: faiss.Index, params: IndexParams, queries: np.ndarray,
                   exact_ids: np.ndarray, target: float) -> tuple[int, float]:
    """Smallest power-of-two nprobe whose recall@10 reaches `target`.

    If none does, the sweep stops at nlist or once recall has plateaued, and returns the smallest
    nprobe within RECALL_PLATEAU of the best recall seen, with a warning.
    """
    probes = [1 << e for e in range(params.nlist.bit_length()) if 1 << e < params.nlist] + [params.nlist]
    seen: list[tuple[int, float]] = []
    for nprobe in probes:
        _, ids = search(index, params, queries, RECALL_K, nprobe)
        recall = recall_at_k(ids, exact_ids)
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
    if params.kind == "ivfpq":
        ivf: Any = faiss.downcast_index(faiss.extract_index_ivf(index))  # IndexIVFPQ
        ivf.cp.seed = seed
        ivf.pq.cp.seed = seed
        # The factory turns on polysemous training, which we never search with and which took
        # ~7x the rest of training (8 s vs 1 s for IVF1024,PQ8 on 40k x 64).
        ivf.do_polysemous_training = False
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
