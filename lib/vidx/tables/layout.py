"""Where clips rows go: the one place (with vidx_schemas.clips) that knows the clips partitioning.

Two layouts exist. New tables are partitioned by (model_id, video_bucket), video_bucket =
crc32(video_id) mod the table's bucket count, recorded in the table's description when it is
created. Tables created before buckets existed are partitioned by model_id alone; they keep that
layout (Delta cannot re-partition in place) and still work: their files carry video_bucket as a
data column (schema evolution adds it), so min/max stats on it and on video_id still let readers
skip files, only less well. `vidx tables migrate` (`migrate` below) rewrites such a table into the
bucketed layout in one commit.

Executors call `write_clip_files` with the layout the driver read (`clips_layout`), so they never
open the Delta log; everything else asks `clips_layout` (and `vidx_schemas.video_bucket`) instead of
building partition paths.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from vidx.tables.files import DataFile, write_data_file
from vidx_schemas import CLIPS_PARTITION_BY, CLIPS_SCHEMA, CLIPS_VIDEO_BUCKETS, video_buckets

BUCKET_COLUMN = "video_bucket"
_DESCRIPTION = "vidx clips: video_bucket = crc32(video_id) mod {buckets}"
_BUCKETS_IN_DESCRIPTION = re.compile(r"video_bucket = crc32\(video_id\) mod (\d+)")


@dataclass(frozen=True)
class ClipsLayout:
    """`partition_by` of the table and its bucket count (0: the legacy model_id-only layout)."""

    partition_by: tuple[str, ...]
    buckets: int

    @property
    def bucketed(self) -> bool:
        return BUCKET_COLUMN in self.partition_by

    @property
    def hash_buckets(self) -> int:
        """Buckets to hash with: the table's, or the default for the data column of a legacy table."""
        return self.buckets or CLIPS_VIDEO_BUCKETS

    def split(self, table: pa.Table, model_id: str) -> list[tuple[dict[str, str], pa.Table]]:
        """(partition values, rows) per partition, rows sorted by (video_id, clip_idx) so each file's
        video_id min/max spans only its own videos. Adds the video_bucket column."""
        if BUCKET_COLUMN in table.column_names:
            table = table.drop_columns([BUCKET_COLUMN])
        table = table.append_column(BUCKET_COLUMN, video_buckets(table["video_id"], self.hash_buckets))
        table = table.sort_by([(BUCKET_COLUMN, "ascending"), ("video_id", "ascending"), ("clip_idx", "ascending")])
        if not self.bucketed:
            return [({"model_id": model_id}, table)] if table.num_rows else []
        buckets = table[BUCKET_COLUMN].to_numpy()
        bounds = np.flatnonzero(np.diff(buckets)) + 1
        out = []
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(buckets)], strict=True):
            if hi > lo:
                part = table.slice(int(lo), int(hi - lo)).drop_columns([BUCKET_COLUMN])
                out.append(({"model_id": model_id, BUCKET_COLUMN: str(int(buckets[lo]))}, part))
        return out


DEFAULT_LAYOUT = ClipsLayout(tuple(CLIPS_PARTITION_BY), CLIPS_VIDEO_BUCKETS)


def description(layout: ClipsLayout = DEFAULT_LAYOUT) -> str:
    """The description a new clips table is created with (records its bucket count)."""
    return _DESCRIPTION.format(buckets=layout.buckets)


def clips_layout(clips_uri: str, *, version: int | None = None) -> ClipsLayout:
    """The layout of the clips table at `clips_uri` (the default for a table not created yet)."""
    from vidx.tables.delta import open_table, table_exists

    if not table_exists(clips_uri):
        return DEFAULT_LAYOUT
    return layout_of(open_table(clips_uri, version=version).metadata())


def layout_of(metadata: Any) -> ClipsLayout:
    """The layout a Delta table's metadata (partition columns, description) records."""
    partition_by = tuple(metadata.partition_columns)
    if BUCKET_COLUMN not in partition_by:
        return ClipsLayout(partition_by, 0)
    match = _BUCKETS_IN_DESCRIPTION.search(metadata.description or "")
    return ClipsLayout(partition_by, int(match.group(1)) if match else CLIPS_VIDEO_BUCKETS)


def write_clip_files(table: pa.Table, *, clips_uri: str, layout: ClipsLayout, model_id: str,
                     name_hint: str) -> list[DataFile]:
    """Write clips rows as one Parquet file per partition they fall in (executor side)."""
    return [write_data_file(part, table_uri=clips_uri, partition_values=values, name_hint=name_hint)
            for values, part in layout.split(table, model_id)]


def migrate(clips_uri: str) -> int | None:
    """Rewrite a model_id-only clips table into the bucketed layout in one commit, streaming batch by
    batch; the new version number, or None when the table is bucketed already. Run `vidx tables
    optimize` afterwards: the rewrite keeps scan order, and z-order makes each bucket's file stats
    selective again."""
    from vidx.tables import delta

    if clips_layout(clips_uri).bucketed:
        return None
    dataset = delta.to_dataset(clips_uri)

    def batches() -> Iterator[pa.RecordBatch]:
        for batch in dataset.to_batches(batch_size=8_192, batch_readahead=2, fragment_readahead=1):
            table = pa.Table.from_batches([batch])
            table = pa.table({f.name: table[f.name] if f.name in table.column_names else pa.nulls(len(table), f.type)
                              for f in CLIPS_SCHEMA}).cast(CLIPS_SCHEMA.remove_metadata())
            table = table.set_column(CLIPS_SCHEMA.get_field_index(BUCKET_COLUMN), BUCKET_COLUMN,
                                     video_buckets(table["video_id"], DEFAULT_LAYOUT.buckets))
            yield from table.to_batches()

    reader = pa.RecordBatchReader.from_batches(CLIPS_SCHEMA, batches())
    return delta.overwrite(clips_uri, reader, partition_by=list(DEFAULT_LAYOUT.partition_by),
                           description=description(DEFAULT_LAYOUT), metadata={"vidx.operation": "migrate"})
