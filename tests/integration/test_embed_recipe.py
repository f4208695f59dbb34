"""Every vector under one model_id is made the same way (issue 11 points 2, 3, 4), on Spark local[2]:

- the run's precision is decided once, on the driver, and every clip of the run has it;
- two models of the same dimension, one after the other in the same reused Python workers, each
  write their own vectors (checked against vectors computed directly with each model);
- changing sample_fps, clip seconds or clip mode embeds into a partition of its own, and
  validation checks each partition against the settings recorded with it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedkit import reference_clips, table_clips
from vidx.config import load_config
from vidx.encode import precision
from vidx.encode.registry import Recipe, clips_model_id, load_model_record, recorded_recipe
from vidx.quality.validate import recorded_clip_settings, validate_warehouse
from vidx.spark.embed import run_embed
from vidx.synth import write_video

VIDEOS = {"a.mp4": 9.0, "b.mp4": 6.0}


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("recipe-archive")
    for i, (name, duration) in enumerate(VIDEOS.items()):
        write_video(root / name, duration_s=duration, fps=10, width=96, height=72, seed=40 + i, scene_seconds=2.0)
    return root


def _config(warehouse: Path, **overrides):
    return load_config(env={}, overrides={"warehouse": str(warehouse), "spark.master": "local[2]",
                                          "spark.conf": {"spark.ui.enabled": "false"}, "encode.precision": "fp32",
                                          **overrides})


def _assert_vectors(cfg, model_id: str, archive: Path, precision_name: str, atol: float = 2e-5) -> None:
    got = table_clips(cfg.warehouse, model_id)
    assert {Path(u).name for u in got} == set(VIDEOS)
    for uri, clips in got.items():
        ref = reference_clips(uri, cfg, precision_name)
        assert clips.keys() == ref.keys()
        for idx, row in clips.items():
            np.testing.assert_allclose(row["embedding"], ref[idx], atol=atol, err_msg=f"{uri} clip {idx}")


def test_two_models_of_one_dimension_in_reused_workers_write_their_own_vectors(spark, archive, tmp_path):
    reports = {}
    for weights in ("random", "synthetic-v1"):  # both vidx-tiny: 128-d, only the weights differ
        cfg = _config(tmp_path / "w", **{"encode.pretrained": weights})
        reports[weights] = (cfg, run_embed(cfg, str(archive), spark=spark))
    assert len({r.model_id for _, r in reports.values()}) == 2
    for cfg, report in reports.values():
        assert report.ok == len(VIDEOS)
        _assert_vectors(cfg, report.model_id, archive, "fp32")


def test_auto_precision_is_decided_once_on_the_driver_for_every_vector(spark, archive, tmp_path, monkeypatch):
    calls = []

    def driver_probe(lm):  # patched here, in the driver; Spark's Python workers cannot see it
        calls.append(lm.model_id)
        return "bf16"

    monkeypatch.setattr(precision, "probe_cpu_precision", driver_probe)
    cfg = _config(tmp_path / "w", **{"encode.precision": "auto", "encode.device": "cpu"})
    report = run_embed(cfg, str(archive), spark=spark)
    assert report.ok == len(VIDEOS) and len(calls) == 1
    record = load_model_record(cfg.warehouse, report.model_id)
    assert record is not None and record["recipe"]["precision"] == "bf16" and "probe" in record["precision_rule"]
    assert report.model_id == clips_model_id(record["query_model_id"], Recipe.from_config(
        cfg, frame_size=record["image_size"], precision="bf16"))
    # every clip is bf16: nearer the direct bf16 vectors than bf16 is to fp32, by a wide margin
    for uri, clips in table_clips(cfg.warehouse, report.model_id).items():
        bf16, fp32 = reference_clips(uri, cfg, "bf16"), reference_clips(uri, cfg, "fp32")
        for idx, row in clips.items():
            gap = np.abs(bf16[idx] - fp32[idx]).max()
            assert gap > 1e-4 and np.abs(np.asarray(row["embedding"]) - bf16[idx]).max() < 0.2 * gap, (uri, idx)


def test_changing_how_clips_are_made_re_embeds_into_its_own_partition(spark, archive, tmp_path):
    w = tmp_path / "w"
    base = _config(w)
    runs = {name: run_embed(cfg, str(archive), spark=spark) for name, cfg in [
        ("base", base), ("fps2", _config(w, **{"decode.sample_fps": 2.0})),
        ("clip3", _config(w, **{"clips.seconds": 3.0})), ("adaptive", _config(w, **{"clips.mode": "adaptive"}))]}
    assert len({r.model_id for r in runs.values()}) == 4
    assert all(r.ok == len(VIDEOS) and r.unchanged == 0 for r in runs.values())  # none skipped as "unchanged"
    assert run_embed(base, str(archive), spark=spark).unchanged == len(VIDEOS)  # same settings, same id
    fps2 = table_clips(str(w), runs["fps2"].model_id)
    assert all(c["n_frames"] == 8 for clips in fps2.values() for c in clips.values() if c["end_s"] - c["start_s"] == 4)
    _assert_vectors(_config(w, **{"clips.seconds": 3.0}), runs["clip3"].model_id, archive, "fp32")
    recipe = recorded_recipe(str(w), runs["adaptive"].model_id)
    assert recipe is not None and recipe.clip_mode == "adaptive" and recipe.sample_fps == 1.0
    # `vidx validate` with today's config (1 frame/s, fixed 4 s clips) checks each partition against
    # what its record says it is: the adaptive clips' numbering and the 2 fps sampling step pass.
    assert recorded_clip_settings(base, runs["fps2"].model_id) == (2.0, "fixed")
    for name in ("adaptive", "fps2"):
        (check,) = validate_warehouse(base, model_id=runs[name].model_id)
        assert check.success, (name, check.failed_expectations)
