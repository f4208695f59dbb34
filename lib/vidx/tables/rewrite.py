"""Remove the rows of some videos from a Delta table, as actions for the SAME commit that adds their
replacements (a Delta DELETE would be a separate commit, and a reader between the two would see
either duplicates or a gap).

Only the files that may hold a target video are read: in a bucketed clips table the partitions of
the targets' buckets (vidx.tables.layout), and there, as in any table, the files whose video_id
min/max statistics enclose at least one target id (each id tested on its own: the span from the
smallest to the largest target would cover nearly every file, as video ids are sha1 hashes).
Those files are read one at a time, filtered and rewritten without the rows; the originals
become remove actions. The add actions are filtered in Arrow, never turned into Python rows.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vidx.storage import filesystem, join
from vidx.tables.delta import data_files, open_table, table_exists
from vidx.tables.files import DataFile, write_data_file
from vidx.tables.layout import BUCKET_COLUMN, layout_of
from vidx_schemas import video_bucket

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemovedFile:
    path: str
    size: int
    partition_values: dict[str, str | None]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> RemovedFile:
        return RemovedFile(**json.loads(text))


def _partition_values(actions: pa.Table, row: int, columns: Iterable[str]) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in columns:
        value = actions[f"partition.{name}"][row].as_py()
        out[name] = None if value is None else str(value)
    return out


def _covers_any(mins: pa.ChunkedArray, maxs: pa.ChunkedArray, targets: list[str]) -> np.ndarray:
    """Per file: whether some target id lies in [min, max]; True where a file has no stats."""
    lo = np.asarray(mins.to_pylist(), dtype=object)
    hi = np.asarray(maxs.to_pylist(), dtype=object)
    known = np.array([a is not None and b is not None for a, b in zip(lo, hi, strict=True)], dtype=bool)
    ordered = np.asarray(targets, dtype=object)
    # First target >= min and first target > max: some target lies in between iff they differ.
    first = np.searchsorted(ordered, np.where(known, lo, ""), side="left")
    past = np.searchsorted(ordered, np.where(known, hi, ""), side="right")
    return ~known | (first < past)


def candidate_files(table_uri: str, video_ids: set[str], partition: dict[str, str]) -> pa.Table:
    """Add actions (path, size_bytes, partition.*) of the files that may hold rows of `video_ids`
    within `partition` (column -> value): partition and bucket pruning, then per-id stats."""
    metadata = open_table(table_uri).metadata()
    part_cols = list(metadata.partition_columns)
    actions = data_files(table_uri, equals=partition)
    columns = ["path", "rel_path", "size_bytes", *[f"partition.{c}" for c in part_cols]]
    has_stats = "min.video_id" in actions.column_names and "max.video_id" in actions.column_names
    if BUCKET_COLUMN not in part_cols:
        if has_stats:
            actions = actions.filter(pa.array(_covers_any(actions["min.video_id"], actions["max.video_id"],
                                                          sorted(video_ids))))
        return actions.select(columns)
    # Per bucket: a file is tested only against the ids of its own bucket (ids of other buckets
    # would fall inside its range and select it for nothing).
    buckets = layout_of(metadata).buckets
    by_bucket: dict[int, list[str]] = {}
    for video_id in sorted(video_ids):
        by_bucket.setdefault(video_bucket(video_id, buckets), []).append(video_id)
    parts = []
    for bucket, ids in by_bucket.items():
        mine = actions.filter(pc.equal(actions[f"partition.{BUCKET_COLUMN}"], bucket))
        if has_stats:
            mine = mine.filter(pa.array(_covers_any(mine["min.video_id"], mine["max.video_id"], ids)))
        parts.append(mine.select(columns))
    return pa.concat_tables(parts) if parts else actions.select(columns).slice(0, 0)


def _hits(data: pa.Table, targets: pa.Array, also_equal: dict[str, str] | None) -> pa.ChunkedArray:
    hit = pc.is_in(data["video_id"], value_set=targets)
    for column, value in (also_equal or {}).items():
        hit = pc.and_(hit, pc.equal(data[column], value))
    return hit


def _read_full(parquet: pq.ParquetFile) -> pa.Table:
    """The whole file (the expensive read; only files holding a target get here)."""
    return parquet.read()


def drop_video_rows(table_uri: str, video_ids: set[str], *, partition: dict[str, str] | None = None,
                    also_equal: dict[str, str] | None = None,
                    name_hint: str) -> tuple[list[RemovedFile], list[DataFile]]:
    """Actions that remove every row whose video_id is in `video_ids` (and whose columns equal
    `also_equal`, e.g. one model's rows in `videos`) from the files of `partition`. Files without
    such rows are left alone (and, thanks to partitions and stats, mostly never opened)."""
    if not video_ids or not table_exists(table_uri):
        return [], []
    candidates = candidate_files(table_uri, video_ids, partition or {})
    part_cols = [c.removeprefix("partition.") for c in candidates.column_names if c.startswith("partition.")]
    fs, root = filesystem(table_uri)
    removes: list[RemovedFile] = []
    adds: list[DataFile] = []
    targets = pa.array(sorted(video_ids), pa.string())
    probe_columns = ["video_id", *(also_equal or {})]
    for i in range(candidates.num_rows):
        path = str(candidates["path"][i].as_py())
        with fs.open_input_file(join(root, str(candidates["rel_path"][i].as_py()))) as src:
            parquet = pq.ParquetFile(src)
            # The id column first (~2% of a clips file): min/max stats can only say "maybe".
            if not pc.any(_hits(parquet.read(columns=probe_columns), targets, also_equal)).as_py():
                continue
            data = _read_full(parquet)
        hit = _hits(data, targets, also_equal)
        values = _partition_values(candidates, i, part_cols)
        keep = data.filter(pc.invert(hit))
        removes.append(RemovedFile(path, int(candidates["size_bytes"][i].as_py()), values))
        if keep.num_rows:
            adds.append(write_data_file(keep, table_uri=table_uri, name_hint=f"{name_hint}-rw",
                                        partition_values={k: v for k, v in values.items() if v is not None}))
    LOG.info("%s: %d candidate files by partition and stats, %d held rows of the %d videos and are rewritten",
             table_uri, candidates.num_rows, len(removes), len(video_ids))
    return removes, adds


def now_ms() -> int:
    return int(time.time() * 1000)
