"""Shared pieces of the vidx DAGs: settings, assets, the validate -> build -> publish -> smoke chain.

Parse-time imports are Airflow and the standard library only: every vidx stage runs as a
subprocess (`spark-submit jobs/embed.py`, the `vidx` CLI of the main venv), because vidx needs
torch, pyspark and faiss, and Airflow's Spark provider replaces pyspark with pyspark-client.
The main venv's bin folder (vidx, python, spark-submit) must be on the worker's PATH.

Settings, highest first: the run's params (trigger conf) > Airflow Variables `vidx_<name>` >
the worker's environment: `VIDX_WAREHOUSE`, `VIDX_CONFIG` (vidx's own) and `VIDX_AIRFLOW_<NAME>`
for the rest (vidx's config ignores that prefix). Whatever is unset falls through to vidx's own
configuration (`VIDX_CONFIG`, `VIDX_*`), which the commands inherit. Nothing here names a path of
this machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.providers.standard.operators.bash import BashOperator
from airflow.sdk import Asset, Param, TriggerRule, Variable, task

LOG = logging.getLogger(__name__)

SETTINGS = ("archive", "warehouse", "model", "pretrained", "model_id", "config", "jobs_dir")
SPARK_CONN_ID = os.environ.get("VIDX_AIRFLOW_SPARK_CONN_ID", "spark_default")
# Embed runs load the model on every executor; the pool caps how many run at once (GPU jobs).
GPU_POOL = os.environ.get("VIDX_AIRFLOW_GPU_POOL", "vidx_gpu")
SKIP_EXIT_CODE = 99  # BashOperator: exit 99 marks the task skipped (and emits no asset event)


def _asset_uri(part: str) -> str:
    # The warehouse known at parse time names the asset; consumers schedule on Asset.ref(name=...).
    root = os.environ.get("VIDX_AIRFLOW_WAREHOUSE") or os.environ.get("VIDX_WAREHOUSE", "")
    if not root:
        return f"x-vidx://warehouse/{part}"
    if "://" not in root:
        root = Path(root).expanduser().resolve().as_uri()
    return f"{root.rstrip('/')}/{part}"


CLIPS_ASSET = Asset(name="vidx_clips", uri=_asset_uri("tables/clips"))
INDEX_ASSET = Asset(name="vidx_index", uri=_asset_uri("indexes"))


def notify_failure(context: Any) -> None:
    """Failure hook: log, then run `vidx_alert_command` (Variable or VIDX_AIRFLOW_ALERT_COMMAND) if set,
    with the failure described in VIDX_AIRFLOW_FAILED_* environment variables (pager, chat webhook...)."""
    ti = context.get("ti") or context.get("task_instance")
    info = {"VIDX_AIRFLOW_FAILED_DAG": str(getattr(ti, "dag_id", context.get("dag_id", ""))),
            "VIDX_AIRFLOW_FAILED_TASK": str(getattr(ti, "task_id", "")),
            "VIDX_AIRFLOW_FAILED_RUN": str(context.get("run_id", "")),
            "VIDX_AIRFLOW_FAILED_TRY": str(getattr(ti, "try_number", "")),
            "VIDX_AIRFLOW_FAILED_ERROR": str(context.get("exception", ""))[:2000]}
    LOG.error("vidx pipeline failure: %s", json.dumps(info))
    command = _lookup("alert_command", None)
    if command:
        try:
            subprocess.run(command, shell=True, env={**os.environ, **info}, timeout=60, check=False)
        except (OSError, subprocess.SubprocessError) as exc:  # an alert must never mask the failure
            LOG.error("alert command failed: %s", exc)


DEFAULT_ARGS: dict[str, Any] = {
    "owner": "vidx",
    "retries": int(os.environ.get("VIDX_AIRFLOW_RETRIES", "2")),
    "retry_delay": timedelta(seconds=float(os.environ.get("VIDX_AIRFLOW_RETRY_DELAY_S", "300"))),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(hours=2),
    "on_failure_callback": notify_failure,
}


def params(**extra: Param) -> dict[str, Param]:
    """Run params shared by both DAGs; empty means "Variable vidx_<name>, else the environment"."""
    text = {"type": ["null", "string"]}
    return {
        "warehouse": Param(None, description="warehouse URI (tables/, indexes/)", **text),
        "model": Param(None, description="open_clip model name (default: vidx config)", **text),
        "pretrained": Param(None, description="pretrained tag, checkpoint path or 'random'", **text),
        "model_id": Param(None, description="model_id to validate/index when the table holds several", **text),
        "config": Param(None, description="vidx YAML config file on the workers", **text),
        **extra,
    }


def _lookup(name: str, given: Any) -> Any:
    if given not in (None, ""):
        return given
    try:
        value = Variable.get(f"vidx_{name}", default=None)
    except Exception:  # outside a task (a DAG-level callback, a test) there may be no API to ask
        value = None
    if value not in (None, ""):
        return value
    env = {"warehouse": ("VIDX_AIRFLOW_WAREHOUSE", "VIDX_WAREHOUSE"), "config": ("VIDX_AIRFLOW_CONFIG", "VIDX_CONFIG")}
    return next((os.environ[n] for n in env.get(name, (f"VIDX_AIRFLOW_{name.upper()}",)) if os.environ.get(n)), None)


def safe_id(text: str) -> str:
    """Airflow run ids hold ':' and '+'; vidx run ids become folder names."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-")


def embed_args(archive: str, cfg: dict[str, Any], run_id: str) -> list[str]:
    args = [archive, "--warehouse", cfg["warehouse"], "--run-id", run_id]
    for flag in ("model", "pretrained", "config"):
        if cfg.get(flag):
            args += [f"--{flag}", cfg[flag]]
    return args


@task(multiple_outputs=True)
def settings(**context: Any) -> dict[str, Any]:
    """Resolve the run's settings once, so every task of the run sees the same values."""
    given = context["params"]
    cfg = {name: _lookup(name, given.get(name)) for name in SETTINGS}
    if not cfg["warehouse"]:
        raise ValueError("no warehouse: pass the 'warehouse' param, or set Variable vidx_warehouse or "
                         "$VIDX_WAREHOUSE on the workers")
    if "archive" in given and not cfg["archive"]:
        raise ValueError("no archive: pass the 'archive' param, or set Variable vidx_archive or "
                         "$VIDX_AIRFLOW_ARCHIVE")
    jobs = cfg["jobs_dir"] or str(Path(__file__).resolve().parent.parent / "jobs")
    env = {"VIDX_WAREHOUSE": cfg["warehouse"], **({"VIDX_CONFIG": cfg["config"]} if cfg["config"] else {})}
    run_key = safe_id(context["run_id"])
    return {**cfg, "env": env, "embed_job": f"{jobs}/embed.py", "smoke_job": f"{jobs}/smoke_search.py",
            "run_key": run_key, "model_id_args": f"--model-id {shlex.quote(cfg['model_id'])}"
            if cfg["model_id"] else "", "embed_args": embed_args(cfg["archive"] or "", cfg, f"nightly-{run_key}")}


def embed_kwargs(cfg: Any) -> dict[str, Any]:
    """spark-submit jobs/embed.py: resumable by run id, so a retry finishes the same vidx run.

    No execution timeout: a backfill prefix may take days, and checkpoints make it resumable."""
    return {"task_id": "embed", "application": cfg["embed_job"], "conn_id": SPARK_CONN_ID, "env_vars": cfg["env"],
            "name": "vidx-embed", "pool": GPU_POOL, "outlets": [CLIPS_ASSET]}


def _jinja(expr: str) -> str:
    return "{{ " + expr + " }}"


_MODEL_ARGS = _jinja("ti.xcom_pull(task_ids='settings', key='model_id_args')")
_SMOKE_JOB = _jinja("ti.xcom_pull(task_ids='settings', key='smoke_job') | shquote")
# validate and build_index print one JSON line last: BashOperator pushes it as their XCom. Values
# reach the shell quoted (a model name is a trigger param).
_VALIDATED_VERSION = _jinja("(ti.xcom_pull(task_ids='validate') | fromjson)['table_version'] | int")
_BUILT_VERSION = _jinja("((ti.xcom_pull(task_ids='build_index') | fromjson)['version'] or '') | shquote")
_BUILT_MODEL = _jinja("(ti.xcom_pull(task_ids='build_index') | fromjson)['model_id'] | shquote")


def publish_chain(cfg: Any) -> tuple[BashOperator, BashOperator]:
    """validate -> build_index -> publish -> smoke_search; returns (first, last).

    Publishing happens only from the version validate checked: build_index pins it, and vidx's
    own gate (`index.require_validation`) refuses a version without a passing validation.
    """
    common = {"env": cfg["env"], "append_env": True}
    validate = BashOperator(
        task_id="validate", bash_command=f"vidx validate --json {_MODEL_ARGS}",
        retries=0, **common)  # a failed check is deterministic: alert now rather than after retries
    build = BashOperator(
        task_id="build_index", **common,
        bash_command=f"vidx build-index --json --no-publish --version {_VALIDATED_VERSION} {_MODEL_ARGS}")
    publish = BashOperator(
        task_id="publish", outlets=[INDEX_ASSET], skip_on_exit_code=SKIP_EXIT_CODE, **common,
        bash_command=f'V={_BUILT_VERSION}; if [ -z "$V" ]; then echo "index already built from this clips '
                     f'version: nothing to publish"; exit {SKIP_EXIT_CODE}; fi; '
                     f'vidx index promote "$V" --model-id {_BUILT_MODEL}')
    smoke = BashOperator(
        task_id="smoke_search", trigger_rule=TriggerRule.NONE_FAILED, **common,  # also when up to date
        bash_command=f'"$(dirname "$(command -v vidx)")/python" {_SMOKE_JOB} --model-id {_BUILT_MODEL}')
    validate >> build >> publish >> smoke
    return validate, smoke


def backfill_key(prefix: str, cfg: dict[str, Any]) -> str:
    """A stable embed run id per (prefix, model): re-triggering resumes or no-ops the same runs."""
    digest = hashlib.sha1(f"{prefix}|{cfg.get('model')}|{cfg.get('pretrained')}".encode()).hexdigest()[:12]
    return f"backfill-{digest}"


def user_filters() -> dict[str, Any]:
    return {"fromjson": json.loads, "shquote": shlex.quote}
