"""Inside a Spark task: torch threads from the task's cpus, the encoder on the GPU Spark assigned.

No GPU here: TaskContext and torch.cuda are faked, and model loading is intercepted, so this checks
the executor's choice of device and threads, not CUDA itself."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from vidx.config import load_config
from vidx.encode.registry import Recipe, clips_model_id
from vidx.errors import ConfigError, WorkUnitError
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
        return SimpleNamespace(model_id=models.model_id_for(spec), device=torch.device("cpu"), model=None,
                               image_size=64)

    monkeypatch.setattr(models, "load_model", fake_load)
    monkeypatch.setattr(precision, "apply_precision", lambda lm, p: (lm, None))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(stages, "_MODELS", {})
    threads = torch.get_num_threads()

    def run(ctx: _Ctx, planned: dict | None = None, **overrides):
        monkeypatch.setattr(pyspark.TaskContext, "get", staticmethod(lambda: ctx))
        cfg = load_config(env={}, overrides={"encode.pretrained": "random", "encode.precision": "fp32", **overrides})
        stages.executor_model(cfg, _planned_id(cfg if planned is None else cfg.with_overrides(planned)))
        return loaded[-1], torch.get_num_threads()

    yield run
    torch.set_num_threads(threads)


def _planned_id(cfg) -> str:
    """The model_id the driver would plan for `cfg` (vidx-tiny: 64 px frames)."""
    from vidx.encode.models import ModelSpec, model_id_for

    return clips_model_id(model_id_for(ModelSpec(cfg.encode.model, cfg.encode.pretrained)),
                          Recipe.from_config(cfg, frame_size=64, precision=cfg.encode.precision))


def test_gpu_task_uses_the_assigned_device_and_its_cpus(fake_task):
    assert fake_task(_Ctx(cpus=1, gpus=["3"])) == ("cuda:3", 1)


def test_cpu_task_threads_follow_task_cpus_unless_configured(fake_task):
    assert fake_task(_Ctx(cpus=2, gpus=None)) == ("auto", 2)
    assert fake_task(_Ctx(cpus=2, gpus=["0"]), **{"encode.device": "cpu", "encode.threads": 1}) == ("cpu", 1)


def test_model_mismatch_with_the_driver_fails_the_task(fake_task):
    with pytest.raises(WorkUnitError, match="driver planned"):
        fake_task(_Ctx(cpus=1, gpus=None), planned={"encode.token_clustering.enabled": True})


def test_model_id_is_checked_on_every_task_not_only_on_a_load(fake_task):
    ctx = _Ctx(cpus=1, gpus=None)
    fake_task(ctx)  # loads and caches the model
    with pytest.raises(WorkUnitError, match="driver planned"):  # same cached model, other plan
        fake_task(ctx, planned={"decode.sample_fps": 2.0})
    with pytest.raises(WorkUnitError, match="driver planned"):
        fake_task(ctx, planned={"encode.pretrained": "synthetic-v1"})


def test_cache_key_is_the_full_model_spec(fake_task):
    ctx = _Ctx(cpus=1, gpus=None)
    variants = [{}, {"encode.pretrained": "synthetic-v1"}, {"encode.precision": "bf16"}, {"encode.device": "cpu"},
                {"encode.token_clustering.enabled": True, "encode.token_clustering.layer": 2},
                {"encode.token_clustering.enabled": True, "encode.token_clustering.layer": 1}]
    for overrides in variants:
        fake_task(ctx, **overrides)
    assert len(stages._MODELS) == len(variants)
    fake_task(ctx, **variants[1])  # a hit: nothing new is loaded
    assert len(stages._MODELS) == len(variants)


def test_a_replaced_checkpoint_is_a_new_cache_entry(fake_task, tmp_path):
    ckpt = tmp_path / "model.pt"
    ctx = _Ctx(cpus=1, gpus=None)
    ckpt.write_bytes(b"weights one")
    fake_task(ctx, **{"encode.pretrained": str(ckpt)})
    ckpt.write_bytes(b"weights two, retrained")  # same path, new content
    fake_task(ctx, **{"encode.pretrained": str(ckpt)})
    ids = {lm.model_id for lm, _ in stages._MODELS.values()}
    assert len(stages._MODELS) == 2 and len(ids) == 2


def test_executors_apply_the_recorded_precision_without_probing(monkeypatch):
    """The driver decided; an executor only applies it. Any probe here is a failure (spy)."""
    import pyspark

    from vidx.encode import precision

    calls: list[str] = []

    def spy(*args, **kwargs):
        calls.append("probe")
        raise AssertionError("an executor probed the precision")

    monkeypatch.setattr(precision, "probe_cpu_precision", spy)
    monkeypatch.setattr(precision, "_encode", spy)
    monkeypatch.setattr(stages, "_MODELS", {})
    monkeypatch.setattr(pyspark.TaskContext, "get", staticmethod(lambda: None))
    threads = torch.get_num_threads()
    try:
        for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32)):
            cfg = load_config(env={}, overrides={"encode.pretrained": "random", "encode.precision": name,
                                                 "encode.device": "cpu"})
            lm, autocast = stages.executor_model(cfg, _planned_id(cfg))
            assert next(lm.model.parameters()).dtype == dtype and autocast is None
    finally:
        torch.set_num_threads(threads)
    assert calls == []
    auto = load_config(env={}, overrides={"encode.pretrained": "random"})
    with pytest.raises(ConfigError, match="decided precision"):
        stages.EmbedTask(cfg=auto, run_id="r", model_id="m", clips_uri="/nowhere")
