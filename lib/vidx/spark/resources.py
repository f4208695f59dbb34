"""GPUs in Spark: the embed stage's resource profile, and the GPU(s) Spark assigned to a task.

Stage-level scheduling: listing and probing run on the application's default profile (CPU
executors); only the embed stage asks for a GPU per task, so a cluster with dynamic allocation
starts GPU executors for that stage alone. Spark accepts a non-default profile only with dynamic
allocation on (Kubernetes, YARN, standalone), and local mode has no GPUs to schedule, so the profile
is off there and the stage runs exactly as before.

Inside a task, `task_gpus()` is what Spark assigned (`TaskContext.resources()["gpu"]`, addresses as
the discovery script printed them: nvidia-smi indices, equal to CUDA ordinals with
CUDA_DEVICE_ORDER=PCI_BUS_ID, which the executor image sets). torch and faiss both use only those.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from vidx.config import VidxConfig

LOG = logging.getLogger(__name__)

GPU = "gpu"
# Where the executor image puts the discovery script (infra/k8s/spark/gpu-discovery.sh).
DEFAULT_DISCOVERY_SCRIPT = "/opt/vidx/bin/gpu-discovery.sh"
DEFAULT_VENDOR = "nvidia.com"


def gpu_profile_wanted(cfg: VidxConfig, master: str, conf: Mapping[str, str]) -> bool:
    """True when the embed stage should run on a GPU profile: encode.device is cuda, the master is a
    cluster (not local), and dynamic allocation is on (Spark refuses other profiles without it)."""
    if cfg.encode.device != "cuda" or master.startswith("local"):
        return False
    return conf.get("spark.dynamicAllocation.enabled", "false").strip().lower() == "true"


def build_gpu_profile(conf: Mapping[str, str]) -> Any:
    """ResourceProfile: executors with the configured GPUs (default 1) and cores; each task 1 GPU and
    an equal share of the executor's cores (decode threads and the host side of encoding)."""
    from pyspark.resource import ExecutorResourceRequests, ResourceProfileBuilder, TaskResourceRequests

    gpus = max(1, int(float(conf.get(f"spark.executor.resource.{GPU}.amount", "1"))))
    cores = max(1, int(conf.get("spark.executor.cores", "1")))
    executor = ExecutorResourceRequests().cores(cores).resource(
        GPU, gpus, discoveryScript=conf.get(f"spark.executor.resource.{GPU}.discoveryScript", DEFAULT_DISCOVERY_SCRIPT),
        vendor=conf.get(f"spark.executor.resource.{GPU}.vendor", DEFAULT_VENDOR))
    memory = conf.get("spark.executor.memory")
    if memory:
        executor = executor.memory(memory)
    task = TaskResourceRequests().cpus(max(1, cores // gpus)).resource(GPU, 1.0)
    return ResourceProfileBuilder().require(executor).require(task).build


def embed_profile(spark: Any, cfg: VidxConfig) -> Any | None:
    """The profile for the embed stage's mapInArrow, or None (the default profile) when off."""
    sc = spark.sparkContext
    conf = dict(sc.getConf().getAll())
    if not gpu_profile_wanted(cfg, sc.master, conf):
        return None
    profile = build_gpu_profile(conf)
    LOG.info("embed stage on a GPU resource profile: executor %s, task %s",
             {k: v.amount for k, v in profile.executorResources.items()},
             {k: v.amount for k, v in profile.taskResources.items()})
    return profile


def task_gpus() -> list[int] | None:
    """GPU ordinals Spark assigned to the running task; None outside a task or without a GPU request."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is None:
        return None
    info = ctx.resources().get(GPU)
    if info is None or not info.addresses:
        return None
    return [int(a) for a in info.addresses]


def task_device(device: str) -> str:
    """The torch device for a task: the first GPU Spark assigned (made current, so CUDA context and
    pinned-memory staging land there too), else `device` unchanged."""
    import torch

    gpus = task_gpus()
    if gpus is None or device == "cpu" or not torch.cuda.is_available():
        return device
    torch.cuda.set_device(gpus[0])
    return f"cuda:{gpus[0]}"
