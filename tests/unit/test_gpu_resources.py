"""Stage-level scheduling of the embed stage, and one GPU per task for torch and faiss.

No GPU or cluster here: the ResourceProfile is built and inspected in Python, TaskContext and
faiss' GPU functions are faked, so these check vidx's choices, not CUDA."""

from __future__ import annotations

from types import SimpleNamespace

import faiss
import numpy as np
import pyspark
import pytest
import torch

from vidx.config import load_config
from vidx.index import devices
from vidx.spark import resources

CLUSTER_CONF = {"spark.dynamicAllocation.enabled": "true", "spark.executor.cores": "8",
                "spark.executor.memory": "24g", "spark.executor.resource.gpu.amount": "2"}


def _cfg(device: str):
    return load_config(env={}, overrides={"encode.device": device})


def test_gpu_profile_asks_one_gpu_per_task_with_a_share_of_the_cores():
    profile = resources.build_gpu_profile(CLUSTER_CONF)
    ex, task = profile.executorResources, profile.taskResources
    assert ex["gpu"].amount == 2 and ex["gpu"].vendor == "nvidia.com"
    assert ex["gpu"].discoveryScript == resources.DEFAULT_DISCOVERY_SCRIPT
    assert ex["cores"].amount == 8 and ex["memory"].amount == 24 * 1024
    assert task["gpu"].amount == 1.0 and task["cpus"].amount == 4  # 2 concurrent tasks, one GPU each


@pytest.mark.parametrize(("device", "master", "conf", "wanted"), [
    ("cuda", "k8s://https://kube:6443", CLUSTER_CONF, True),
    ("cuda", "spark://host:7077", CLUSTER_CONF, True),
    ("cuda", "local[2]", CLUSTER_CONF, False),                     # local mode: no GPU scheduling
    ("cuda", "k8s://https://kube:6443", {}, False),                # Spark needs dynamic allocation for it
    ("auto", "k8s://https://kube:6443", CLUSTER_CONF, False),
    ("cpu", "k8s://https://kube:6443", CLUSTER_CONF, False),
])
def test_gpu_profile_only_for_cuda_on_a_cluster_with_dynamic_allocation(device, master, conf, wanted):
    assert resources.gpu_profile_wanted(_cfg(device), master, conf) is wanted


def test_embed_profile_reads_the_live_session():
    def fake_spark(master: str):
        sc = SimpleNamespace(master=master, getConf=lambda: SimpleNamespace(getAll=lambda: list(CLUSTER_CONF.items())))
        return SimpleNamespace(sparkContext=sc)

    assert resources.embed_profile(fake_spark("local[2]"), _cfg("cuda")) is None
    profile = resources.embed_profile(fake_spark("k8s://https://kube:6443"), _cfg("cuda"))
    assert profile is not None and profile.taskResources["gpu"].amount == 1.0


@pytest.fixture
def task_with_gpus(monkeypatch):
    """Run as a Spark task that was assigned `gpus` (None: outside any task) on a box with 4 GPUs."""
    moved: list[list[int]] = []
    monkeypatch.setattr(faiss, "get_num_gpus", lambda: 4, raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpus_list", lambda index, gpus: moved.append(gpus) or index,
                        raising=False)
    monkeypatch.setattr(faiss, "index_gpu_to_cpu", lambda index: index, raising=False)
    current: list[int] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", current.append)

    def as_task(gpus: list[str] | None) -> tuple[list[list[int]], list[int]]:
        ctx = None if gpus is None else SimpleNamespace(resources=lambda: {"gpu": SimpleNamespace(addresses=gpus)})
        monkeypatch.setattr(pyspark.TaskContext, "get", staticmethod(lambda: ctx))
        moved.clear()
        current.clear()
        return moved, current

    return as_task


def test_faiss_in_a_task_uses_only_the_gpu_spark_assigned(task_with_gpus):
    moved, _ = task_with_gpus(["2"])
    x = np.random.default_rng(0).standard_normal((512, 8)).astype(np.float32)
    devices.train_coarse(x, 4, seed=0)
    index, on_gpu = devices.to_device(faiss.IndexFlatL2(8))
    devices.add_chunks(index, x)
    assert on_gpu and moved == [[2], [2]]  # k-means assigner and the index being filled


def test_faiss_outside_spark_uses_every_visible_gpu(task_with_gpus):
    moved, _ = task_with_gpus(None)
    devices.to_device(faiss.IndexFlatL2(8))
    assert moved == [[0, 1, 2, 3]]


def test_torch_in_a_task_uses_the_assigned_gpu_as_current_device(task_with_gpus):
    _, current = task_with_gpus(["3"])
    assert resources.task_device("cuda") == "cuda:3" and current == [3]
    assert resources.task_device("cpu") == "cpu"
    task_with_gpus(None)
    assert resources.task_device("cuda") == "cuda"
