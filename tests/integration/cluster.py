"""A real Spark standalone cluster on 127.0.0.1 (one master, two workers) started with pyspark's
`sbin/spark-daemon.sh` and stopped by PID, plus `spark-submit` as a user would run it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pyspark

SPARK_HOME = Path(pyspark.__file__).parent
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    workdir: Path
    master_port: int
    ui_port: int

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "SPARK_HOME": str(SPARK_HOME), "SPARK_LOCAL_IP": "127.0.0.1",
                "SPARK_PID_DIR": str(self.workdir / "pids"), "SPARK_LOG_DIR": str(self.workdir / "logs"),
                "SPARK_IDENT_STRING": "vidxtest", "SPARK_WORKER_DIR": str(self.workdir / "work"),
                "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable,
                "SPARK_NO_DAEMONIZE": ""}

    def _daemon(self, *args: str) -> None:
        env = {k: v for k, v in self.env().items() if k != "SPARK_NO_DAEMONIZE"}
        subprocess.run(["bash", str(SPARK_HOME / "sbin" / "spark-daemon.sh"), *args], env=env, check=True,
                       capture_output=True, timeout=60)

    def start(self) -> None:
        self._daemon("start", "org.apache.spark.deploy.master.Master", "1", "--host", "127.0.0.1",
                     "--port", str(self.master_port), "--webui-port", str(self.ui_port))
        for n in (1, 2):
            self._daemon("start", "org.apache.spark.deploy.worker.Worker", str(n), "--host", "127.0.0.1",
                         "--cores", "1", "--memory", "3g", "--webui-port", str(free_port()), self.url)
        self.wait_workers(2, timeout=90)

    def state(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ui_port}/json/", timeout=5) as resp:
            return json.loads(resp.read())

    def wait_workers(self, n: int, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                alive = [w for w in self.state().get("workers", []) if w.get("state") == "ALIVE"]
                if len(alive) >= n:
                    return
            except OSError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{n} Spark workers not ALIVE after {timeout} s; logs in {self.workdir / 'logs'}")

    def pid(self, cls: str, n: int) -> int:
        return int((self.workdir / "pids" / f"spark-vidxtest-{cls}-{n}.pid").read_text().split()[0])

    def kill_worker(self, n: int) -> None:
        os.kill(self.pid("org.apache.spark.deploy.worker.Worker", n), signal.SIGKILL)

    def stop(self) -> None:
        for cls, n in [("org.apache.spark.deploy.worker.Worker", 1), ("org.apache.spark.deploy.worker.Worker", 2),
                       ("org.apache.spark.deploy.master.Master", 1)]:
            with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
                os.kill(self.pid(cls, n), signal.SIGKILL)

    def submit(self, *args: str, env: dict[str, str] | None = None, conf: dict[str, str] | None = None,
               background: bool = False, timeout: float = 300) -> Submission:
        confs = {"spark.executor.memory": "1g", "spark.ui.enabled": "false", "spark.task.maxFailures": "4",
                 "spark.pyspark.python": sys.executable, **(conf or {})}
        cmd = [str(SPARK_HOME / "bin" / "spark-submit"), "--master", self.url]
        for k, v in confs.items():
            cmd += ["--conf", f"{k}={v}"]
        cmd += [str(REPO / "jobs" / "embed.py"), *args]
        full_env = {**self.env(), **(env or {})}
        log = self.workdir / f"submit-{time.time_ns()}.log"
        with open(log, "w") as out:
            proc = subprocess.Popen(cmd, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        sub = Submission(proc, log)
        if not background:
            sub.wait(timeout)
        return sub


@dataclass
class Submission:
    proc: subprocess.Popen
    log: Path

    def wait(self, timeout: float = 300) -> int:
        return self.proc.wait(timeout=timeout)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        """kill -9 of the driver: spark-submit's JVM and the Python driver (one process group)."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)
