"""Driver side of Delta: commits, pinned reads. The only module in vidx that imports deltalake.

Idempotence is checked here, not trusted to delta-rs: it accepts an app transaction whose version
is not newer than the recorded one, so `commit_files` reads `transaction_version(app_id)` first.

Object stores: every table is opened with `storage.delta_options(uri)`, which on S3 makes delta-rs
write each log entry with a conditional put (If-None-Match: *), so of two writers racing for a
version exactly one wins and the other retries on the next version (never
AWS_S3_ALLOW_UNSAFE_RENAME, with which both could "win" and one commit would be lost).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from deltalake import CommitProperties, DeltaTable, Transaction
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError, TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from vidx.errors import TableError
from vidx.storage import delta_options, is_local, local_path
from vidx.tables.files import DataFile

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommitInfo:
    table_uri: str
    version: int | None  # table version after the commit; None when nothing was committed
    skipped: bool  # True when this (app_id, txn_version) was already committed earlier
    files: int
    rows: int


def _delta_uri(uri: str) -> str:
    return local_path(uri) if is_local(uri) else uri


def open_table(table_uri: str, *, version: int | None = None) -> DeltaTable:
    options = delta_options(table_uri)  # a refused setting (ConfigError) is not a missing table
    try:
        return DeltaTable(_delta_uri(table_uri), version=version, storage_options=options)
    except TableNotFoundError as exc:
        raise TableError(f"no Delta table at {table_uri}; run `vidx embed ARCHIVE --warehouse W` first") from exc
    except Exception as exc:  # deltalake raises plain exceptions for a missing version
        raise TableError(f"cannot open Delta table {table_uri} at version {version}: {exc}") from exc


def table_exists(table_uri: str) -> bool:
    return DeltaTable.is_deltatable(_delta_uri(table_uri), storage_options=delta_options(table_uri))


def latest_version(table_uri: str) -> int | None:
    return open_table(table_uri).version() if table_exists(table_uri) else None


def committed_txn_version(table_uri: str, app_id: str) -> int | None:
    return open_table(table_uri).transaction_version(app_id) if table_exists(table_uri) else None


def _actions(files: Sequence[DataFile], removes: Sequence[Any] = ()) -> list[AddAction | RemoveAction]:
    now = int(time.time() * 1000)
    actions: list[AddAction | RemoveAction] = [
        RemoveAction(r.path, True, now, r.size, r.partition_values) for r in removes]
    actions += [AddAction(f.path, f.size, f.partition_values, f.modification_time, True, f.stats) for f in files]
    return actions


def _add_missing_columns(table: DeltaTable, table_uri: str, schema: pa.Schema) -> DeltaTable:
    """Schema evolution for columns added to `schemas/` after a table was created (nullable only:
    old files simply read as null). A commit with a wider schema would otherwise be accepted while
    the table's schema, and so every reader, ignored the new column. Returns the table to commit to."""
    have = set(table.schema().to_arrow().names)
    missing = [f for f in schema if f.name not in have]
    if not missing:
        return table
    required = [f.name for f in missing if not f.nullable]
    if required:
        raise TableError(f"{table_uri} lacks the required columns {required}; it was written by an older vidx. "
                         "Re-create it (vidx embed --full-refresh into a new warehouse)")
    delta_schema = DeltaSchema.from_arrow(pa.schema(missing))
    table.alter.add_columns(list(delta_schema.fields))
    LOG.info("%s: added columns %s (schema evolution)", table_uri, [f.name for f in missing])
    return open_table(table_uri)


def commit_files(files: Sequence[DataFile], *, table_uri: str, schema: pa.Schema, partition_by: list[str],
                 app_id: str, txn_version: int, mode: Literal["append"] = "append",
                 metadata: dict[str, Any] | None = None, removes: Sequence[Any] = (),
                 description: str | None = None) -> CommitInfo:
    """Commit already-written data files (and removals of old ones, e.g. `RemovedFile`s) in ONE
    Delta transaction tagged (app_id, txn_version).

    `partition_by` and `description` apply when this commit creates the table; an existing table
    keeps its own partition columns (Delta cannot change them), whatever `partition_by` says.

    Returns `skipped=True` without writing when that app transaction is already at or past
    `txn_version` (a re-run after a crash between commit and bookkeeping).
    """
    uri = _delta_uri(table_uri)
    rows = sum(f.num_records for f in files)
    if not files and not removes:
        return CommitInfo(table_uri, None, False, 0, 0)
    done = committed_txn_version(table_uri, app_id)
    if done is not None and done >= txn_version:
        LOG.info("%s: app transaction %s v%d already committed; skipping", table_uri, app_id, txn_version)
        return CommitInfo(table_uri, None, True, 0, 0)
    props = CommitProperties(custom_metadata=metadata or {},
                             app_transactions=[Transaction(app_id, txn_version)])
    try:
        if table_exists(table_uri):
            table = _add_missing_columns(open_table(table_uri), table_uri, schema)
            table.create_write_transaction(
                _actions(files, removes), mode=mode, schema=schema,
                partition_by=list(table.metadata().partition_columns) or None, commit_properties=props)
        else:
            adds = [a for a in _actions(files) if isinstance(a, AddAction)]
            create_table_with_add_actions(uri, DeltaSchema.from_arrow(schema), adds, mode=mode,
                                          partition_by=partition_by or None, description=description,
                                          commit_properties=props, storage_options=delta_options(table_uri))
    except CommitFailedError as exc:
        raise TableError(f"commit to {table_uri} failed ({exc}); another writer may be committing. "
                         "Re-run the same command: committed batches are skipped.") from exc
    version = open_table(table_uri).version()
    LOG.info("%s: committed %d files / %d rows as version %d", table_uri, len(files), rows, version)
    return CommitInfo(table_uri, version, False, len(files), rows)


def overwrite(table_uri: str, reader: pa.RecordBatchReader, *, partition_by: list[str], description: str | None,
              metadata: dict[str, Any] | None = None) -> int:
    """Replace the table's rows, schema and partitioning with `reader`'s in ONE commit, streaming (the
    older versions stay readable: time travel, vacuum). Returns the new version."""
    from deltalake import WriterProperties, write_deltalake

    try:
        # Small row groups: delta-rs keeps one open writer per partition, each buffering a row group.
        write_deltalake(_delta_uri(table_uri), reader, mode="overwrite", schema_mode="overwrite",
                        partition_by=partition_by, description=description,
                        writer_properties=WriterProperties(max_row_group_size=8192, compression="ZSTD"),
                        commit_properties=CommitProperties(custom_metadata=metadata or {}))
    except CommitFailedError as exc:
        raise TableError(f"rewriting {table_uri} lost a race with another commit ({exc}); run it again "
                         "when no embed run is writing") from exc
    return int(open_table(table_uri).version())


def to_dataset(table_uri: str, *, version: int | None = None) -> ds.Dataset:
    """A pyarrow dataset of a pinned table version (filter/projection pushdown for DuckDB, polars)."""
    return open_table(table_uri, version=version).to_pyarrow_dataset()


def read_table(table_uri: str, *, version: int | None = None, columns: list[str] | None = None,
               filter: ds.Expression | None = None) -> pa.Table:
    return to_dataset(table_uri, version=version).to_table(columns=columns, filter=filter)


def read_rows(table_uri: str, *, version: int | None = None, columns: list[str] | None = None,
              equals: dict[str, Any] | None = None) -> pa.Table:
    """Rows whose columns equal the given values; empty table (right schema) if the table is absent."""
    expr: ds.Expression | None = None
    for key, value in (equals or {}).items():
        term = pc.field(key) == value
        expr = term if expr is None else expr & term
    return read_table(table_uri, version=version, columns=columns, filter=expr)


def data_files(table_uri: str, *, version: int | None = None, equals: dict[str, str] | None = None) -> pa.Table:
    """The add actions of a version as Arrow (never Python rows): `path` as the log spells it, `rel_path`
    (the file's path under the table root), `size_bytes`, `num_records`, `partition.<column>` and
    the min/max/null_count stats columns; only files whose partition columns equal `equals`."""
    actions = pa.table(open_table(table_uri, version=version).get_add_actions(flatten=True))
    for column, value in (equals or {}).items():
        actions = actions.filter(pc.equal(actions[f"partition.{column}"].cast(pa.string()), value))
    # The log percent-encodes paths; once decoded they name the file under the table root.
    rel = pa.array([unquote(p) for p in actions["path"].to_pylist()], pa.string())
    return actions.append_column("rel_path", rel)


def partition_values(table_uri: str, column: str, *, version: int | None = None) -> list[str]:
    """Distinct values of partition column `column` at a version, from the log (no data file is read)."""
    actions = pa.table(open_table(table_uri, version=version).get_add_actions(flatten=True))
    name = f"partition.{column}"
    if name not in actions.column_names:
        raise TableError(f"{table_uri} is not partitioned by {column}")
    return sorted(str(v) for v in pc.unique(actions[name]).to_pylist() if v is not None)


def file_uris(table_uri: str, *, version: int | None = None) -> list[str]:
    """Data files of a version, for Spark: `spark.read.option("basePath", T).parquet(*uris)`."""
    return list(open_table(table_uri, version=version).file_uris())


def history(table_uri: str, limit: int | None = None) -> list[dict[str, Any]]:
    return list(open_table(table_uri).history(limit))


def vacuum(table_uri: str, *, retention_hours: int | None, dry_run: bool) -> list[str]:
    """Delete files the table no longer references (removed files past retention, and - with
    `full` mode - files never committed, e.g. from failed task attempts or a killed driver).

    `retention_hours` below the table's retention (7 days by default) is refused by Delta's check
    unless explicitly 0-or-more is requested with enforcement off, which only this call does when
    the caller asked for a shorter retention."""
    table = open_table(table_uri)
    enforce = retention_hours is None or retention_hours >= 168
    return list(table.vacuum(retention_hours=retention_hours, dry_run=dry_run, enforce_retention_duration=enforce,
                             full=True))


def optimize(table_uri: str, *, zorder_by: Sequence[str] = ("video_id",),
             target_size: int | None = None) -> dict[str, Any]:
    """Compact small files (one per checkpoint and Spark task add up) and Z-order by `zorder_by`
    where the table has those columns, so per-video reads skip most files by their stats.

    One commit with dataChange=false: readers and time travel see the same rows. Returns delta-rs'
    metrics (files added/removed, partitions optimized...) plus the versions before and after."""
    table = open_table(table_uri)
    before = table.version()
    names = set(table.schema().to_arrow().names)
    columns = [c for c in zorder_by if c in names and c not in table.metadata().partition_columns]
    props = CommitProperties(custom_metadata={"vidx.operation": "optimize"})
    try:
        if columns:
            metrics = table.optimize.z_order(columns, target_size=target_size, commit_properties=props)
        else:
            metrics = table.optimize.compact(target_size=target_size, commit_properties=props)
    except CommitFailedError as exc:
        raise TableError(f"optimize of {table_uri} lost a race with another commit ({exc}); run it again "
                         "when no embed run is writing") from exc
    after = open_table(table_uri).version()
    LOG.info("%s: optimized (z-order %s) version %d -> %d", table_uri, columns or "none", before, after)
    return {"zorder_by": columns, "version_before": before, "version_after": after, **dict(metrics)}
