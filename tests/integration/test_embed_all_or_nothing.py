"""A video is all or nothing (issue 11 point 5): when one of its work units fails, none of its clips
are committed - not even those its other units wrote, in other Spark tasks' files - and its row
says which unit failed and why. Spark local[2]; the unit fails by test-only fault injection."""

from __future__ import annotations

from pathlib import Path

from embedkit import reference_clips, table_clips
from vidx.config import load_config
from vidx.spark.embed import run_embed
from vidx.spark.stages import FAIL_ENV
from vidx.synth import write_video
from vidx.tables import delta, table_uri


def test_one_failed_unit_fails_the_whole_video(spark, tmp_path):
    archive = tmp_path / "archive"
    write_video(archive / "long.mp4", duration_s=12.0, fps=10, width=96, height=72, seed=5)  # 3 units of 4 s
    write_video(archive / "fine.mp4", duration_s=6.0, fps=10, width=96, height=72, seed=6)
    cfg = load_config(env={}, overrides={"warehouse": str(tmp_path / "w"), "spark.master": "local[2]",
                                         "spark.conf": {"spark.ui.enabled": "false"}, "encode.precision": "fp32",
                                         "archive.max_unit_seconds": 4.0, "archive.partitions": 5})
    env = spark.sparkContext.environment  # what Spark passes to the Python workers of later jobs
    env[FAIL_ENV] = "long.mp4#1"  # the middle unit, 4-8 s
    try:
        report = run_embed(cfg, str(archive), spark=spark)
    finally:
        del env[FAIL_ENV]
    assert report.units == 5 and report.failed == 1 and report.ok == 1  # each unit in its own task
    videos = {Path(r["uri"]).name: r for r in delta.read_table(table_uri(cfg.warehouse, "videos")).to_pylist()}
    long = videos["long.mp4"]
    assert long["status"] == "failed" and long["error_class"] == "corrupt" and long["n_clips"] == 0
    assert f"unit {long['video_id']}:1 (4-8 s)" in long["error"] and FAIL_ENV in long["error"]
    assert [f["error"] for f in report.failures] == [long["error"]]
    clips = table_clips(cfg.warehouse, report.model_id)
    assert {Path(u).name for u in clips} == {"fine.mp4"}  # units 0 and 2 of long.mp4 did not land
    (uri, rows), = clips.items()
    ref = reference_clips(uri, cfg, "fp32")
    assert rows.keys() == ref.keys() and report.clips == len(ref)
    # a retry without the fault embeds the whole video
    again = run_embed(cfg, str(archive), spark=spark, retry_failed=True)
    assert again.ok == 1 and again.failed == 0
    assert len(table_clips(cfg.warehouse, report.model_id)[str(archive / "long.mp4")]) == 3
