"""Sampling math: grid alignment, split-unit equality, frame selection, sizes and crops."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from vidx.decode.sampling import (
    center_crop,
    decode_size,
    frame_indices_for_times,
    rotate_frames,
    sample_times,
)


def test_grid_is_anchored_at_zero() -> None:
    np.testing.assert_allclose(sample_times(0.0, 3.0, 1.0), [0.0, 1.0, 2.0])
    np.testing.assert_allclose(sample_times(0.3, 2.0, 2.0), [0.5, 1.0, 1.5])
    assert sample_times(0.0, 3.0, 1.0).dtype == np.float64


def test_start_on_grid_point_is_included_despite_float_error() -> None:
    assert sample_times(8.0, 10.0, 1.0)[0] == 8.0
    # 0.1 * 3 * 10 = 3.0000000000000004 in float: must still start at k = 3.
    assert sample_times(0.1 * 3, 1.0, 10.0)[0] == pytest.approx(0.3)
    assert sample_times(9.0, 12.0, 1 / 3)[0] == pytest.approx(9.0)
    # end is exclusive, also when it lands on a grid point through float error
    assert sample_times(0.0, 0.1 * 3, 10.0).tolist() == pytest.approx([0.0, 0.1, 0.2])


@pytest.mark.parametrize(("duration", "fps", "unit"), [(60.0, 1.0, 8.0), (37.3, 2.5, 4.0),
                                                       (20.0, 29.97, 3.0), (100.0, 1 / 3, 7.0),
                                                       (12.0, 0.7, 0.1 * 3)])
def test_split_units_equal_one_run(duration: float, fps: float, unit: float) -> None:
    whole = sample_times(0.0, duration, fps)
    edges = [k * unit for k in range(int(duration // unit) + 1)] + [duration]
    parts = [sample_times(a, b, fps) for a, b in itertools.pairwise(edges)]
    np.testing.assert_array_equal(np.concatenate(parts), whole)


def test_empty_and_invalid_ranges() -> None:
    assert sample_times(5.0, 5.0, 1.0).shape == (0,)
    assert sample_times(5.0, 4.0, 1.0).shape == (0,)
    np.testing.assert_allclose(sample_times(-2.0, 1.0, 1.0), [0.0])  # no negative grid times
    with pytest.raises(ValueError, match="fps"):
        sample_times(0.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="finite"):
        sample_times(0.0, float("inf"), 1.0)


def test_displayed_frame_is_last_pts_not_after_time() -> None:
    pts = np.array([0.0, 0.5, 1.0, 1.5])
    idx = frame_indices_for_times(pts, np.array([-1.0, 0.0, 0.49, 0.5, 0.99, 1.2, 9.0]))
    assert idx.tolist() == [0, 0, 0, 1, 1, 2, 3]
    assert idx.dtype == np.int64


def test_variable_frame_rate() -> None:
    pts = np.array([0.0, 0.033, 0.133, 0.166, 0.266, 0.299])  # 1/30 and 1/10 s gaps
    times = np.array([0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3])
    assert frame_indices_for_times(pts, times).tolist() == [0, 1, 1, 2, 3, 3, 5]


def test_tolerance_absorbs_timestamp_rounding() -> None:
    # decord gives float32 seconds: frame 3 of a 30 fps video reads 0.10000000149 > 0.1.
    pts = np.arange(10, dtype=np.float32) / np.float32(30)
    assert frame_indices_for_times(pts.astype(np.float64), np.array([0.1]))[0] == 3
    # Matroska stores milliseconds: frame 1 of a 24 fps video is at 0.042 > 1/24.
    assert frame_indices_for_times(np.array([0.0, 0.042, 0.083]), np.array([1 / 24]))[0] == 1
    assert frame_indices_for_times(np.array([0.0, 0.042]), np.array([1 / 24]), tolerance_s=0)[0] == 0


def test_unsorted_and_nan_pts_return_original_indices() -> None:
    pts = np.array([1.0, np.nan, 0.0, 2.0, 0.5])
    idx = frame_indices_for_times(pts, np.array([0.0, 0.7, 1.0, 5.0, -1.0]))
    assert idx.tolist() == [2, 4, 0, 3, 2]


def test_duplicate_pts_pick_first_listed() -> None:
    pts = np.array([0.0, 1.0, 1.0, 2.0])
    assert frame_indices_for_times(pts, np.array([1.5])).tolist() == [1]


def test_all_nan_pts() -> None:
    assert frame_indices_for_times(np.array([np.nan]), np.zeros(0)).shape == (0,)
    with pytest.raises(ValueError, match="NaN"):
        frame_indices_for_times(np.array([np.nan, np.nan]), np.array([0.0]))


@pytest.mark.parametrize(("w", "h", "target", "expected"), [
    (1920, 1080, 224, (398, 224)), (1080, 1920, 224, (224, 398)), (320, 240, 224, (299, 224)),
    (100, 100, 64, (64, 64)), (160, 120, 224, (299, 224)), (10000, 2, 1, (5000, 1)),
])
def test_decode_size(w: int, h: int, target: int, expected: tuple[int, int]) -> None:
    assert decode_size(w, h, target) == expected
    assert min(decode_size(w, h, target)) == target


def test_decode_size_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        decode_size(0, 100, 10)


def test_center_crop_takes_the_middle() -> None:
    frames = np.zeros((2, 4, 6, 3), np.uint8)
    frames[:, 1:3, 2:4] = 255
    out = center_crop(frames, 2)
    assert out.shape == (2, 2, 2, 3) and (out == 255).all()
    assert center_crop(np.zeros((0, 5, 7, 3), np.uint8), 5).shape == (0, 5, 5, 3)
    with pytest.raises(ValueError, match="crop"):
        center_crop(frames, 5)


def test_rotate_frames_counter_clockwise() -> None:
    frames = np.zeros((1, 2, 3, 3), np.uint8)
    frames[0, 0, 2] = 255  # top-right corner
    assert rotate_frames(frames, 0) is frames
    out = rotate_frames(frames, 90)
    assert out.shape == (1, 3, 2, 3) and out[0, 0, 0, 0] == 255  # top-right -> top-left
    assert rotate_frames(frames, -90)[0, 2, 1, 0] == 255  # clockwise: top-right -> bottom-right
    assert rotate_frames(frames, 180)[0, 1, 0, 0] == 255
