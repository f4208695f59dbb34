"""`videos`: one row per source file and model: what the file was (fingerprint, probe facts) and
what happened to it (status, error, clip count) in the run that embedded it."""

import pyarrow as pa

VIDEO_STATUSES = ("ok", "failed", "deleted")

VIDEOS_SCHEMA = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),   # stable: sha1 of the normalised uri
    pa.field("uri", pa.string(), nullable=False),
    pa.field("size_bytes", pa.int64(), nullable=False),
    pa.field("mtime", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("duration_s", pa.float64()),
    pa.field("fps", pa.float64()),
    pa.field("width", pa.int32()),
    pa.field("height", pa.int32()),
    pa.field("codec", pa.string()),
    # one of VIDEO_STATUSES; "deleted" once the file left the archive
    pa.field("status", pa.string(), nullable=False),
    # corrupt|unsupported_codec|timeout|too_large|unreadable (decoder), no_frames (decoded, but no clip)
    pa.field("error_class", pa.string()),
    pa.field("error", pa.string()),                      # the decoder's message when status == "failed"
    pa.field("model_id", pa.string(), nullable=False),   # the model this row's clips were made with
    pa.field("n_clips", pa.int32()),
    pa.field("run_id", pa.string(), nullable=False),
    pa.field("indexed_at", pa.timestamp("us", tz="UTC"), nullable=False),
])

# One row per file is small even at petabyte scale (~millions of rows): partitioning would only
# produce tiny files. Compaction + Z-order on video_id keeps point lookups fast instead.
VIDEOS_PARTITION_BY: list[str] = []
