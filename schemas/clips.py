"""`clips`: one row per clip window of a video, per model, and how rows map to partitions."""

import zlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
    # video_bucket(video_id): the partition a row lives in (below). Nullable because tables written
    # before it existed gain it by schema evolution; there it is a plain data column.
    pa.field("video_bucket", pa.int32()),
])

# Partitioned by model_id, then by a hash bucket of video_id. By model: an index build reads one
# model's vectors and a second model never rewrites another's files. By video bucket: every clip
# of a video lands in one of CLIPS_VIDEO_BUCKETS folders, so an incremental checkpoint that
# replaces 100 videos looks only at the files of their buckets (and, inside a bucket, at the files
# whose video_id min/max stats cover one of them: executors write one file per bucket, which holds
# a task's few videos of that bucket, and `tables optimize` sorts each bucket by video_id). A
# date or video_id-prefix key would not spread rows evenly; more buckets would multiply the small
# files every checkpoint writes (one per bucket per task). Tables created before the bucket keep
# their model_id-only layout (vidx.tables.layout reads the layout from the table).
CLIPS_PARTITION_BY: list[str] = ["model_id", "video_bucket"]
# Part of the table format: changing it puts existing rows in the wrong buckets. A new table
# records it in its description (vidx.tables.layout), and readers use the recorded value.
CLIPS_VIDEO_BUCKETS = 64


def video_bucket(video_id: str, buckets: int = CLIPS_VIDEO_BUCKETS) -> int:
    """The bucket of one video: crc32 (stable across Python versions and machines) modulo `buckets`."""
    return zlib.crc32(video_id.encode()) % buckets


def video_buckets(video_ids: pa.Array | pa.ChunkedArray, buckets: int = CLIPS_VIDEO_BUCKETS) -> pa.Int32Array:
    """video_bucket of every row, hashing each distinct id once (a file holds few videos)."""
    arr = video_ids.combine_chunks() if isinstance(video_ids, pa.ChunkedArray) else video_ids
    encoded = pc.dictionary_encode(arr)
    per_value = np.fromiter((video_bucket(v, buckets) for v in encoded.dictionary.to_pylist()), np.int32,
                            len(encoded.dictionary))
    codes = pc.fill_null(encoded.indices, 0).to_numpy(zero_copy_only=False)  # a null id: bucket 0
    return pa.array(per_value[codes] if len(per_value) else np.zeros(len(arr), np.int32), pa.int32())
