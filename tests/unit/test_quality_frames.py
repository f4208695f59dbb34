"""Derived columns of the data-quality suites (no great-expectations, no Spark)."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from modelids import clips_id
from vidx.errors import DataQualityError
from vidx.quality.batches import vector_facts
from vidx.quality.frames import model_dim
from vidx.quality.suites import SuiteParams, clips_expectations, expectation_label, videos_expectations


def test_vector_facts_on_ragged_nan_and_null_embeddings():
    unit = (np.ones(4) / 2).tolist()
    column = pa.chunked_array([pa.array([unit, [3.0, 4.0], [1.0, float("nan")], None, []],
                                        pa.list_(pa.float32()))])
    facts = vector_facts(column)
    assert facts["embedding_dim"].to_pylist() == [4, 2, 2, None, 0]   # null embedding: no length
    assert facts["embedding_nonfinite"].to_pylist() == [0, 0, 1, 0, 0]
    norm = facts["embedding_norm"].to_numpy(zero_copy_only=False)
    assert norm[0] == pytest.approx(1.0) and norm[1] == pytest.approx(5.0) and math.isnan(norm[2])


def test_model_dim_from_model_id(tmp_path):
    assert model_dim(str(tmp_path), clips_id("ViT-B-32", "laion2b", 512)) == 512
    assert model_dim(str(tmp_path), clips_id("ViT-B-32", "laion2b", 512, **{"encode.token_clustering.enabled": True,
                                                                            "encode.token_clustering.layer": 2})) == 512
    with pytest.raises(DataQualityError, match="dimension"):
        model_dim(str(tmp_path), "custom-model")


def test_suites_come_from_the_schemas():
    p = SuiteParams(dim=8, max_failed_share=0.2, norm_tolerance=0.01, sample_step_s=1.0, clip_mode="fixed")
    clips = [expectation_label("clips", e.configuration) for e in clips_expectations(p)]
    videos = [expectation_label("videos", e.configuration) for e in videos_expectations(p)]
    assert "clips: expect_column_values_to_not_be_null(embedding_dim)" in clips   # list field -> length
    assert "clips: expect_column_values_to_not_be_null(frame_ts)" not in clips    # nullable in the schema
    assert "videos: expect_column_values_to_not_be_null(uri)" in videos
    adaptive = [expectation_label("clips", e.configuration)
                for e in clips_expectations(SuiteParams(**{**p.__dict__, "clip_mode": "adaptive"}))]
    assert "clips: expect_column_values_to_be_between(clip_idx_step)" in adaptive


def test_ok_video_clips_counts_clips_of_ok_videos_only():
    import pandas as pd

    from vidx.quality.frames import with_clip_counts

    videos = pd.DataFrame({"video_id": ["a", "b", "c", "d"], "status": ["ok", "ok", "failed", "deleted"]})
    clips = pd.DataFrame({"video_id": ["a", "a", "c"], "clip_idx": [0, 1, 0]})
    counts = with_clip_counts(videos, clips)["ok_video_clips"].tolist()
    assert counts[:2] == [2.0, 0.0] and all(math.isnan(c) for c in counts[2:])
    empty = with_clip_counts(videos, clips.iloc[:0])["ok_video_clips"].tolist()
    assert empty[:2] == [0.0, 0.0]
    p = SuiteParams(dim=8, max_failed_share=0.2, norm_tolerance=0.01, sample_step_s=1.0, clip_mode="fixed")
    labels = [expectation_label("videos", e.configuration) for e in videos_expectations(p)]
    assert "videos: expect_column_values_to_be_between(ok_video_clips)" in labels
