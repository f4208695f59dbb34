"""The `runs` table: one row per embed run, appended when the run ends."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from vidx.tables import delta, table_uri, write_data_file
from vidx_schemas import RUNS_PARTITION_BY, RUNS_SCHEMA

LOG = logging.getLogger(__name__)


def record_run(warehouse: str, report: Any, *, status: str, error: str | None) -> None:
    """Best effort on failure paths: a failing `runs` write must not hide the run's own error."""
    row = {
        "run_id": report.run_id, "pipeline_id": report.pipeline_id, "model_id": report.model_id,
        "archive_uri": report.archive_uri, "started_at": report.started_at, "finished_at": datetime.now(UTC),
        "status": status, "error": error, "n_listed": report.listed, "n_new": report.new,
        "n_changed": report.changed, "n_deleted": report.deleted, "n_unchanged": report.unchanged,
        "n_failed": report.failed, "n_units": report.units, "n_clips": report.clips,
        "n_checkpoints": report.checkpoints, "clips_versions": report.clips_versions,
        "videos_versions": report.videos_versions, "wall_s": report.wall_s,
    }
    uri = table_uri(warehouse, "runs")
    try:
        f = write_data_file(pa.Table.from_pylist([row], schema=RUNS_SCHEMA), table_uri=uri, partition_values={},
                            name_hint=report.run_id)
        # A resumed run writes a second row; a time-based txn version keeps both.
        delta.commit_files([f], table_uri=uri, schema=RUNS_SCHEMA, partition_by=RUNS_PARTITION_BY,
                           app_id=f"{report.pipeline_id}:runs", txn_version=time.time_ns() // 1000)
    except Exception:
        if status == "succeeded":
            raise
        LOG.exception("could not record failed run %s in %s", report.run_id, uri)
