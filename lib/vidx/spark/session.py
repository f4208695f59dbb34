"""A SparkSession configured for vidx: Arrow on, Python workers reused (the model loads once per
worker), loopback networking for local runs."""

from __future__ import annotations

import logging
import os
import sys

from pyspark.sql import SparkSession

from vidx.config import SparkConfig

LOG = logging.getLogger(__name__)


def _prepare_env() -> None:
    # Executors must run the same interpreter (and so the same installed vidx) as the driver.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def get_spark(cfg: SparkConfig, *, master: str | None = None) -> SparkSession:
    """The active session (spark-submit made one) or a new one for `cfg.master`."""
    _prepare_env()
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    builder = SparkSession.builder.appName(cfg.app_name)
    # Under spark-submit the JVM already holds --master (and the gateway port is in the env);
    # setting it again here would silently override what the user submitted with.
    if "PYSPARK_GATEWAY_PORT" not in os.environ:
        builder = builder.master(master or cfg.master)
    defaults = {
        "spark.driver.memory": cfg.driver_memory,
        "spark.driver.host": os.environ.get("SPARK_LOCAL_IP", "127.0.0.1"),
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.python.worker.reuse": "true",
        "spark.sql.shuffle.partitions": "8",
        "spark.ui.showConsoleProgress": "true",
        # A failing unit raises; give Spark room to retry it on another attempt/executor.
        "spark.task.maxFailures": "4",
    }
    for key, value in {**defaults, **cfg.conf}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("WARN")
    LOG.info("Spark %s master=%s", spark.version, spark.sparkContext.master)
    return spark
