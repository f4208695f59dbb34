"""Session settings (vidx.spark.session): loopback only for local masters, never over what the user set."""

from __future__ import annotations

import os
from typing import Any

import pytest

from vidx.config import SparkConfig
from vidx.spark import session
from vidx.spark.session import is_local_master, session_settings


@pytest.mark.parametrize(("master", "local"), [
    ("local", True), ("local[*]", True), ("local[2]", True), ("local[2, 3]", True),
    ("local-cluster[2, 1, 1024]", True), ("spark://head:7077", False), ("yarn", False),
    ("k8s://https://api:6443", False), ("localhost", False),
])
def test_local_masters(master, local):
    assert is_local_master(master) is local


def test_local_master_defaults_to_loopback_unless_set():
    assert session_settings(SparkConfig(), "local[2]", {})["spark.driver.host"] == os.environ.get(
        "SPARK_LOCAL_IP", "127.0.0.1")
    assert "spark.driver.host" not in session_settings(SparkConfig(), "local[2]", {"spark.driver.host": "10.0.0.5"})


def test_cluster_master_keeps_the_user_conf_and_no_loopback():
    cfg = SparkConfig(conf={"spark.sql.shuffle.partitions": "64", "spark.executor.memory": "4g",
                            "spark.task.maxFailures": "2"})
    launched = {"spark.task.maxFailures": "10", "spark.python.worker.reuse": "false", "spark.driver.memory": "8g"}
    out = session_settings(cfg, "spark://head:7077", launched)
    assert "spark.driver.host" not in out
    # spark-submit --conf (in the launched JVM) wins over vidx's defaults and over spark.conf
    assert not {"spark.task.maxFailures", "spark.python.worker.reuse", "spark.driver.memory"} & out.keys()
    assert out["spark.sql.shuffle.partitions"] == "64" and out["spark.executor.memory"] == "4g"
    assert out["spark.sql.execution.arrow.pyspark.enabled"] == "true"  # defaults fill what nobody set


class _Builder:
    def __init__(self) -> None:
        self.master_url: str | None = None
        self.conf: dict[str, str] = {}

    def appName(self, name: str) -> _Builder:
        return self

    def master(self, url: str) -> _Builder:
        self.master_url = url
        return self

    def config(self, key: str, value: str) -> _Builder:
        self.conf[key] = value
        return self

    def getOrCreate(self) -> Any:
        return self


@pytest.fixture
def fake_builder(monkeypatch):
    from pyspark.sql import SparkSession

    builder = _Builder()
    builder.sparkContext = type("Ctx", (), {"setLogLevel": lambda self, level: None, "master": ""})()  # type: ignore[attr-defined]
    builder.version = "test"  # type: ignore[attr-defined]
    monkeypatch.setattr(SparkSession, "getActiveSession", staticmethod(lambda: None))
    monkeypatch.setattr(SparkSession, "builder", builder)
    monkeypatch.delenv("PYSPARK_GATEWAY_PORT", raising=False)
    monkeypatch.delenv("SPARK_LOCAL_IP", raising=False)
    return builder


def test_vidx_embed_master_url_gets_no_loopback(fake_builder, monkeypatch):
    monkeypatch.setattr(session, "_launched_conf", lambda: {})
    session.get_spark(SparkConfig(master="spark://head:7077", conf={"spark.task.maxFailures": "9"}))
    assert fake_builder.master_url == "spark://head:7077"
    assert "spark.driver.host" not in fake_builder.conf and "SPARK_LOCAL_IP" not in os.environ
    assert fake_builder.conf["spark.task.maxFailures"] == "9"


def test_local_run_binds_to_loopback(fake_builder, monkeypatch):
    monkeypatch.setattr(session, "_launched_conf", lambda: {})
    session.get_spark(SparkConfig(master="local[2]"))
    assert fake_builder.conf["spark.driver.host"] == "127.0.0.1" == os.environ["SPARK_LOCAL_IP"]


def test_under_spark_submit_the_master_and_conf_are_left_alone(fake_builder, monkeypatch):
    monkeypatch.setenv("PYSPARK_GATEWAY_PORT", "1")
    monkeypatch.setattr(session, "_launched_conf", lambda: {"spark.master": "spark://head:7077",
                                                            "spark.sql.shuffle.partitions": "3"})
    session.get_spark(SparkConfig())
    assert fake_builder.master_url is None
    assert "spark.sql.shuffle.partitions" not in fake_builder.conf and "spark.driver.host" not in fake_builder.conf
