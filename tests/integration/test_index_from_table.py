"""build-index from a Delta clips table large enough for IVF-PQ: pinned version, recall, id map."""

from __future__ import annotations

import functools

import numpy as np
import pyarrow as pa

from modelids import clips_id
from vidx.config import load_config
from vidx.encode.embedder import l2_normalize
from vidx.index.build import exact_search, search
from vidx.index.from_table import build_from_warehouse
from vidx.index.publish import load_index
from vidx.quality.validate import validate_warehouse
from vidx.tables import clips_layout, delta, table_uri, write_clip_files, write_data_file
from vidx_schemas import CLIPS_PARTITION_BY, CLIPS_SCHEMA, VIDEOS_PARTITION_BY, VIDEOS_SCHEMA

DIM, N_VIDEOS, CLIPS_PER_VIDEO = 64, 120, 100  # 12,000 clips


def _clustered(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(64, DIM))
    return l2_normalize(centres[rng.integers(0, 64, n)] + 0.35 * rng.normal(size=(n, DIM)))


def _write_clips(warehouse: str, vectors: np.ndarray, txn: int, model_id: str, shuffle: bool = False) -> None:
    n = len(vectors)
    vid = [f"v{i // CLIPS_PER_VIDEO:04d}" for i in range(n)]
    idx = np.arange(n) % CLIPS_PER_VIDEO
    table = pa.table({
        "video_id": vid, "clip_idx": pa.array(idx, pa.int32()), "start_s": idx * 4.0, "end_s": idx * 4.0 + 4.0,
        "n_frames": pa.array(np.full(n, 4), pa.int32()), "frame_ts": [[float(s)] for s in idx * 4.0],
        "model_id": [model_id] * n, "embedding": pa.array(list(vectors), pa.list_(pa.float32())),
        "run_id": ["r"] * n, "segment_embeddings": pa.nulls(n, CLIPS_SCHEMA.field("segment_embeddings").type),
        "thumbnail": pa.nulls(n, pa.binary()),
        "video_bucket": pa.nulls(n, pa.int32())},
        schema=CLIPS_SCHEMA)
    if shuffle:  # files and rows out of (video_id, clip_idx) order: the reader must sort
        table = table.take(np.random.default_rng(0).permutation(n))
    uri = table_uri(warehouse, "clips")
    files = [f for lo in range(0, n, 4000)
             for f in write_clip_files(table.slice(lo, 4000), clips_uri=uri, layout=clips_layout(uri),
                                       model_id=model_id, name_hint=f"t{lo}")]
    delta.commit_files(files, table_uri=uri, schema=CLIPS_SCHEMA, partition_by=CLIPS_PARTITION_BY,
                       app_id="test", txn_version=txn)


def _videos_only(real, uri, **kwargs):
    return _forbidden() if "/tables/clips" in uri else real(uri, **kwargs)


def _forbidden(*args, **kwargs):
    raise AssertionError("the distributed build read the clips table whole or numbered rows with zipWithIndex")


def _generated_rows(ids: pa.Table) -> np.ndarray:
    """Per faiss id, the row of the generated matrix it holds (video v{i} clip c is row i * 100 + c)."""
    videos = np.array([int(v[1:]) for v in ids["video_id"].to_pylist()])
    return videos * CLIPS_PER_VIDEO + ids["clip_idx"].to_numpy()


def _write_videos(warehouse: str, model_id: str) -> None:
    now = pa.scalar(0, pa.timestamp("us", tz="UTC")).as_py()
    rows = [{"video_id": f"v{i:04d}", "uri": f"/archive/v{i:04d}.mp4", "size_bytes": 1, "mtime": now,
             "status": "ok", "model_id": model_id, "run_id": "r", "indexed_at": now} for i in range(N_VIDEOS)]
    uri = table_uri(warehouse, "videos")
    f = write_data_file(pa.Table.from_pylist(rows, schema=VIDEOS_SCHEMA), table_uri=uri, partition_values={},
                        name_hint="v")
    delta.commit_files([f], table_uri=uri, schema=VIDEOS_SCHEMA, partition_by=VIDEOS_PARTITION_BY,
                       app_id="test", txn_version=1)


def test_ivfpq_build_from_pinned_version(tmp_path):
    warehouse = str(tmp_path / "w")
    model_id = clips_id(dim=64)
    vectors = _clustered(N_VIDEOS * CLIPS_PER_VIDEO, seed=3)
    _write_videos(warehouse, model_id)
    _write_clips(warehouse, vectors, 1, model_id)
    pinned = delta.latest_version(table_uri(warehouse, "clips"))
    _write_clips(warehouse, _clustered(500, seed=4), 2, clips_id("other-model", "x", 64))  # later commit, other model
    # Only the quick-to-train families: this data's isotropic spread defeats every 8-bit PQ code at
    # the default 0.95 target anyway (tests/integration/test_index_select.py covers PQ and OPQ).
    cfg = load_config(env={}, overrides={"warehouse": warehouse, "index.flat_below": 5000,
                                         "index.candidates": ["ivfpq_refine", "ivfflat"]})
    (check,) = validate_warehouse(cfg, version=pinned, model_id=model_id)
    assert check.success, check.failed_expectations
    result = build_from_warehouse(cfg, model_id=model_id, version=pinned)
    manifest = result.published.manifest
    assert manifest["table_version"] == pinned and manifest["count"] == len(vectors)
    assert manifest["params"]["kind"] != "flat" and manifest["factory"] == manifest["params"]["factory"]
    nlist = manifest["params"]["nlist"]
    assert nlist <= len(vectors) // 39 and DIM % max(1, manifest["params"]["m"]) == 0
    assert manifest["recall_at_10"] >= cfg.index.target_recall  # selection: the target is met or the build fails
    assert manifest["selection"]["candidates"][-1]["status"] == "chosen"
    loaded = load_index(warehouse, model_id)
    _, exact = exact_search(vectors, vectors[:2000], 10)
    _, approx = search(loaded.index, loaded.params, vectors[:2000], 10, manifest["nprobe"])
    approx = _generated_rows(loaded.ids)[approx]  # faiss ids follow the table's files, not our order
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    print(f"IVF-PQ {manifest['params']['factory']} nprobe {manifest['nprobe']}: recall@10 {recall:.3f}, "
          f"manifest {manifest['recall_at_10']:.3f}")
    assert recall >= manifest["recall_at_10"] - 0.02  # different query sample, same index
    row = loaded.ids.to_pylist()[int(np.flatnonzero(_generated_rows(loaded.ids) == 123)[0])]
    assert (row["video_id"], row["clip_idx"], row["uri"]) == ("v0001", 23, "/archive/v0001.mp4")
    again = build_from_warehouse(cfg, model_id=model_id, version=pinned)
    assert again.up_to_date and again.published is None


def test_distributed_build_from_the_table_keeps_the_id_map_aligned(spark, tmp_path, monkeypatch):
    """Above index.distributed_above, build-index adds on Spark from the pinned Delta files: faiss id i
    must still be row i of the id map, and the results must equal the driver-only build's. The
    distributed path numbers rows from the Delta log (no zipWithIndex, no sort) and streams the id
    map: the driver never reads the clips table whole."""
    from pyspark.rdd import RDD

    model_id = clips_id(dim=64)
    vectors = _clustered(N_VIDEOS * CLIPS_PER_VIDEO, seed=5)
    results = {}
    for mode, threshold in (("driver", 10**9), ("spark", 1)):
        warehouse = str(tmp_path / mode)
        _write_videos(warehouse, model_id)
        _write_clips(warehouse, vectors, 1, model_id, shuffle=True)
        cfg = load_config(env={}, overrides={
            "warehouse": warehouse, "index.flat_below": 5000, "index.candidates": ["ivfflat"],
            "index.distributed_above": threshold, "index.require_validation": False})
        with monkeypatch.context() as m:
            if mode == "spark":
                m.setattr(RDD, "zipWithIndex", _forbidden)
                m.setattr(delta, "read_table", functools.partial(_videos_only, delta.read_table))
                m.setattr(delta, "read_rows", functools.partial(_videos_only, delta.read_rows))
            build_from_warehouse(cfg, model_id=model_id, spark=spark)
        loaded = load_index(warehouse, model_id)
        queries = vectors[::97]
        _, got = search(loaded.index, loaded.params, queries, 5, loaded.manifest["nprobe"])
        ids = loaded.ids.to_pylist()
        # the query vector's own clip comes back first, under its own (video_id, clip_idx)
        own = [(ids[row[0]]["video_id"], ids[row[0]]["clip_idx"]) for row in got]
        expected = [(f"v{i // CLIPS_PER_VIDEO:04d}", i % CLIPS_PER_VIDEO) for i in range(0, len(vectors), 97)]
        assert own == expected
        results[mode] = got
    np.testing.assert_array_equal(results["driver"], results["spark"])
