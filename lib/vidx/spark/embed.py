"""Driver of `vidx embed`: list -> diff -> probe (Spark) -> plan -> embed (Spark) -> one commit per table."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from vidx.archive import VideoFile, WorkUnit, balance_units, list_archive, plan_units
from vidx.config import VidxConfig
from vidx.encode.models import ModelSpec, load_model
from vidx.encode.registry import save_model_record
from vidx.spark import stages
from vidx.tables import DataFile, delta, table_uri, write_data_file

LOG = logging.getLogger(__name__)


@dataclass
class EmbedReport:
    run_id: str
    model_id: str
    listed: int = 0
    skipped_unchanged: int = 0
    changed_skipped: int = 0
    processed: int = 0
    ok: int = 0
    failed: int = 0
    units: int = 0
    clips: int = 0
    frames: int = 0
    wall_s: float = 0.0
    decode_s: float = 0.0
    encode_s: float = 0.0
    clips_version: int | None = None
    videos_version: int | None = None
    failures: list[dict[str, str]] = field(default_factory=list)

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.wall_s if self.wall_s else 0.0


@dataclass
class _Run:
    """Everything one embed run's steps share."""

    cfg: VidxConfig
    report: EmbedReport
    videos_uri: str
    clips_uri: str
    todo: list[VideoFile] = field(default_factory=list)
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)
    results: list[dict[str, Any]] = field(default_factory=list)


def spark_schema(schema: pa.Schema) -> Any:
    from pyspark.sql.pandas.types import from_arrow_schema

    return from_arrow_schema(schema)


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def _known_videos(videos_uri: str, model_id: str) -> dict[str, tuple[int, int]]:
    """video_id -> fingerprint already recorded for this model (latest row wins)."""
    if not delta.table_exists(videos_uri):
        return {}
    rows = delta.read_rows(videos_uri, columns=["video_id", "size_bytes", "mtime", "indexed_at"],
                           equals={"model_id": model_id}).sort_by("indexed_at").to_pylist()
    return {r["video_id"]: (r["size_bytes"], _us(r["mtime"])) for r in rows}


def _us(ts: datetime) -> int:
    return int(ts.timestamp() * 1_000_000)


def _diff(files: list[VideoFile], known: dict[str, tuple[int, int]], report: EmbedReport) -> list[VideoFile]:
    todo = []
    for f in files:
        seen = known.get(f.video_id)
        if seen is None:
            todo.append(f)
        elif seen == f.fingerprint:
            report.skipped_unchanged += 1
        else:
            # Replacing a changed file's clips needs remove+add in one commit (incremental runs).
            LOG.warning("%s changed since it was indexed; re-embedding changed files is not supported "
                        "by this version, use a new warehouse", f.uri)
            report.changed_skipped += 1
    return todo


def run_embed(cfg: VidxConfig, archive_uri: str, *, spark: Any = None, run_id: str | None = None) -> EmbedReport:
    """Embed every new video under `archive_uri` into the warehouse's `videos` and `clips` tables."""
    from vidx.spark.session import get_spark

    t0 = time.perf_counter()
    spec = ModelSpec(cfg.encode.model, cfg.encode.pretrained)
    # Loading on the driver fails fast, with a clear message, before any Spark task starts.
    lm = load_model(spec, device="cpu")
    report = EmbedReport(run_id=run_id or new_run_id(), model_id=lm.model_id)
    save_model_record(cfg.warehouse, lm)
    videos_uri, clips_uri = table_uri(cfg.warehouse, "videos"), table_uri(cfg.warehouse, "clips")
    files = list_archive(archive_uri, cfg.archive.extensions)
    report.listed = len(files)
    todo = _diff(files, _known_videos(videos_uri, lm.model_id), report)
    if not todo:
        LOG.info("nothing to embed: %d files, all indexed for %s", len(files), lm.model_id)
        report.wall_s = time.perf_counter() - t0
        return report
    spark = spark or get_spark(cfg.spark)
    run = _Run(cfg, report, videos_uri, clips_uri, todo=todo)
    run.probes = _probe(spark, todo)
    units = _plan(cfg, todo, run.probes)
    if units:
        run.results = _embed(spark, run, units)
    _commit(run)
    report.wall_s = time.perf_counter() - t0
    return report


def _probe(spark: Any, todo: list[VideoFile]) -> dict[str, dict[str, Any]]:
    n = max(1, min(len(todo), spark.sparkContext.defaultParallelism * 4))
    df = spark.createDataFrame([(f.video_id, f.uri) for f in todo], "video_id string, uri string")
    rows = df.repartition(n).mapInArrow(stages.probe_partition, spark_schema(stages.PROBE_OUT)).collect()
    LOG.info("probed %d files", len(rows))
    return {r["video_id"]: r.asDict() for r in rows}


def _plan(cfg: VidxConfig, todo: list[VideoFile], probes: dict[str, dict[str, Any]]) -> list[WorkUnit]:
    ok = [(f.video_id, f.uri, f.size_bytes, probes[f.video_id]["duration_s"])
          for f in todo if probes.get(f.video_id, {}).get("error") is None]
    return plan_units(ok, max_unit_seconds=cfg.archive.max_unit_seconds, clip_seconds=cfg.clips.seconds)


def _embed(spark: Any, run: _Run, units: list[WorkUnit]) -> list[dict[str, Any]]:
    cfg, report = run.cfg, run.report
    durations = {vid: p.get("duration_s") for vid, p in run.probes.items()}
    parallelism = spark.sparkContext.defaultParallelism
    n_bins = min(len(units), cfg.archive.partitions or parallelism * 4)
    bins = balance_units(units, n_bins)
    rows = [(b, u.unit_id, u.video_id, u.uri, u.start_s, u.end_s, durations.get(u.video_id))
            for b, units_in_bin in enumerate(bins) for u in units_in_bin]
    rdd = spark.sparkContext.parallelize(rows, len(bins)).keyBy(lambda r: r[0])
    rdd = rdd.partitionBy(len(bins), lambda key: key).values()  # bin b -> partition b, no hash collisions
    df = spark.createDataFrame(rdd, spark_schema(stages.UNITS_IN))
    task = stages.EmbedTask(cfg=cfg, run_id=report.run_id, model_id=report.model_id, clips_uri=run.clips_uri)
    LOG.info("embedding %d work units in %d Spark tasks", len(units), len(bins))
    report.units = len(units)
    return [r.asDict() for r in df.mapInArrow(task, spark_schema(stages.EMBED_OUT)).collect()]


def _video_rows(run: _Run) -> list[dict[str, Any]]:
    todo, probes, results, report = run.todo, run.probes, run.results, run.report
    by_video: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        if r["kind"] == "unit":
            by_video.setdefault(r["video_id"], []).append(r)
    now = datetime.now(UTC)
    rows = []
    for f in todo:
        probe = probes.get(f.video_id, {})
        units = sorted(by_video.get(f.video_id, []), key=lambda r: r["unit_id"])
        bad = [probe] if probe.get("error") else [u for u in units if u.get("error")]
        if not bad and not units:
            bad = [{"error_class": "corrupt", "error": "no work unit result (video had no frames to plan)"}]
        row = {"video_id": f.video_id, "uri": f.uri, "size_bytes": f.size_bytes,
               "mtime": datetime.fromtimestamp(f.mtime_us / 1e6, UTC),
               **{k: probe.get(k) for k in ("duration_s", "fps", "width", "height", "codec")},
               "status": "failed" if bad else "ok",
               "error_class": bad[0].get("error_class") if bad else None,
               "error": bad[0].get("error") if bad else None,
               "model_id": report.model_id, "n_clips": sum(u.get("n_clips") or 0 for u in units),
               "run_id": report.run_id, "indexed_at": now}
        rows.append(row)
        if bad:
            report.failures.append({"uri": f.uri, "error_class": str(row["error_class"]),
                                    "error": str(row["error"])})
    return rows


def _commit(run: _Run) -> None:
    """Clips first, then videos: a crash in between leaves clips whose videos are not yet recorded,
    so a re-run re-embeds them; the app transaction makes the clip commit itself exactly-once."""
    from vidx_schemas import CLIPS_PARTITION_BY, CLIPS_SCHEMA, VIDEOS_PARTITION_BY, VIDEOS_SCHEMA

    report, results = run.report, run.results
    files = [DataFile.from_json(r["file"]) for r in results if r["kind"] == "file"]
    units = [r for r in results if r["kind"] == "unit"]
    report.frames = sum(r["n_frames"] or 0 for r in units)
    report.decode_s = sum(r["decode_s"] or 0.0 for r in units)
    report.encode_s = sum(r["encode_s"] or 0.0 for r in units)
    rows = _video_rows(run)
    report.processed = len(rows)
    report.failed = sum(r["status"] == "failed" for r in rows)
    report.ok = report.processed - report.failed
    app_id = f"vidx-embed:{report.run_id}"
    meta = {"vidx.run_id": report.run_id, "vidx.model_id": report.model_id}
    if files:
        info = delta.commit_files(files, table_uri=run.clips_uri, schema=CLIPS_SCHEMA,
                                  partition_by=CLIPS_PARTITION_BY, app_id=app_id, txn_version=1, metadata=meta)
        report.clips_version = info.version
        report.clips = info.rows
    table = pa.Table.from_pylist(rows, schema=VIDEOS_SCHEMA)
    vfile = write_data_file(table, table_uri=run.videos_uri, partition_values={}, name_hint=report.run_id)
    info = delta.commit_files([vfile], table_uri=run.videos_uri, schema=VIDEOS_SCHEMA,
                              partition_by=VIDEOS_PARTITION_BY, app_id=app_id, txn_version=1, metadata=meta)
    report.videos_version = info.version
