"""Generated embeddings for the index selection and distributed-build tests."""

from __future__ import annotations

import numpy as np


def clustered(n: int, dim: int, seed: int, clusters: int = 200, intrinsic: int = 8) -> np.ndarray:
    """Normalised vectors around `clusters` centres, each cluster spread on its own low-dimensional subspace.

    Real CLIP embeddings have low intrinsic dimension; isotropic noise would make every neighbour
    equidistant and recall meaningless.
    """
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    bases = rng.standard_normal((clusters, intrinsic, dim)).astype(np.float32) / np.sqrt(intrinsic)
    labels = rng.integers(0, clusters, n)
    coef = rng.standard_normal((n, intrinsic)).astype(np.float32)
    x = centres[labels] + 0.5 * np.einsum("ni,nid->nd", coef, bases[labels])
    x += 0.02 * rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


def brute_neighbours(x: np.ndarray, rows: np.ndarray, k: int = 10) -> np.ndarray:
    """Exact top-k ids (inner product) of x[rows] over x, each row's own id excluded."""
    sims = x[rows] @ x.T
    sims[np.arange(len(rows)), rows] = -np.inf
    top = np.argpartition(-sims, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(sims, top, axis=1), axis=1)
    return np.take_along_axis(top, order, axis=1)


def overlap(approx: np.ndarray, exact: np.ndarray, own: np.ndarray | None = None) -> float:
    """Mean |approx ∩ exact| / k per row; `own` ids are dropped from `approx` first (then its first k kept)."""
    k = exact.shape[1]
    rows = approx if own is None else [[i for i in r if i != o][:k] for r, o in zip(approx, own, strict=True)]
    return float(np.mean([len(set(r) & set(e)) / k for r, e in zip(rows, exact, strict=True)]))


def overlap_with_ties(approx: np.ndarray, exact: np.ndarray, x: np.ndarray, rows: np.ndarray,
                      tolerance: float = 1e-5) -> float:
    """`overlap` (with x[rows] as the queries and `rows` as their own ids) where a result whose exact cosine
    with the query is within `tolerance` of the k-th exact neighbour's also counts: the recall@10 that
    vidx.index.build.recall_with_ties defines, recomputed independently."""
    k = exact.shape[1]
    total = 0
    for r, e, own in zip(approx, exact, rows, strict=True):
        got = [int(i) for i in r if i != own][:k]
        kth = float(x[own] @ x[e[-1]])
        total += sum(1 for i in got if i in set(e.tolist()) or float(x[own] @ x[i]) >= kth - tolerance)
    return total / (k * len(rows))
