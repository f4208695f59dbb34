"""Shared fixtures: ONE Spark session for the whole run, one generated archive, one embedded warehouse."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a model hub

TEST_SPARK_CONF = {"spark.ui.enabled": "false", "spark.sql.shuffle.partitions": "2"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).parts
        if "integration" in parts:
            item.add_marker(pytest.mark.integration)
        elif "e2e" in parts:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def spark():
    from vidx.config import SparkConfig
    from vidx.spark.session import get_spark

    session = get_spark(SparkConfig(master="local[2]", conf=TEST_SPARK_CONF))
    yield session
    session.stop()


@pytest.fixture(scope="session")
def sample_archive(tmp_path_factory) -> Path:
    from vidx.synth import make_sample_archive

    root = tmp_path_factory.mktemp("archive")
    make_sample_archive(root, n_videos=8, seed=0, with_corrupt=True)
    return root


@pytest.fixture(scope="session")
def test_config(tmp_path_factory):
    from vidx.config import load_config

    warehouse = tmp_path_factory.mktemp("warehouse")
    # flat_below is lowered so the small test archive goes through the real IVF-PQ path.
    return load_config(env={}, overrides={"warehouse": str(warehouse), "spark.master": "local[2]",
                                          "spark.conf": TEST_SPARK_CONF, "index.flat_below": 64})


@pytest.fixture(scope="session")
def embedded(spark, sample_archive, test_config):
    """The sample archive embedded once, validated, and its index built (shared by integration tests)."""
    from vidx.index.from_table import build_from_warehouse
    from vidx.quality.validate import validate_warehouse
    from vidx.spark.embed import run_embed

    logging.getLogger("vidx").setLevel(logging.INFO)
    report = run_embed(test_config, str(sample_archive), spark=spark)
    assert all(v.success for v in validate_warehouse(test_config))  # the publish gate needs it
    build = build_from_warehouse(test_config)
    return report, build


@pytest.fixture(scope="session")
def s3_server():
    """ONE S3-compatible server (moto) on 127.0.0.1 for the whole run, with request accounting
    (tests/s3kit.py). Tests make their own buckets; nothing here touches os.environ."""
    from s3kit import S3Server

    server = S3Server()
    server.start()
    yield server
    server.stop()
