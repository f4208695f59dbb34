"""On a real GPU: the encoder on the GPU Spark assigned, GPU embeddings matching the CPU's, faiss
(or its absence) on the task's GPU only."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from vidx.config import load_config
from vidx.encode.embedder import encode_frames
from vidx.encode.models import ModelSpec, load_model
from vidx.encode.registry import Recipe, clips_model_id
from vidx.spark import resources, stages


def _frames(n: int = 16, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(0)
    small = rng.integers(0, 255, (n, 8, 8, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, size // 8, axis=1), size // 8, axis=2)  # blocky, video-like frames


def test_executor_model_lands_on_the_assigned_gpu(monkeypatch):
    import pyspark

    last = torch.cuda.device_count() - 1
    ctx = SimpleNamespace(cpus=lambda: 1, resources=lambda: {"gpu": SimpleNamespace(addresses=[str(last)])})
    monkeypatch.setattr(pyspark.TaskContext, "get", staticmethod(lambda: ctx))
    monkeypatch.setattr(stages, "_MODELS", {})
    # The driver decided the run's precision (auto on cuda: bf16 autocast); executors only apply it.
    cfg = load_config(env={}, overrides={"encode.device": "cuda", "encode.precision": "bf16"})
    query = load_model(ModelSpec(cfg.encode.model, cfg.encode.pretrained), device="cpu")
    model_id = clips_model_id(query.model_id, Recipe.from_config(cfg, frame_size=query.image_size, precision="bf16"))
    lm, autocast = stages.executor_model(cfg, model_id)
    assert lm.device == torch.device(f"cuda:{last}") and torch.cuda.current_device() == last
    assert next(lm.model.parameters()).device == lm.device and autocast == torch.bfloat16


def test_gpu_embeddings_match_cpu():
    spec = ModelSpec("vidx-tiny", "synthetic-v1")
    frames = _frames()
    cpu = encode_frames(load_model(spec, device="cpu"), frames, batch_size=16)
    gpu = encode_frames(load_model(spec, device="cuda"), frames, batch_size=16, autocast=torch.bfloat16)
    cos = (cpu * gpu).sum(1) / (np.linalg.norm(cpu, axis=1) * np.linalg.norm(gpu, axis=1))
    assert cos.min() > 0.99


def test_faiss_on_the_task_gpu_only():
    faiss = pytest.importorskip("faiss")
    from vidx.index import devices

    if devices.gpu_count() == 0:
        pytest.skip(f"faiss {faiss.__version__} has no GPU support here")
    assert resources.task_gpus() is None and devices.target_gpus() == list(range(devices.gpu_count()))
    x = np.random.default_rng(0).standard_normal((20_000, 64)).astype(np.float32)
    index, on_gpu = devices.to_device(faiss.IndexFlatL2(64))
    devices.add_chunks(index, x)
    assert on_gpu and devices.from_device(index, on_gpu).ntotal == 20_000
