"""Where the heavy faiss work runs: k-means and adding vectors on GPU when faiss sees one, else CPU.

Both paths keep the same contract: the same trained index layout, every vector added with the id
the caller gives, and the build measures recall afterwards whatever ran. The GPU path covers the
two steps that dominate a build (coarse k-means, O(n * nlist * dim), and assigning every vector
to its list when adding); PQ codebooks and search stay on CPU, where the index is served.
"""

from __future__ import annotations

import logging
from typing import Any

import faiss
import numpy as np

LOG = logging.getLogger(__name__)

# faiss' own default for IVF coarse k-means (IndexIVF.cp.niter): the 25 of a generic Clustering
# cost 2.5x the time for centroids that IVF search cannot tell apart.
KMEANS_NITER = 10
# Vectors per add call: bounds the temporary memory of encoding (64k x 512 float32 = 128 MiB).
ADD_CHUNK = 65_536


def gpu_count() -> int:
    """GPUs faiss can use (0 with faiss-cpu, whose get_num_gpus exists and returns 0)."""
    getter = getattr(faiss, "get_num_gpus", None)
    return int(getter()) if getter is not None else 0


def target_gpus() -> list[int]:
    """The GPUs this process may put faiss work on: inside a Spark task only those Spark assigned to
    it (other tasks on the same executor own the rest), else every GPU faiss sees; [] for CPU."""
    from vidx.spark.resources import task_gpus

    visible = gpu_count()
    if visible == 0:
        return []
    assigned = task_gpus()
    if assigned is None:
        return list(range(visible))
    usable = [g for g in assigned if g < visible]
    if len(usable) < len(assigned):
        LOG.warning("Spark assigned GPUs %s but faiss sees only %d", assigned, visible)
    return usable


def _to_gpus(index: faiss.Index, gpus: list[int]) -> faiss.Index:
    # index_cpu_to_gpus_list keeps its GpuResources alive as long as the returned index.
    return faiss.index_cpu_to_gpus_list(index, gpus=gpus)


def train_coarse(train: np.ndarray, nlist: int, seed: int) -> np.ndarray:
    """IVF coarse centroids, (nlist, dim) float32, from k-means on `train` (seeded, deterministic on CPU)."""
    dim = train.shape[1]
    clus = faiss.Clustering(dim, nlist)
    clus.seed = seed
    clus.niter = KMEANS_NITER
    assigner: Any = faiss.IndexFlatL2(dim)
    gpus = target_gpus()
    if gpus:
        LOG.info("coarse k-means (%d centroids, %d points) on GPU(s) %s", nlist, len(train), gpus)
        assigner = _to_gpus(assigner, gpus)
    else:
        LOG.info("coarse k-means (%d centroids, %d points) on CPU", nlist, len(train))
    clus.train(np.ascontiguousarray(train, dtype=np.float32), assigner)
    return faiss.vector_to_array(clus.centroids).reshape(nlist, dim).astype(np.float32)


def add_vectors(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray | None = None) -> faiss.Index:
    """Add `vectors` (with `ids`, else sequential) in chunks; returns the filled index.

    On GPU the index is copied to the device, filled there and copied back (a new object, so use
    the return value). Index types faiss cannot put on a GPU (fast-scan, refine) are added on CPU.
    """
    target, on_gpu = to_device(index)
    add_chunks(target, vectors, ids)
    return from_device(target, on_gpu)


def add_chunks(index: faiss.Index, vectors: np.ndarray, ids: np.ndarray | None = None) -> None:
    """Add in ADD_CHUNK slices to an index already where it should be (see to_device)."""
    for start in range(0, len(vectors), ADD_CHUNK):
        chunk = np.ascontiguousarray(vectors[start:start + ADD_CHUNK], dtype=np.float32)
        if ids is None:
            index.add(chunk)
        else:
            index.add_with_ids(chunk, np.ascontiguousarray(ids[start:start + ADD_CHUNK], dtype=np.int64))


def to_device(index: faiss.Index) -> tuple[faiss.Index, bool]:
    """(index on this process' GPUs (target_gpus), True) when there are any and faiss supports the
    type on GPU, else (index, False)."""
    gpus = target_gpus()
    if not gpus:
        LOG.debug("adding on CPU (no GPU for faiss)")
        return index, False
    try:
        moved = _to_gpus(index, gpus)
    except (RuntimeError, AttributeError) as exc:  # e.g. fast-scan or refine: no GPU implementation
        LOG.info("adding on CPU: %s cannot run on GPU (%s)", type(index).__name__, exc)
        return index, False
    LOG.info("adding on GPU(s) %s", gpus)
    return moved, True


def from_device(index: faiss.Index, on_gpu: bool) -> faiss.Index:
    """The CPU index to serialise, search and serve (a copy when it was on GPU)."""
    return faiss.index_gpu_to_cpu(index) if on_gpu else index
