"""Synthetic warehouses for bench/scale.py: `clips` and `videos` written straight to Delta, no decoding.

N clips of CLIPS_PER_VIDEO fixed 4 s windows per video (ids are sha1s of archive uris, as embed
makes them), 512-d vectors generated and written a file at a time (never N x dim in memory):
`clusters` random centres, each spread over its own `intrinsic`-dimensional subspace plus
isotropic noise, L2-normalised (bench/index_scale.py's generator: real CLIP embeddings have low
intrinsic dimension, so indexes behave realistically). A video's clips share one cluster 70% of
the time. Files are laid out as `vidx tables optimize` leaves them: one bucket partition at a time,
videos in id order, FILE_ROWS rows per file. Both tables are committed once, tagged like an embed
checkpoint, and the query model's record is saved, so every vidx command works on the result.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import numpy as np
import pyarrow as pa

from vidx.archive import VideoFile, video_id_for
from vidx.config import TokenClusteringConfig
from vidx.tables import DataFile, clips_layout, delta, table_uri, write_clip_files, write_data_file
from vidx.tables.layout import description
from vidx_schemas import CLIPS_PARTITION_BY, CLIPS_SCHEMA, VIDEOS_SCHEMA, video_bucket

LOG = logging.getLogger("bench.scale")
CLIPS_PER_VIDEO = 100
CLIP_S = 4.0
FILE_ROWS = 32_768  # ~64 MB of 512-d vectors per file
ARCHIVE = "/archive/scale"
SEED_RUN = "bench-seed"
NOW = datetime(2026, 12, 1, tzinfo=UTC)


class Generator:
    """Clustered vectors (module doc); the centres and subspaces are fixed by `seed`."""

    def __init__(self, dim: int = 512, clusters: int = 1000, intrinsic: int = 16, seed: int = 0) -> None:
        self.dim, self.clusters, self.intrinsic, self.seed = dim, clusters, intrinsic, seed
        rng = np.random.default_rng(seed)
        self.centres = rng.standard_normal((clusters, dim), dtype=np.float32)
        self.bases = rng.standard_normal((clusters, intrinsic, dim), dtype=np.float32) / np.float32(np.sqrt(intrinsic))

    def vectors(self, video_numbers: np.ndarray, salt: int = 0) -> np.ndarray:
        """CLIPS_PER_VIDEO normalised vectors per video, deterministic in (video number, salt)."""
        rng = np.random.default_rng([self.seed, salt, int(video_numbers[0]) if len(video_numbers) else 0])
        n = len(video_numbers) * CLIPS_PER_VIDEO
        home = np.repeat(video_numbers % self.clusters, CLIPS_PER_VIDEO)
        labels = np.where(rng.random(n) < 0.7, home, rng.integers(0, self.clusters, n))
        coef = rng.standard_normal((n, self.intrinsic), dtype=np.float32)
        out = self.centres[labels].copy()
        for c in np.unique(labels):  # one matmul per cluster: no (n, intrinsic, dim) gather
            rows = np.flatnonzero(labels == c)
            out[rows] += 0.5 * (coef[rows] @ self.bases[c])
        out += 0.02 * rng.standard_normal(out.shape, dtype=np.float32)
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out


def archive_files(n_videos: int) -> list[VideoFile]:
    uris = [f"{ARCHIVE}/{i:08d}.mp4" for i in range(n_videos)]
    return [VideoFile(u, 100_000_000, 1_700_000_000_000_000, video_id_for(u)) for u in uris]


def clips_table(files: list[VideoFile], numbers: np.ndarray, vectors: np.ndarray, model_id: str,
                run_id: str) -> pa.Table:
    n = len(files) * CLIPS_PER_VIDEO
    idx = np.tile(np.arange(CLIPS_PER_VIDEO, dtype=np.int32), len(files))
    start = idx * CLIP_S
    offsets = pa.array(np.arange(0, (n + 1) * 4, 4, dtype=np.int32))
    frame_ts = pa.ListArray.from_arrays(offsets, pa.array((start[:, None] + np.arange(4)).reshape(-1)))
    flat = pa.array(vectors.reshape(-1), pa.float32())
    embedding = pa.ListArray.from_arrays(pa.array(np.arange(0, (n + 1) * vectors.shape[1], vectors.shape[1],
                                                            dtype=np.int32)), flat)
    return pa.table({
        "video_id": pa.array(np.repeat([f.video_id for f in files], CLIPS_PER_VIDEO)), "clip_idx": idx,
        "start_s": start, "end_s": start + CLIP_S, "n_frames": pa.array(np.full(n, 4, np.int32)),
        "frame_ts": frame_ts, "model_id": pa.array([model_id] * n), "embedding": embedding,
        "run_id": pa.array([run_id] * n),
        "segment_embeddings": pa.nulls(n, CLIPS_SCHEMA.field("segment_embeddings").type),
        "video_bucket": pa.nulls(n, pa.int32())}, schema=CLIPS_SCHEMA)


def videos_table(files: list[VideoFile], model_id: str, run_id: str) -> pa.Table:
    return pa.Table.from_pylist([{
        "video_id": f.video_id, "uri": f.uri, "size_bytes": f.size_bytes,
        "mtime": datetime.fromtimestamp(f.mtime_us / 1e6, UTC), "duration_s": CLIPS_PER_VIDEO * CLIP_S,
        "fps": 30.0, "width": 640, "height": 360, "codec": "h264", "status": "ok", "model_id": model_id,
        "n_clips": CLIPS_PER_VIDEO, "run_id": run_id, "indexed_at": NOW} for f in files], schema=VIDEOS_SCHEMA)


def write_warehouse(warehouse: str, n_clips: int, gen: Generator) -> dict[str, object]:
    """Both tables plus the model record; returns what was written."""
    from vidx.encode.models import ModelSpec, load_model
    from vidx.encode.registry import clips_model_id, save_model_record

    lm = load_model(ModelSpec("ViT-B-32", "random"), device="cpu")  # 512-d, offline; serve encodes with it
    save_model_record(warehouse, lm, TokenClusteringConfig())
    model_id = clips_model_id(lm.model_id, TokenClusteringConfig())
    files = archive_files(n_clips // CLIPS_PER_VIDEO)
    number = {f.video_id: i for i, f in enumerate(files)}
    order = sorted(files, key=lambda f: (video_bucket(f.video_id), f.video_id))  # the optimized layout
    clips_uri, layout = table_uri(warehouse, "clips"), clips_layout(table_uri(warehouse, "clips"))
    written: list[DataFile] = []
    per_file = max(1, FILE_ROWS // CLIPS_PER_VIDEO)
    start = 0
    while start < len(order):
        bucket = video_bucket(order[start].video_id)
        end = start
        while end < len(order) and end - start < per_file and video_bucket(order[end].video_id) == bucket:
            end += 1
        chunk = order[start:end]
        numbers = np.array([number[f.video_id] for f in chunk])
        table = clips_table(chunk, numbers, gen.vectors(numbers), model_id, SEED_RUN)
        written += write_clip_files(table, clips_uri=clips_uri, layout=layout, model_id=model_id,
                                    name_hint=f"{SEED_RUN}-{start}")
        start = end
    meta = {"vidx.run_id": SEED_RUN, "vidx.batch": 1, "vidx.model_id": model_id}
    delta.commit_files(written, table_uri=clips_uri, schema=CLIPS_SCHEMA, partition_by=CLIPS_PARTITION_BY,
                       app_id=SEED_RUN, txn_version=1, metadata=meta, description=description(layout))
    videos_uri = table_uri(warehouse, "videos")
    by_id = sorted(files, key=lambda f: f.video_id)
    vfiles = [write_data_file(videos_table(by_id[i:i + 100_000], model_id, SEED_RUN), table_uri=videos_uri,
                              partition_values={}, name_hint=f"{SEED_RUN}-{i}") for i in range(0, len(by_id), 100_000)]
    delta.commit_files(vfiles, table_uri=videos_uri, schema=VIDEOS_SCHEMA, partition_by=[], app_id=SEED_RUN,
                       txn_version=1, metadata=meta)
    LOG.info("wrote %d clips of %d videos in %d files", n_clips, len(files), len(written))
    return {"model_id": model_id, "videos": len(files), "clip_files": len(written),
            "clip_bytes": sum(f.size for f in written)}
