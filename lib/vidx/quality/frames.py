"""Pandas frames of one validation group (vidx.quality.batches: the clips of some videos and those
videos' rows), plus the derived columns the expectation suites need where great-expectations has
no built-in check (vector norm and length, non-finite values, clip order and time tiling per
video, the video's duration).

The embedding lists never reach pandas: batches.spill reduced them to their facts while
streaming, and a group holds at most ~batches.GROUP_ROWS clips, whatever the table's size.
"""

from __future__ import annotations

import json
import logging
import re

import numpy as np
import pandas as pd
import pyarrow as pa

from vidx.errors import DataQualityError
from vidx.storage import exists, join, normalize_uri, read_bytes
from vidx.tables import delta, table_uri

LOG = logging.getLogger(__name__)
_DIM_SUFFIX = re.compile(r"__d(\d+)(?:__|$)")  # a clustering suffix may follow
# Commit metadata the embed driver writes on both tables' commits of one checkpoint.
_RUN_KEY, _BATCH_KEY = "vidx.run_id", "vidx.batch"


def clip_models(warehouse: str, version: int) -> list[str]:
    return delta.partition_values(table_uri(warehouse, "clips"), "model_id", version=version)


def model_dim(warehouse: str, model_id: str) -> int:
    """The embedding dimension: the `__d<dim>` suffix of model ids, else the model record."""
    match = _DIM_SUFFIX.search(model_id)
    if match:
        return int(match.group(1))
    record = join(normalize_uri(warehouse), "models", f"{model_id}.json")
    if exists(record):
        return int(json.loads(read_bytes(record))["dim"])
    raise DataQualityError(f"cannot tell the embedding dimension of {model_id!r}: no '__d<dim>' suffix and no "
                           f"model record at {record}")


def matching_videos_version(warehouse: str, clips_version: int) -> int | None:
    """The `videos` version that belongs with clips `clips_version`.

    The embed driver commits each checkpoint to clips, then videos, both tagged with the run id and
    batch. Walk back from `clips_version` to the last commit carrying that tag (optimize commits
    carry none and change no data), then find the videos commit with the same tag. Tables written
    by other tools have no tags: their latest videos version is used.
    """
    videos_uri = table_uri(warehouse, "videos")
    if not delta.table_exists(videos_uri):
        return None
    clips_history = {h["version"]: h for h in delta.history(table_uri(warehouse, "clips"))}
    tag = None
    for v in range(clips_version, -1, -1):
        entry = clips_history.get(v, {})
        if _RUN_KEY in entry:
            tag = (entry[_RUN_KEY], entry.get(_BATCH_KEY))
            break
    if tag is not None:
        for entry in delta.history(videos_uri):
            if (entry.get(_RUN_KEY), entry.get(_BATCH_KEY)) == tag:
                return int(entry["version"])
        LOG.warning("no videos commit of run %s batch %s yet (interrupted run?); using the latest videos", *tag)
    return delta.latest_version(videos_uri)


def videos_frame(table: pa.Table) -> pd.DataFrame:
    """One group's `videos` rows, plus `is_failed` (1/0; NaN for deleted files, which do not count in
    the failed share)."""
    df = table.to_pandas()
    status = df["status"]
    df["is_failed"] = np.where(status == "deleted", np.nan, (status == "failed").astype(float))
    return df


def clips_frame(table: pa.Table, videos: pd.DataFrame, sample_step_s: float) -> pd.DataFrame:
    """One group's clips (scalar columns and vector facts, see batches.spill) with the derived columns:

    - embedding_dim / embedding_nonfinite / embedding_norm: the vector's length, count of NaN or
      inf values, and L2 norm (NaN when not finite);
    - clip_idx_step: clip_idx minus the previous clip_idx of the same video (the first clip is
      compared with -1, so a video starting at clip 0 has step 1 throughout when contiguous);
    - start_gap_s: start_s minus the previous clip's end_s (the first clip: minus 0);
    - max_end_s: the video's duration plus one sample step (how far the last window may reach);
    - video_status: the video's status in the matching videos version (null: no videos row).
    """
    df = table.to_pandas()
    # A null embedding has no length: keep it null so the not-null expectation reports it.
    df["embedding_dim"] = df["embedding_dim"].astype("Int64")
    df = df.sort_values(["video_id", "clip_idx", "start_s"], kind="stable").reset_index(drop=True)
    by_video = df.groupby("video_id", sort=False)
    df["clip_idx_step"] = df["clip_idx"] - by_video["clip_idx"].shift(fill_value=-1)
    df["start_gap_s"] = df["start_s"] - by_video["end_s"].shift(fill_value=0.0)
    known = videos.drop_duplicates("video_id", keep="last").set_index("video_id")
    df["max_end_s"] = df["video_id"].map(known["duration_s"]) + sample_step_s
    df["video_status"] = df["video_id"].map(known["status"])
    return df


def with_clip_counts(videos: pd.DataFrame, clips: pd.DataFrame) -> pd.DataFrame:
    """`videos` plus `ok_video_clips`: for each `ok` video, how many clips of the model the pinned
    clips version holds (null for failed and deleted videos, which need none). An ok video with
    0 is silent data loss: it is recorded as indexed but no search can ever find it."""
    counts = clips["video_id"].value_counts() if len(clips) else pd.Series(dtype="int64")
    out = videos.copy()
    n = out["video_id"].map(counts).fillna(0).astype(float)
    out["ok_video_clips"] = np.where(out["status"] == "ok", n, np.nan)
    return out
