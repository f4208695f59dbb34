"""The index layouts a build may choose, and what each costs in memory (vidx.index.select tries them).

`vidx plan` sizes an index from the same estimates (vidx.capacity).

What fits at 400M x 512 (the design's petabyte: 1 PB of video at 4 s clips), with the defaults
(`index.max_memory` 16 GiB = 17.18e9 B, every family allowed): nlist = 131072 (8·√N = 160000,
nearest power of two), so centroids 4·131072·512 = 268 MB and PQ codebooks 4·256·512 = 0.5 MB.

    candidate            bytes/vector (codes + 8 B id)     x 400M + fixed     fits 16 GiB
    IVF,PQ32x8 (dim/16)  32 + 8 = 40                       16.27e9 = 15.2 GiB yes
    OPQ32,IVF,PQ32x8     40 (+ 1 MB rotation)              15.2 GiB           yes
    IVF,PQ64x8 (dim/8)   64 + 8 = 72                       29.07e9 = 27.1 GiB no
    IVF,PQ128x8 (dim/4)  136                               54.7e9 = 50.9 GiB  no
    PQ128x4fs+SQ6 refine 64 + 8 + 384 = 456                182.7e9 = 170 GiB  no
    IVF,Flat             2048 + 8 = 2056                   822e9 = 766 GiB    no

So the dim/16 codes are what makes a default build possible at that size (up to ~420M vectors
at 512-d); whether 32-byte codes reach `index.target_recall` depends on the data (OPQ helps
most there). When they do not, the build stops with IndexBuildError naming the smallest larger
candidate's size: set `index.max_memory` to it (e.g. 28 GiB for PQ64, 52 GiB for PQ128), or
lower `index.target_recall`. Builds above `index.ondisk_above` keep the lists in an `.ivfdata`
file (vidx.index.distributed), so the budget is then disk the query servers page from.
The driver also holds the coarse training sample while k-means runs: `index.train_per_list`
(64) x nlist x dim x 4 B = 17.2e9 B at 400M. select_and_build keeps only the PQ_TRAIN_MAX rows the
codebooks need once the centroids exist, so the sample and the filled index never coexist: the
driver's peak is about max(sample, index) plus one shard.
"""

from __future__ import annotations

from dataclasses import dataclass

from vidx.config import IndexConfig
from vidx.index.params import IndexParams, choose_m, choose_nlist, choose_train_size

ID_BYTES = 8  # every IVF list entry stores an int64 id next to its code
REFINE_K_FACTOR = 10  # 0.99 recall@10 at 200k x 512 in DESIGN.md, for 100 SQ8 distances per query
# Same estimated size: train the cheaper one first (OPQ trains a rotation, ~10x a plain PQ).
_TRAIN_COST = {"ivfflat": 0, "ivfpq": 1, "ivfpq_refine": 1, "opq": 2}
__all__ = ["ID_BYTES", "REFINE_K_FACTOR", "Candidate", "candidates"]


@dataclass(frozen=True)
class Candidate:
    params: IndexParams
    per_vector: int  # bytes per indexed vector: codes and id
    fixed: int  # bytes independent of N: centroids, codebooks, rotation

    def estimate(self, n: int) -> int:
        return self.per_vector * n + self.fixed

    @property
    def on_disk_ok(self) -> bool:
        # merge_ondisk moves plain inverted lists; fast-scan blocks and refine codes stay in RAM.
        return self.params.kind in ("ivfpq", "opq", "ivfflat")



def candidates(n: int, dim: int, cfg: IndexConfig) -> list[Candidate]:
    """The allowed candidates for `n` x `dim`, cheapest estimated memory at `n` first."""
    nlist = choose_nlist(n)
    train_size = choose_train_size(n, nlist, cfg.train_per_list)
    out: dict[str, Candidate] = {}
    for dims_per_code in (8, 4):
        m = choose_m(dim, dims_per_code)
        for opq in (False, True):
            cand = _pq(dim, nlist, m, train_size, opq=opq)
            out.setdefault(cand.params.factory, cand)
    # dim/16 codes (32 B at 512-d) only when not even the dim/8 code fits the budget, as at 400M x
    # 512 (module doc): they rarely reach usual recall targets, so evaluating them first would only
    # cost time wherever a finer code fits.
    if _pq(dim, nlist, choose_m(dim, 8), train_size, opq=False).estimate(n) > cfg.max_memory:
        for opq in (False, True):
            cand = _pq(dim, nlist, choose_m(dim, 16), train_size, opq=opq)
            out.setdefault(cand.params.factory, cand)
    m4 = choose_m(dim, 4)
    for sq_bits in (6, 8):
        refine = IndexParams(kind="ivfpq_refine", factory=f"IVF{nlist},PQ{m4}x4fs,Refine(SQ{sq_bits})", nlist=nlist,
                             m=m4, nbits=4, metric="l2", train_size=train_size, k_factor=REFINE_K_FACTOR)
        # 4-bit codes pack two per byte, next to the id; the re-ranking codes have sq_bits per dimension.
        out[refine.factory] = Candidate(refine, (m4 + 1) // 2 + ID_BYTES + (dim * sq_bits + 7) // 8,
                                        4 * (nlist * dim + 16 * dim + 2 * dim))
    flat = IndexParams(kind="ivfflat", factory=f"IVF{nlist},Flat", nlist=nlist, m=0, nbits=0, metric="l2",
                       train_size=train_size)
    out[flat.factory] = Candidate(flat, 4 * dim + ID_BYTES, 4 * nlist * dim)
    allowed = [c for c in out.values() if c.params.kind in cfg.candidates]
    return sorted(allowed, key=lambda c: (c.estimate(n), _TRAIN_COST[c.params.kind]))


def _pq(dim: int, nlist: int, m: int, train_size: int, *, opq: bool) -> Candidate:
    factory = f"OPQ{m},IVF{nlist},PQ{m}x8" if opq else f"IVF{nlist},PQ{m}x8"
    params = IndexParams(kind="opq" if opq else "ivfpq", factory=factory, nlist=nlist, m=m, nbits=8,
                         metric="l2", train_size=train_size)
    fixed = 4 * (nlist * dim + 256 * dim)  # centroids and codebooks (no precomputed table: build.PQ_TABLES_OFF)
    return Candidate(params, m + ID_BYTES, fixed + (4 * dim * dim if opq else 0))
