"""Choosing FAISS index parameters from the collection size and embedding dimension.

The rules are written down in `choose_params`; they are deliberately simple, deterministic functions
of (n, dim, config) so that a rebuild of the same table version gives the same index layout.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

from vidx.config import IndexConfig
from vidx.errors import IndexBuildError

LOG = logging.getLogger(__name__)

# k-means wants >= 39 points per centroid (FAISS warns below that).
MIN_POINTS_PER_CENTROID = 39
PQ_NBITS = 8
PQ_CENTROIDS = 1 << PQ_NBITS
# Each PQ sub-quantizer is a 256-centroid k-means, so it needs 39 * 256 training points to be
# trained properly; below this many vectors IVF-PQ is never worth it (a flat scan of < 10k
# vectors takes well under a millisecond per query).
MIN_IVFPQ_VECTORS = MIN_POINTS_PER_CENTROID * PQ_CENTROIDS
# Target sub-vector length: 8 dims per PQ byte is FAISS' usual sweet spot between code size
# and accuracy (512-d -> PQ64, 64 B per vector).
PQ_DIMS_PER_SUBQUANTIZER = 8


IndexKind = Literal["flat", "ivfpq", "opq", "ivfpq_refine", "ivfflat"]


@dataclass(frozen=True)
class IndexParams:
    """What to build: `factory` is the `faiss.index_factory` string, the rest is for humans and manifests.

    `kind` is "flat" (exact) or an IVF family (see vidx.index.select); `m`/`nbits` describe the PQ
    code (0 without one); `k_factor` > 0 means an IndexRefine that re-ranks k * k_factor candidates.
    """

    kind: IndexKind
    factory: str
    nlist: int
    m: int
    nbits: int
    metric: Literal["ip", "l2"]
    train_size: int
    k_factor: int = 0  # a default, so manifests written before refine indexes existed still load

    @property
    def is_ivf(self) -> bool:
        return self.kind != "flat"


def choose_params(n: int, dim: int, cfg: IndexConfig) -> IndexParams:
    """Pick the index layout for `n` L2-normalised vectors of dimension `dim`.

    Rules:

    * ``n < cfg.flat_below`` -> exact ``Flat`` index with inner product (= cosine on normalised
      vectors); no training, recall 1.0. Also flat when ``n < 39 * 256`` (9,984), whatever
      `flat_below` says, because the PQ codebooks cannot be trained on fewer points.
    * otherwise IVF-PQ (``IVF{nlist},PQ{m}x8``), metric L2:

      - ``nlist``: the power of two closest (in log scale) to ``8 * sqrt(n)``, which always lies
        in ``[4 * sqrt(n), 16 * sqrt(n)]``; capped so that ``nlist <= n // 39`` (every list gets
        >= 39 training points). When no power of two lies in ``[4 * sqrt(n), n // 39]`` (only
        for n below ~97k) the cap wins: the largest power of two <= ``n // 39``.
      - ``m``: the divisor of `dim` whose sub-vector length ``dim / m`` is closest to
        ``cfg.pq_dims`` (default 4: 8 dims per code reached only ~0.76-0.79 recall@10 here, 4 dims
        ~0.9, at twice the bytes per vector; ties go
        to the larger `m`, i.e. the more accurate code). There is no ``m <= 64`` limit: FAISS CPU
        handles any `m` that divides `dim` (768-d -> 96, 1024-d -> 128).
      - ``nbits = 8`` (256 centroids per sub-quantizer, one byte per sub-vector).
      - metric L2 rather than inner product: on normalised vectors both rank identically for
        exact search, but PQ residual encoding is more accurate with L2 (recall@10 0.76 vs 0.67
        on 200k x 512); search converts distances back to cosine with ``1 - d / 2``.
      - ``train_size = min(n, max(cfg.train_per_list * nlist, 39 * nlist, 39 * 256))``.

    Raises IndexBuildError when `n` or `dim` is not positive.
    """
    if n <= 0:
        raise IndexBuildError(
            f"cannot build an index over {n} vectors; embed some videos first (vidx embed) "
            "or check that the embeddings table version is not empty")
    if dim <= 0:
        raise IndexBuildError(f"embedding dimension must be positive, got {dim}; check the model's output")
    if n < cfg.flat_below or n < MIN_IVFPQ_VECTORS:
        if n >= cfg.flat_below:
            LOG.info("%d vectors is too few to train PQ codebooks (< %d): using a flat index",
                     n, MIN_IVFPQ_VECTORS)
        return IndexParams(kind="flat", factory="Flat", nlist=0, m=0, nbits=0, metric="ip", train_size=0)
    nlist = choose_nlist(n)
    m = choose_m(dim, cfg.pq_dims)
    train_size = choose_train_size(n, nlist, cfg.train_per_list)
    return IndexParams(kind="ivfpq", factory=f"IVF{nlist},PQ{m}x{PQ_NBITS}", nlist=nlist, m=m,
                       nbits=PQ_NBITS, metric="l2", train_size=train_size)


def choose_train_size(n: int, nlist: int, per_list: int) -> int:
    """Coarse k-means sample: `per_list` points per list, >= 39 per list and per PQ centroid, <= n."""
    return min(n, max(per_list * nlist, MIN_POINTS_PER_CENTROID * nlist, MIN_IVFPQ_VECTORS))


def choose_nlist(n: int) -> int:
    """Power of two nearest 8*sqrt(n) in [4*sqrt(n), 16*sqrt(n)], never above n // 39 (see choose_params)."""
    root = math.sqrt(n)
    lo, hi = 4 * root, 16 * root
    candidates = [1 << e for e in range(math.ceil(math.log2(lo)), math.floor(math.log2(hi)) + 1)]
    target = math.log2(8 * root)
    # Ties (8*sqrt(n) exactly between two powers) go to the larger nlist: shorter lists, faster search.
    best = min(candidates, key=lambda p: (abs(math.log2(p) - target), -p))
    cap = max(1, n // MIN_POINTS_PER_CENTROID)
    if best <= cap:
        return best
    below = [p for p in candidates if p <= cap]
    # Under-trained centroids hurt more than a few long lists, so the cap wins over the 4*sqrt(n) floor.
    return max(below) if below else 1 << (cap.bit_length() - 1)


def choose_m(dim: int, dims_per_code: int = PQ_DIMS_PER_SUBQUANTIZER) -> int:
    """The divisor m of `dim` with dim / m closest to `dims_per_code`; ties go to the larger m."""
    divisors = [d for d in range(1, dim + 1) if dim % d == 0]
    return min(divisors, key=lambda d: (abs(dim / d - dims_per_code), -d))
