"""Retrieval evaluation arithmetic: truth files, hits, ranks, recall, IoU (no Spark, no index)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from vidx.errors import VidxError
from vidx.quality.retrieval_eval import (
    TruthScene,
    _exact_results,
    _metrics,
    first_hit,
    load_truth,
    overlap_iou,
    queries_from,
)


def test_truth_formats(tmp_path: Path) -> None:
    nested = {"videos": [{"path": "sub/a.mp4", "scenes": [
        {"start_s": 0, "end_s": 4, "caption": "one purple star on a black background", "color": "purple",
         "shape": "star"},
        {"start_s": 4, "end_s": 9, "caption": "two red circles on a striped background", "combo": "seen"}]}]}
    (tmp_path / "t.json").write_text(json.dumps(nested))
    scenes = load_truth(tmp_path / "t.json")
    assert [s.uri for s in scenes] == [str(tmp_path / "sub" / "a.mp4")] * 2
    assert [s.combo for s in scenes] == ["unseen", "seen"]  # computed from colour + shape with the default split
    flat = {"scenes": [{"uri": "s3://b/v.mp4", "start_s": 1, "end_s": 2, "caption": "x"}]}
    (tmp_path / "f.json").write_text(json.dumps(flat))
    assert load_truth(tmp_path / "f.json") == [TruthScene("s3://b/v.mp4", 1.0, 2.0, "x", "unknown")]
    (tmp_path / "bad.json").write_text(json.dumps({"scenes": [{"uri": "x"}]}))
    with pytest.raises(VidxError, match="needs"):
        load_truth(tmp_path / "bad.json")
    with pytest.raises(VidxError, match="cannot read"):
        load_truth(tmp_path / "missing.json")


def test_hits_need_the_right_video_and_an_overlap() -> None:
    assert overlap_iou(0, 4, 2, 6) == (2, pytest.approx(2 / 6))
    assert overlap_iou(0, 4, 4, 8) == (0, 0)
    scene = TruthScene("/v/a.mp4", 3.0, 7.0, "c")
    (query,) = queries_from([scene])
    ranked = [("/v/b.mp4", 4.0, 8.0), ("/v/a.mp4", 0.0, 3.0), ("/v/a.mp4", 4.0, 8.0)]
    assert first_hit(query, ranked) == (3, pytest.approx(3 / 5))
    assert first_hit(query, ranked[:2]) == (None, 0.0)


def test_duplicate_captions_accept_either_scene() -> None:
    scenes = [TruthScene("/a", 0, 4, "same"), TruthScene("/b", 0, 4, "same"), TruthScene("/c", 0, 4, "other")]
    queries = queries_from(scenes)
    assert [len(q.targets) for q in queries] == [2, 1]
    assert first_hit(queries[0], [("/b", 0.0, 4.0)])[0] == 1


def test_exact_ranks_and_metrics() -> None:
    vectors = np.eye(4, dtype=np.float32)
    where = (np.array(["/a", "/a", "/b", "/b"], dtype=object), np.array([0.0, 4, 0, 4]), np.array([4.0, 8, 4, 8]))
    queries = queries_from([TruthScene("/a", 4, 8, "q1"), TruthScene("/b", 0, 3, "q2")])
    q = np.array([[0.1, 0.9, 0, 0.5], [0, 0, 0.2, 0.3]], dtype=np.float32)
    results = _exact_results(queries, q, vectors, where)
    assert results == [(1, 1.0), (2, pytest.approx(0.75))]
    m = _metrics([*results, (None, 0.0)], (1, 5))
    assert m.recall == {1: pytest.approx(1 / 3), 5: pytest.approx(2 / 3)} and m.median_rank == 2
    assert m.mean_iou == pytest.approx(0.875)
    assert _metrics([(None, 0.0), (None, 0.0), (1, 1.0)], (1,)).median_rank is None
