"""The README's performance table is bench/report.py's rendering of committed bench JSON, and it says
which figures are pooled, paired, at which precision, and when the machine was busy."""
# ruff: noqa: RUF001, RUF003  (the README's typography: multiplication signs and en dashes)

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench.report import ROOT, block, busy, main, readme_block, render
from bench.summary import summarise_decode, summarise_pairs

from tests.unit.test_bench_summary import decode_row

README = ROOT / "README.md"


def committed_sources() -> list[str]:
    _, paths = readme_block(README.read_text())
    return paths


def test_readme_performance_table_is_rendered_from_committed_json():
    current, paths = readme_block(README.read_text())
    assert paths and all(p.startswith("bench/results/reference/") and (ROOT / p).is_file() for p in paths)
    # the gitignore keeps reference/ JSON in git (bench/results/*.json is ignored, not reference/*.json)
    assert current == block(paths), "README table drifted: python -m bench.report ... --readme README.md"


def test_committed_reference_keeps_the_keys_other_tools_read():
    result = json.loads((ROOT / committed_sources()[0]).read_text())
    assert result["format"] == 2 and result["machine"]["cores"] >= 1
    enc = result["encode"]
    assert {"model", "precision", "pipeline_ips", "bare_ips", "decode_thread_s_per_frame", "efficiency"} <= set(enc)
    assert enc["precision"] == result["precision"]["auto_chose"][enc["model"]]
    assert enc["efficiency"] == pytest.approx(sorted(enc["efficiency_pairs"])[len(enc["efficiency_pairs"]) // 2])
    assert all({"sampled", "sparse_s", "kept", "full_s"} <= set(f) for f in result["decode"]["files"])
    # token clustering ran at the precision auto chose for the same model, recorded per run
    runs = result["token_clustering"]["runs"]
    assert all(run["precision"] == result["precision"]["auto_chose"][run["model"]] for run in runs.values())
    assert result["spark"]["fresh_process"] and result["spark_vidx_tiny"]["fresh_process"]


def fake_result(load_at_start: float = 0.3, load_at_end: float = 1.9) -> dict:
    files = [decode_row("360p_gop30.mp4", sampled=30, sparse_s=0.1, kept=30, full_s=1.0, resized_s=1.0,
                        gop_frames=30),
             decode_row("1080p_gop250.mp4", sampled=30, sparse_s=1.0, kept=30, full_s=2.0, resized_s=1.5,
                        gop_frames=240, height=1080)]
    tc = {"speedup": 1.5, "clustered_ips": 60.0, "baseline_ips": 40.0, "fidelity_cosine": 0.99,
          "fidelity_cosine_min": 0.98, "overlap_at_10": 0.96,
          "clustering": {"layer": 6, "segments": 2, "centers": 16}}
    encode = {"model": "ViT-B-32", "precision": "bf16", "batch": 32, "frames": 300, "gop_frames": 25.0,
              **summarise_pairs([100.0, 50.0, 60.0], [90.0, 30.0, 57.0])}
    spark = {"videos": 10, "frames": 300, "model": "ViT-B-32", "overhead": 3.0, "warm_overhead": 1.1,
             "local_wall_s": 30.0, "inprocess_wall_s": 10.0, "warm_wall_s": 11.0, "fresh_process": True}
    return {"format": 2, "started_at": "2026-12-04T10:00:00+00:00",
            "machine": {"cpu": "Test CPU", "cores": 2, "bf16_cpu": True, "cuda": False, "python": "3.11.7",
                        "torch": "2.14.1"},
            "load_avg_at_start": [load_at_start, 0.2, 0.1], "load_avg_at_end": [load_at_end, load_at_end, 1.0],
            "precision": {"auto_chose": {"ViT-B-32": "bf16", "vidx-tiny": "fp32"}},
            "decode": summarise_decode(files), "encode": encode, "encode_gop250": encode,
            "token_clustering": {"runs": {
                "ViT-B-32/random": {"model": "ViT-B-32", "pretrained": "random", "precision": "bf16",
                                    "video_archive": tc},
                "vidx-tiny/synthetic-v1": {"model": "vidx-tiny", "pretrained": "synthetic-v1", "precision": "fp32",
                                           "video_world": tc}}},
            "spark": spark, "spark_vidx_tiny": {**spark, "model": "vidx-tiny"}}


def test_table_quotes_pooled_speedup_geomean_and_paired_median():
    text = render(fake_result())
    assert "**2.73×** pooled: 54.5 vs 20.0 sampled frames/s" in text  # (60/1.1) / (60/3): not the mean 6.0×
    assert "geometric mean of the per-file ratios 4.47×" in text
    assert "**0.90** on 25-frame GOPs [pairs 0.60–0.95" in text  # median of pairs, not 57/60 = 0.95
    assert "median of 3 paired runs" in text
    assert "clustered and exact path both bf16" in text and "captioned scenes, fp32" in text
    assert "each model in a fresh process" in text
    assert "busy machine" not in text


def test_busy_machine_is_flagged():
    assert busy(fake_result(load_at_start=20.0), cores=2)
    assert busy(fake_result(load_at_end=9.0), cores=2)
    assert not busy(fake_result(), cores=2)
    assert "**Measured on a busy machine** (1-min load average 20.0 at start" in render(fake_result(20.0))


def test_old_format_results_are_refused():
    old = fake_result()
    del old["format"]
    with pytest.raises(ValueError, match="format 2"):
        render(old)


def test_readme_rewrite_and_check(tmp_path):
    paths = committed_sources()
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n<!-- bench-table: {paths[0]} -->\nstale | table\n<!-- /bench-table -->\n\nafter\n")
    assert main(["--check", str(readme)]) == 1
    assert main([str(ROOT / p) for p in paths[:1]] + [*(["--index-scale", str(ROOT / paths[1])] if paths[1:] else []),
                                                        "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# x\n\n") and text.endswith("\nafter\n") and "stale" not in text
    assert main(["--check", str(readme)]) == 0
    Path(readme).write_text(text.replace("| **Decode**", "| **Decoding**"))
    assert main(["--check", str(readme)]) == 1
