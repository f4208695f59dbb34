"""The captioned synthetic world: attribute splits, sampling, and held-out evaluation archives."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from vidx.decode import probe
from vidx.synth import caption_for
from vidx.synth.draw import PALETTE, SHAPES
from vidx.synth.world import (
    DEFAULT_HELDOUT,
    PATTERNS,
    SHAPE_COLORS,
    ArchiveSpec,
    AttributeSplit,
    make_captioned_archive,
    sample_attributes,
)


def test_default_split_holds_out_purple_star_and_keeps_every_word_in_training() -> None:
    split = AttributeSplit()
    assert split.combo("purple", "star") == "unseen" and split.combo("purple", "circle") == "seen"
    seen, unseen = split.pairs("seen"), split.pairs("unseen")
    assert set(unseen) == set(DEFAULT_HELDOUT) and not set(seen) & set(unseen)
    assert len(seen) + len(unseen) == len(split.pairs("any")) == len(SHAPE_COLORS) * len(SHAPES)
    assert {c for c, _ in seen} == set(SHAPE_COLORS) and {s for _, s in seen} == set(SHAPES)
    assert AttributeSplit.from_dict(json.loads(json.dumps(split.as_dict()))) == split


@pytest.mark.parametrize("which", ["seen", "unseen"])
def test_sampled_attributes_stay_on_their_side(which: str) -> None:
    split, rng = AttributeSplit(), np.random.default_rng(0)
    for _ in range(300):
        shape, color, count, bg = sample_attributes(rng, split, which)  # type: ignore[arg-type]
        assert split.combo(color, shape) == which
        assert count in split.counts and bg != color and (bg in PATTERNS or bg in PALETTE)


def _small_spec() -> ArchiveSpec:
    return ArchiveSpec(n_videos=3, sizes=((64, 48),), fps=(5.0,), unseen_share=0.5)


def test_captioned_archive_truth(tmp_path: Path) -> None:
    truth_path = make_captioned_archive(tmp_path / "a", seed=5, spec=_small_spec())
    truth = json.loads(truth_path.read_text())
    assert truth["seed"] == 5 and AttributeSplit.from_dict(truth["split"]) == AttributeSplit()
    triples = []
    for video in truth["videos"]:
        scenes = video["scenes"]
        assert 2 <= len(scenes) <= 5 and scenes[0]["start_s"] == 0
        assert all(a["end_s"] == b["start_s"] for a, b in itertools.pairwise(scenes))
        assert all(3.0 <= s["end_s"] - s["start_s"] <= 10.0 + 1e-3 for s in scenes)
        for s in scenes:
            assert s["caption"] == caption_for(s["shape"], s["color"], s["count"], s["background"])
            assert s["combo"] == AttributeSplit().combo(s["color"], s["shape"])
            triples.append((s["shape"], s["color"], s["background"]))
        assert Path(video["uri"]).is_absolute() and Path(video["uri"]).is_file()
        assert probe(video["uri"]).duration_s == pytest.approx(video["duration_s"], abs=0.25)
    assert len(set(triples)) == len(triples)  # one right answer per caption
    assert {s["combo"] for v in truth["videos"] for s in v["scenes"]} == {"seen", "unseen"}


def test_captioned_archive_is_deterministic(tmp_path: Path) -> None:
    a = make_captioned_archive(tmp_path / "a", seed=9, spec=_small_spec())
    b = make_captioned_archive(tmp_path / "b", seed=9, spec=_small_spec())
    c = make_captioned_archive(tmp_path / "c", seed=10, spec=_small_spec())
    scenes = [[v["scenes"] for v in json.loads(p.read_text())["videos"]] for p in (a, b, c)]
    assert scenes[0] == scenes[1] != scenes[2]
    assert (a.parent / "video_000.mp4").read_bytes() == (b.parent / "video_000.mp4").read_bytes()
