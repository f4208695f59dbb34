"""Executor side of a Delta write: one Parquet data file plus the facts the driver needs to commit it.

deltalake does not compute file statistics for add actions, so they are computed here from the
Arrow data (numRecords, minValues, maxValues, nullCount): without them readers cannot skip files.
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vidx.storage import filesystem, join

LOG = logging.getLogger(__name__)

# Long strings in min/max stats would bloat the log: they are truncated to valid bounds. Never left
# out: delta-rs turns a missing bound into `col >= null`, which prunes the file from EVERY filter
# on that column (a videos file whose model_id was longer than this vanished from `model_id == X`).
_MAX_STAT_STRING = 64


@dataclass(frozen=True)
class DataFile:
    """A written, not yet committed, data file. `path` is relative to the table root."""

    path: str
    size: int
    partition_values: dict[str, str | None]
    modification_time: int  # ms since epoch
    num_records: int
    stats: str  # Delta JSON stats

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> DataFile:
        return DataFile(**json.loads(text))


def _stat_value(value: Any, *, upper: bool = False) -> Any:
    if isinstance(value, str) and len(value) > _MAX_STAT_STRING:
        prefix = value[:_MAX_STAT_STRING]
        if not upper:
            return prefix  # a prefix sorts before every string that starts with it
        # the prefix with its last character incremented sorts after every string that starts with it
        nxt = ord(prefix[-1]) + 1
        nxt = 0xE000 if 0xD800 <= nxt <= 0xDFFF else nxt  # skip surrogates: not encodable
        return prefix[:-1] + chr(nxt) if nxt <= 0x10FFFF else value
    if isinstance(value, float) and math.isnan(value):  # NaN is not a valid bound
        return None
    return value


def file_stats(table: pa.Table) -> str:
    """Delta per-file statistics for the primitive columns of `table`."""
    mins: dict[str, Any] = {}
    maxs: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for name, column in zip(table.column_names, table.columns, strict=True):
        nulls[name] = column.null_count
        kind = column.type
        if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_string(kind)):
            continue
        if len(column) == column.null_count:
            continue
        bounds = pc.min_max(column).as_py()
        low, high = _stat_value(bounds["min"]), _stat_value(bounds["max"], upper=True)
        if low is not None and high is not None:
            mins[name], maxs[name] = low, high
    return json.dumps({"numRecords": table.num_rows, "minValues": mins, "maxValues": maxs,
                       "nullCount": nulls})


def write_data_file(table: pa.Table, *, table_uri: str, partition_values: dict[str, str],
                    name_hint: str) -> DataFile:
    """Write `table` as one Parquet file under the table's hive-style partition folder.

    Partition columns are dropped from the file (Delta keeps them in the log), and the name carries
    a uuid so a retried Spark task attempt never overwrites a file another attempt may commit.
    """
    for key, value in partition_values.items():
        if key in table.column_names:
            present = pc.unique(table[key]).to_pylist()
            if present != [value]:
                raise ValueError(f"partition column {key} holds {present}, expected only {value!r}")
            table = table.drop_columns([key])
    folder = "/".join(f"{k}={v}" for k, v in partition_values.items())
    rel = f"{folder}/" if folder else ""
    rel += f"part-{name_hint}-{uuid.uuid4().hex[:12]}.zstd.parquet"
    fs, root = filesystem(table_uri)
    path = join(root, rel)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as sink:
        pq.write_table(table, sink, compression="zstd")
    size = fs.get_file_info(path).size
    LOG.debug("wrote %s (%d rows, %d bytes)", path, table.num_rows, size)
    return DataFile(path=rel, size=int(size or 0), partition_values=dict(partition_values),
                    modification_time=int(time.time() * 1000), num_records=table.num_rows,
                    stats=file_stats(table))


def without_videos(files: list[DataFile], video_ids: set[str], *, table_uri: str, name_hint: str) -> list[DataFile]:
    """Written, not yet committed `files` minus the rows of `video_ids`.

    A file holding such rows is replaced by a filtered copy (or left out when nothing remains);
    its original is never committed, so it is an orphan that `vidx tables vacuum` deletes. Files
    whose video_id stats exclude every target are kept without being read.
    """
    if not video_ids:
        return list(files)
    lo, hi = min(video_ids), max(video_ids)
    targets = pa.array(sorted(video_ids), pa.string())
    fs, root = filesystem(table_uri)
    out: list[DataFile] = []
    for f in files:
        stats = json.loads(f.stats)
        fmin, fmax = stats.get("minValues", {}).get("video_id"), stats.get("maxValues", {}).get("video_id")
        if fmin is not None and fmax is not None and (str(fmax) < lo or str(fmin) > hi):
            out.append(f)
            continue
        with fs.open_input_file(join(root, f.path)) as src:
            data = pq.read_table(src)
        hit = pc.is_in(data["video_id"], value_set=targets)
        if not pc.any(hit).as_py():
            out.append(f)
            continue
        keep = data.filter(pc.invert(hit))
        LOG.info("dropping %d uncommitted rows of failed videos from %s", data.num_rows - keep.num_rows, f.path)
        if keep.num_rows:
            partition = {k: str(v) for k, v in f.partition_values.items()}
            out.append(write_data_file(keep, table_uri=table_uri, partition_values=partition,
                                       name_hint=f"{name_hint}-rw"))
    return out
