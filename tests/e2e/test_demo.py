"""The demo flow and the three CLI commands, end to end, on generated archives (incl. a corrupt file)."""

from __future__ import annotations

import itertools
import json
import re

from vidx.cli import main
from vidx.synth import write_bad_files, write_video
from vidx.tables import delta, table_uri


def test_demo_flow(spark, tmp_path, capsys):
    assert main(["demo", "--workdir", str(tmp_path / "demo")]) == 0
    out = capsys.readouterr().out
    assert "broken.mp4" in out                       # the corrupt file is reported as failed
    done = re.search(r"demo done in .*?(\d+) videos indexed, (\d+) failed, (\d+) clips", out, re.S)
    assert done, out[-2000:]
    assert done.group(1) == "8" and done.group(2) == "1" and int(done.group(3)) > 20
    right = re.search(r"image queries right-clip-first (\d+)/(\d+)", out)
    assert right and right.group(1) == right.group(2), out[-3000:]
    # the default weights (trained vidx-tiny synthetic-v1) understand the scenes' captions
    text = re.search(r"text queries right-scene-first (\d+)/(\d+)", out)
    assert text and int(text.group(2)) >= 4 and text.group(1) == text.group(2), out[-3000:]
    videos = delta.read_table(table_uri(str(tmp_path / "demo" / "warehouse"), "videos")).to_pylist()
    assert {v["status"] for v in videos} == {"ok", "failed"}


def test_cli_embed_build_search_on_a_folder(spark, tmp_path, capsys):
    folder = tmp_path / "videos"
    write_video(folder / "a.mp4", duration_s=6, fps=25, width=320, height=180, seed=11)
    write_video(folder / "sub" / "b.mkv", duration_s=9, fps=30, width=240, height=240, seed=12)
    write_video(folder / "c.avi", duration_s=5, fps=15, width=160, height=120, seed=13)
    write_video(folder / "d.mov", duration_s=7, fps=24, width=200, height=150, seed=14)
    write_bad_files(folder / "bad")
    (folder / "readme.txt").write_text("not a video, wrong extension: not listed")
    warehouse = str(tmp_path / "w")
    assert main(["embed", str(folder), "--warehouse", warehouse]) == 0
    assert main(["build-index", "--warehouse", warehouse]) == 2  # never validated: refused
    # half the files are bad on purpose: let that failed share pass the gate
    assert main(["validate", "--warehouse", warehouse, "--max-failed-share", "0.6"]) == 0
    assert main(["build-index", "--warehouse", warehouse]) == 0
    capsys.readouterr()
    assert main(["search", "a blue square", "--json", "-k", "5", "--warehouse", warehouse]) == 0
    hits = json.loads(capsys.readouterr().out)
    assert 1 <= len(hits) <= 5
    rows = delta.read_table(table_uri(warehouse, "videos")).to_pylist()
    status = {r["uri"].rsplit("/", 1)[-1]: r["status"] for r in rows}
    assert status["a.mp4"] == status["b.mkv"] == status["c.avi"] == status["d.mov"] == "ok"
    bad = [r for r in rows if "/bad/" in r["uri"]]
    assert len(bad) == 4 and all(r["status"] == "failed" and r["error"] for r in bad)
    # a second run over the unchanged folder embeds nothing and commits nothing
    assert main(["embed", str(folder), "--warehouse", warehouse]) == 0
    assert len(delta.history(table_uri(warehouse, "clips"))) == 1
    assert main(["build-index", "--warehouse", warehouse]) == 0
    assert "up to date" in capsys.readouterr().out


def test_adaptive_clip_mode_through_the_pipeline(spark, tmp_path):
    from vidx.config import load_config
    from vidx.spark.embed import run_embed

    folder = tmp_path / "videos"
    write_video(folder / "static.mp4", duration_s=16, fps=15, width=160, height=120, seed=21, scene_seconds=16.0)
    write_video(folder / "busy.mp4", duration_s=16, fps=15, width=160, height=120, seed=22, scene_seconds=2.0)
    cfg = load_config(env={}, overrides={"warehouse": str(tmp_path / "w"), "clips.mode": "adaptive",
                                         "clips.max_seconds": 6, "clips.min_seconds": 2})
    report = run_embed(cfg, str(folder), spark=spark)
    assert report.failed == 0
    rows = delta.read_table(table_uri(cfg.warehouse, "clips")).to_pylist()
    by_video: dict[str, list[dict]] = {}
    for r in rows:
        by_video.setdefault(r["video_id"], []).append(r)
    for clips in by_video.values():
        clips.sort(key=lambda r: r["start_s"])
        assert sum(c["n_frames"] for c in clips) == 16
        for a, b in itertools.pairwise(clips):
            assert a["end_s"] == b["start_s"] and b["clip_idx"] > a["clip_idx"]
        for c in clips:
            assert 0 < c["end_s"] - c["start_s"] <= 6 + 1e-9
            assert c["start_s"] <= c["frame_ts"][0] + 1e-6
