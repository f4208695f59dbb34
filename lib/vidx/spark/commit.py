"""Turn one batch's task results into a checkpoint and commit it: clips, then videos.

Both commits carry the app transaction (pipeline_id, batch), and `commit_files` skips one that is
already recorded, so finishing a saved checkpoint twice is harmless.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from vidx.archive.diff import KnownVideo
from vidx.archive.listing import VideoFile
from vidx.tables import delta
from vidx.tables.checkpoint import Checkpoint, TableActions, save_checkpoint
from vidx.tables.files import DataFile, without_videos, write_data_file
from vidx.tables.layout import description as clips_description
from vidx.tables.rewrite import drop_video_rows
from vidx_schemas import CLIPS_PARTITION_BY, CLIPS_SCHEMA, VIDEOS_PARTITION_BY, VIDEOS_SCHEMA

LOG = logging.getLogger(__name__)
# Test-only fault injection: exit the driver after batch N's files exist, before its checkpoint.
KILL_ENV = "VIDX_FAULT_KILL_DRIVER_BEFORE_COMMIT"


@dataclass(frozen=True)
class BatchInput:
    batch: int
    videos: list[VideoFile]               # files whose rows this batch writes
    deleted: list[KnownVideo]             # files that left the archive (first batch only)
    replace_ids: set[str]                 # video_ids whose existing rows this batch replaces
    probes: dict[str, dict[str, Any]]
    results: list[dict[str, Any]]


def _unit_order(unit: dict[str, Any]) -> tuple[int, str]:
    idx = str(unit.get("unit_id", "")).rsplit(":", 1)[-1]
    return (int(idx) if idx.isdigit() else 0, str(unit.get("unit_id")))


def _failure(probe: dict[str, Any], units: list[dict[str, Any]]) -> dict[str, Any] | None:
    """A video's status from its probe and its work units' results: the failure to record, or None
    when it is ok. A video is all or nothing: one failed unit fails the video, and
    `build_checkpoint` keeps the clips of its other units (other tasks' files too) out of the commit.
    A unit's error names the unit and its time range (vidx.spark.stages.unit_label)."""
    if probe.get("error"):
        return probe
    bad = sorted((u for u in units if u.get("error")), key=_unit_order)
    if bad:
        more = f" (and {len(bad) - 1} more of its {len(units)} units failed)" if len(bad) > 1 else ""
        return {"error_class": bad[0].get("error_class"), "error": f"{bad[0]['error']}{more}"}
    if not units:
        return {"error_class": "corrupt", "error": "no frames could be planned for this file"}
    if not any(u.get("n_clips") for u in units):  # "ok" must mean searchable: never ok without clips
        return _no_frames(probe, units)
    return None


def _no_frames(probe: dict[str, Any], units: list[dict[str, Any]]) -> dict[str, Any]:
    frames = sum(u.get("n_frames") or 0 for u in units)
    return {"error_class": "no_frames", "error": (
        f"decoding yielded no clips ({frames} sampled frames in {len(units)} work unit(s)) although the "
        f"probe found {probe.get('duration_s') or 0:.2f} s at {probe.get('fps') or 0:.2f} fps; check that the "
        "file plays, or re-encode it")}


def video_rows(inp: BatchInput, *, run_id: str, model_id: str) -> list[dict[str, Any]]:
    by_video: dict[str, list[dict[str, Any]]] = {}
    for r in inp.results:
        if r["kind"] == "unit":
            by_video.setdefault(r["video_id"], []).append(r)
    now = datetime.now(UTC)
    rows = []
    for f in inp.videos:
        probe = inp.probes.get(f.video_id, {})
        units = by_video.get(f.video_id, [])
        bad = _failure(probe, units)
        rows.append({
            "video_id": f.video_id, "uri": f.uri, "size_bytes": f.size_bytes,
            "mtime": datetime.fromtimestamp(f.mtime_us / 1e6, UTC),
            **{k: probe.get(k) for k in ("duration_s", "fps", "width", "height", "codec")},
            "status": "failed" if bad else "ok",
            "error_class": bad.get("error_class") if bad else None, "error": bad.get("error") if bad else None,
            "model_id": model_id, "n_clips": 0 if bad else sum(u.get("n_clips") or 0 for u in units),
            "run_id": run_id, "indexed_at": now})
    for k in inp.deleted:
        rows.append({"video_id": k.video_id, "uri": k.uri, "size_bytes": k.size_bytes,
                     "mtime": datetime.fromtimestamp(k.mtime_us / 1e6, UTC), "status": "deleted",
                     "model_id": model_id, "n_clips": 0, "run_id": run_id, "indexed_at": now})
    return rows


def build_checkpoint(inp: BatchInput, *, warehouse: str, run_id: str, model_id: str) -> Checkpoint:
    """Write the batch's videos file and the rewrites that drop replaced rows; nothing is committed."""
    clips_uri, videos_uri = delta_uris(warehouse)
    hint = f"{run_id}-b{inp.batch}"
    drop = inp.replace_ids | {k.video_id for k in inp.deleted}
    clip_removes, clip_rewrites = drop_video_rows(clips_uri, drop, partition={"model_id": model_id}, name_hint=hint)
    vid_removes, vid_rewrites = drop_video_rows(videos_uri, drop, also_equal={"model_id": model_id}, name_hint=hint)
    rows = video_rows(inp, run_id=run_id, model_id=model_id)
    # Sorted by video_id: the file's min/max stats then let later rewrites skip it (tables/rewrite.py).
    videos_file = write_data_file(pa.Table.from_pylist(rows, schema=VIDEOS_SCHEMA).sort_by("video_id"),
                                  table_uri=videos_uri,
                                  partition_values={}, name_hint=hint)
    # All or nothing: the clips a failed video's good units wrote (maybe in other tasks' files) stay out.
    failed = {r["video_id"] for r in rows if r["status"] == "failed"}
    clip_files = without_videos([DataFile.from_json(r["file"]) for r in inp.results if r["kind"] == "file"],
                                failed, table_uri=clips_uri, name_hint=hint)
    units = [r for r in inp.results if r["kind"] == "unit"]
    stats = {"videos": len(inp.videos), "deleted": len(inp.deleted), "units": len(units),
             "failed": sum(r["status"] == "failed" for r in rows),
             "clips": sum(f.num_records for f in clip_files),
             "frames": sum(u["n_frames"] or 0 for u in units),
             "decode_s": sum(u["decode_s"] or 0.0 for u in units),
             "encode_s": sum(u["encode_s"] or 0.0 for u in units),
             # kept in the checkpoint so a resumed run reports the failures of batches it finishes
             "failures": [{"uri": r["uri"], "error_class": str(r["error_class"]), "error": str(r["error"])}
                          for r in rows if r["status"] == "failed"]}
    return Checkpoint(run_id, inp.batch, TableActions(clip_files + clip_rewrites, clip_removes),
                      TableActions([videos_file, *vid_rewrites], vid_removes), stats)


def delta_uris(warehouse: str) -> tuple[str, str]:
    from vidx.tables import table_uri

    return table_uri(warehouse, "clips"), table_uri(warehouse, "videos")


def save_and_commit(cp: Checkpoint, *, warehouse: str, pipeline_id: str,
                    model_id: str) -> tuple[int | None, int | None]:
    if os.environ.get(KILL_ENV) == str(cp.batch):
        LOG.error("fault injection: driver exits before checkpoint %d is saved", cp.batch)
        os._exit(137)
    save_checkpoint(warehouse, cp)
    return commit_checkpoint(cp, warehouse=warehouse, pipeline_id=pipeline_id, model_id=model_id)


def commit_checkpoint(cp: Checkpoint, *, warehouse: str, pipeline_id: str,
                      model_id: str) -> tuple[int | None, int | None]:
    """Clips first: until the videos commit lands, the batch's videos still look un-embedded, and the
    saved checkpoint (not a redo) completes them on restart."""
    clips_uri, videos_uri = delta_uris(warehouse)
    meta = {"vidx.run_id": cp.run_id, "vidx.model_id": model_id, "vidx.batch": cp.batch}
    clips = delta.commit_files(cp.clips.adds, removes=cp.clips.removes, table_uri=clips_uri, schema=CLIPS_SCHEMA,
                               partition_by=CLIPS_PARTITION_BY, app_id=pipeline_id, txn_version=cp.batch,
                               metadata=meta, description=clips_description())
    videos = delta.commit_files(cp.videos.adds, removes=cp.videos.removes, table_uri=videos_uri,
                                schema=VIDEOS_SCHEMA, partition_by=VIDEOS_PARTITION_BY, app_id=pipeline_id,
                                txn_version=cp.batch, metadata=meta)
    return clips.version, videos.version
