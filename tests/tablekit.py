"""Checks on an embedded warehouse's tables shared by integration tests."""

from __future__ import annotations

from collections import Counter

from vidx.tables import delta, table_uri


def ok_videos_without_clips(warehouse: str, model_id: str) -> list[str]:
    """URIs of the model's `ok` videos with no row in the latest clips version (must be none)."""
    clips = delta.read_rows(table_uri(warehouse, "clips"), columns=["video_id"], equals={"model_id": model_id})
    counts = Counter(clips["video_id"].to_pylist())
    videos = delta.read_rows(table_uri(warehouse, "videos"), columns=["video_id", "uri", "status"],
                             equals={"model_id": model_id}).to_pylist()
    return [v["uri"] for v in videos if v["status"] == "ok" and counts[v["video_id"]] == 0]
