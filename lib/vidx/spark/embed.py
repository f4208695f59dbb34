"""Driver of `vidx embed`: lock -> finish saved checkpoints -> list -> diff -> probe (Spark) ->
plan -> per checkpoint: embed (Spark) + one commit per table -> `runs` row."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from vidx.archive import VideoFile, WorkUnit, balance_units, list_archive, plan_units
from vidx.archive.diff import ArchiveDiff, diff_archive
from vidx.config import VidxConfig
from vidx.encode.models import LoadedModel, ModelSpec, load_model
from vidx.encode.precision import run_precision
from vidx.encode.registry import Recipe, save_model_record
from vidx.spark import stages
from vidx.spark.commit import BatchInput, build_checkpoint, commit_checkpoint, save_and_commit
from vidx.spark.resources import embed_profile
from vidx.storage import normalize_uri
from vidx.tables import clips_layout, delta, table_uri
from vidx.tables.checkpoint import Checkpoint, load_checkpoints
from vidx.tables.lock import WarehouseLock

LOG = logging.getLogger(__name__)


@dataclass
class EmbedReport:
    run_id: str
    model_id: str
    pipeline_id: str
    archive_uri: str = ""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    listed: int = 0
    new: int = 0
    changed: int = 0
    deleted: int = 0
    unchanged: int = 0
    processed: int = 0
    failed: int = 0
    units: int = 0
    clips: int = 0
    frames: int = 0
    checkpoints: int = 0
    resumed_checkpoints: int = 0
    wall_s: float = 0.0
    decode_s: float = 0.0
    encode_s: float = 0.0
    clips_versions: list[int] = field(default_factory=list)
    videos_versions: list[int] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> int:
        return self.processed - self.failed

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.wall_s if self.wall_s else 0.0

    def add(self, cp: Checkpoint, versions: tuple[int | None, int | None]) -> None:
        s = cp.stats
        self.checkpoints += 1
        self.processed += s.get("videos", 0)
        self.failed += s.get("failed", 0)
        self.units += s.get("units", 0)
        self.clips += s.get("clips", 0)
        self.frames += s.get("frames", 0)
        self.decode_s += s.get("decode_s", 0.0)
        self.encode_s += s.get("encode_s", 0.0)
        self.failures.extend(s.get("failures", []))
        if versions[0] is not None:
            self.clips_versions.append(versions[0])
        if versions[1] is not None:
            self.videos_versions.append(versions[1])


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def spark_schema(schema: pa.Schema) -> Any:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def known_videos(warehouse: str, model_id: str) -> pa.Table:
    """The current `videos` row of each file for this model (vidx.archive.diff.KNOWN_SCHEMA), in Arrow:
    the last row by indexed_at per video_id, without a Python object per video."""
    from vidx.archive.diff import KNOWN_SCHEMA

    uri = table_uri(warehouse, "videos")
    if not delta.table_exists(uri):
        return KNOWN_SCHEMA.empty_table()
    rows = delta.read_rows(uri, columns=["video_id", "uri", "size_bytes", "mtime", "status", "indexed_at"],
                           equals={"model_id": model_id})
    rows = rows.sort_by([("video_id", "ascending"), ("indexed_at", "ascending")])
    n = rows.num_rows
    if n:  # the last row of each run of equal ids
        ids = rows["video_id"]
        rows = rows.filter(np.append(pc.not_equal(ids.slice(0, n - 1), ids.slice(1)).to_numpy(zero_copy_only=False),
                                     True))
    return pa.table([rows["video_id"], rows["uri"], rows["size_bytes"], rows["mtime"].cast(pa.int64()),
                     rows["status"]], schema=KNOWN_SCHEMA)


@dataclass
class _Run:
    cfg: VidxConfig
    report: EmbedReport
    diff: ArchiveDiff = field(default_factory=ArchiveDiff)
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_batch: int = 1


def run_embed(cfg: VidxConfig, archive_uri: str, *, spark: Any = None, run_id: str | None = None,
              full_refresh: bool = False, retry_failed: bool = False) -> EmbedReport:
    """Embed new and changed videos under `archive_uri`; drop deleted ones. Resumable by run id."""
    from vidx.spark.runs import record_run

    t0 = time.perf_counter()
    lm = load_model(ModelSpec(cfg.encode.model, cfg.encode.pretrained), device="cpu")  # fail fast, clearly
    run_id = run_id or new_run_id()
    with WarehouseLock(cfg.warehouse, run_id):
        cfg, model_id = plan_model(cfg, lm)
        report = EmbedReport(run_id=run_id, model_id=model_id, pipeline_id=f"vidx-embed:{model_id}:{run_id}",
                             archive_uri=normalize_uri(archive_uri))
        run = _Run(cfg, report)
        try:
            _resume(run)
            _plan_and_embed(run, archive_uri, spark, full_refresh=full_refresh, retry_failed=retry_failed)
        except BaseException as exc:
            report.wall_s = time.perf_counter() - t0
            record_run(cfg.warehouse, report, status="failed", error=f"{type(exc).__name__}: {exc}")
            raise
        report.wall_s = time.perf_counter() - t0
        record_run(cfg.warehouse, report, status="succeeded", error=None)
    return report


def plan_model(cfg: VidxConfig, lm: LoadedModel) -> tuple[VidxConfig, str]:
    """Decide the run's precision ONCE, here on the driver, and record the model: returns the config
    every task gets (encode.precision decided, so executors never probe) and the clips model_id."""
    precision, rule = run_precision(cfg.warehouse, lm, cfg.encode, cfg.spark.conf)
    recipe = Recipe.from_config(cfg, frame_size=lm.image_size, precision=precision)
    record = save_model_record(cfg.warehouse, lm, recipe, precision_rule=rule)
    LOG.info("model %s (precision %s: %s)", record["model_id"], precision, rule)
    return cfg.with_overrides({"encode.precision": precision}), str(record["model_id"])


def _resume(run: _Run) -> None:
    """Finish the commits of checkpoints a previous attempt of this run saved (no-op when committed)."""
    saved = load_checkpoints(run.cfg.warehouse, run.report.run_id)
    for cp in saved:
        versions = commit_checkpoint(cp, warehouse=run.cfg.warehouse, pipeline_id=run.report.pipeline_id,
                                     model_id=run.report.model_id)
        if any(v is not None for v in versions):
            LOG.info("resumed: committed saved checkpoint %d of run %s", cp.batch, cp.run_id)
            run.report.add(cp, versions)
            run.report.resumed_checkpoints += 1
    run.next_batch = max((cp.batch for cp in saved), default=0) + 1


def _plan_and_embed(run: _Run, archive_uri: str, spark: Any, *, full_refresh: bool, retry_failed: bool) -> None:
    cfg, report = run.cfg, run.report
    files = list_archive(archive_uri, cfg.archive.extensions)
    run.diff = diff_archive(files, known_videos(cfg.warehouse, report.model_id), archive_root=report.archive_uri,
                            full_refresh=full_refresh, retry_failed=retry_failed)
    d = run.diff
    report.listed, report.unchanged, report.deleted = len(files), d.unchanged, len(d.deleted)
    report.new, report.changed = len(d.new), len(d.changed) + len(d.retried) + len(d.refreshed)
    LOG.info("archive: %d files: %d new, %d changed, %d deleted, %d unchanged", len(files), report.new,
             report.changed, report.deleted, report.unchanged)
    if d.empty:
        LOG.info("nothing to do: the tables are up to date for %s", report.model_id)
        return
    from vidx.spark.session import get_spark

    spark = spark or get_spark(cfg.spark)
    todo = d.todo
    run.probes = _probe(spark, cfg, todo) if todo else {}
    units = _plan(cfg, todo, run.probes)
    for offset, (videos, batch_units) in enumerate(_batches(todo, units, cfg.archive.commit_every)):
        batch = run.next_batch + offset
        results = _embed(spark, run, batch_units) if batch_units else []
        inp = BatchInput(batch, videos, d.deleted if offset == 0 else [],
                         {v.video_id for v in videos} & d.replaced_ids, run.probes, results)
        cp = build_checkpoint(inp, warehouse=cfg.warehouse, run_id=report.run_id, model_id=report.model_id)
        report.add(cp, save_and_commit(cp, warehouse=cfg.warehouse, pipeline_id=report.pipeline_id,
                                       model_id=report.model_id))
        LOG.info("checkpoint %d committed: %d videos, %d clips", batch, cp.stats["videos"], cp.stats["clips"])


def _batches(todo: list[VideoFile], units: list[WorkUnit],
             commit_every: int) -> list[tuple[list[VideoFile], list[WorkUnit]]]:
    """Whole videos per checkpoint, about `commit_every` units each (a longer video gets its own)."""
    by_video: dict[str, list[WorkUnit]] = {}
    for u in units:
        by_video.setdefault(u.video_id, []).append(u)
    out: list[tuple[list[VideoFile], list[WorkUnit]]] = []
    videos: list[VideoFile] = []
    batch: list[WorkUnit] = []
    for f in todo:
        mine = by_video.get(f.video_id, [])
        if batch and len(batch) + len(mine) > commit_every:
            out.append((videos, batch))
            videos, batch = [], []
        videos.append(f)
        batch.extend(mine)
    if videos or not out:
        out.append((videos, batch))
    return out


def _probe(spark: Any, cfg: VidxConfig, todo: list[VideoFile]) -> dict[str, dict[str, Any]]:
    n = max(1, min(len(todo), spark.sparkContext.defaultParallelism * 4))
    df = spark.createDataFrame([(f.video_id, f.uri) for f in todo], "video_id string, uri string")
    rows = df.repartition(n).mapInArrow(stages.ProbeTask(cfg), spark_schema(stages.PROBE_OUT)).collect()
    LOG.info("probed %d files", len(rows))
    return {r["video_id"]: r.asDict() for r in rows}


def _plan(cfg: VidxConfig, todo: list[VideoFile], probes: dict[str, dict[str, Any]]) -> list[WorkUnit]:
    ok = [(f.video_id, f.uri, f.size_bytes, probes[f.video_id]["duration_s"])
          for f in todo if probes.get(f.video_id, {}).get("error") is None]
    return plan_units(ok, max_unit_seconds=cfg.archive.max_unit_seconds, clip_seconds=cfg.clips.seconds)


def _embed(spark: Any, run: _Run, units: list[WorkUnit]) -> list[dict[str, Any]]:
    cfg, report = run.cfg, run.report
    durations = {vid: p.get("duration_s") for vid, p in run.probes.items()}
    n_bins = min(len(units), cfg.archive.partitions or spark.sparkContext.defaultParallelism * 4)
    bins = balance_units(units, n_bins)
    rows = [(b, u.unit_id, u.video_id, u.uri, u.start_s, u.end_s, durations.get(u.video_id))
            for b, units_in_bin in enumerate(bins) for u in units_in_bin]
    rdd = spark.sparkContext.parallelize(rows, len(bins)).keyBy(lambda r: r[0])
    rdd = rdd.partitionBy(len(bins), lambda key: key).values()  # bin b -> partition b, no hash collisions
    df = spark.createDataFrame(rdd, spark_schema(stages.UNITS_IN))
    clips_uri = table_uri(cfg.warehouse, "clips")
    task = stages.EmbedTask(cfg=cfg, run_id=report.run_id, model_id=report.model_id, clips_uri=clips_uri,
                            layout=clips_layout(clips_uri))
    LOG.info("embedding %d work units in %d Spark tasks", len(units), len(bins))
    # None (the default profile, as listing and probing use) unless GPU executors are wanted.
    profile = embed_profile(spark, cfg)
    return [r.asDict() for r in df.mapInArrow(task, spark_schema(stages.EMBED_OUT), profile=profile).collect()]
