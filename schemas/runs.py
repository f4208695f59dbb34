"""`runs`: one row per `vidx embed` run (written when it ends, successfully or not)."""

import pyarrow as pa

RUN_STATUSES = ("succeeded", "failed")

RUNS_SCHEMA = pa.schema([
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("pipeline_id", pa.string(), nullable=False),   # the Delta app-transaction id of the run
    pa.field("model_id", pa.string(), nullable=False),
    pa.field("archive_uri", pa.string(), nullable=False),
    pa.field("started_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("finished_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("status", pa.string(), nullable=False),         # one of RUN_STATUSES
    pa.field("error", pa.string()),
    pa.field("n_listed", pa.int64()),
    pa.field("n_new", pa.int64()),
    pa.field("n_changed", pa.int64()),
    pa.field("n_deleted", pa.int64()),
    pa.field("n_unchanged", pa.int64()),
    pa.field("n_failed", pa.int64()),
    pa.field("n_units", pa.int64()),
    pa.field("n_clips", pa.int64()),
    pa.field("n_checkpoints", pa.int32()),
    pa.field("clips_versions", pa.list_(pa.int64())),         # Delta versions this run committed
    pa.field("videos_versions", pa.list_(pa.int64())),
    pa.field("wall_s", pa.float64()),
])

RUNS_PARTITION_BY: list[str] = []
