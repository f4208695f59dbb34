"""The decoder subprocess: results equal in-process decoding; hangs are killed; the next call works."""

from __future__ import annotations

import numpy as np
import pytest

from vidx.decode.decoder import decode_range
from vidx.decode.isolated import IsolatedDecoder
from vidx.decode.worker import HANG_ENV
from vidx.errors import DecodeError
from vidx.synth import write_bad_files, write_video


def test_isolated_matches_in_process_and_survives_a_hang(tmp_path, monkeypatch):
    good = tmp_path / "good.mp4"
    write_video(good, duration_s=5, fps=25, width=160, height=120, seed=3)
    hang = tmp_path / "hang_me.mp4"
    hang.write_bytes(good.read_bytes())
    monkeypatch.setenv(HANG_ENV, "hang_me")
    dec = IsolatedDecoder()
    try:
        info = dec.probe(str(good), timeout_s=30)
        assert info.width == 160 and info.duration_s == pytest.approx(5, abs=0.1)
        got = dec.decode(str(good), start_s=0, end_s=5, sample_fps=1, image_size=32, info=info, threads=1,
                         timeout_s=30)
        ref = decode_range(str(good), start_s=0, end_s=5, sample_fps=1, image_size=32)
        np.testing.assert_array_equal(got.frames, ref.frames)
        with pytest.raises(DecodeError) as err:
            dec.probe(str(hang), timeout_s=1.0)
        assert err.value.error_class == "timeout"
        assert dec.probe(str(good), timeout_s=30).width == 160   # a fresh subprocess took over
        bad = write_bad_files(tmp_path / "bad")
        with pytest.raises(DecodeError) as err:
            dec.probe(str(bad["random_bytes.mp4"]), timeout_s=30)
        assert err.value.error_class == "corrupt"
    finally:
        dec.close()
