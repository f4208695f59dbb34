"""Retrieval quality end to end: a held-out captioned archive (new seed, unseen attribute combinations)
-> Spark embed with the packaged synthetic-v1 weights -> validated Delta version -> published index ->
`vidx eval`. Text queries must find the right clip: exact Recall@5 >= 0.8 and the index within 0.03."""

from __future__ import annotations

import json
import logging
import time

import pytest

from vidx.cli import main
from vidx.config import load_config
from vidx.encode.models import ModelSpec, model_id_for
from vidx.encode.registry import load_model_record
from vidx.index.from_table import build_from_warehouse
from vidx.index.publish import list_models
from vidx.quality.moment_eval import evaluate_moments
from vidx.quality.retrieval_eval import evaluate
from vidx.quality.validate import validate_warehouse
from vidx.spark.embed import run_embed
from vidx.synth.world import ArchiveSpec, make_captioned_archive, make_distractor_archive

LOG = logging.getLogger(__name__)
HELD_OUT_SEED = 20_261_122  # never used by training (training draws its frames from its own seed)
# Shape-free background clips that pad the index past 9,984 vectors (the fewest vidx trains IVF-PQ on).
N_DISTRACTORS = 10_400
SPEC = ArchiveSpec(n_videos=14, sizes=((96, 72), (128, 72), (80, 80)), fps=(8.0, 10.0), unseen_share=0.3)


@pytest.fixture(scope="module")
def held_out(spark, tmp_path_factory):
    root = tmp_path_factory.mktemp("quality")
    started = time.perf_counter()
    truth = make_captioned_archive(root / "archive", seed=HELD_OUT_SEED, spec=SPEC)
    make_distractor_archive(root / "archive" / "distractors", seed=HELD_OUT_SEED, n_clips=N_DISTRACTORS)
    cfg = load_config(env={}, overrides={"warehouse": str(root / "warehouse"), "spark.master": "local[2]",
                                         "encode.model": "vidx-tiny", "encode.pretrained": "synthetic-v1",
                                         # "auto" picks bf16 or fp32 from a speed probe, i.e. from the
                                         # machine's load: the vectors, and so the outcome, must not
                                         "encode.precision": "fp32",
                                         # with the distractors, an IVF index: "index vs exact" then
                                         # measures what the approximate index loses, not Flat vs itself
                                         "index.flat_below": 10_000,
                                         # Re-ranked candidates only. Plain PQ codes reach recall@10 0.96
                                         # on clip queries but reorder text queries' neighbours (they lie
                                         # apart, with closer scores): IVF256,PQ32x8 kept 46 of exact's 48
                                         # R@5 hits on one run, 48 on another, i.e. it hovered at the 0.03
                                         # bound. Refined (SQ6) it kept all 48. OPQ: ~2 min, no better.
                                         "index.candidates": ["ivfpq_refine", "ivfflat"]})
    report = run_embed(cfg, str(root / "archive"), spark=spark)
    assert report.ok == SPEC.n_videos + 4 and report.failed == 0
    assert all(v.success for v in validate_warehouse(cfg))
    build = build_from_warehouse(cfg)
    assert build.published is not None and build.published.manifest["params"]["kind"] != "flat"
    m = build.published.manifest
    LOG.info("index %s at nprobe %d, recall@10 %.4f, %s queries/s", m["factory"], m["nprobe"], m["recall_at_10"],
             m["qps"]["queries_per_second"])
    LOG.info("held-out archive embedded and indexed in %.1f s", time.perf_counter() - started)
    return cfg, truth


def test_text_queries_find_the_right_clip(held_out):
    cfg, truth = held_out
    scenes = [s for v in json.loads(truth.read_text())["videos"] for s in v["scenes"]]
    assert len(scenes) >= 40 and sum(s["combo"] == "unseen" for s in scenes) >= 8
    report = evaluate(cfg.warehouse, truth)
    record = load_model_record(cfg.warehouse, report.model_id) or {}
    assert record.get("query_model_id") == model_id_for(ModelSpec("vidx-tiny", "synthetic-v1"))
    assert [report.model_id] == list_models(cfg.warehouse) and not report.missing_videos
    print(json.dumps(report.as_dict(), indent=1))
    exact, index = report.recall("all", "exact", 5), report.recall("all", "index", 5)
    assert exact >= 0.8, report.as_dict()
    assert abs(index - exact) <= 0.03, report.as_dict()
    for group in ("seen", "unseen"):
        assert report.recall(group, "exact", 5) >= 0.7, (group, report.as_dict())
        assert report.groups[group]["exact"].mean_iou is not None
    assert report.groups["all"]["exact"].median_rank is not None and report.groups["all"]["exact"].median_rank <= 2


def test_eval_cli_json(held_out, capsys):
    cfg, truth = held_out
    capsys.readouterr()
    assert main(["eval", "--warehouse", cfg.warehouse, "--truth", str(truth), "--k", "1", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ks"] == [1, 5] and set(out["groups"]) == {"all", "seen", "unseen"}
    assert set(out["groups"]["all"]) == {"exact", "index"}
    assert out["groups"]["all"]["exact"]["recall"]["5"] >= 0.8
    assert main(["eval", "--warehouse", cfg.warehouse, "--truth", str(truth)]) == 0
    assert "R@10" in capsys.readouterr().out


def test_moments_match_scenes_more_often_than_single_clips(held_out):
    """Text query -> first result: a moment overlaps its scene with IoU >= 0.5 more often than the best
    clip does (README: "Moments"). Scenes last 3-10 s, clips 4 s."""
    cfg, truth = held_out
    report = evaluate_moments(cfg.warehouse, truth, cfg=cfg.search)
    print(json.dumps(report.as_dict(), indent=1))
    assert report.n_scenes >= 40
    assert report.moments.recall_at_1 > report.clips.recall_at_1, report.as_dict()
    assert report.moments.mean_iou_at_1 > report.clips.mean_iou_at_1, report.as_dict()
    assert report.moments.recall_at_k >= report.clips.recall_at_k, report.as_dict()
