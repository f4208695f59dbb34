"""CUDA tests: skipped without a GPU. They also run where pyspark is not installed (the device
machine of bench/GPU_CHECK.md): a stand-in TaskContext then says "not inside a Spark task"."""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (bench/GPU_CHECK.md runs these on one)")
    for item in items:
        if "tests/gpu/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(skip)


if importlib.util.find_spec("pyspark") is None:
    stand_in = types.ModuleType("pyspark")
    stand_in.TaskContext = type("TaskContext", (), {"get": staticmethod(lambda: None)})  # type: ignore[attr-defined]
    sys.modules["pyspark"] = stand_in
