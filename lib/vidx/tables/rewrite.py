"""Remove the rows of some videos from a Delta table, as actions for the SAME commit that adds their
replacements (a Delta DELETE would be a separate commit, and a reader between the two would see
either duplicates or a gap).

Candidate files are found with the per-file min/max stats on video_id, then read, filtered and
rewritten without those rows; the originals become remove actions.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from vidx.storage import filesystem, join
from vidx.tables.delta import open_table, table_exists
from vidx.tables.files import DataFile, write_data_file

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


def _candidates(table_uri: str, video_ids: set[str], partition: dict[str, str]) -> list[dict[str, Any]]:
    actions = pa.table(open_table(table_uri).get_add_actions(flatten=True)).to_pylist()
    lo, hi = min(video_ids), max(video_ids)
    out = []
    for act in actions:
        if any(act.get(f"partition.{k}") != v for k, v in partition.items()):
            continue
        fmin, fmax = act.get("min.video_id"), act.get("max.video_id")
        if fmin is not None and fmax is not None and (str(fmax) < lo or str(fmin) > hi):
            continue  # stats prove no target id is in this file
        out.append(act)
    return out


def drop_video_rows(table_uri: str, video_ids: set[str], *, partition: dict[str, str] | None = None,
                    also_equal: dict[str, str] | None = None,
                    name_hint: str) -> tuple[list[RemovedFile], list[DataFile]]:
    """Actions that remove every row whose video_id is in `video_ids` (and whose columns equal
    `also_equal`, e.g. one model's rows in `videos`) from the files of `partition`. Files without
    such rows are left alone."""
    if not video_ids or not table_exists(table_uri):
        return [], []
    partition = partition or {}
    fs, root = filesystem(table_uri)
    removes: list[RemovedFile] = []
    adds: list[DataFile] = []
    targets = pa.array(sorted(video_ids), pa.string())
    for act in _candidates(table_uri, video_ids, partition):
        path = str(act["path"])
        with fs.open_input_file(join(root, path)) as src:
            data = pq.read_table(src)
        hit = pc.is_in(data["video_id"], value_set=targets)
        for column, value in (also_equal or {}).items():
            hit = pc.and_(hit, pc.equal(data[column], value))
        if not pc.any(hit).as_py():
            continue
        keep = data.filter(pc.invert(hit))
        removes.append(RemovedFile(path, int(act["size_bytes"]), {k: v for k, v in partition.items()}))
        if keep.num_rows:
            adds.append(write_data_file(keep, table_uri=table_uri, partition_values=partition,
                                        name_hint=f"{name_hint}-rw"))
    LOG.info("%s: rewriting %d files to drop rows of %d videos", table_uri, len(removes), len(video_ids))
    return removes, adds


def now_ms() -> int:
    return int(time.time() * 1000)
