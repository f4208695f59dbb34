"""A SparkSession configured for vidx: Arrow on, Python workers reused (the model loads once per
worker), loopback networking for local runs only.

What the user gave wins over vidx's defaults: `spark-submit --conf`/`--master`, spark-defaults.conf
and PYSPARK_SUBMIT_ARGS (all in the launched JVM's conf) and `spark.conf` in vidx's config are never
overridden. A cluster master (`spark://`, `yarn`, `k8s://`) never gets `spark.driver.host=127.0.0.1`:
executors on other machines could not reach a driver on loopback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping

from pyspark.sql import SparkSession

from vidx.config import SparkConfig

LOG = logging.getLogger(__name__)
LOOPBACK = "127.0.0.1"
DEFAULTS = {
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.python.worker.reuse": "true",
    "spark.sql.shuffle.partitions": "8",
    "spark.ui.showConsoleProgress": "true",
    # A failing unit raises; give Spark room to retry it on another attempt/executor.
    "spark.task.maxFailures": "4",
}


def is_local_master(master: str) -> bool:
    """`local`, `local[4]`, `local[*, 2]`, `local-cluster[...]`: every process on this machine."""
    return master == "local" or master.startswith(("local[", "local-cluster["))


def _prepare_env(local: bool) -> None:
    # Executors must run the same interpreter (and so the same installed vidx) as the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    if local:  # binding a cluster driver to loopback would cut it off from its executors
        os.environ.setdefault("SPARK_LOCAL_IP", LOOPBACK)


def session_settings(cfg: SparkConfig, master: str, launched: Mapping[str, str]) -> dict[str, str]:
    """The settings to put on the session builder: vidx's defaults for what nobody set, then
    `cfg.conf`, minus anything the launched JVM already holds (spark-submit --conf and friends)."""
    defaults = {**DEFAULTS, "spark.driver.memory": cfg.driver_memory}
    if is_local_master(master):
        defaults["spark.driver.host"] = os.environ.get("SPARK_LOCAL_IP", LOOPBACK)
    out = {k: v for k, v in defaults.items() if k not in launched}
    for key, value in cfg.conf.items():
        if key in launched and launched[key] != value:
            LOG.warning("%s=%s from the command line (spark-submit --conf) wins over spark.conf's %s",
                        key, launched[key], value)
        elif key not in launched:
            out[key] = value
    return out


def _launched_conf() -> dict[str, str]:
    """The conf of the JVM pyspark talks to (started by spark-submit, or by pyspark itself with
    spark-defaults.conf and PYSPARK_SUBMIT_ARGS): what the user already chose."""
    from pyspark import SparkConf, SparkContext

    SparkContext._ensure_initialized()  # connect to (or start) the JVM gateway; no context yet
    return dict(SparkConf().getAll())


def get_spark(cfg: SparkConfig, *, master: str | None = None) -> SparkSession:
    """The active session, or a new one: for spark-submit's master (never overridden: it is in the
    launched JVM's conf), else for `master or cfg.master`."""
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # under spark-submit the JVM already runs
    wanted = master or cfg.master
    _prepare_env(local=not submitted and is_local_master(wanted))  # SPARK_LOCAL_IP is read at JVM launch
    launched = _launched_conf()
    builder = SparkSession.builder.appName(cfg.app_name)
    if submitted:
        wanted = launched.get("spark.master", wanted)
    else:
        builder = builder.master(wanted)
    for key, value in session_settings(cfg, wanted, launched).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    LOG.info("Spark %s master=%s", spark.version, spark.sparkContext.master)
    return spark
