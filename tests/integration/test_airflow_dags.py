"""The Airflow DAGs, run by the Airflow venv's python (.venv-airflow; `make test` creates it):
parse like the DAG processor does, then a nightly and a backfill run end to end with `dag.test()`
against Spark local[2] on a tiny generated archive (sqlite AIRFLOW_HOME in a tmp dir)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vidx.index.publish import current_version, load_manifest
from vidx.synth import write_video
from vidx.tables import delta, table_uri

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_PY = REPO / ".venv-airflow" / "bin" / "python"
SCRIPT = Path(__file__).parent / "airflow_scripts" / "run_dag.py"
NIGHTLY = {"settings": [], "embed": ["settings"], "validate": ["embed", "settings"],
           "build_index": ["settings", "validate"], "publish": ["build_index", "settings"],
           "smoke_search": ["publish", "settings"]}
BACKFILL = {**NIGHTLY, "plan": ["settings"], "embed": ["plan", "settings"]}


@pytest.fixture(scope="module")
def airflow(tmp_path_factory):
    """Environment of the Airflow subprocesses (the main venv's bin first on PATH for vidx/spark-submit)."""
    if not AIRFLOW_PY.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{AIRFLOW_PY} is missing: `make test` creates it (make airflow)")
        pytest.skip("no .venv-airflow: run `make airflow` to test the DAGs")
    home = tmp_path_factory.mktemp("airflow_home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIDX_", "AIRFLOW", "PYTHONPATH"))}
    env.update({
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "airflow_dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "AIRFLOW_CONN_SPARK_LOCAL": '{"conn_type": "spark", "host": "local[2]"}',
        "VIDX_AIRFLOW_SPARK_CONN_ID": "spark_local", "VIDX_AIRFLOW_RETRIES": "0",  # fail fast in tests
        "VIDX_AIRFLOW_ALERT_COMMAND": f'echo "$VIDX_AIRFLOW_FAILED_TASK $VIDX_AIRFLOW_FAILED_ERROR" >> {home}/alerts',
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "SPARK_LOCAL_IP": "127.0.0.1",
        "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable, "HF_HUB_OFFLINE": "1",
        # the Spark UI would listen on every interface; tests keep listeners on 127.0.0.1
        "VIDX_SPARK__CONF": '{"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2"}',
    })
    return {"env": env, "home": home}


def run_script(airflow, *args: str, timeout: float, drop_env: tuple[str, ...] = ()) -> dict:
    out = airflow["home"] / f"out-{args[0]}-{len(list(airflow['home'].glob('out-*')))}.json"
    env = {k: v for k, v in airflow["env"].items() if k not in drop_env}
    proc = subprocess.run([str(AIRFLOW_PY), str(SCRIPT), *args, str(out)], env=env, check=False,
                          capture_output=True, text=True, timeout=timeout, cwd=airflow["home"])
    assert proc.returncode == 0 and out.exists(), (proc.stdout + proc.stderr)[-6000:]
    report = json.loads(out.read_text())
    report["log"] = proc.stdout + proc.stderr
    return report


def test_dags_parse_without_errors_fast_and_without_heavy_imports(airflow):
    report = run_script(airflow, "parse", timeout=240, drop_env=("VIDX_AIRFLOW_RETRIES",))  # the real default
    assert report["import_errors"] == {}
    print("parse seconds per file:", report["files"], "airflow import:", report["airflow_import_s"])
    assert report["files"] and max(report["files"].values()) < 1.0
    assert report["heavy_imported"] == []
    nightly, backfill = report["dags"]["vidx_nightly"], report["dags"]["vidx_backfill"]
    assert nightly["tasks"] == NIGHTLY and backfill["tasks"] == BACKFILL
    assert "0 2 * * *" in nightly["schedule"] and not nightly["catchup"] and nightly["max_active_runs"] == 1
    assert {"archive", "warehouse", "model", "pretrained"} <= set(nightly["params"])
    assert {"archive_prefixes", "date_from", "date_to", "prefix_template", "max_work_units", "model"} <= set(
        backfill["params"])
    for dag in (nightly, backfill):
        assert dag["outlets"] == {"embed": ["vidx_clips"], "publish": ["vidx_index"]}
        assert "vidx_gpu" in dag["pools"] and dag["retries"]["embed"] == 2 and dag["retries"]["validate"] == 0
    assert backfill["mapped"] == ["embed"]
    assert report["date_range"] == ["s3://b/x", "s3://b/2024/02/28", "s3://b/2024/02/29", "s3://b/2024/03/01"]
    assert "boom" in (airflow["home"] / "alerts").read_text()  # the failure hook ran the alert command


@pytest.fixture(scope="module")
def nightly_run(airflow, tmp_path_factory):
    root = tmp_path_factory.mktemp("af_data")
    archive, warehouse = root / "archive", root / "w"
    write_video(archive / "a" / "one.mp4", duration_s=5, fps=10, width=96, height=64, seed=1)
    write_video(archive / "b" / "two.mkv", duration_s=6, fps=10, width=96, height=64, seed=2)
    conf = {"archive": str(archive), "warehouse": str(warehouse)}
    report = run_script(airflow, "test", "vidx_nightly", json.dumps(conf), timeout=480)
    return {"archive": archive, "warehouse": str(warehouse), "report": report}


def test_nightly_dag_embeds_validates_publishes_and_smoke_searches(nightly_run):
    report, warehouse = nightly_run["report"], nightly_run["warehouse"]
    print(f"nightly dag.test: {report['wall_s']} s")
    assert report["state"] == "success", report["log"][-6000:]
    assert set(report["tasks"].values()) == {"success"}, report["tasks"]
    runs = delta.read_table(table_uri(warehouse, "runs")).to_pylist()
    assert len(runs) == 1 and runs[0]["run_id"].startswith("nightly-manual") and runs[0]["n_new"] == 2
    (model,) = {r["model_id"] for r in runs}
    manifest = load_manifest(warehouse, model, current_version(warehouse, model))
    checks = delta.read_table(table_uri(warehouse, "validations")).to_pylist()
    assert [(c["table_version"], c["success"]) for c in checks] == [(manifest["table_version"], True)]
    assert manifest["validation"]["validation_id"] == checks[0]["validation_id"]


def test_backfill_maps_prefixes_and_a_retrigger_over_done_work_commits_nothing(airflow, nightly_run):
    """Both prefixes were embedded by the nightly run: the backfill's embeds commit nothing, the index
    is up to date (publish is skipped, so no new vidx_index event) and the smoke search still runs."""
    archive, warehouse = nightly_run["archive"], nightly_run["warehouse"]
    clips_uri = table_uri(warehouse, "clips")
    before = delta.latest_version(clips_uri)
    (model,) = {r["model_id"] for r in delta.read_table(table_uri(warehouse, "runs")).to_pylist()}
    current = current_version(warehouse, model)
    conf = {"warehouse": warehouse, "archive_prefixes": [str(archive / "a"), str(archive / "b")]}
    report = run_script(airflow, "test", "vidx_backfill", json.dumps(conf), timeout=480)
    print(f"backfill dag.test: {report['wall_s']} s")
    assert report["state"] == "success", report["log"][-6000:]
    tasks = report["tasks"]
    assert {k for k in tasks if k.startswith("embed")} == {"embed[0]", "embed[1]"}
    assert tasks.pop("publish") == "skipped" and set(tasks.values()) == {"success"}, report["tasks"]
    runs = [r for r in delta.read_table(table_uri(warehouse, "runs")).to_pylist()
            if r["run_id"].startswith("backfill-")]
    assert len({r["run_id"] for r in runs}) == 2                          # one vidx run per prefix
    assert [(r["status"], r["n_unchanged"], r["clips_versions"]) for r in runs] == [("succeeded", 1, [])] * 2
    assert delta.latest_version(clips_uri) == before and current_version(warehouse, model) == current
