"""`vidx sql`: the README's examples run as written against the embedded sample warehouse, time
travel, output formats; `vidx tables optimize` keeps the data and the pinned reads."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from vidx.cli import main
from vidx.index.publish import current_version, load_manifest
from vidx.tables import delta, table_uri
from vidx.tables.sql import SqlError, resolve_pins, run_sql

README = Path(__file__).resolve().parents[2] / "README.md"
DEMO_WAREHOUSE = "./vidx-demo/warehouse"


def readme_sql_commands() -> list[list[str]]:
    """Every `vidx sql ...` command of the README's `vidx sql` section, as argv."""
    text = README.read_text()
    section = text[text.index("### `vidx sql"):]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the vidx sql section has no bash example block"
    chunks = re.split(r"^(?=vidx sql )", block.group(1), flags=re.M)
    commands = []
    for chunk in chunks:
        lines = [ln for ln in chunk.splitlines() if not ln.lstrip().startswith("#")]
        if lines and lines[0].startswith("vidx sql "):
            commands.append(shlex.split("\n".join(lines))[2:])  # after "vidx sql"
    return commands


def run_cli(argv: list[str], capsys) -> str:
    capsys.readouterr()
    assert main(argv) == 0, argv
    return capsys.readouterr().out


def test_readme_sql_examples_run_as_written(embedded, test_config, capsys, tmp_path, monkeypatch):
    warehouse = test_config.warehouse
    monkeypatch.chdir(tmp_path)  # --out files land here
    commands = readme_sql_commands()
    assert len(commands) >= 6
    outputs = []
    for command in commands:
        argv = [warehouse if a == DEMO_WAREHOUSE else a for a in command]
        if "--format" not in argv:
            argv += ["--format", "json"]
        out = run_cli(["sql", *argv], capsys)
        outputs.append(out)
        if "csv" not in argv and "parquet" not in argv:
            assert json.loads(out), f"no rows from {argv}"
    per_day, failures, neighbours, at_index, csv_text, checks, _ = (
        json.loads(o) if i not in (4, 6) else o for i, o in enumerate(outputs))
    total = delta.read_table(table_uri(warehouse, "clips")).num_rows
    assert sum(r["clips"] for r in per_day) == total
    assert [(r["error_class"], r["files"]) for r in failures] == [("corrupt", 1)]
    assert neighbours[0]["uri"].endswith("/clip_00.mp4") and neighbours[0]["clip_idx"] == 1
    assert neighbours[0]["score"] == pytest.approx(1.0, abs=1e-4) and len(neighbours) == 5
    assert [s["score"] for s in neighbours] == sorted((s["score"] for s in neighbours), reverse=True)
    (model,) = {r["model_id"] for r in at_index}
    manifest = load_manifest(warehouse, model, current_version(warehouse, model))
    assert at_index[0]["clips"] == manifest["count"]
    assert csv_text.splitlines()[0] == '"video_id","clip_idx","start_s","end_s"'
    assert all(c["success"] for c in checks)
    assert pq.read_table(tmp_path / "runs.parquet").num_rows >= 1


def test_time_travel_pins_and_errors(embedded, test_config):
    warehouse = test_config.warehouse
    latest = delta.latest_version(table_uri(warehouse, "clips"))
    pins = resolve_pins(warehouse, [str(latest)])
    assert pins.versions["clips"] == latest and "videos" in pins.versions
    assert resolve_pins(warehouse, ["runs=0"]).versions == {"runs": 0}
    n = run_sql(warehouse, "SELECT count(*) AS n FROM clips", pins).to_pylist()[0]["n"]
    assert n == delta.read_table(table_uri(warehouse, "clips"), version=latest).num_rows
    with pytest.raises(SqlError, match="expected N"):
        resolve_pins(warehouse, ["yesterday"])
    with pytest.raises(SqlError, match="unknown table"):
        resolve_pins(warehouse, ["frames=1"])
    with pytest.raises(SqlError, match="query failed"):
        run_sql(warehouse, "SELECT nope FROM clips")
    assert main(["sql", "SELECT 1", "--format", "parquet", "-w", warehouse]) == 2  # needs --out


def test_optimize_compacts_zorders_and_keeps_rows(embedded, test_config, tmp_path, capsys):
    warehouse = str(tmp_path / "w")
    shutil.copytree(test_config.warehouse, warehouse)  # the shared warehouse stays as it is
    clips_uri = table_uri(warehouse, "clips")
    before_rows = delta.read_table(clips_uri).sort_by([("video_id", "ascending"), ("clip_idx", "ascending")])
    files_before = len(delta.file_uris(clips_uri))
    out = run_cli(["tables", "optimize", "--table", "clips", "--table", "videos", "-w", warehouse], capsys)
    report = {r["table"]: r for r in map(json.loads, out.strip().splitlines())}
    assert report["clips"]["zorder_by"] == ["video_id"] and report["clips"]["numFilesRemoved"] == files_before
    # one file per (model_id, video_bucket) partition afterwards (z-order works partition by partition)
    files_after = delta.file_uris(clips_uri)
    assert len(files_after) <= files_before and len(files_after) == len({f.rsplit("/", 1)[0] for f in files_after})
    after_rows = delta.read_table(clips_uri).sort_by([("video_id", "ascending"), ("clip_idx", "ascending")])
    assert after_rows.equals(before_rows)
    assert delta.history(clips_uri, 1)[0]["operation"] == "OPTIMIZE"
    # the optimized version is new but its data matches: validation pairs it with the same videos
    assert main(["validate", "-w", warehouse]) == 0


def test_sql_reads_the_warehouse_tables_and_nothing_else(tmp_path):
    """DuckDB runs with external access off: the registered warehouse tables work, while any file or
    path named in SQL (an arbitrary local file, the warehouse's own Parquet files, an output file, a
    database to attach, an extension) is refused, and the setting cannot be turned back on."""
    from datetime import UTC, datetime

    from vidx.quality.records import ValidationRecord, record_validation

    warehouse = str(tmp_path / "w")
    record_validation(warehouse, ValidationRecord(
        validation_id="val-1", table_name="clips", table_version=3, videos_version=2, model_id="m", success=True,
        n_rows=10, n_videos=2, n_expectations=5, n_failed=0, failed_expectations=[], results_uri=None,
        data_docs_uri=None, validated_at=datetime(2026, 1, 2, tzinfo=UTC)))
    assert run_sql(warehouse, "SELECT validation_id, table_version FROM validations").to_pylist() == [
        {"validation_id": "val-1", "table_version": 3}]
    assert run_sql(warehouse, "SELECT count(*) AS n FROM clips").to_pylist() == [{"n": 0}]  # absent: empty
    secret = tmp_path / "secret.csv"
    secret.write_text("user,password\nroot,hunter2\n")
    (own_file,) = (Path(warehouse) / "tables" / "validations").glob("*.parquet")
    refused = [f"SELECT * FROM read_csv('{secret}')", f"SELECT * FROM '{secret}'",
               "SELECT * FROM read_text('/etc/hostname')", f"SELECT * FROM read_parquet('{own_file}')",
               f"SELECT * FROM glob('{tmp_path}/*')", f"COPY (SELECT 1 AS x) TO '{tmp_path / 'out.csv'}'",
               f"ATTACH '{tmp_path / 'other.duckdb'}' AS other", "INSTALL httpfs",
               "SET enable_external_access = true"]
    for query in refused:
        with pytest.raises(SqlError, match=r"disabled by configuration|Cannot enable external access"):
            run_sql(warehouse, query)
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "other.duckdb").exists()
    assert main(["sql", f"SELECT * FROM read_csv('{secret}')", "-w", warehouse, "--format", "json"]) == 2
