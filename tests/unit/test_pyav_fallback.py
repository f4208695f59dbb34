"""decode_range on files whose decord index has no usable timestamps: MPEG-4 AVIs declaring B-frames.

decord (FFmpeg 4.1) leaves the pts of their I/P packets unset and reports about -3.07e17 s for
those frames; vidx detects that and decodes with PyAV. Index-coded frames give the truth.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from vidx.decode import decode_range, decode_reference, probe
from vidx.decode.decoder import _decord_size, _frame_stamps, _open_reader
from vidx.decode.pyav_frames import presentation_origin, stamps_usable
from vidx.synth import index_color, read_index, write_index_video

NTSC = Fraction(30000, 1001)
KINDS = {"declared-b": {"bf": "1", "b_strategy": "1"}, "b-frames": {"bf": "2"}}
N_FRAMES = 60  # 2.002 s at 29.97 fps


@pytest.fixture(scope="module")
def avis(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("avi")
    out = {}
    for name, options in {**KINDS, "no-b": {}}.items():
        out[name] = d / f"{name}.avi"
        write_index_video(out[name], n_frames=N_FRAMES, fps=NTSC, width=192, height=108, options=options)
    return out


def _decord_stamps(path: Path) -> np.ndarray:
    info = probe(str(path))
    reader = _open_reader(str(path), *_decord_size(info, 32), 1)
    try:
        return _frame_stamps(str(path), reader, len(reader))
    finally:
        del reader


def _assert_shows(frames: np.ndarray, times: np.ndarray) -> None:
    """Each frame is the one displayed at its time, or (the decoders' 1 ms boundary tolerance) the
    next one when it starts within 1 ms after: frame 30 at 1.001 s for t = 1 s at 29.97 fps."""
    assert len(frames) == len(times)
    for frame, t in zip(frames, times, strict=True):
        shown, starting = int(np.floor(t * float(NTSC) + 1e-6)), int(np.floor((t + 1.5e-3) * float(NTSC)))
        assert read_index(frame) in {shown % 64, starting % 64}, f"t={t}: frame {read_index(frame)}"


def test_stamps_usable() -> None:
    good = np.stack([np.arange(5) / 25, np.arange(1, 6) / 25], axis=1)
    assert stamps_usable(good)
    nopts = float(np.float32(-(2**63) / 30))  # what decord reports for a packet without pts
    for bad in ([[nopts, nopts]], [[0.0, 0.04], [nopts, nopts]], [[float("nan"), 0.04]], [[3e17, 3e17]]):
        assert not stamps_usable(np.asarray(bad))
    assert not stamps_usable(np.zeros((0, 2)))


@pytest.mark.parametrize("kind", list(KINDS))
def test_decord_has_no_timestamps_for_these_files(avis: dict[str, Path], kind: str) -> None:
    assert not stamps_usable(_decord_stamps(avis[kind]))
    assert stamps_usable(_decord_stamps(avis["no-b"]))  # the same stream without B-frames is fine


@pytest.mark.parametrize("kind", [*KINDS, "no-b"])
def test_frames_sampled_by_time(avis: dict[str, Path], kind: str) -> None:
    path = str(avis[kind])
    got = decode_range(path, start_s=0.0, end_s=100.0, sample_fps=7.0, image_size=32)
    # every grid time before the end of the last frame (60 frames at 29.97 fps: 2.002 s)
    assert got.times.tolist() == (np.arange(15) / 7.0).tolist()
    _assert_shows(got.frames, got.times)
    np.testing.assert_allclose(got.pts, [read_index(f) / float(NTSC) for f in got.frames], atol=1e-4)
    ref = decode_reference(path, got.times, 32)
    np.testing.assert_array_equal(ref.times, got.times)
    assert float(np.abs(ref.frames.astype(np.int16) - got.frames).mean()) < 3.0


@pytest.mark.parametrize("kind", list(KINDS))
def test_split_ranges_decode_identically(avis: dict[str, Path], kind: str) -> None:
    path = str(avis[kind])
    whole = decode_range(path, start_s=0.0, end_s=3.0, sample_fps=5.0, image_size=32)
    assert len(whole) == 11  # 0, 0.2, ..., 2.0 (< 2.002 s)
    parts = [decode_range(path, start_s=a, end_s=b, sample_fps=5.0, image_size=32)
             for a, b in ((0.0, 1.2), (1.2, 1.8), (1.8, 3.0))]
    np.testing.assert_array_equal(np.concatenate([p.times for p in parts]), whole.times)
    np.testing.assert_array_equal(np.concatenate([p.pts for p in parts]), whole.pts)
    np.testing.assert_array_equal(np.concatenate([p.frames for p in parts]), whole.frames)
    _assert_shows(whole.frames, whole.times)


def test_origin_is_the_first_frame_shown(avis: dict[str, Path]) -> None:
    # FFmpeg numbers the first displayed frame of a B-frame AVI 1 (its stream start, from dts, is 0)
    origin = presentation_origin(str(avis["b-frames"]))
    assert origin is not None and origin[0] == 1 and origin[1] == 1 / NTSC


def _frame(i: int):
    import av

    image = np.empty((16, 16, 3), np.uint8)
    image[:] = index_color(i)
    return av.VideoFrame.from_ndarray(image, format="rgb24")


def test_picker_rules() -> None:
    from vidx.decode.pyav_frames import _Picker

    times = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    # frames without pts (decoding from the start) follow each other by their duration: 0.2 s
    picker = _Picker(times, 1e-3, (16, 16), seeked=False)
    for i in range(4):
        picker.add(None, 0.2, _frame(i))
    picker.finish()
    assert picker.chosen_t == pytest.approx([0.0, 0.2, 0.4, 0.6]) and not picker.overshot  # 1.0: past 0.8
    assert [read_index(picker.images[k]) for k in picker.chosen] == [0, 1, 2, 3]
    assert len(picker.images) == 4  # each frame converted once
    # a seek that lands after the first sample time is reported, so the caller starts over
    late = _Picker(times, 1e-3, (16, 16), seeked=True)
    late.add(0.5, 0.2, _frame(0))
    assert late.overshot and late.done and not late.chosen
    lost = _Picker(times, 1e-3, (16, 16), seeked=True)
    lost.add(None, 0.2, _frame(0))  # after a seek a frame without pts cannot be placed
    assert lost.overshot
