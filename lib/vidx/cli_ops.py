"""Operations commands of the `vidx` CLI: `validate` (the publish gate's data-quality check) and
`sql` (DuckDB over the Delta tables). Registered by vidx.cli."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import TYPE_CHECKING, Any

from vidx.config import VidxConfig
from vidx.errors import VidxError

if TYPE_CHECKING:  # pyarrow stays out of every CLI start-up
    import pyarrow as pa

LOG = logging.getLogger(__name__)
FORMATS = ("table", "csv", "json", "parquet")
_CELL_CHARS = 60  # long cells (embeddings) are cut in the table view; csv/json/parquet keep them whole


def add_parsers(sub: Any, common: Any) -> None:
    p = sub.add_parser("validate", help="check a pinned clips version (and its videos) with great-expectations")
    common(p, model=False)
    p.add_argument("--version", type=int, help="clips table version to validate (default: latest)")
    p.add_argument("--model-id", help="model_id to validate (default: every model in that version)")
    p.add_argument("--max-failed-share", type=float,
                   help="largest share of failed videos that passes (default quality.max_failed_share, 0.2)")
    p.add_argument("--json", action="store_true", help="print one JSON line per model (the last one for Airflow)")
    p = sub.add_parser("sql", help="run SQL (DuckDB) over the videos, clips, runs and validations tables")
    p.add_argument("query", help="SQL text; tables are named videos, clips, runs, validations")
    common(p, model=False)
    p.add_argument("--format", choices=FORMATS, default="table", help="output format (default table)")
    p.add_argument("--out", help="write the result to this file instead of stdout (required for parquet)")
    p.add_argument("--version", action="append", default=[], metavar="N|TABLE=N|index",
                   help="time travel: N pins clips (and the matching videos); TABLE=N pins one table; "
                        "'index' pins the clips version the CURRENT index was built from. Repeatable.")
    p.add_argument("--model-id", help="with --version index: which model's index (default: the only one)")


def cmd_validate(cfg: VidxConfig, args: argparse.Namespace) -> int:
    from vidx.quality.validate import validate_warehouse

    records = validate_warehouse(cfg, version=args.version, model_id=args.model_id,
                                 max_failed_share=args.max_failed_share)
    for rec in records:
        if args.json:
            print(json.dumps(rec.summary(), default=str))
            continue
        state = "passed" if rec.success else "FAILED"
        print(f"{rec.model_id} clips v{rec.table_version} (videos v{rec.videos_version}): {state}, "
              f"{rec.n_expectations - rec.n_failed}/{rec.n_expectations} expectations met, "
              f"{rec.n_rows} clips, {rec.n_videos} videos")
        for label in rec.failed_expectations:
            print(f"  failed {label}")
        print(f"  results {rec.results_uri}\n  data docs {rec.data_docs_uri}")
    # 1 = the data failed its checks (2 stays "vidx could not run"): Airflow fails the task either way.
    return 0 if all(r.success for r in records) else 1


def cmd_sql(cfg: VidxConfig, args: argparse.Namespace) -> int:
    from vidx.tables.sql import resolve_pins, run_sql

    if args.format == "parquet" and not args.out:
        raise VidxError("--format parquet writes a file: add --out FILE")
    pins = resolve_pins(cfg.warehouse, args.version, args.model_id)
    result = run_sql(cfg.warehouse, args.query, pins)
    LOG.debug("%d rows at %s", result.num_rows, pins.describe())
    write_result(result, args.format, args.out)
    return 0


def write_result(table: pa.Table, fmt: str, out: str | None) -> None:
    """Write a query result as a table (rich), CSV, JSON (a list of objects) or Parquet."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, str(out))
        return
    if fmt == "json":
        text = json.dumps(table.to_pylist(), default=str)
    elif fmt == "csv":
        text = _csv(table)
    else:
        _print_table(table, out)
        return
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            fh.write(text + ("\n" if not text.endswith("\n") else ""))
    else:
        sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))


def _csv(table: pa.Table) -> str:
    import pyarrow as pa
    import pyarrow.csv as pcsv

    # CSV has no lists or structs: nested cells become JSON text.
    cols = [pa.array([None if v is None else json.dumps(v, default=str) for v in column.to_pylist()], pa.string())
            if pa.types.is_nested(column.type) else column for column in table.columns]
    sink = pa.BufferOutputStream()
    pcsv.write_csv(pa.table(cols, names=table.column_names), sink)
    return bytes(sink.getvalue()).decode()


def _print_table(table: pa.Table, out: str | None) -> None:
    from rich.console import Console
    from rich.table import Table

    view = Table(*table.column_names, caption=f"{table.num_rows} rows")
    for row in table.to_pylist():
        cells = [("" if v is None else str(v)) for v in row.values()]
        view.add_row(*[c if len(c) <= _CELL_CHARS else c[: _CELL_CHARS - 1] + "…" for c in cells])
    if out:
        with open(out, "w", encoding="utf-8") as fh:
            Console(file=fh, width=200).print(view)
    else:
        Console(width=None if sys.stdout.isatty() else 200).print(view)


COMMANDS = {"validate": cmd_validate, "sql": cmd_sql}
