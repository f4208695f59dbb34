"""Synthetic videos: scenes, determinism, content, VFR timestamps, bad files, sample archive."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import av
import numpy as np
import pytest

from vidx.decode import probe
from vidx.errors import DecodeError
from vidx.synth import (
    Scene,
    caption_for,
    make_sample_archive,
    make_scene,
    write_bad_files,
    write_vfr_video,
    write_video,
)
from vidx.synth.draw import PALETTE, SHAPES, shape_mask


def _frames_at(path: Path, times: list[float]) -> list[np.ndarray]:
    """Full-resolution RGB frames displayed at `times` (PyAV, decode everything)."""
    with av.open(str(path)) as container:
        decoded = [(float(f.time or 0.0), f.to_ndarray(format="rgb24")) for f in container.decode(video=0)]
    pts = np.array([t for t, _ in decoded])
    return [decoded[int(np.searchsorted(pts, t + 1e-6) - 1)][1] for t in times]


def test_caption_wording() -> None:
    assert caption_for("triangle", "red", 2, "stripes") == "two red triangles on a striped background"
    assert caption_for("circle", "blue", 1, "yellow") == "one blue circle on a yellow background"
    assert caption_for("cross", "green", 3, "checker") == "three green crosses on a checkered background"
    assert caption_for("star", "white", 4, "gradient") == "four white stars on a gradient background"


def test_scenes_cover_the_video_at_fixed_boundaries(tmp_path: Path) -> None:
    scenes = write_video(tmp_path / "a.mp4", duration_s=10, fps=10, width=64, height=48, seed=3,
                         scene_seconds=4.0)
    assert [(s.start_s, s.end_s) for s in scenes] == [(0.0, 4.0), (4.0, 8.0), (8.0, 10.0)]
    for s in scenes:
        assert s.shape in SHAPES and s.color in PALETTE and 1 <= s.count <= 4
        assert s.caption == caption_for(s.shape, s.color, s.count, s.background)
        assert s.background != s.color
    assert all((a.shape, a.color, a.background) != (b.shape, b.color, b.background)
               for a, b in itertools.pairwise(scenes))


def test_random_scene_lengths(tmp_path: Path) -> None:
    scenes = write_video(tmp_path / "a.mkv", duration_s=20, fps=5, width=64, height=48, seed=4,
                         scene_seconds=(1.0, 3.0))
    assert scenes[0].start_s == 0.0 and scenes[-1].end_s == 20.0
    assert all(a.end_s == b.start_s for a, b in itertools.pairwise(scenes))
    assert all(1.0 <= s.end_s - s.start_s <= 3.0 for s in scenes[:-1])
    assert len({round(s.end_s - s.start_s, 6) for s in scenes}) > 3


def test_deterministic_given_seed(tmp_path: Path) -> None:
    kwargs = {"duration_s": 2.0, "fps": 10, "width": 96, "height": 64}
    a = write_video(tmp_path / "a.mp4", seed=11, **kwargs)  # type: ignore[arg-type]
    b = write_video(tmp_path / "b.mp4", seed=11, **kwargs)  # type: ignore[arg-type]
    c = write_video(tmp_path / "c.mp4", seed=12, **kwargs)  # type: ignore[arg-type]
    assert a == b and a != c
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def _share_near(frame: np.ndarray, rgb: tuple[int, int, int]) -> float:
    """Fraction of pixels within 40 levels (every channel) of `rgb`."""
    pixels = frame.reshape(-1, 3).astype(int)
    return float((np.abs(pixels - np.array(rgb)).max(axis=1) < 40).mean())


def test_rendered_content_matches_scenes(tmp_path: Path) -> None:
    path = tmp_path / "given.mp4"
    given = [make_scene(0.0, 1.0, shape="square", color="red", count=2, background="blue"),
             make_scene(1.0, 2.0, shape="circle", color="yellow", count=1, background="green")]
    assert write_video(path, duration_s=2.0, fps=10, width=160, height=120, scenes=given) == given
    for scene, frame in zip(given, _frames_at(path, [0.5, 1.5]), strict=True):
        assert _share_near(frame, PALETTE[scene.background]) > 0.6  # mostly background
        assert 0.02 < _share_near(frame, PALETTE[scene.color]) < 0.4  # shapes there, not everywhere


def test_frames_differ_and_shapes_move(tmp_path: Path) -> None:
    path = tmp_path / "m.mp4"
    write_video(path, duration_s=2.0, fps=10, width=160, height=120, seed=5, scene_seconds=10.0)
    a, b, c = (f.astype(int) for f in _frames_at(path, [0.0, 0.1, 1.9]))
    assert np.abs(a - b).mean() > 0.3  # consecutive frames differ (noise)
    assert np.abs(a - c).mean() > np.abs(a - b).mean()  # and drift further apart (motion)


@pytest.mark.parametrize(("suffix", "codec"), [(".mp4", "h264"), (".mkv", "h264"), (".mov", "h264"),
                                               (".avi", "mpeg4")])
def test_containers_and_codecs(tmp_path: Path, suffix: str, codec: str) -> None:
    path = tmp_path / f"v{suffix}"
    write_video(path, duration_s=1.0, fps=25, width=176, height=144, seed=1, gop=5)
    info = probe(str(path))
    assert (info.codec, info.width, info.height, info.fps) == (codec, 176, 144, 25.0)
    assert info.duration_s == pytest.approx(1.0, abs=0.05)


def test_invalid_sizes_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="even"):
        write_video(tmp_path / "x.mp4", duration_s=1, width=101, height=100)


def test_shape_masks_are_distinct() -> None:
    masks = {s: shape_mask(s, 32) for s in SHAPES}
    assert all(m.any() and not m.all() for s, m in masks.items() if s != "square")
    assert len({m.tobytes() for m in masks.values()}) == len(SHAPES)


def test_write_video_is_fast(tmp_path: Path) -> None:
    started = time.perf_counter()
    write_video(tmp_path / "fast.mp4", duration_s=20, fps=30, width=320, height=240, seed=2)
    # ~0.8 s measured on 2 shared cores; the bound only catches an accidental slow path.
    assert time.perf_counter() - started < 6.0


def test_vfr_video_pts(tmp_path: Path) -> None:
    path = tmp_path / "vfr.mp4"
    pts = write_vfr_video(path, n_frames=12, gaps_s=(1 / 30, 1 / 10))
    assert pts[:4] == [0.0, 0.033, 0.133, 0.166]
    with av.open(str(path)) as container:
        stored = [float(f.time or 0.0) for f in container.decode(video=0)]
    np.testing.assert_allclose(stored, pts, atol=1e-6)
    assert len(set(np.round(np.diff(pts), 3))) == 2


def test_bad_files(tmp_path: Path) -> None:
    files = write_bad_files(tmp_path)
    assert set(files) == {"zero_byte.mp4", "truncated.mp4", "random_bytes.mp4", "notes.mp4"}
    assert files["zero_byte.mp4"].stat().st_size == 0
    assert files["truncated.mp4"].read_bytes()[4:8] == b"ftyp"  # looks like an mp4 at first
    assert not list(tmp_path.glob(".*"))  # the temporary full file is gone
    for path in files.values():
        with pytest.raises(DecodeError):
            probe(str(path))


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path], float]:
    root = tmp_path_factory.mktemp("archive")
    started = time.perf_counter()
    paths = make_sample_archive(root, n_videos=8, seed=0)
    return root, paths, time.perf_counter() - started


def test_sample_archive_variety(archive: tuple[Path, list[Path], float]) -> None:
    root, paths, seconds = archive
    assert len(paths) == 8 and all(p.is_file() for p in paths)
    assert seconds < 20  # ~4 s measured; generous for a loaded CI box
    assert {p.suffix for p in paths} >= {".mp4", ".mkv", ".mov", ".avi"}
    assert any(len(p.relative_to(root).parts) > 1 for p in paths)  # nested folders
    infos = [probe(str(p)) for p in paths]
    assert len({(i.width, i.height) for i in infos}) >= 5
    assert min(i.width for i in infos) == 160 and max(i.width for i in infos) == 640
    assert {i.fps for i in infos} == {15.0, 24.0, 25.0, 30.0}
    assert all(6 - 0.05 <= i.duration_s <= 20 + 0.05 for i in infos)
    with pytest.raises(DecodeError) as err:
        probe(str(root / "broken.mp4"))
    assert err.value.error_class == "corrupt"


def test_sample_archive_truth(archive: tuple[Path, list[Path], float]) -> None:
    root, paths, _ = archive
    truth = json.loads((root / "truth.json").read_text())
    assert [root / v["path"] for v in truth["videos"]] == paths
    assert truth["corrupt"] == ["broken.mp4"]
    triples = []
    for video in truth["videos"]:
        scenes = [Scene(**s) for s in video["scenes"]]
        assert scenes[0].start_s == 0 and scenes[-1].end_s == pytest.approx(video["duration_s"])
        triples += [(s.shape, s.color, s.background) for s in scenes]
    assert len(set(triples)) == len(triples)  # every scene of the archive is distinct content


def test_sample_archive_without_corrupt(tmp_path: Path) -> None:
    paths = make_sample_archive(tmp_path, n_videos=2, seed=1, with_corrupt=False)
    assert len(paths) == 2 and not (tmp_path / "broken.mp4").exists()
