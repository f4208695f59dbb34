"""Issue 15 through Spark: a small mixed archive of short videos, the issue's 1080p MPEG-4 AVI among
them, is embedded by `run_embed`; every video is ok with clips that tile its duration, and the
warehouse validates (including "every ok video has >= 1 clip")."""

from __future__ import annotations

from fractions import Fraction

import pytest

from tablekit import ok_videos_without_clips
from vidx.config import load_config
from vidx.quality.validate import validate_warehouse
from vidx.synth import write_index_video
from vidx.tables import delta, table_uri

NTSC = Fraction(30000, 1001)
DECLARED_B = {"bf": "1", "b_strategy": "1"}
# name -> (frames, rate, width, height, encoder options)
ARCHIVE = {
    "issue15.avi": (103, Fraction(30), 1920, 1080, DECLARED_B),   # decord has no timestamps for it
    "b_frames.avi": (85, Fraction(25), 320, 180, {"bf": "2"}),      # nor for its I/P frames
    "ntsc.mp4": (102, NTSC, 320, 180, None),
    "one_s.mkv": (25, Fraction(25), 256, 144, None),
    "one_s.mov": (30, NTSC, 200, 320, None),
    "tenth.mp4": (3, Fraction(30), 160, 96, None),                  # 0.1 s
}


@pytest.fixture(scope="module")
def short_embedded(spark, tmp_path_factory):
    from vidx.spark.embed import run_embed

    archive = tmp_path_factory.mktemp("short_archive")
    for name, (n, rate, w, h, options) in ARCHIVE.items():
        write_index_video(archive / name, n_frames=n, fps=rate, width=w, height=h, options=options)
    cfg = load_config(env={}, overrides={"warehouse": str(tmp_path_factory.mktemp("short_wh")),
                                         "spark.master": "local[2]", "spark.conf": {"spark.ui.enabled": "false"}})
    return cfg, archive, run_embed(cfg, str(archive), spark=spark)


def test_every_short_video_ok_with_clips_tiling_its_duration(short_embedded):
    cfg, archive, report = short_embedded
    assert report.failed == 0 and report.ok == len(ARCHIVE), report.failures
    videos = {v["uri"]: v for v in delta.read_rows(table_uri(cfg.warehouse, "videos"),
                                                   equals={"model_id": report.model_id}).to_pylist()}
    clips = delta.read_rows(table_uri(cfg.warehouse, "clips"), columns=["video_id", "clip_idx", "start_s", "end_s"],
                            equals={"model_id": report.model_id}).to_pylist()
    for name, (n, rate, *_) in ARCHIVE.items():
        video = videos[str(archive / name)]
        spans = sorted((c["clip_idx"], c["start_s"], c["end_s"]) for c in clips if c["video_id"] == video["video_id"])
        assert video["status"] == "ok" and video["n_clips"] == len(spans) == 1, (name, video, spans)
        assert spans[0][1] == 0.0 and spans[-1][2] == pytest.approx(float(n / rate), abs=float(1 / rate))
    (issue,) = [c for c in clips if c["video_id"] == videos[str(archive / "issue15.avi")]["video_id"]]
    assert (issue["start_s"], issue["end_s"]) == (0.0, pytest.approx(103 / 30))
    assert ok_videos_without_clips(cfg.warehouse, report.model_id) == []


def test_short_archive_validates(short_embedded):
    cfg, _, _ = short_embedded
    assert all(rec.success for rec in validate_warehouse(cfg))
