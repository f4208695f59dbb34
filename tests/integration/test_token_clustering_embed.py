"""CenterCLIP token clustering through the real embed path: EmbedTask in-process and `vidx embed` on Spark.

- With one frame per segment and every token kept, the clustered path must reproduce the exact
  per-frame path (same clip vectors), so the wiring (whole clips per batch, segment order, pooling)
  is checked against a reference, not just for shapes.
- With real settings, clips carry one vector per segment, their own model_id partition beside the
  exact clips, pass the quality gate, get an index, and text search through it finds its scenes.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pytest

from vidx.config import load_config
from vidx.encode.models import ModelSpec, model_id_for
from vidx.encode.registry import Recipe, clips_model_id, recorded_recipe
from vidx.errors import ConfigError
from vidx.index.from_table import build_from_warehouse
from vidx.quality.retrieval_eval import evaluate
from vidx.quality.validate import validate_warehouse
from vidx.serve.query import Searcher
from vidx.spark.embed import run_embed
from vidx.spark.stages import UNITS_IN, EmbedTask
from vidx.synth.world import ArchiveSpec, make_captioned_archive
from vidx.tables import delta, table_uri
from vidx_schemas import CLIPS_SCHEMA

ENCODER_ID = model_id_for(ModelSpec("vidx-tiny", "synthetic-v1"))
SPEC = ArchiveSpec(n_videos=3, scenes_per_video=(2, 3), sizes=((96, 72), (80, 80)), fps=(8.0,), unseen_share=0.0)


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    root = tmp_path_factory.mktemp("tc-archive")
    truth = make_captioned_archive(root, seed=77, spec=SPEC)
    return root, truth


def _files_of(out_dir):
    import pyarrow.parquet as pq

    return pa.concat_tables([pq.read_table(p) for p in sorted(out_dir.rglob("*.parquet"))])


def _planned_id(cfg) -> str:
    return clips_model_id(ENCODER_ID, Recipe.from_config(cfg, frame_size=64, precision=cfg.encode.precision))


def _run_task(cfg, archive_root, out_dir, model_id):
    from vidx.archive import list_archive
    from vidx.decode.probe import probe

    rows = [{"bin": 0, "unit_id": f.video_id + ":0", "video_id": f.video_id, "uri": f.uri, "start_s": 0.0,
             "end_s": float("inf"), "duration_s": probe(f.uri).duration_s}
            for f in list_archive(str(archive_root), cfg.archive.extensions)]
    task = EmbedTask(cfg=cfg, run_id="t", model_id=model_id, clips_uri=str(out_dir))
    results = [r for b in task(iter([pa.RecordBatch.from_pylist(rows, schema=UNITS_IN)])) for r in b.to_pylist()]
    assert all(r["error"] is None for r in results if r["kind"] == "unit"), results
    return {(r["video_id"], r["clip_idx"]): r for r in _files_of(out_dir).to_pylist()}


def test_all_tokens_one_frame_per_segment_reproduces_the_exact_path(archive, tmp_path):
    root, _ = archive
    exact_cfg = load_config(env={}, overrides={"encode.precision": "fp32", "encode.batch_size": 16})
    # 4 s clips at 1 fps: at most 4 frames; 4 segments = one frame each; 64 patches of 8 px -> keep all.
    keep_all = {"enabled": True, "layer": 2, "segments": 4, "centers": 64}
    tc_cfg = exact_cfg.with_overrides({"encode.token_clustering": keep_all})
    exact = _run_task(exact_cfg, root, tmp_path / "exact", _planned_id(exact_cfg))
    clustered = _run_task(tc_cfg, root, tmp_path / "tc", _planned_id(tc_cfg))
    assert exact.keys() == clustered.keys() and len(exact) >= 6
    for key, row in exact.items():
        other = clustered[key]
        assert row["segment_embeddings"] is None
        segs = np.asarray(other["segment_embeddings"], np.float32)
        assert segs.shape == (row["n_frames"], 128)  # one segment per frame
        np.testing.assert_allclose(other["embedding"], row["embedding"], atol=2e-5)
        assert (other["start_s"], other["end_s"], other["frame_ts"]) == (row["start_s"], row["end_s"],
                                                                           row["frame_ts"])


def test_clustering_refuses_adaptive_clips():
    with pytest.raises(ConfigError, match=r"clips\.mode=fixed"):
        load_config(env={}, overrides={"encode.token_clustering.enabled": True, "clips.mode": "adaptive"})


def test_embed_on_spark_with_clustering_beside_exact_clips(spark, archive, tmp_path):
    root, truth = archive
    base = load_config(env={}, overrides={"warehouse": str(tmp_path / "w"), "spark.master": "local[2]",
                                          "spark.conf": {"spark.ui.enabled": "false"}})
    tc = base.with_overrides({"encode.token_clustering": {"enabled": True, "layer": 2, "segments": 2,
                                                          "centers": 16}})
    exact_report = run_embed(base, str(root), spark=spark)
    tc_report = run_embed(tc, str(root), spark=spark)
    tc_id, exact_id = tc_report.model_id, exact_report.model_id
    exact_recipe = recorded_recipe(base.warehouse, exact_id)
    assert exact_recipe is not None and exact_recipe.token_clustering is None
    # the same recipe (precision decided once for the warehouse) plus the clustering settings
    assert tc_id == clips_model_id(ENCODER_ID, replace(exact_recipe, token_clustering=tc.encode.token_clustering))
    assert tc_report.ok == SPEC.n_videos and tc_report.clips == exact_report.clips  # not skipped as unchanged

    uri = table_uri(base.warehouse, "clips")
    assert delta.read_table(uri).schema.field("segment_embeddings").type == CLIPS_SCHEMA.field(
        "segment_embeddings").type
    exact, clustered = ({(r["video_id"], r["clip_idx"]): r
                         for r in delta.read_rows(uri, equals={"model_id": m}).to_pylist()} for m in (exact_id, tc_id))
    assert exact.keys() == clustered.keys()
    cosines = []
    for key, row in clustered.items():
        segs = np.asarray(row["segment_embeddings"], np.float64)
        assert segs.shape == (min(2, row["n_frames"]), 128)
        np.testing.assert_allclose(np.linalg.norm(segs, axis=1), 1.0, atol=1e-5)
        mean = segs.mean(0)
        np.testing.assert_allclose(row["embedding"], mean / np.linalg.norm(mean), atol=1e-5)
        assert exact[key]["segment_embeddings"] is None
        cosines.append(float(np.dot(row["embedding"], exact[key]["embedding"])))
    assert np.mean(cosines) > 0.9, cosines  # trained vidx-tiny: clustering keeps the clip's meaning

    records = validate_warehouse(tc)
    assert {r.model_id for r in records} == {exact_id, tc_id} and all(r.success for r in records)
    build_from_warehouse(tc, model_id=tc_id)
    # Text queries go through the plain encoder the record names (query_model_id), against clustered clips.
    assert Searcher(tc.warehouse, model_id=tc_id).model.model_id == ENCODER_ID
    report = evaluate(tc.warehouse, truth, model_id=tc_id)
    assert report.recall("all", "index", 5) >= 0.8, report.as_dict()
