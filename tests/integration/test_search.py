"""Query side over the embedded sample archive: self-retrieval and the CLI contract."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vidx.cli import main
from vidx.demo import grab_frame
from vidx.serve.query import Searcher
from vidx.tables import delta, table_uri


def _single_scene_clips(clips, uris, sample_archive):
    """Clips that lie inside one scene. A clip that straddles a scene cut is not a fair target: a
    frame of its first scene is legitimately closer to the neighbouring clip that holds only that scene."""
    truth = json.loads((sample_archive / "truth.json").read_text())
    scenes = {str(sample_archive / v["path"]): v["scenes"] for v in truth["videos"]}
    keep = []
    for clip in clips:
        lo, hi = 4.0 * clip["clip_idx"], 4.0 * (clip["clip_idx"] + 1)
        if not any(lo < s["start_s"] < hi for s in scenes[uris[clip["video_id"]]]):
            keep.append(clip)
    return keep


def test_self_retrieval_frame_of_clip_finds_clip(embedded, test_config, tmp_path, sample_archive):
    all_clips = delta.read_table(table_uri(test_config.warehouse, "clips"),
                                 columns=["video_id", "clip_idx", "frame_ts"]).to_pylist()
    uris = {r["video_id"]: r["uri"] for r in delta.read_table(
        table_uri(test_config.warehouse, "videos"), columns=["video_id", "uri"]).to_pylist()}
    clips = _single_scene_clips(all_clips, uris, sample_archive)
    assert len(clips) >= len(all_clips) // 2
    searcher = Searcher(test_config.warehouse)
    found = 0
    misses = []
    for i, clip in enumerate(clips):
        t = clip["frame_ts"][len(clip["frame_ts"]) // 2]
        png = grab_frame(Path(uris[clip["video_id"]]), t, tmp_path / f"q{i}.png")
        top = searcher.search_image(png, 1)[0]
        if (top.video_id, top.clip_idx) == (clip["video_id"], clip["clip_idx"]):
            found += 1
        else:
            misses.append((clip["video_id"], clip["clip_idx"], top.video_id, top.clip_idx, top.score))
    share = found / len(clips)
    print(f"self-retrieval: {found}/{len(clips)} = {share:.3f}")
    assert share >= 0.95, misses


def test_cli_search_json_contract(embedded, test_config, capsys):
    code = main(["search", "two red circles", "-k", "3", "--json", "--warehouse", test_config.warehouse])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 3
    for hit in out:
        assert set(hit) == {"video_id", "uri", "clip_idx", "start_s", "end_s", "score"}
        assert hit["start_s"] < hit["end_s"]
    scores = [h["score"] for h in out]
    assert scores == sorted(scores, reverse=True)


def test_cli_search_requires_exactly_one_query(embedded, test_config):
    assert main(["search", "--warehouse", test_config.warehouse]) == 2


def test_search_refuses_other_model(embedded, test_config, tmp_path):
    import torch

    from vidx.encode.models import ModelSpec, load_model
    from vidx.errors import ModelMismatchError

    lm = load_model(ModelSpec("vidx-tiny"), device="cpu")
    state = {k: v + 0.01 for k, v in lm.model.state_dict().items()}
    torch.save(state, tmp_path / "other.pt")
    searcher = Searcher(test_config.warehouse, pretrained=str(tmp_path / "other.pt"))
    with pytest.raises(ModelMismatchError):
        searcher.search_text("anything", 1)
