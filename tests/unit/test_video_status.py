"""The embed stage's verdict per video (spark/commit.py `video_rows`): `ok` only with clips."""

from __future__ import annotations

from typing import Any

from vidx.archive.listing import VideoFile
from vidx.spark.commit import BatchInput, video_rows

PROBE = {"duration_s": 103 / 30, "fps": 30.0, "width": 1920, "height": 1080, "codec": "mpeg4"}


def _unit(video_id: str, i: int, *, n_clips: int, n_frames: int, **extra: Any) -> dict[str, Any]:
    return {"kind": "unit", "unit_id": f"{video_id}:{i}", "video_id": video_id, "n_clips": n_clips,
            "n_frames": n_frames, "decode_s": 0.1, "encode_s": 0.1, "error_class": None, "error": None, **extra}


def _rows(results: list[dict[str, Any]], ids: list[str]) -> dict[str, dict[str, Any]]:
    files = [VideoFile(f"/a/{v}.avi", 10, 0, v) for v in ids]
    inp = BatchInput(1, files, [], set(), {v: dict(PROBE) for v in ids}, results)
    return {r["video_id"]: r for r in video_rows(inp, run_id="r", model_id="m")}


def test_video_with_zero_clips_is_failed_no_frames() -> None:
    rows = _rows([_unit("empty", 0, n_clips=0, n_frames=0), _unit("good", 0, n_clips=1, n_frames=4)],
                 ["empty", "good"])
    empty = rows["empty"]
    assert empty["status"] == "failed" and empty["error_class"] == "no_frames" and empty["n_clips"] == 0
    assert "no clips" in empty["error"] and "3.43 s" in empty["error"] and "30.00 fps" in empty["error"]
    assert rows["good"]["status"] == "ok" and rows["good"]["error_class"] is None and rows["good"]["n_clips"] == 1


def test_split_video_is_ok_when_any_unit_has_clips() -> None:
    # a last unit past the real end (the header's duration was long) has no frames: not a failure
    rows = _rows([_unit("v", 0, n_clips=150, n_frames=600), _unit("v", 1, n_clips=0, n_frames=0)], ["v"])
    assert rows["v"]["status"] == "ok" and rows["v"]["n_clips"] == 150


def test_decoder_error_keeps_its_own_class() -> None:
    rows = _rows([_unit("v", 0, n_clips=0, n_frames=0, error_class="corrupt", error="bad data")], ["v"])
    assert (rows["v"]["status"], rows["v"]["error_class"], rows["v"]["error"]) == ("failed", "corrupt", "bad data")
