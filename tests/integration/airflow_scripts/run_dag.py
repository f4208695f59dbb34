"""Run in the Airflow venv (.venv-airflow) by tests/integration/test_airflow_dags.py, never by pytest.

    python run_dag.py parse OUT.json
    python run_dag.py test DAG_ID RUN_CONF_JSON OUT.json

`parse` loads the DAG folder like the DAG processor (a bundle), after importing the operator modules
as the processor's pre-import does, and reports import errors, tasks, per-file parse times and
whether any heavy module got imported. `test` migrates the sqlite DB of $AIRFLOW_HOME, creates the
GPU pool and runs one DAG run in-process with `dag.test()`, then reports the task states.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

HEAVY = ("torch", "pyspark", "faiss", "decord", "vidx", "great_expectations", "deltalake", "open_clip", "duckdb")


def load_bag():
    from airflow.dag_processing.dagbag import BundleDagBag

    folder = Path(os.environ["AIRFLOW__CORE__DAGS_FOLDER"])
    return BundleDagBag(str(folder), bundle_path=folder, bundle_name="dags-folder")


def parse(out: str) -> None:
    t0 = time.perf_counter()
    # What the DAG processor has imported before it parses a file (parsing_pre_import_modules).
    import airflow.providers.apache.spark.operators.spark_submit
    import airflow.providers.standard.operators.bash
    import airflow.sdk  # noqa: F401

    warm = time.perf_counter() - t0
    bag = load_bag()
    report = {
        "import_errors": {k: str(v) for k, v in bag.import_errors.items()},
        "files": {Path(s.file).name: s.duration.total_seconds() for s in bag.dagbag_stats},
        "dags": {d.dag_id: {"tasks": {t.task_id: sorted(t.upstream_task_ids) for t in d.tasks},
                             "schedule": str(getattr(d.timetable, "summary", d.timetable)), "catchup": d.catchup,
                             "max_active_runs": d.max_active_runs, "params": sorted(d.params.keys()),
                             "pools": sorted({t.pool for t in d.tasks}),
                             "outlets": {t.task_id: [a.name for a in t.outlets] for t in d.tasks if t.outlets},
                             "retries": {t.task_id: t.retries for t in d.tasks},
                             "mapped": [t.task_id for t in d.tasks if getattr(t, "is_mapped", False)]}
                 for d in bag.dags.values()},
        "heavy_imported": [m for m in HEAVY if m in sys.modules],
        "airflow_import_s": round(warm, 2),
    }
    from _vidx_common import notify_failure  # the failure hook, called as Airflow would
    from vidx_backfill import expand_prefixes

    report["date_range"] = expand_prefixes({"archive_prefixes": ["s3://b/x"], "date_from": "2024-02-28",
                                            "date_to": "2024-03-01", "prefix_template": "s3://b/%Y/%m/%d"})

    notify_failure({"run_id": "manual__test", "exception": RuntimeError("boom"), "dag_id": "vidx_nightly"})
    Path(out).write_text(json.dumps(report, indent=1))


def run(dag_id: str, conf: str, out: str) -> None:
    from airflow.models.pool import Pool
    from airflow.utils import db

    db.upgradedb()  # what `airflow db migrate` does, without another interpreter start

    Pool.create_or_update_pool(os.environ.get("VIDX_AIRFLOW_GPU_POOL", "vidx_gpu"), 1, "vidx embed jobs", False)
    bag = load_bag()
    assert not bag.import_errors, bag.import_errors
    t0 = time.perf_counter()
    dr = bag.dags[dag_id].test(run_conf=json.loads(conf))
    states = {f"{ti.task_id}[{ti.map_index}]" if ti.map_index >= 0 else ti.task_id: str(ti.state)
              for ti in dr.get_task_instances()}
    Path(out).write_text(json.dumps({"state": str(dr.state), "tasks": states,
                                     "wall_s": round(time.perf_counter() - t0, 1)}, indent=1))


if __name__ == "__main__":
    if sys.argv[1] == "parse":
        parse(sys.argv[2])
    else:
        run(sys.argv[2], sys.argv[3], sys.argv[4])
