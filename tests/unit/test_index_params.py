"""Rules of `choose_params`: flat vs IVF-PQ, nlist, PQ m and training-sample size."""

from __future__ import annotations

import math

import pytest

from vidx.config import IndexConfig
from vidx.errors import IndexBuildError
from vidx.index.params import MIN_IVFPQ_VECTORS, choose_m, choose_nlist, choose_params

CFG = IndexConfig()
SIZES = sorted({int(10 ** (4.4 + i * 0.05)) for i in range(95)} | {30_000, 40_000, 97_344, 10**6, 4 * 10**8})


def test_flat_below_threshold() -> None:
    p = choose_params(CFG.flat_below - 1, 512, CFG)
    assert (p.kind, p.factory, p.metric, p.nlist, p.m, p.train_size) == ("flat", "Flat", "ip", 0, 0, 0)
    assert choose_params(CFG.flat_below, 512, CFG).kind == "ivfpq"
    assert choose_params(1, 8, CFG).kind == "flat"


def test_flat_when_too_few_vectors_for_pq_codebooks() -> None:
    cfg = IndexConfig(flat_below=1000)
    assert choose_params(MIN_IVFPQ_VECTORS - 1, 64, cfg).kind == "flat"
    assert choose_params(MIN_IVFPQ_VECTORS, 64, cfg).kind == "ivfpq"


@pytest.mark.parametrize("n", SIZES)
def test_nlist_power_of_two_within_bounds(n: int) -> None:
    nlist = choose_nlist(n)
    root = math.sqrt(n)
    cap = n // 39
    assert nlist & (nlist - 1) == 0
    assert nlist <= cap
    powers_in_range = [1 << e for e in range(40) if 4 * root <= 1 << e <= min(16 * root, cap)]
    if powers_in_range:
        assert 4 * root <= nlist <= 16 * root
    else:  # only possible below ~97k vectors: the 39-points-per-list cap wins
        assert nlist == 1 << (cap.bit_length() - 1)
    if 8 * root * math.sqrt(2) <= cap:  # cap not binding: the power of two nearest 8*sqrt(n)
        assert 8 * root / math.sqrt(2) <= nlist <= 8 * root * math.sqrt(2)


def test_nlist_examples() -> None:
    assert choose_nlist(40_000) == 1024  # 8*sqrt = 1600 -> 2048, capped by 40000 // 39 = 1025
    assert choose_nlist(10**6) == 8192  # 8*sqrt = 8000
    assert choose_nlist(4 * 10**8) == 131_072  # 8*sqrt = 160000


@pytest.mark.parametrize(("dim", "m"), [(32, 4), (64, 8), (128, 16), (384, 48), (512, 64), (768, 96),
                                        (1024, 128), (100, 10), (7, 1), (4, 1), (1, 1), (12, 2)])
def test_pq_m_divides_dim_with_subvectors_near_8(dim: int, m: int) -> None:
    assert choose_m(dim) == m
    assert dim % m == 0


@pytest.mark.parametrize("dim", [32, 64, 128, 384, 512, 768, 1024])
def test_ivfpq_params_for_common_dims(dim: int) -> None:
    p = choose_params(200_000, dim, CFG)
    assert p.kind == "ivfpq" and p.metric == "l2" and p.nbits == 8
    assert dim % p.m == 0 and dim // p.m == CFG.pq_dims == 4
    assert p.factory == f"IVF{p.nlist},PQ{p.m}x8"


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("per_list", [30, 64, 256])
def test_train_size_bounds(n: int, per_list: int) -> None:
    cfg = IndexConfig(flat_below=1, train_per_list=per_list)
    p = choose_params(n, 512, cfg)
    assert p.train_size <= n
    assert p.train_size >= min(n, 39 * p.nlist)
    assert p.train_size >= min(n, 39 * 256)
    assert p.train_size == min(n, max(per_list * p.nlist, 39 * p.nlist, 39 * 256))


@pytest.mark.parametrize(("n", "dim"), [(0, 64), (-3, 64), (100, 0), (100, -1)])
def test_invalid_sizes_raise(n: int, dim: int) -> None:
    with pytest.raises(IndexBuildError):
        choose_params(n, dim, CFG)


def test_default_selection_fits_400m_x_512() -> None:
    """issue 12 point 5: at 400M x 512 the default budget and families leave a candidate to build
    (estimate only: PQ64, the old cheapest, needs ~29e9 B, over the 16 GiB default)."""
    from vidx.index import select

    n = 400_000_000
    cands = select.candidates(n, 512, CFG)
    fitting = [c for c in cands if c.estimate(n) <= CFG.max_memory]
    assert [c.params.factory for c in fitting] == ["IVF131072,PQ32x8", "OPQ32,IVF131072,PQ32x8"]
    assert fitting[0].per_vector == 40 and fitting[0].estimate(n) == 40 * n + 4 * (131072 * 512 + 256 * 512)
    pq64 = next(c for c in cands if c.params.factory == "IVF131072,PQ64x8")
    assert pq64.estimate(n) > CFG.max_memory
    # where a dim/8 code fits, the coarser dim/16 one is not even tried
    assert not any(c.params.m == 32 for c in select.candidates(1_000_000, 512, CFG))
