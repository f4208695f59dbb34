"""The `validations` table: what `vidx validate` found, and the publish gate that reads it.

Kept free of great-expectations so `build-index` can check the gate without importing GX (6 s).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

import pyarrow as pa

from vidx.errors import DataQualityError
from vidx.tables import delta, table_uri, write_data_file
from vidx_schemas import VALIDATIONS_PARTITION_BY, VALIDATIONS_SCHEMA

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class ValidationRecord:
    """One row of `validations` (see schemas/validations.py)."""

    validation_id: str
    table_name: str
    table_version: int
    videos_version: int | None
    model_id: str
    success: bool
    n_rows: int
    n_videos: int
    n_expectations: int
    n_failed: int
    failed_expectations: list[str]
    results_uri: str | None
    data_docs_uri: str | None
    validated_at: datetime
    gx_version: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)  # not stored; CLI output only

    def row(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("extra")
        return out

    def summary(self) -> dict[str, Any]:
        out = {**self.row(), **self.extra}
        out["validated_at"] = self.validated_at.isoformat(timespec="seconds")
        return out


def record_validation(warehouse: str, rec: ValidationRecord) -> int | None:
    """Append `rec` to `validations` in one Delta commit; returns the table version written."""
    uri = table_uri(warehouse, "validations")
    data = write_data_file(pa.Table.from_pylist([rec.row()], schema=VALIDATIONS_SCHEMA), table_uri=uri,
                           partition_values={}, name_hint=rec.validation_id)
    # Every validation is a new row: a time-based app transaction version never repeats, and the
    # app id per model keeps `transaction_version` meaningful for "last validation of model M".
    info = delta.commit_files([data], table_uri=uri, schema=VALIDATIONS_SCHEMA,
                              partition_by=VALIDATIONS_PARTITION_BY, app_id=f"vidx-validate:{rec.model_id}",
                              txn_version=time.time_ns() // 1000,
                              metadata={"vidx.validation_id": rec.validation_id, "vidx.model_id": rec.model_id})
    return info.version


def latest_validation(warehouse: str, model_id: str, table_version: int,
                      table_name: str = "clips") -> dict[str, Any] | None:
    """The newest `validations` row for (table, version, model), or None if it was never validated."""
    uri = table_uri(warehouse, "validations")
    if not delta.table_exists(uri):
        return None
    rows = delta.read_rows(uri, equals={"table_name": table_name, "table_version": table_version,
                                        "model_id": model_id}).to_pylist()
    return max(rows, key=lambda r: r["validated_at"]) if rows else None


def require_validated(warehouse: str, model_id: str, table_version: int) -> dict[str, Any]:
    """The passing validation of clips `table_version` for `model_id`; DataQualityError otherwise."""
    row = latest_validation(warehouse, model_id, table_version)
    if row is None:
        raise DataQualityError(
            f"clips version {table_version} of {model_id} was never validated, so no index is published "
            f"from it. Run `vidx validate --warehouse {warehouse} --version {table_version}` first "
            "(or, in development only, pass --skip-validation).")
    if not row["success"]:
        failed = "; ".join(row["failed_expectations"]) or "see the results"
        raise DataQualityError(
            f"clips version {table_version} of {model_id} failed validation {row['validation_id']} "
            f"({failed}); results: {row['results_uri']}. Fix the data (re-embed the bad videos) and "
            "validate the new version; nothing is published from a failed one.")
    LOG.info("clips version %d of %s passed validation %s", table_version, model_id, row["validation_id"])
    return row


def publish_gate(warehouse: str, model_id: str, table_version: int, *, required: bool) -> dict[str, Any] | None:
    """The one publish gate, for `vidx build-index` and `vidx index promote|rollback` alike.

    `required` (index.require_validation and no --skip-validation): the passing validation of clips
    `table_version` as {"validation_id", "results_uri"} for the manifest, DataQualityError when it
    never passed. Not `required`: None, with a warning.
    """
    if not required:
        LOG.warning("clips version %d of %s: publishing without checking its validation", table_version, model_id)
        return None
    passed = require_validated(warehouse, model_id, table_version)
    return {"validation_id": passed["validation_id"], "results_uri": passed["results_uri"]}
