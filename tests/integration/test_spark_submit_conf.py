"""A real `spark-submit --conf` reaches vidx's session unchanged (issue 11 point 7)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyspark

SPARK_SUBMIT = Path(pyspark.__file__).parent / "bin" / "spark-submit"
LIB = Path(__file__).resolve().parents[2] / "lib"
SCRIPT = """
import json, sys
from vidx.config import SparkConfig
from vidx.spark.session import get_spark

spark = get_spark(SparkConfig(conf={"spark.executor.memory": "1g"}))
print("CONF " + json.dumps({k: spark.conf.get(k, None) for k in sys.argv[1:]}), flush=True)
spark.stop()
"""
SUBMITTED = {"spark.sql.shuffle.partitions": "3", "spark.task.maxFailures": "7", "spark.python.worker.reuse": "false",
             "spark.driver.host": "localhost", "spark.ui.enabled": "false"}


def test_spark_submit_conf_reaches_the_session(tmp_path):
    script = tmp_path / "conf_probe.py"
    script.write_text(SCRIPT)
    cmd = [str(SPARK_SUBMIT), "--master", "local[1]", "--driver-memory", "1g"]
    for key, value in SUBMITTED.items():
        cmd += ["--conf", f"{key}={value}"]
    keys = [*SUBMITTED, "spark.driver.memory", "spark.executor.memory", "spark.sql.execution.arrow.pyspark.enabled"]
    env = {**os.environ, "PYTHONPATH": f"{LIB}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    proc = subprocess.run([*cmd, str(script), *keys], env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("CONF "))
    seen = json.loads(line[len("CONF "):])
    assert {k: seen[k] for k in SUBMITTED} == SUBMITTED
    assert seen["spark.driver.memory"] == "1g"  # --driver-memory, not vidx's 2g default
    assert seen["spark.executor.memory"] == "1g" and seen["spark.sql.execution.arrow.pyspark.enabled"] == "true"
