"""`clips`: one row per clip window of a video, per model."""

import pyarrow as pa

CLIPS_SCHEMA = pa.schema([
    pa.field("video_id", pa.string(), nullable=False),
    pa.field("clip_idx", pa.int32(), nullable=False),     # 0-based window number within the video
    pa.field("start_s", pa.float64(), nullable=False),
    pa.field("end_s", pa.float64(), nullable=False),
    pa.field("n_frames", pa.int32(), nullable=False),
    pa.field("frame_ts", pa.list_(pa.float64())),        # presentation times of the frames used
    pa.field("model_id", pa.string(), nullable=False),
    # list<float32>, not fixed_size_list: Delta stores both as arrays and polars' native reader
    # rejects fixed-size lists. The dimension is part of model_id and of the table metadata.
    pa.field("embedding", pa.list_(pa.float32()), nullable=False),
    pa.field("run_id", pa.string(), nullable=False),
    # CenterCLIP token clustering (encode.token_clustering.enabled): one L2-normalised vector per
    # temporal segment of the clip, in time order; `embedding` is then their renormalised mean.
    # Null when clustering is off (the clip vector is the mean of its frames; nothing finer exists).
    pa.field("segment_embeddings", pa.list_(pa.list_(pa.float32()))),
    # JPEG of the clip's frame nearest its midpoint, made in the embed stage from the frames it
    # decoded for the encoder (thumbnails.*). Kept beside its clip so it is written, replaced and
    # dropped in the same commit; index and validation readers project it away (Parquet columns).
    # Null when thumbnails are off and in rows written before the column existed.
    pa.field("thumbnail", pa.binary()),
])

# Partitioned by model_id only: an index build reads exactly one model's vectors (partition
# pruning), and a full refresh or a second model never rewrites another model's files. A finer key
# (date, video_id hash) would multiply small files at 400M rows without helping any query;
# per-video pruning comes from file stats on video_id after Z-ordering.
CLIPS_PARTITION_BY: list[str] = ["model_id"]
