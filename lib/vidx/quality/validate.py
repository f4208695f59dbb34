"""`vidx validate`: run the great-expectations suites on a pinned clips version (and the matching
videos state), write JSON results and GX Data Docs under `W/quality/`, record the outcome in the
`validations` table. The publish gate (`vidx.quality.records.require_validated`) reads that row.

The table is never held whole: vidx.quality.batches streams it into groups of at most
~GROUP_ROWS clips, each holding every clip and the videos row of its videos, and GX validates
every row, group by group, with the same suites (pandas frames; no `[spark]` extra: it pins
pyspark < 4.2), in an in-memory context, so nothing but the files named here is written. Row and
per-video expectations are therefore exact. An expectation on a column's mean (the failed share of
videos) cannot be decided per group: it runs once on a one-row frame holding that column's exact
mean over all groups (the mean of one value is the value).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.fs as pafs

from vidx.config import VidxConfig
from vidx.encode.registry import recorded_recipe
from vidx.errors import DataQualityError
from vidx.quality import batches, frames
from vidx.quality.records import ValidationRecord, record_validation
from vidx.quality.suites import SuiteParams, clips_expectations, expectation_label, videos_expectations
from vidx.storage import filesystem, is_local, join, local_path, normalize_uri, write_bytes_atomic
from vidx.tables import delta, table_uri

LOG = logging.getLogger(__name__)
DOCS_SITE = "vidx"


def quality_root(warehouse: str) -> str:
    return join(normalize_uri(warehouse), "quality")


def _context(docs_dir: str) -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")  # no phoning home from a batch job
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    site = {"class_name": "SiteBuilder", "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": docs_dir}}
    config = DataContextConfig(store_backend_defaults=InMemoryStoreBackendDefaults(), analytics_enabled=False,
                               progress_bars=ProgressBarsConfig(globally=False), data_docs_sites={DOCS_SITE: site})
    return gx.get_context(project_config=config, mode="ephemeral")


_AGGREGATE_TYPES = ("expect_column_mean_to_be_between",)


class _Runner:
    """One GX context for a validation: one checkpoint per suite (row-level expectations) and one per
    suite's aggregate expectations, run once per group; Data Docs are built once at the end."""

    def __init__(self, expectations: dict[str, list[Any]], docs_dir: str, run_name: str) -> None:
        import great_expectations as gx

        self.gx = gx
        self.ctx = _context(docs_dir)
        self.source = self.ctx.data_sources.add_pandas("vidx")
        self.run_name = run_name
        self.results: list[tuple[str, Any]] = []
        self.aggregated: dict[str, dict[str, list[float]]] = {}  # suite -> column -> [sum, count]
        self.checkpoints: dict[str, Any] = {}
        for name, exps in expectations.items():
            rows = [e for e in exps if e.expectation_type not in _AGGREGATE_TYPES]
            aggregate = [e for e in exps if e.expectation_type in _AGGREGATE_TYPES]
            self.checkpoints[name] = self._checkpoint(name, name, rows)
            if aggregate:
                self.checkpoints[f"{name}:aggregate"] = self._checkpoint(name, f"{name}-aggregate", aggregate)
                self.aggregated[name] = {e.column: [0.0, 0.0] for e in aggregate}
        self.n_expectations = sum(len(e) for e in expectations.values())

    def _checkpoint(self, suite_name: str, name: str, exps: list[Any]) -> Any:
        gx = self.gx
        batch = self.source.add_dataframe_asset(name=name).add_batch_definition_whole_dataframe(name)
        suite = self.ctx.suites.add(gx.ExpectationSuite(name=name))
        for exp in exps:
            suite.add_expectation(exp)
        definition = self.ctx.validation_definitions.add(gx.ValidationDefinition(data=batch, suite=suite, name=name))
        return self.ctx.checkpoints.add(gx.Checkpoint(
            name=f"vidx-{name}", validation_definitions=[definition], actions=[],
            result_format={"result_format": "SUMMARY", "partial_unexpected_count": 10}))

    def run_group(self, group: int, frames_by_suite: dict[str, pd.DataFrame]) -> None:
        from great_expectations.core.run_identifier import RunIdentifier

        run_id = RunIdentifier(run_name=f"{self.run_name}-g{group:05d}", run_time=datetime.now(UTC))
        for name, frame in frames_by_suite.items():
            if frame.empty:
                continue
            for column, acc in self.aggregated.get(name, {}).items():
                acc[0] += float(frame[column].sum())
                acc[1] += float(frame[column].count())
            result = self.checkpoints[name].run(batch_parameters={"dataframe": frame}, run_id=run_id)
            self.results.append((name, result))

    def run_aggregates(self) -> None:
        """The aggregate expectations, each on a one-row frame of its column's exact mean."""
        from great_expectations.core.run_identifier import RunIdentifier

        run_id = RunIdentifier(run_name=f"{self.run_name}-aggregate", run_time=datetime.now(UTC))
        for name, columns in self.aggregated.items():
            row = {column: [total / count if count else np.nan] for column, (total, count) in columns.items()}
            result = self.checkpoints[f"{name}:aggregate"].run(batch_parameters={"dataframe": pd.DataFrame(row)},
                                                                 run_id=run_id)
            self.results.append((name, result))

    def build_docs(self) -> None:
        self.ctx.build_data_docs(site_names=[DOCS_SITE])


def _collect(results: list[tuple[str, Any]]) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """(JSON of each group's suite results, labels of failed expectations once each, Data Docs pages)."""
    payload, failed, pages = [], [], []
    for name, checkpoint_result in results:
        for identifier, vr in checkpoint_result.run_results.items():
            payload.append({"suite": name, "run": identifier.run_id.run_name, **vr.to_json_dict()})
            failed += [expectation_label(name, r.expectation_config) for r in vr.results if not r.success]
            pages.append("/".join(["validations", *identifier.to_tuple()]) + ".html")
    return payload, list(dict.fromkeys(failed)), pages


def _publish_docs(local_dir: str, warehouse: str) -> str:
    """Copy a locally built Data Docs site into `W/quality/data_docs` (object stores included)."""
    target = join(quality_root(warehouse), "data_docs")
    if is_local(target) and local_path(target) == local_dir:
        return target
    fs, path = filesystem(target)
    fs.create_dir(path, recursive=True)
    pafs.copy_files(local_dir, path, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs)
    return target


def recorded_clip_settings(cfg: VidxConfig, model_id: str) -> tuple[float, str]:
    """(sample_fps, clips.mode) `model_id`'s clips were made with, from its model record: the
    current config may differ from the one the clips were embedded with. A record from before
    recipes were recorded (or none) falls back on the current config."""
    recipe = recorded_recipe(cfg.warehouse, model_id)
    if recipe is not None:
        return recipe.sample_fps, recipe.clip_mode
    LOG.warning("%s has no recorded recipe (embedded by an older vidx): checking its clips against the current "
                "decode.sample_fps=%g and clips.mode=%s", model_id, cfg.decode.sample_fps, cfg.clips.mode)
    return cfg.decode.sample_fps, cfg.clips.mode


def _validate_groups(cfg: VidxConfig, model_id: str, clips_version: int, videos_version: int, *,
                     runner: _Runner, step: float) -> tuple[int, int]:
    """Stream the model's rows into groups (a local temporary folder), validate each; (clips, videos) rows."""
    with tempfile.TemporaryDirectory(prefix="vidx-validate-") as tmp:
        spilled = batches.spill(cfg.warehouse, model_id, clips_version, videos_version, tmp)
        for group in range(spilled.groups):
            videos = frames.videos_frame(spilled.videos(group))
            clips = frames.clips_frame(spilled.clips(group), videos, step)
            # a video's clips and its videos row share a group, so the per-group counts are exact
            videos = frames.with_clip_counts(videos, clips)
            runner.run_group(group, {"videos": videos, "clips": clips})
            del videos, clips
    runner.run_aggregates()
    return spilled.clips_rows, spilled.videos_rows


def validate_model(cfg: VidxConfig, model_id: str, clips_version: int, videos_version: int | None,
                   *, max_failed_share: float | None = None) -> ValidationRecord:
    """Validate one model's clips at `clips_version`; write results and record them."""
    w = cfg.warehouse
    sample_fps, clip_mode = recorded_clip_settings(cfg, model_id)
    step = 1.0 / sample_fps
    params = SuiteParams(dim=frames.model_dim(w, model_id), sample_step_s=step, clip_mode=clip_mode,
                         max_failed_share=cfg.quality.max_failed_share if max_failed_share is None
                         else max_failed_share, norm_tolerance=cfg.quality.norm_tolerance)
    if videos_version is None:
        raise DataQualityError(f"no videos table under {w}: clips without videos rows cannot be checked")
    validation_id = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    root = quality_root(w)
    local_docs = local_path(join(root, "data_docs")) if is_local(root) else tempfile.mkdtemp(prefix="vidx-docs-")
    try:
        runner = _Runner({"videos": videos_expectations(params), "clips": clips_expectations(params)}, local_docs,
                         validation_id)
        n_clips, n_videos = _validate_groups(cfg, model_id, clips_version, videos_version, runner=runner,
                                             step=step)
        LOG.info("validated %s: %d clips (clips v%d) and %d videos (videos v%s)", model_id, n_clips,
                 clips_version, n_videos, videos_version)
        runner.build_docs()
        payload, failed, pages = _collect(runner.results)
        docs_root = _publish_docs(local_docs, w)
    finally:
        if not is_local(root):
            shutil.rmtree(local_docs, ignore_errors=True)
    results_uri = join(root, "results", model_id, f"clips-v{clips_version}-{validation_id}.json")
    rec = ValidationRecord(
        validation_id=validation_id, table_name="clips", table_version=clips_version,
        videos_version=videos_version, model_id=model_id, success=not failed, n_rows=n_clips,
        n_videos=n_videos, n_expectations=runner.n_expectations, n_failed=len(failed), failed_expectations=failed,
        results_uri=results_uri, data_docs_uri=join(docs_root, pages[-1]) if pages else None,
        validated_at=datetime.now(UTC), gx_version=str(runner.gx.__version__),
        extra={"data_docs_index": join(docs_root, "index.html")})
    write_bytes_atomic(results_uri, json.dumps({"validation": rec.summary(), "suites": payload}, indent=1,
                                               default=str).encode())
    record_validation(w, rec)
    (LOG.info if rec.success else LOG.error)("validation %s of %s at clips v%d: %s (%d/%d expectations failed)",
                                             validation_id, model_id, clips_version,
                                             "passed" if rec.success else "FAILED", rec.n_failed,
                                             rec.n_expectations)
    return rec


def validate_warehouse(cfg: VidxConfig, *, version: int | None = None, model_id: str | None = None,
                       max_failed_share: float | None = None) -> list[ValidationRecord]:
    """Validate clips `version` (latest by default) for `model_id` (default: every model in it)."""
    clips_uri = table_uri(cfg.warehouse, "clips")
    pinned = version if version is not None else delta.latest_version(clips_uri)
    if pinned is None:
        raise DataQualityError(f"no clips table under {cfg.warehouse}; run `vidx embed` first")
    models = frames.clip_models(cfg.warehouse, pinned)
    if model_id is not None and model_id not in models:
        raise DataQualityError(f"no clips of {model_id!r} at clips version {pinned}; models there: "
                               f"{models or 'none'}")
    videos_version = frames.matching_videos_version(cfg.warehouse, pinned)
    return [validate_model(cfg, m, pinned, videos_version, max_failed_share=max_failed_share)
            for m in ([model_id] if model_id else models)]
