"""Recall-driven index selection (vidx.index.select): candidates, budget, measured recall, manifest, GPU path."""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pytest

from vectorkit import brute_neighbours, clustered, overlap_with_ties
from vidx.config import IndexConfig
from vidx.errors import IndexBuildError
from vidx.index import BuiltIndex, build_index, devices, load_index, publish_index, sample_rows, search, select
from vidx.index.build import index_memory

pytestmark = pytest.mark.integration

N, DIM = 20_000, 32
# PQ and refine only (OPQ has its own test: its rotation is ~10x slower to train).
CFG = IndexConfig(flat_below=1_000, eval_queries=300, seed=7, candidates=("ivfpq", "ivfpq_refine", "ivfflat"))


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return clustered(N, DIM, seed=1)


@pytest.fixture(scope="module")
def built(data: np.ndarray) -> BuiltIndex:
    return build_index(data, CFG)


@pytest.fixture(scope="module")
def small() -> np.ndarray:
    """16-d: every PQ here trains in about a second."""
    return clustered(12_000, 16, seed=2)


def test_candidates_cheapest_first_within_families() -> None:
    for n, dim in [(20_000, 32), (1_000_000, 512), (400_000_000, 512)]:
        cands = select.candidates(n, dim, IndexConfig())
        estimates = [c.estimate(n) for c in cands]
        assert estimates == sorted(estimates)
        assert {c.params.nlist for c in cands} == {select.choose_nlist(n)}
        assert all(dim % c.params.m == 0 for c in cands if c.params.m)
        assert {c.params.kind for c in cands} == {"ivfpq", "opq", "ivfpq_refine", "ivfflat"}
    huge = select.candidates(400_000_000, 512, IndexConfig())
    assert [c.params.factory for c in huge[:4]] == ["IVF131072,PQ32x8", "OPQ32,IVF131072,PQ32x8",  # bytes/vector
                                                    "IVF131072,PQ64x8", "OPQ64,IVF131072,PQ64x8"]
    only = select.candidates(1_000_000, 512, IndexConfig(candidates=("ivfflat",)))
    assert [c.params.factory for c in only] == ["IVF8192,Flat"]


def test_memory_estimates_match_built_indexes(small: np.ndarray) -> None:
    n = len(small)
    centroids = devices.train_coarse(small[:4_000], 256, seed=0)
    for cand in select.candidates(n, 16, CFG):
        index = devices.add_vectors(select.new_trained(cand.params, small[:4_000], centroids, 0), small)
        _, memory = index_memory(index)
        assert memory == pytest.approx(cand.estimate(n), rel=0.1), cand.params.factory


def test_cheapest_passing_candidate_wins_and_recall_is_real(built: BuiltIndex, data: np.ndarray) -> None:
    trials = built.selection["candidates"] if built.selection else []
    assert [t["status"] for t in trials][-1] == "chosen"
    assert all(t["status"] == "below_target" for t in trials[:-1])  # everything cheaper missed the target
    assert trials[-1]["factory"] == built.params.factory and built.recall_at_10 >= CFG.target_recall
    # recall@10 recomputed independently: held-out queries, brute force, each query's own row not counted,
    # ties with the 10th neighbour counted
    query_rows, _ = sample_rows(N, CFG.eval_queries, built.params.train_size, CFG.seed)
    exact = brute_neighbours(data, query_rows)
    _, approx = search(built.index, built.params, data[query_rows], 11)
    assert overlap_with_ties(approx, exact, data, query_rows) == pytest.approx(built.recall_at_10, abs=1e-9)
    if built.nprobe > 1:  # the smallest power of two meeting the target
        _, fewer = search(built.index, built.params, data[query_rows], 11, built.nprobe // 2)
        assert overlap_with_ties(fewer, exact, data, query_rows) < CFG.target_recall
    assert built.index_bytes == faiss.serialize_index(built.index).nbytes


def test_manifest_records_choice_size_and_candidates(built: BuiltIndex, data: np.ndarray, tmp_path: Path) -> None:
    ids = pa.table({"faiss_id": pa.array(np.arange(N, dtype=np.int64))})
    publish_index(built, ids, warehouse=str(tmp_path), model_id="m", table_version=1, model={"name": "x"})
    loaded = load_index(str(tmp_path))
    m = loaded.manifest
    assert (m["factory"], m["nprobe"], m["recall_at_10"]) == (built.params.factory, built.nprobe, built.recall_at_10)
    assert m["index_bytes"] == m["files"]["index.faiss"]["bytes"] and m["bytes_per_vector"] > 0
    assert m["build_seconds"] > 0 and m["on_disk"] is False
    tried = m["selection"]["candidates"]
    assert {"factory", "recall_at_10", "estimated_bytes", "bytes_per_vector", "status", "nprobe"} <= set(tried[0])
    assert m["selection"]["target_recall"] == CFG.target_recall
    assert (m["selection"]["nprobe"], m["selection"]["max_nprobe"]) == (built.nprobe, built.params.nlist)
    # measured once at build, at the chosen nprobe: a report (never asserted against a speed)
    assert m["qps"]["nprobe"] == built.nprobe and m["qps"]["queries"] == CFG.eval_queries
    assert m["qps"]["queries_per_second"] > 0
    got = search(loaded.index, loaded.params, data[:50], 10, 4)  # per-call nprobe through the refine wrapper
    want = search(built.index, built.params, data[:50], 10, 4)
    np.testing.assert_array_equal(got[1], want[1])
    assert int(faiss.extract_index_ivf(loaded.index).nprobe) == built.nprobe


def test_search_filters_and_probes_refine_indexes(built: BuiltIndex, data: np.ndarray) -> None:
    assert built.params.k_factor > 0 and isinstance(built.index, faiss.IndexRefine)
    selector = faiss.IDSelectorRange(0, 5_000)
    _, ids = search(built.index, built.params, data[10_000:10_020], 10, None, selector=selector)
    assert ((ids >= 0) & (ids < 5_000)).all()
    again = faiss.deserialize_index(faiss.serialize_index(built.index))
    assert faiss.downcast_index(again).k_factor == built.params.k_factor  # stored: default searches re-rank


def test_budget_and_target_failures_say_which_limit(small: np.ndarray) -> None:
    with pytest.raises(IndexBuildError, match=r"Raise index\.max_memory to at least \d+"):
        build_index(small, CFG.model_copy(update={"max_memory": 100_000}))
    pq = CFG.model_copy(update={"candidates": ("ivfpq",)})
    fits_pq2 = select.candidates(len(small), 16, pq)[0].estimate(len(small)) + 1
    with pytest.raises(IndexBuildError, match=r"max_memory.*or lower index\.target_recall to 0\.\d+"):
        build_index(small, pq.model_copy(update={"max_memory": fits_pq2}))  # PQ2 fits and misses; PQ4 does not fit
    with pytest.raises(IndexBuildError, match=r"Lower index\.target_recall"):
        build_index(small, pq.model_copy(update={"target_recall": 0.999}))
    with pytest.raises(IndexBuildError, match=r"index\.max_memory"):
        build_index(small[:500], CFG.model_copy(update={"flat_below": 10_000, "max_memory": 1_000}))


def test_evaluation_on_a_subsample_predicts_the_full_index() -> None:
    x = clustered(30_000, 16, seed=4)
    cfg = CFG.model_copy(update={"select_sample": 8_000, "eval_queries": 200, "candidates": ("ivfpq_refine",)})
    b = build_index(x, cfg)
    assert b.selection is not None
    sel = b.selection
    assert sel["eval_vectors"] < 10_000 and sel["neighbours_kept"] == 20  # 8000 // (2 * 200)
    chosen = sel["candidates"][-1]
    assert chosen["status"] == "chosen" and chosen["full_recall_at_10"] == b.recall_at_10 >= cfg.target_recall
    assert abs(chosen["recall_at_10"] - b.recall_at_10) < 0.03


def test_opq_uses_the_shared_coarse_clustering(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(select, "OPQ_NITER", 10)  # a rougher rotation, 5x quicker: the mechanism is under test
    x = clustered(10_000, 16, seed=5)
    cfg = IndexConfig(flat_below=1_000, eval_queries=200, seed=3, target_recall=0.6, candidates=("opq",))
    b = build_index(x, cfg)
    statuses = {t["factory"]: t["status"] for t in (b.selection or {})["candidates"]}
    assert isinstance(b.index, faiss.IndexPreTransform), statuses
    plain = faiss.downcast_index(faiss.extract_index_ivf(b.index))
    # rotated centroids: the OPQ index sends every vector to the same list as the unrotated clustering
    data = select.local_eval_set(x, cfg)
    centroids = devices.train_coarse(data.train, b.params.nlist, cfg.seed)
    _, direct = faiss.knn(x[:500], centroids, 1)
    rotated = faiss.downcast_VectorTransform(b.index.chain.at(0)).apply(x[:500])
    _, via_opq = plain.quantizer.search(rotated, 1)
    assert (direct == via_opq).mean() > 0.99  # float rounding may flip near-ties only


def test_gpu_path_runs_when_faiss_sees_a_gpu(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
                                             small: np.ndarray) -> None:
    cfg = CFG.model_copy(update={"candidates": ("ivfflat",)})  # no codebooks: the device paths are under test
    with caplog.at_level(logging.INFO, logger="vidx.index.devices"):
        cpu = build_index(small, cfg)
    assert "on CPU" in caplog.text and "GPU" not in caplog.text
    moved: list[str] = []
    # faiss-cpu has no GPU functions: stand-ins that keep the index on CPU but record the round trip.
    monkeypatch.setattr(devices, "gpu_count", lambda: 1)
    monkeypatch.setattr(faiss, "index_cpu_to_gpus_list", lambda index, gpus: moved.append("to") or index,
                        raising=False)
    monkeypatch.setattr(faiss, "index_gpu_to_cpu", lambda index: moved.append("back") or index, raising=False)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vidx.index.devices"):
        gpu = build_index(small, cfg)
    assert "coarse k-means (256 centroids, 12000 points) on GPU(s) [0]" in caplog.text
    assert "adding on GPU(s) [0]" in caplog.text
    assert "to" in moved and "back" in moved
    assert gpu.params == cpu.params and gpu.nprobe == cpu.nprobe and gpu.recall_at_10 == cpu.recall_at_10
