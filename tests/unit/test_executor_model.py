"""Inside a Spark task: torch threads from the task's cpus, the encoder on the GPU Spark assigned.

No GPU here: TaskContext and torch.cuda are faked, and model loading is intercepted, so this checks
the executor's choice of device and threads, not CUDA itself."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from vidx.config import load_config
from vidx.errors import WorkUnitError
from vidx.spark import stages


class _Ctx:
    def __init__(self, cpus: int, gpus: list[str] | None) -> None:
        self._cpus, self._gpus = cpus, gpus

    def cpus(self) -> int:
        return self._cpus

    def resources(self) -> dict[str, SimpleNamespace]:
        return {"gpu": SimpleNamespace(addresses=self._gpus)} if self._gpus is not None else {}


@pytest.fixture
def fake_task(monkeypatch):
    import pyspark

    from vidx.encode import models, precision

    loaded: list[str] = []

    def fake_load(spec, *, device="auto"):
        loaded.append(device)
        return SimpleNamespace(model_id="vidx-tiny__random__d128", device=torch.device("cpu"), model=None)

    monkeypatch.setattr(models, "load_model", fake_load)
    monkeypatch.setattr(precision, "with_precision", lambda lm, p: (lm, "fp32"))
    monkeypatch.setattr(precision, "autocast_dtype", lambda lm, p: None)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(stages, "_MODELS", {})
    threads = torch.get_num_threads()

    def run(ctx: _Ctx, **overrides):
        monkeypatch.setattr(pyspark.TaskContext, "get", staticmethod(lambda: ctx))
        cfg = load_config(env={}, overrides={"encode.pretrained": "random", **overrides})
        stages.executor_model(cfg, "vidx-tiny__random__d128")
        return loaded[-1], torch.get_num_threads()

    yield run
    torch.set_num_threads(threads)


def test_gpu_task_uses_the_assigned_device_and_its_cpus(fake_task):
    assert fake_task(_Ctx(cpus=1, gpus=["3"])) == ("cuda:3", 1)


def test_cpu_task_threads_follow_task_cpus_unless_configured(fake_task):
    assert fake_task(_Ctx(cpus=2, gpus=None)) == ("auto", 2)
    assert fake_task(_Ctx(cpus=2, gpus=["0"]), **{"encode.device": "cpu", "encode.threads": 1}) == ("cpu", 1)


def test_model_mismatch_with_the_driver_fails_the_task(fake_task):
    with pytest.raises(WorkUnitError, match="driver planned"):
        fake_task(_Ctx(cpus=1, gpus=None), **{"encode.token_clustering.enabled": True})
