"""Build, measure, search, publish and load FAISS indexes on generated clustered embeddings."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pytest

from vectorkit import clustered, overlap_with_ties
from vidx.config import IndexConfig
from vidx.errors import IndexBuildError, IndexIntegrityError, IndexNotFoundError, ModelMismatchError
from vidx.index import (
    BuiltIndex,
    PublishedIndex,
    build_index,
    current_version,
    exact_search,
    list_models,
    list_versions,
    load_index,
    publish_index,
    sample_rows,
    search,
)
from vidx.index import publish as publish_mod
from vidx.index.params import choose_params

pytestmark = pytest.mark.integration

N, DIM = 40_000, 64
# Plain PQ with 8 dims per byte tops out near 0.78 recall@10 on this data (0.72-0.79 across noise
# levels), so the default 0.95 target is unreachable here; 0.7 exercises the nprobe sweep. This
# module builds the fixed `choose_params` layout (params given: no selection; see test_index_select).
CFG = IndexConfig(target_recall=0.7, eval_queries=500, seed=7)
MODEL = {"name": "vidx-tiny", "pretrained": "random", "dim": DIM}


def brute_top10(x: np.ndarray, q: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    sims = q @ x.T
    if exclude is not None:  # the query's own row does not count as a neighbour
        sims[np.arange(len(q)), exclude] = -np.inf
    top = np.argpartition(-sims, 10, axis=1)[:, :10]
    order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def ids_table(n: int) -> pa.Table:
    rows = np.arange(n, dtype=np.int64)
    return pa.table({"faiss_id": rows, "video_id": pa.array([f"v{i // 50}" for i in range(n)]),
                     "clip_idx": rows % 50, "start_s": (rows % 50) * 4.0, "end_s": (rows % 50) * 4.0 + 4.0,
                     "uri": pa.array([f"file:///a/v{i // 50}.mp4" for i in range(n)])})


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return clustered(N, DIM, seed=1)


@pytest.fixture(scope="module")
def built(data: np.ndarray) -> BuiltIndex:
    return build_index(data, CFG, choose_params(N, DIM, CFG))


@pytest.fixture(scope="module")
def small() -> np.ndarray:
    return clustered(2_000, DIM, seed=2)


def publish(built: BuiltIndex, warehouse: str, model_id: str = "vidx-tiny-64",
            table_version: int = 3) -> PublishedIndex:
    return publish_index(built, ids_table(built.n), warehouse=warehouse, model_id=model_id,
                         table_version=table_version, model=MODEL, extra={"clips_table": "clips"})


def test_ivfpq_recall_matches_independent_recomputation(built: BuiltIndex, data: np.ndarray) -> None:
    assert built.params.kind == "ivfpq" and built.params.factory == "IVF1024,PQ16x8"
    assert (built.n, built.dim, built.eval_queries) == (N, DIM, 500)
    query_rows, _ = sample_rows(N, CFG.eval_queries, built.params.train_size, CFG.seed)
    q = data[query_rows]
    exact = brute_top10(data, q, exclude=query_rows)
    ivf = faiss.extract_index_ivf(built.index)
    assert ivf.nprobe == built.nprobe  # stored in the index, so it survives serialisation
    _, approx = built.index.search(q, 11)
    # ties with the 10th exact neighbour count (vidx.index.build.recall_with_ties)
    assert overlap_with_ties(approx, exact, data, query_rows) == pytest.approx(built.recall_at_10, abs=1e-9)
    assert built.recall_at_10 >= CFG.target_recall
    assert built.nprobe & (built.nprobe - 1) == 0
    if built.nprobe > 1:  # the smallest power of two that reaches the target
        params = faiss.SearchParametersIVF()
        params.nprobe = built.nprobe // 2
        _, fewer = built.index.search(q, 11, params=params)
        assert overlap_with_ties(fewer, exact, data, query_rows) < CFG.target_recall
    assert built.index_bytes == faiss.serialize_index(built.index).nbytes
    assert built.memory_bytes == built.index_bytes  # no PQ precomputed table (build.PQ_TABLES_OFF)


def test_unreachable_target_stops_at_plateau(caplog: pytest.LogCaptureFixture) -> None:
    cfg = IndexConfig(flat_below=1_000, target_recall=0.999, eval_queries=200)
    x = clustered(12_000, 32, seed=3)
    params = choose_params(len(x), 32, cfg)  # given params: warn, never fail
    with caplog.at_level(logging.WARNING, logger="vidx.index.build"):
        b = build_index(x, cfg, params)
    assert b.params.nlist == 256 and b.recall_at_10 < 0.999
    assert 1 <= b.nprobe < b.params.nlist  # recall plateaus long before a full scan
    assert "cannot reach recall@10" in caplog.text
    again = build_index(x, cfg, params)  # same seed: same sample, same centroids, same codes
    assert (again.nprobe, again.recall_at_10) == (b.nprobe, b.recall_at_10)
    np.testing.assert_array_equal(faiss.serialize_index(again.index), faiss.serialize_index(b.index))


def test_search_returns_cosine_scores(built: BuiltIndex, data: np.ndarray) -> None:
    q = data[:20] * 3.0  # un-normalised on purpose: search normalises
    scores, ids = search(built.index, built.params, q, k=10, nprobe=None)
    assert scores.shape == ids.shape == (20, 10) and ids.dtype == np.int64
    true_cos = np.einsum("qd,qkd->qk", data[:20], data[ids])
    assert np.abs(scores - true_cos).max() < 0.1  # PQ distance error only
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_ivf_missing_results_are_minus_one(built: BuiltIndex, data: np.ndarray) -> None:
    scores, ids = search(built.index, built.params, data[:5], k=2_000, nprobe=1)
    assert (ids == -1).any()
    assert np.isneginf(scores[ids == -1]).all() and np.isfinite(scores[ids >= 0]).all()


def test_flat_index_is_exact(small: np.ndarray) -> None:
    b = build_index(small, CFG)
    assert (b.params.kind, b.nprobe, b.recall_at_10) == ("flat", 0, 1.0)
    q = small[::97]
    scores, ids = search(b.index, b.params, q, k=10, nprobe=None)
    exact_scores, exact_ids = exact_search(small, q, 10)
    np.testing.assert_array_equal(ids, exact_ids)
    np.testing.assert_array_equal(ids, brute_top10(small, q))
    np.testing.assert_allclose(scores, exact_scores, atol=1e-5)
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)  # each query finds itself


def test_fewer_vectors_than_k(small: np.ndarray) -> None:
    b = build_index(small[:5], CFG)
    scores, ids = search(b.index, b.params, small[:2], k=10, nprobe=None)
    assert ids.shape == scores.shape == (2, 5) and sorted(ids[0]) == [0, 1, 2, 3, 4]
    assert np.isfinite(scores).all()
    with pytest.raises(ModelMismatchError):
        search(b.index, b.params, np.zeros((1, DIM + 1), np.float32), k=3, nprobe=None)


@pytest.mark.parametrize("bad", [np.zeros((0, 8), np.float32), np.ones((4, 8), np.float64),
                                 np.ones(8, np.float32), np.full((4, 8), np.nan, np.float32)])
def test_build_rejects_bad_input(bad: np.ndarray) -> None:
    with pytest.raises(IndexBuildError):
        build_index(bad, CFG)


def test_publish_load_roundtrip(built: BuiltIndex, data: np.ndarray, tmp_path: Path) -> None:
    pub = publish(built, str(tmp_path))
    assert current_version(str(tmp_path), "vidx-tiny-64") == pub.version
    assert re.fullmatch(r"\d{8}T\d{6}Z-t3-[0-9a-f]{8}", pub.version)
    loaded = load_index(str(tmp_path))  # the only model, CURRENT version
    m = loaded.manifest
    assert (m["count"], m["dim"], m["nprobe"], m["table_version"]) == (N, DIM, built.nprobe, 3)
    assert m["model"] == MODEL and m["clips_table"] == "clips" and m["params"]["nlist"] == 1024
    assert set(m["files"]) == {"index.faiss", "ids.parquet"}
    assert (m["factory"], m["on_disk"]) == ("IVF1024,PQ16x8", False)
    assert m["index_bytes"] == m["files"]["index.faiss"]["bytes"]
    assert m["bytes_per_vector"] == pytest.approx(m["index_bytes"] / N, abs=0.01) and "selection" not in m
    assert loaded.params == built.params and loaded.ids.equals(ids_table(N))
    for nprobe in (None, 4):
        want = search(built.index, built.params, data[:50], 10, nprobe)
        got = search(loaded.index, loaded.params, data[:50], 10, nprobe)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])
    assert not [p for p in (tmp_path / "indexes" / "vidx-tiny-64").iterdir() if p.name.startswith(".")]


def test_current_moves_to_newest(built: BuiltIndex, small: np.ndarray, tmp_path: Path) -> None:
    w = f"file://{tmp_path}"
    first = publish(built, w)
    flat = build_index(small, CFG)
    second = publish(flat, w, table_version=4)
    assert current_version(w, "vidx-tiny-64") == second.version
    assert sorted(list_versions(w, "vidx-tiny-64")) == sorted([first.version, second.version])
    assert load_index(w).manifest["count"] == 2_000
    assert load_index(w, "vidx-tiny-64", first.version).index.ntotal == N


def test_tampered_index_fails_integrity(small: np.ndarray, tmp_path: Path) -> None:
    pub = publish(build_index(small, CFG), str(tmp_path))
    path = Path(pub.uri) / "index.faiss"
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))
    with pytest.raises(IndexIntegrityError, match=r"index\.faiss"):
        load_index(str(tmp_path))


def test_incomplete_versions_are_ignored(small: np.ndarray, tmp_path: Path) -> None:
    pub = publish(build_index(small, CFG), str(tmp_path))
    root = tmp_path / "indexes" / "vidx-tiny-64"
    partial = root / "29990101T000000Z-t9-deadbeef"  # sorts after the real one, has no manifest
    partial.mkdir()
    (partial / "index.faiss").write_bytes(b"partial")
    leftover = root / ".tmp-29990101T000000Z-t9-cafecafe"  # crashed local publish
    leftover.mkdir()
    (leftover / "manifest.json").write_text(json.dumps({"format_version": 1}))
    assert list_versions(str(tmp_path), "vidx-tiny-64") == [pub.version]
    assert list_models(str(tmp_path)) == ["vidx-tiny-64"]
    with pytest.raises(IndexNotFoundError, match="incomplete"):
        load_index(str(tmp_path), version=partial.name)
    assert load_index(str(tmp_path)).version == pub.version


def test_object_store_layout(small: np.ndarray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Exercise the write-in-place, manifest-last path that object stores take.
    monkeypatch.setattr(publish_mod, "_renames_folders", lambda root: False)
    flat = build_index(small, CFG)
    pub = publish(flat, str(tmp_path))
    loaded = load_index(str(tmp_path), "vidx-tiny-64")
    assert loaded.version == pub.version and loaded.index.ntotal == 2_000


def test_registry_errors(small: np.ndarray, tmp_path: Path) -> None:
    w = str(tmp_path)
    with pytest.raises(IndexNotFoundError, match=f"vidx build-index --warehouse {w}"):
        load_index(w)
    flat = build_index(small, CFG)
    with pytest.raises(IndexBuildError, match="rows"):
        publish_index(flat, ids_table(10), warehouse=w, model_id="m", table_version=1, model=MODEL)
    shuffled = ids_table(flat.n).take(pa.array(np.arange(flat.n)[::-1]))
    with pytest.raises(IndexBuildError, match="faiss_id"):
        publish_index(flat, shuffled, warehouse=w, model_id="m", table_version=1, model=MODEL)
    publish(flat, w, model_id="a")
    publish(flat, w, model_id="b")
    assert list_models(w) == ["a", "b"]
    with pytest.raises(IndexNotFoundError, match="a, b"):
        load_index(w)
    assert load_index(w, "b").manifest["model_id"] == "b"
