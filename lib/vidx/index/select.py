"""Choose the index layout from N, dim, a memory budget and a recall target, then build it.

Like autofaiss, but driven by recall rather than latency. The rules:

* Candidates (`index.candidates` picks the families), all IVF with the `choose_nlist` nlist
  (power of two near 8·√N) and L2 on the normalised vectors: ``IVF,PQ{m}x8`` and
  ``OPQ{m},IVF,PQ{m}x8`` for m = dim/8 and dim/4, and m = dim/16 when the dim/8 code does not fit
  `index.max_memory`; ``IVF,PQ{dim/4}x4fs,Refine(SQ6|SQ8)`` (4-bit fast-scan codes whose top k·10
  are re-ranked with 6- or 8-bit scalar codes); ``IVF,Flat``.
  (No PQ with 2-d sub-vectors: PQ{dim/2} trained 26x slower than PQ{dim/8} here, 53 s vs 2 s on
  40k x 64, and the refine candidates cover that recall range.)
* They are tried cheapest first by estimated memory at N: bytes per vector (codes + 8 B id) x N
  plus centroids, codebooks and OPQ rotation (IVF-PQ's optional precomputed tables are never
  kept: build.PQ_TABLES_OFF), so in bytes-per-vector order; same size: the quicker to train
  first. One estimated above `index.max_memory` is skipped. The first that reaches
  `index.target_recall` recall@10 with some nprobe (powers of two up to nlist) on the evaluation
  set wins; it is then filled with all N vectors and measured again. If the full index misses the
  target, the next candidate is tried; if none is left the build fails (IndexBuildError) saying
  which limit to raise. The sweep never gives up on a candidate that could still reach the target:
  IVF-Flat is exact at nprobe = nlist, so its sweep runs until it passes; a lossy code stops early
  only once recall has plateaued AND a full scan of the evaluation set (nprobe = nlist) misses
  the target too. A slow choice is not hidden: the nprobe it needed and the queries per second
  measured at that nprobe go into the manifest (a report only: no decision reads a timing).
* Cheap evaluation: every candidate shares one coarse k-means (OPQ candidates use its centroids
  rotated, which is the same clustering since OPQ's rotation is orthonormal), its codebooks train on
  ≤ 65,536 vectors, and it is filled only with the evaluation set: the held-out queries' exact
  nearest neighbours in all N vectors (≤ 100 each) plus random vectors, `index.select_sample` in
  all. Whether a neighbour sits in a probed list depends only on the query and that neighbour, so
  the IVF part of recall is the full index's; the codes compete with every close vector of a query.
* Recall@10 is measured on `index.eval_queries` rows drawn from the data and held out of training;
  a query's own row is not counted as a result (real queries are not in the index).

What fits at 400M x 512 with the default budget, and why: vidx.index.candidates.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import faiss
import numpy as np

from vidx.config import IndexConfig
from vidx.errors import IndexBuildError
from vidx.index import devices
from vidx.index.build import (
    PQ_TABLES_OFF,
    RECALL_K,
    BuiltIndex,
    deserialize,
    drop_self,
    exact_search,
    index_memory,
    measure_qps,
    recall_with_ties,
    sample_rows,
    search,
)
from vidx.index.candidates import Candidate, candidates
from vidx.index.params import IndexParams, choose_nlist, choose_train_size

LOG = logging.getLogger(__name__)

NEIGHBOURS_MAX = 100
# Sub-quantizer k-means uses at most 256 points per centroid (faiss caps it so), so more
# training vectors would only cost the time to assign them to their lists.
PQ_TRAIN_MAX = 256 * 256
# A lossy code's sweep may stop once two doublings gained less than this (the codes cap recall, not
# probing), after a full scan of the evaluation set confirmed that the target is out of reach.
RECALL_PLATEAU = 0.002
# faiss' default: OPQ alternates this many rotation updates with short PQ trainings (~8x a PQ's cost).
OPQ_NITER = 50


@dataclass
class EvalSet:
    """What candidates are measured on; `truth` holds the exact neighbours' ids (self excluded)."""

    train: np.ndarray  # coarse k-means sample
    query_ids: np.ndarray
    queries: np.ndarray
    truth: np.ndarray  # (nq, >= RECALL_K) ids, nearest first
    db_ids: np.ndarray  # sorted ids of the evaluation set (all ids when N is small)
    db: np.ndarray
    seconds: float = 0.0  # time taken to sample, search exactly and gather all of this


@dataclass
class Trial:
    factory: str
    kind: str
    bytes_per_vector: int
    estimated_bytes: int
    # chosen | below_target | over_budget | not_on_disk, or, when filled with all N vectors and then
    # dropped, below_target_at_full_scale | over_budget_at_full_scale
    status: str
    nprobe: int = 0
    recall_at_10: float | None = None  # on the evaluation set
    full_recall_at_10: float | None = None
    seconds: float = 0.0  # training, filling with the evaluation set and the nprobe sweep
    fill_seconds: float = 0.0  # adding all N vectors (and merging shards), when it got that far


@dataclass(frozen=True)
class Sweep:
    nprobe: int
    recall: float
    passed: bool


# (trained empty index, candidate) -> (index holding all N vectors, path of its .ivfdata or None)
AddAll = Callable[[faiss.Index, Candidate], tuple[faiss.Index, str | None]]


def build_selected(vectors: np.ndarray, cfg: IndexConfig) -> BuiltIndex:
    """Choose and build the index over in-memory `vectors` (validated float32, normalised)."""
    started = time.perf_counter()
    n, dim = vectors.shape
    data = local_eval_set(vectors, cfg)
    data.seconds = time.perf_counter() - started

    def add_all(index: faiss.Index, cand: Candidate) -> tuple[faiss.Index, str | None]:
        LOG.info("adding %d vectors to %s", n, cand.params.factory)
        return devices.add_vectors(index, vectors), None

    return select_and_build(data, n, dim, cfg, add_all, started=started)


def local_eval_set(vectors: np.ndarray, cfg: IndexConfig) -> EvalSet:
    """Training sample, held-out queries, their exact neighbours and the evaluation set, from memory."""
    n = len(vectors)
    train_size = choose_train_size(n, choose_nlist(n), cfg.train_per_list)
    query_ids, train_rows = sample_rows(n, min(cfg.eval_queries, n), train_size, cfg.seed)
    queries = np.ascontiguousarray(vectors[query_ids])
    keep = neighbours_kept(n, len(query_ids), cfg.select_sample)
    _, exact = exact_search(vectors, queries, keep + 1)
    truth = drop_self(exact, query_ids, keep)
    db_ids = eval_db_ids(n, truth, cfg.select_sample, cfg.seed)
    return EvalSet(train=vectors[train_rows], query_ids=query_ids, queries=queries, truth=truth, db_ids=db_ids,
                   db=vectors[db_ids] if len(db_ids) < n else vectors)


def neighbours_kept(n: int, n_queries: int, sample: int) -> int:
    """Exact neighbours kept per query: RECALL_K when every vector is evaluated, else up to 100."""
    if n <= sample:
        return min(RECALL_K, n - 1)
    return max(RECALL_K, min(NEIGHBOURS_MAX, sample // (2 * n_queries)))


def eval_db_ids(n: int, truth: np.ndarray, sample: int, seed: int) -> np.ndarray:
    """Sorted ids of the evaluation set: all when n <= sample, else the queries' neighbours + random ids."""
    if n <= sample:
        return np.arange(n, dtype=np.int64)
    neighbours = np.unique(truth[truth >= 0])
    rng = np.random.default_rng(seed + 1)  # not the query/training draw
    background = rng.choice(n, size=min(n, max(0, sample - len(neighbours))), replace=False)
    return np.union1d(neighbours, background).astype(np.int64)


def select_and_build(data: EvalSet, n: int, dim: int, cfg: IndexConfig, add_all: AddAll, *,
                     started: float, on_disk_capable: bool = False) -> BuiltIndex:
    """Try the candidates cheapest first (module doc); `add_all` fills the chosen one with all N vectors.

    `on_disk_capable`: the caller puts inverted lists on disk above `index.ondisk_above`, so
    candidates that cannot live on disk are skipped there.
    """
    trials: list[Trial] = []
    centroids: np.ndarray | None = None
    coarse_seconds = 0.0
    for cand in candidates(n, dim, cfg):
        trial = Trial(cand.params.factory, cand.params.kind, cand.per_vector, cand.estimate(n), "over_budget")
        trials.append(trial)
        if trial.estimated_bytes > cfg.max_memory:
            LOG.info("skip %s: needs ~%s, index.max_memory is %s", trial.factory, _size(trial.estimated_bytes),
                     _size(cfg.max_memory))
            continue
        if on_disk_capable and trial.estimated_bytes > cfg.ondisk_above and not cand.on_disk_ok:
            trial.status = "not_on_disk"
            continue
        if centroids is None:
            t0 = time.perf_counter()
            centroids = devices.train_coarse(data.train, cand.params.nlist, cfg.seed)
            coarse_seconds = time.perf_counter() - t0
            data.train = codebook_sample(data.train, cfg.seed)  # frees the coarse sample before any fill
        trained = _evaluate(cand, trial, data, centroids, cfg)
        if trained is None:
            continue
        built = _fill_and_measure(cand, trial, trained, data, n=n, add_all=add_all, cfg=cfg)
        if built is not None:
            built.build_seconds = time.perf_counter() - started
            built.selection = _selection_record(trials, data, cfg) | {
                "nprobe": built.nprobe, "max_nprobe": cand.params.nlist,
                "eval_set_seconds": round(data.seconds, 2), "coarse_kmeans_seconds": round(coarse_seconds, 2)}
            return built
    raise IndexBuildError(no_candidate_message(trials, cfg))


def _evaluate(cand: Candidate, trial: Trial, data: EvalSet, centroids: np.ndarray,
              cfg: IndexConfig) -> faiss.Index | None:
    """Train `cand`, fill it with the evaluation set and sweep nprobe; the trained empty index if it passes."""
    t0 = time.perf_counter()
    index = new_trained(cand.params, data.train, centroids, cfg.seed)
    trained = faiss.serialize_index(index)  # the empty trained index, filled with all N if chosen
    index = devices.add_vectors(index, data.db)
    sweep = sweep_nprobe(index, cand.params, data, cfg.target_recall, id_map=data.db_ids)
    trial.nprobe, trial.recall_at_10, trial.seconds = sweep.nprobe, sweep.recall, time.perf_counter() - t0
    trial.status = "passed" if sweep.passed else "below_target"
    LOG.info("candidate %s (~%s): recall@10 %.4f at nprobe %d on %d vectors (%.1f s) -> %s", trial.factory,
             _size(trial.estimated_bytes), sweep.recall, sweep.nprobe, len(data.db_ids), trial.seconds, trial.status)
    return deserialize(trained) if sweep.passed else None


def _fill_and_measure(cand: Candidate, trial: Trial, trained: faiss.Index, data: EvalSet, *, n: int,
                      add_all: AddAll, cfg: IndexConfig) -> BuiltIndex | None:
    t0 = time.perf_counter()
    index, ivfdata = add_all(trained, cand)
    trial.fill_seconds = time.perf_counter() - t0
    if int(index.ntotal) != n:
        raise IndexBuildError(f"{cand.params.factory} holds {index.ntotal} vectors after adding, expected {n}; "
                              "the vector source changed during the build or faiss ids are not 0..n-1")
    sweep = sweep_nprobe(index, cand.params, data, cfg.target_recall, confirm_plateau=False)
    trial.full_recall_at_10 = sweep.recall
    index_bytes, memory_bytes = index_memory(index, ivfdata)
    LOG.info("%s over all %d vectors: recall@10 %.4f at nprobe %d, %s (%s in RAM)", cand.params.factory, n,
             sweep.recall, sweep.nprobe, _size(index_bytes), _size(memory_bytes))
    if not sweep.passed or memory_bytes > cfg.max_memory:
        trial.status = "below_target_at_full_scale" if not sweep.passed else "over_budget_at_full_scale"
        return None
    trial.status, trial.nprobe = "chosen", sweep.nprobe
    faiss.extract_index_ivf(index).nprobe = sweep.nprobe  # stored in the index: search(nprobe=None) uses it
    qps = measure_qps(index, cand.params, data.queries, sweep.nprobe)
    LOG.info("%s needs nprobe %d of %d lists: %s queries/s (batch of %d, %s threads)", cand.params.factory,
             sweep.nprobe, cand.params.nlist, qps["queries_per_second"], qps["queries"], qps.get("threads"))
    return BuiltIndex(index=index, params=cand.params, nprobe=sweep.nprobe, recall_at_10=sweep.recall, n=n,
                      dim=int(index.d), build_seconds=0.0, eval_queries=len(data.query_ids),
                      index_bytes=index_bytes, memory_bytes=memory_bytes, ivfdata=ivfdata, qps=qps)


def codebook_sample(train: np.ndarray, seed: int) -> np.ndarray:
    """The rows of `train` that new_trained trains codebooks on (at most PQ_TRAIN_MAX, in order): a
    copy, so the much larger coarse sample can be freed. new_trained then draws all of them, in the
    same order, so the codebooks are identical to training on the full sample."""
    if len(train) <= PQ_TRAIN_MAX:
        return train
    rows = np.sort(np.random.default_rng(seed).choice(len(train), size=PQ_TRAIN_MAX, replace=False))
    return np.ascontiguousarray(train[rows], dtype=np.float32)


def new_trained(params: IndexParams, train: np.ndarray, centroids: np.ndarray, seed: int) -> faiss.Index:
    """`params.factory` trained: coarse centroids given, codebooks on <= PQ_TRAIN_MAX of `train`."""
    dim = train.shape[1]
    index: Any = faiss.index_factory(dim, params.factory, faiss.METRIC_L2)
    ivf: Any = faiss.downcast_index(faiss.extract_index_ivf(index))
    if hasattr(ivf, "pq"):
        ivf.pq.cp.seed = seed
    if hasattr(ivf, "do_polysemous_training"):
        ivf.do_polysemous_training = False  # never searched with; ~7x the rest of PQ training
    if params.kind in ("ivfpq", "opq"):
        ivf.use_precomputed_table = PQ_TABLES_OFF
    if params.k_factor:
        index.k_factor = float(params.k_factor)  # serialised with the index: search uses it by default
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(train), size=min(len(train), PQ_TRAIN_MAX), replace=False))
    sample = np.ascontiguousarray(train[rows], dtype=np.float32)
    if params.kind != "opq":
        ivf.quantizer.add(centroids)  # IVF.train sees a trained quantizer and skips k-means
        index.train(sample)
        return index
    rotation: Any = faiss.downcast_VectorTransform(index.chain.at(0))
    rotation.niter = OPQ_NITER
    rotation.train(sample)
    # The rotation is orthonormal, so rotated centroids are the k-means of the rotated vectors.
    ivf.quantizer.add(rotation.apply(np.ascontiguousarray(centroids)))
    ivf.train(rotation.apply(sample))
    index.is_trained = True
    return index


def probe_steps(nlist: int) -> list[int]:
    """The nprobe values a sweep tries: powers of two below `nlist`, then `nlist` (a full scan)."""
    nlist = max(1, nlist)
    return [1 << e for e in range(nlist.bit_length()) if 1 << e < nlist] + [nlist]


def sweep_nprobe(index: faiss.Index, params: IndexParams, data: EvalSet, target: float,
                 id_map: np.ndarray | None = None, *, confirm_plateau: bool = True) -> Sweep:
    """Smallest nprobe of probe_steps(nlist) with recall@10 >= target, else the best seen (passed False).

    IVF-Flat never stops early: at nprobe = nlist it is exact. A lossy code stops once two doublings
    gained less than RECALL_PLATEAU, but with `confirm_plateau` only after a full scan (nprobe =
    nlist) missed the target too; a full scan that reaches it lets the sweep go on. (Without
    `confirm_plateau`, for an index over all N vectors, where a full scan may cost hours, the
    plateau alone stops it and the next candidate is tried.)
    `id_map` maps the index's ids to data ids (the evaluation set is added with ids 0..len-1).
    """
    steps = probe_steps(params.nlist)
    seen: dict[int, float] = {}
    may_stop = params.kind != "ivfflat"
    for nprobe in steps:
        recall = seen[nprobe] if nprobe in seen else measure_recall(index, params, data, nprobe, id_map)
        seen[nprobe] = recall
        LOG.debug("%s nprobe %d: recall@10 %.4f", params.factory, nprobe, recall)
        if recall >= target:
            return Sweep(nprobe, recall, True)
        history = [seen[p] for p in steps if p in seen and p <= nprobe]
        if may_stop and len(history) >= 3 and recall - history[-3] < RECALL_PLATEAU:
            if not confirm_plateau:
                break
            if steps[-1] not in seen:
                seen[steps[-1]] = measure_recall(index, params, data, steps[-1], id_map)
            if seen[steps[-1]] < target:
                break
            may_stop = False  # within reach after all: keep doubling to the smallest nprobe that makes it
    best_nprobe, best = max(seen.items(), key=lambda s: (s[1], -s[0]))
    return Sweep(best_nprobe, best, False)


def measure_recall(index: faiss.Index, params: IndexParams, data: EvalSet, nprobe: int,
                   id_map: np.ndarray | None = None) -> float:
    """recall@10 of the held-out queries at `nprobe`, the query's own row not counted, ties with the
    10th exact neighbour counted as hits (build.recall_with_ties)."""
    _, ids = search(index, params, data.queries, RECALL_K + 1, nprobe)
    if id_map is not None:
        ids = np.where(ids >= 0, id_map[np.maximum(ids, 0)], -1)
    return recall_with_ties(drop_self(ids, data.query_ids, RECALL_K), data.truth[:, :RECALL_K], data.queries,
                            data.db, data.db_ids)


def no_candidate_message(trials: list[Trial], cfg: IndexConfig) -> str:
    """Why nothing was chosen, and which limit to move: index.max_memory or index.target_recall."""
    tried = [t for t in trials if t.recall_at_10 is not None]
    skipped = [t for t in trials if t.status in ("over_budget", "not_on_disk")]
    summary = "; ".join(f"{t.factory} ~{_size(t.estimated_bytes)} {t.status}"
                        + (f" (recall@10 {t.recall_at_10:.3f})" if t.recall_at_10 is not None else "")
                        for t in trials) or "none allowed by index.candidates"
    head = (f"no index reaches recall@10 {cfg.target_recall} within index.max_memory "
            f"{_size(cfg.max_memory)} ({summary}). ")
    if skipped:
        need = min(t.estimated_bytes for t in skipped)
        head += f"Raise index.max_memory to at least {need} bytes ({_size(need)}) to try larger indexes"
        if tried:
            head += f", or lower index.target_recall to {max(_recalls(tried)):.3f} or less"
        return head + "."
    best = max(_recalls(tried), default=0.0)
    return head + (f"Lower index.target_recall to {best:.3f} or less, or allow more families in "
                   "index.candidates (ivfflat is the most accurate).")


def _recalls(trials: list[Trial]) -> list[float]:
    # The full index's recall where it was measured: the evaluation set's is the estimate.
    return [t.full_recall_at_10 if t.full_recall_at_10 is not None else float(t.recall_at_10 or 0.0)
            for t in trials]


def _selection_record(trials: list[Trial], data: EvalSet, cfg: IndexConfig) -> dict[str, object]:
    return {"target_recall": cfg.target_recall, "max_memory": cfg.max_memory, "eval_vectors": len(data.db_ids),
            "neighbours_kept": int(data.truth.shape[1]), "train_vectors": len(data.train),
            "candidates": [asdict(t) | {"seconds": round(t.seconds, 2), "fill_seconds": round(t.fill_seconds, 2)}
                           for t in trials]}


def _size(nbytes: int) -> str:
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"
