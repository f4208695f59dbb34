"""One model's clips and videos, streamed into bounded batches for `vidx validate`.

A pinned clips version is scanned once, in Arrow batches of SCAN_ROWS rows (two batches and one
file in flight), never as a whole table. Each batch's vectors are reduced to three numbers per row
(length, count of non-finite values, L2 norm) and dropped; the scalar columns go to one of
`groups` local spill files chosen by crc32(video_id), and so do the videos rows. All clips and
the videos row of one video therefore meet in the same group, so per-video checks (clip order,
tiling, duplicates, the video's duration and status) are exact within a group, and a group holds
about `rows / groups` clips: GROUP_ROWS bounds the memory of validating it, whatever the table's
size. The spill holds ~60 bytes per clip (1M clips: ~60 MB) in a temporary folder.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from vidx.tables import delta, table_uri
from vidx_schemas import CLIPS_SCHEMA, video_buckets

LOG = logging.getLogger(__name__)

# Clips per validation group: pandas + great-expectations hold about 1 KB per row at most.
GROUP_ROWS = 500_000
# Rows per scanned batch: the float64 temporaries of the vector facts stay ~3 x 8 B x dim per row.
SCAN_ROWS = 8_192
# Lists the suites do not check stay on disk (older versions lack segment_embeddings anyway), and
# so do thumbnails (JPEG bytes, the bulk of a row); the embedding is reduced to its facts while streaming.
CLIP_COLUMNS = [f.name for f in CLIPS_SCHEMA
                if f.name not in ("frame_ts", "segment_embeddings", "video_bucket", "thumbnail")]
FACT_COLUMNS = ("embedding_dim", "embedding_nonfinite", "embedding_norm")


def vector_facts(embedding: pa.Array | pa.ChunkedArray) -> dict[str, pa.Array]:
    """Per row: number of values (null for a null vector), count of NaN/inf values, L2 norm (NaN
    when not finite). Accumulated in float64 for one bounded batch."""
    arr = embedding.combine_chunks() if isinstance(embedding, pa.ChunkedArray) else embedding
    n = len(arr)
    dims = pc.list_value_length(arr)
    flat = pc.list_flatten(arr).to_numpy(zero_copy_only=False)
    parent = pc.list_parent_indices(arr).to_numpy(zero_copy_only=False)
    finite = np.isfinite(flat)
    nonfinite = np.bincount(parent, weights=~finite, minlength=n)
    clean = np.where(finite, flat, 0.0).astype(np.float64)
    sumsq = np.bincount(parent, weights=clean * clean, minlength=n)
    norm = np.where(nonfinite > 0, np.nan, np.sqrt(sumsq))  # non-finite rows fail their own check
    return {"embedding_dim": dims.cast(pa.int64()), "embedding_nonfinite": pa.array(nonfinite.astype(np.int64)),
            "embedding_norm": pa.array(norm, pa.float64())}


@dataclass
class Spilled:
    """The spill files of one validation run; `clips(g)` / `videos(g)` read one group back."""

    folder: str
    groups: int
    clips_rows: int = 0
    videos_rows: int = 0
    schemas: dict[str, pa.Schema] = field(default_factory=dict)

    def _read(self, kind: str, group: int) -> pa.Table:
        path = os.path.join(self.folder, f"{kind}-{group:05d}.arrow")
        if not os.path.exists(path):
            return self.schemas[kind].empty_table()
        with pa.memory_map(path) as source:
            return pa.ipc.open_file(source).read_all()

    def clips(self, group: int) -> pa.Table:
        return self._read("clips", group)

    def videos(self, group: int) -> pa.Table:
        return self._read("videos", group)


class _Writers:
    """One Arrow IPC file per group, opened on first use."""

    def __init__(self, folder: str, kind: str, groups: int) -> None:
        self.folder, self.kind, self.groups = folder, kind, groups
        self.open: dict[int, pa.ipc.RecordBatchFileWriter] = {}
        self.rows = 0
        self.schema: pa.Schema | None = None

    def write(self, table: pa.Table) -> None:
        self.schema = self.schema or table.schema
        if not table.num_rows:
            return
        self.rows += table.num_rows
        group = video_buckets(table["video_id"], self.groups).to_numpy()
        order = np.argsort(group, kind="stable")
        table, group = table.take(pa.array(order)), group[order]
        bounds = np.r_[0, np.flatnonzero(np.diff(group)) + 1, len(group)]
        for lo, hi in itertools.pairwise(bounds):
            g = int(group[lo])
            if g not in self.open:
                path = os.path.join(self.folder, f"{self.kind}-{g:05d}.arrow")
                self.open[g] = pa.ipc.new_file(path, table.schema)
            self.open[g].write_table(table.slice(int(lo), int(hi - lo)))

    def close(self) -> None:
        for writer in self.open.values():
            writer.close()


def groups_for(rows: int) -> int:
    return max(1, math.ceil(rows / GROUP_ROWS))


def _scan(dataset: ds.Dataset, columns: list[str], model_id: str) -> Iterator[pa.RecordBatch]:
    have = set(dataset.schema.names)
    # Readahead kept small: a batch of 512-d vectors is ~16 MB, the defaults would keep dozens in flight.
    return dataset.to_batches(columns=[c for c in columns if c in have], filter=pc.field("model_id") == model_id,
                              batch_size=SCAN_ROWS, batch_readahead=2, fragment_readahead=1)


def spill(warehouse: str, model_id: str, clips_version: int, videos_version: int, folder: str) -> Spilled:
    """Scan the model's clips at `clips_version` and videos at `videos_version` into `folder`."""
    clips_ds = delta.to_dataset(table_uri(warehouse, "clips"), version=clips_version)
    videos_ds = delta.to_dataset(table_uri(warehouse, "videos"), version=videos_version)
    rows = int(clips_ds.count_rows(filter=pc.field("model_id") == model_id))
    out = Spilled(folder, groups_for(rows))
    clips, videos = _Writers(folder, "clips", out.groups), _Writers(folder, "videos", out.groups)
    try:
        for batch in _scan(clips_ds, CLIP_COLUMNS, model_id):
            table = pa.Table.from_batches([batch])
            facts = vector_facts(table["embedding"])
            table = table.drop_columns(["embedding"])
            for name in FACT_COLUMNS:
                table = table.append_column(name, facts[name])
            clips.write(table)
        for batch in _scan(videos_ds, videos_ds.schema.names, model_id):
            videos.write(pa.Table.from_batches([batch]))
    finally:
        clips.close()
        videos.close()
    out.clips_rows, out.videos_rows = clips.rows, videos.rows
    out.schemas = {"clips": clips.schema or pa.schema([]), "videos": videos.schema or videos_ds.schema}
    LOG.info("spilled %d clips and %d videos rows of %s into %d groups", out.clips_rows, out.videos_rows, model_id,
             out.groups)
    return out
