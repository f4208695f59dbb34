"""Spark local[2] embed over the generated archive: tables, readers, index, self-retrieval."""

from __future__ import annotations

import json
import math

import duckdb
import numpy as np
import polars as pl
import pyarrow.compute as pc
import pytest

from tablekit import ok_videos_without_clips
from vidx.decode.sampling import sample_times
from vidx.index.build import exact_search, search
from vidx.index.from_table import embeddings_matrix, load_clips
from vidx.index.params import choose_params
from vidx.index.publish import load_index
from vidx.tables import delta, table_uri
from vidx_schemas import CLIPS_SCHEMA, VIDEOS_SCHEMA


def _truth(sample_archive):
    return json.loads((sample_archive / "truth.json").read_text())


def _videos(cfg):
    return delta.read_table(table_uri(cfg.warehouse, "videos")).to_pylist()


def _clips(cfg):
    return delta.read_table(table_uri(cfg.warehouse, "clips"))


def test_every_good_video_ok_and_corrupt_failed(embedded, sample_archive, test_config):
    report, _ = embedded
    truth = _truth(sample_archive)
    rows = {r["uri"]: r for r in _videos(test_config)}
    assert len(rows) == len(truth["videos"]) + 1
    for video in truth["videos"]:
        row = rows[str(sample_archive / video["path"])]
        assert row["status"] == "ok", row
        assert row["width"] == video["width"] and row["height"] == video["height"]
        assert row["duration_s"] == pytest.approx(video["duration_s"], abs=0.15)
        assert row["n_clips"] == math.ceil(video["duration_s"] / 4 - 1e-9)
    broken = rows[str(sample_archive / "broken.mp4")]
    assert broken["status"] == "failed" and broken["error"] and broken["error_class"] == "corrupt"
    assert report.ok == len(truth["videos"]) and report.failed == 1 and report.checkpoints == 1


def test_no_ok_video_without_clips(embedded, test_config):
    report, _ = embedded
    ok = [v for v in _videos(test_config) if v["status"] == "ok" and v["model_id"] == report.model_id]
    assert len(ok) == report.ok > 0
    assert ok_videos_without_clips(test_config.warehouse, report.model_id) == []


def test_one_commit_per_table_for_the_run(embedded, test_config):
    for name in ("clips", "videos"):
        history = delta.history(table_uri(test_config.warehouse, name))
        writes = [h for h in history if h.get("operation") not in ("CREATE TABLE",)]
        assert len(history) == 1, history  # created by the run's single transaction
        assert writes or history


def test_clip_rows_match_durations_and_sampled_timestamps(embedded, sample_archive, test_config):
    clips = _clips(test_config).to_pylist()
    videos = {r["video_id"]: r for r in _videos(test_config)}
    by_video: dict[str, list[dict]] = {}
    for c in clips:
        by_video.setdefault(c["video_id"], []).append(c)
    truth = {str(sample_archive / v["path"]): v for v in _truth(sample_archive)["videos"]}
    for video_id, rows in by_video.items():
        video = truth[videos[video_id]["uri"]]
        rows.sort(key=lambda r: r["clip_idx"])
        assert [r["clip_idx"] for r in rows] == list(range(len(rows)))
        expected_times = sample_times(0, video["duration_s"], 1.0)
        got_times = np.concatenate([r["frame_ts"] for r in rows])
        assert len(got_times) == len(expected_times)
        # each sampled frame is the one displayed at its grid time: within one frame period before it
        assert np.all(got_times <= expected_times + 1e-3)
        assert np.all(got_times > expected_times - 1.0 / video["fps"] - 1e-3)
        for r in rows:
            assert r["start_s"] == 4 * r["clip_idx"]
            assert r["end_s"] == pytest.approx(min(4 * (r["clip_idx"] + 1), video["duration_s"]), abs=0.15)
            assert r["n_frames"] == len(sample_times(r["start_s"], r["end_s"], 1.0)) == len(r["frame_ts"])
            assert len(r["embedding"]) == 128
            assert np.linalg.norm(r["embedding"]) == pytest.approx(1.0, abs=1e-4)


def test_tables_read_back_with_deltalake_polars_duckdb(embedded, test_config):
    clips_uri = table_uri(test_config.warehouse, "clips")
    arrow = delta.read_table(clips_uri)
    assert arrow.schema.remove_metadata().equals(CLIPS_SCHEMA.remove_metadata(), check_metadata=False) or \
        set(arrow.schema.names) == set(CLIPS_SCHEMA.names)
    videos = delta.read_table(table_uri(test_config.warehouse, "videos"))
    assert set(videos.schema.names) == set(VIDEOS_SCHEMA.names)
    frame = pl.read_delta(clips_uri)
    assert frame.height == arrow.num_rows
    assert frame.schema["embedding"] == pl.List(pl.Float32)
    ds = delta.to_dataset(clips_uri)
    con = duckdb.connect()
    con.register("clips", ds)
    n, n_videos = con.execute("select count(*), count(distinct video_id) from clips").fetchone()
    assert n == arrow.num_rows and n_videos == 8
    one = arrow["video_id"][0].as_py()
    (m,) = con.execute("select count(*) from clips where video_id = ? and clip_idx >= 1", [one]).fetchone()
    assert m == pc.sum(pc.and_(pc.equal(arrow["video_id"], one), pc.greater_equal(arrow["clip_idx"], 1))).as_py()


def test_index_recall_vs_exact_meets_manifest(embedded, test_config):
    _, build = embedded
    loaded = load_index(test_config.warehouse)
    manifest = loaded.manifest
    assert manifest["table_version"] == build.table_version
    assert manifest["count"] == _clips(test_config).num_rows == loaded.index.ntotal
    # 25-ish clips: below the PQ minimum, so the documented rule picks the exact index
    assert manifest["params"]["kind"] == choose_params(manifest["count"], manifest["dim"], test_config.index).kind
    # the id map follows the pinned table's data files (in path order, rows in file order): faiss id
    # i is row i of them, and every clip is there once
    ids_map, vectors = load_clips(test_config.warehouse, manifest["model_id"], manifest["table_version"])
    assert embeddings_matrix(_clips(test_config)["embedding"], manifest["dim"]).shape == vectors.shape
    _, exact = exact_search(vectors, vectors, 10)
    _, approx = search(loaded.index, loaded.params, vectors, 10, manifest["nprobe"] or None)
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact, strict=True)])
    assert recall >= manifest["recall_at_10"] - 1e-9 or recall >= test_config.index.target_recall
    ids = loaded.ids
    assert ids.select(["faiss_id", "video_id", "clip_idx", "uri"]).equals(
        ids_map.select(["faiss_id", "video_id", "clip_idx", "uri"]))
    clips = _clips(test_config)
    assert sorted(zip(ids["video_id"].to_pylist(), ids["clip_idx"].to_pylist(), strict=True)) == sorted(
        zip(clips["video_id"].to_pylist(), clips["clip_idx"].to_pylist(), strict=True))


def test_second_run_on_a_held_warehouse_stops_clearly(embedded, spark, sample_archive, test_config):
    from vidx.spark.embed import run_embed
    from vidx.tables.lock import WarehouseLock, WarehouseLockedError

    versions = {n: delta.latest_version(table_uri(test_config.warehouse, n)) for n in ("clips", "videos")}
    holder = WarehouseLock(test_config.warehouse, "someone-else")
    holder.acquire()
    try:
        with pytest.raises(WarehouseLockedError, match="another run holds the warehouse"):
            run_embed(test_config, str(sample_archive), spark=spark)
    finally:
        holder.release()
    assert versions == {n: delta.latest_version(table_uri(test_config.warehouse, n)) for n in ("clips", "videos")}
