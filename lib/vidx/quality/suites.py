"""great-expectations suites for `videos` and `clips`, built in code from `vidx_schemas`.

Not-null expectations come from the schemas' non-nullable fields (list fields are checked through
their derived length column); the rest encode what the pipeline promises. Where GX has no
built-in expectation, `vidx.quality.frames` computes a derived column and a built-in expectation
checks it (see its docstring for the columns).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from vidx_schemas import CLIPS_SCHEMA, VIDEO_STATUSES, VIDEOS_SCHEMA

# Derived column standing in for a list field in not-null checks.
_LIST_STANDIN = {"embedding": "embedding_dim"}
# The pipeline's own tolerance for float round-off in times written by the decoder.
_TIME_EPS = 1e-3


@dataclass(frozen=True)
class SuiteParams:
    dim: int                        # embedding dimension of the model
    max_failed_share: float         # quality.max_failed_share
    norm_tolerance: float           # quality.norm_tolerance
    sample_step_s: float            # 1 / decode.sample_fps
    clip_mode: str                  # clips.mode: "fixed" windows are numbered 0, 1, 2, ...


def _not_null(schema: pa.Schema) -> list[Any]:
    import great_expectations.expectations as gxe

    out = []
    for f in schema:
        if f.nullable:
            continue
        column = _LIST_STANDIN.get(f.name, f.name) if pa.types.is_list(f.type) else f.name
        out.append(gxe.ExpectColumnValuesToNotBeNull(column=column))
    return out


def videos_expectations(p: SuiteParams) -> list[Any]:
    import great_expectations.expectations as gxe

    return [
        *_not_null(VIDEOS_SCHEMA),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["video_id", "model_id"]),
        gxe.ExpectColumnValuesToBeInSet(column="status", value_set=list(VIDEO_STATUSES)),
        # mean of is_failed (1 failed / 0 ok / null deleted) = failed share of the live files
        gxe.ExpectColumnMeanToBeBetween(column="is_failed", min_value=0.0, max_value=p.max_failed_share),
        # every ok video has >= 1 clip in the pinned clips version (null for failed/deleted videos)
        gxe.ExpectColumnValuesToBeBetween(column="ok_video_clips", min_value=1),
    ]


def clips_expectations(p: SuiteParams) -> list[Any]:
    import great_expectations.expectations as gxe

    idx_step = (gxe.ExpectColumnValuesToBeInSet(column="clip_idx_step", value_set=[1]) if p.clip_mode == "fixed"
                # adaptive clips are numbered by their first frame's sample index: increasing, not +1
                else gxe.ExpectColumnValuesToBeBetween(column="clip_idx_step", min_value=1))
    return [
        *_not_null(CLIPS_SCHEMA),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["video_id", "model_id", "clip_idx"]),
        gxe.ExpectColumnValuesToBeInSet(column="embedding_dim", value_set=[p.dim]),
        gxe.ExpectColumnValuesToBeInSet(column="embedding_nonfinite", value_set=[0]),
        gxe.ExpectColumnValuesToBeBetween(column="embedding_norm", min_value=1.0 - p.norm_tolerance,
                                          max_value=1.0 + p.norm_tolerance),
        gxe.ExpectColumnValuesToBeBetween(column="start_s", min_value=0.0),
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="end_s", column_B="start_s", or_equal=False),
        # A video without a known duration (never probed) is covered by the video_status checks.
        gxe.ExpectColumnPairValuesAToBeGreaterThanB(column_A="max_end_s", column_B="end_s", or_equal=True,
                                                    ignore_row_if="either_value_is_missing"),
        gxe.ExpectColumnValuesToBeBetween(column="n_frames", min_value=1),
        idx_step,
        # Clips tile their video: each starts where the previous one ended. A gap of a sample step
        # or more is a lost window; an overlap is a duplicate or a clip written twice.
        gxe.ExpectColumnValuesToBeBetween(column="start_gap_s", min_value=-_TIME_EPS,
                                          max_value=p.sample_step_s, strict_max=True),
        # Clips of deleted, failed or unknown videos should have been dropped with them.
        gxe.ExpectColumnValuesToNotBeNull(column="video_status"),
        gxe.ExpectColumnValuesToBeInSet(column="video_status", value_set=["ok"]),
    ]


def expectation_label(suite: str, config: Any) -> str:
    """`clips: expect_column_values_to_be_between(embedding_norm)` - what a failure report names."""
    kwargs = config.kwargs
    cols = kwargs.get("column") or kwargs.get("column_list") or [kwargs.get("column_A"), kwargs.get("column_B")]
    cols = ", ".join(c for c in (cols if isinstance(cols, list) else [cols]) if c)
    return f"{suite}: {config.type}({cols})"
