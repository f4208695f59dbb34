"""Checkpoint manifests: what one batch of a run will commit, saved before committing.

`W/_vidx/runs/<run_id>/batch-<n>.json` lists the data files to add and the files to remove in each
table. It is written (atomically) after the files exist and before either commit, so a driver that
dies between the `clips` and `videos` commits - or before both - can finish that exact batch on
restart instead of redoing or duplicating it. A batch without a manifest was never committed; its
files are orphans that `vidx tables vacuum` deletes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import pyarrow.fs as pafs

from vidx.storage import filesystem, join, normalize_uri, read_bytes, write_bytes_atomic
from vidx.tables.files import DataFile
from vidx.tables.rewrite import RemovedFile

LOG = logging.getLogger(__name__)


@dataclass
class TableActions:
    adds: list[DataFile] = field(default_factory=list)
    removes: list[RemovedFile] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"adds": [json.loads(a.to_json()) for a in self.adds],
                "removes": [json.loads(r.to_json()) for r in self.removes]}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> TableActions:
        return TableActions([DataFile(**a) for a in data["adds"]], [RemovedFile(**r) for r in data["removes"]])


@dataclass
class Checkpoint:
    run_id: str
    batch: int
    clips: TableActions
    videos: TableActions
    stats: dict[str, Any] = field(default_factory=dict)  # counts for the runs table

    def to_json(self) -> bytes:
        return json.dumps({"run_id": self.run_id, "batch": self.batch, "clips": self.clips.to_dict(),
                           "videos": self.videos.to_dict(), "stats": self.stats}, indent=1).encode()

    @staticmethod
    def from_json(data: bytes) -> Checkpoint:
        raw = json.loads(data)
        return Checkpoint(raw["run_id"], raw["batch"], TableActions.from_dict(raw["clips"]),
                          TableActions.from_dict(raw["videos"]), raw.get("stats", {}))


def run_dir(warehouse: str, run_id: str) -> str:
    return join(normalize_uri(warehouse), "_vidx", "runs", run_id)


def save_checkpoint(warehouse: str, cp: Checkpoint) -> None:
    write_bytes_atomic(join(run_dir(warehouse, cp.run_id), f"batch-{cp.batch:06d}.json"), cp.to_json())


def load_checkpoints(warehouse: str, run_id: str) -> list[Checkpoint]:
    """This run's saved checkpoints in batch order (empty for a new run)."""
    fs, path = filesystem(run_dir(warehouse, run_id))
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path))
    names = sorted(i.base_name for i in infos if i.base_name.startswith("batch-") and i.base_name.endswith(".json"))
    return [Checkpoint.from_json(read_bytes(join(run_dir(warehouse, run_id), n))) for n in names]
