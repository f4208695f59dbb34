"""Build time and recall@10 of `vidx.index.build_index` (default IndexConfig: recall-driven selection) at 1M x 512.

Vectors: `clusters` random centres in R^dim, each cluster spread over its own random
`intrinsic`-dimensional subspace (coefficients N(0, 1), scale 0.5 / sqrt(intrinsic)), plus isotropic
noise 0.02, then L2-normalised. Real CLIP embeddings have low intrinsic dimension; isotropic noise
alone would make every neighbour equidistant and recall meaningless. Generated in chunks with a
fixed seed, so the set is identical between runs.

    .venv/bin/python bench/index_scale.py                 # 1M x 512, ~20-40 min on 2 cores
    .venv/bin/python bench/index_scale.py --n 200000      # quicker

`--queries` more vectors are generated than indexed and searched as unseen queries (recall@10 vs
exact search), next to the build's own measurement on held-out rows of the data.
Writes bench/results/index_scale_<n>x<dim>.json (or --out PATH), with the load average at start and
end: build seconds and QPS mean little when other work shared the cores. `python -m bench.report`
renders its README row.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from vidx.config import IndexConfig
from vidx.index import build_index, exact_search, recall_at_k, search

LOG = logging.getLogger("bench.index_scale")
RESULTS = Path(__file__).parent / "results"
GEN_CHUNK = 100_000


def clustered(n: int, dim: int, *, clusters: int, intrinsic: int, seed: int) -> np.ndarray:
    """Normalised clustered vectors (see module doc), built cluster by cluster to bound memory."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    bases = rng.standard_normal((clusters, intrinsic, dim), dtype=np.float32) / np.float32(np.sqrt(intrinsic))
    labels = rng.integers(0, clusters, n)
    coef = rng.standard_normal((n, intrinsic), dtype=np.float32)
    out = np.empty((n, dim), dtype=np.float32)
    # One matmul per cluster instead of gathering an (n, intrinsic, dim) basis tensor.
    for c in range(clusters):
        rows = np.flatnonzero(labels == c)
        out[rows] = centres[c] + 0.5 * (coef[rows] @ bases[c])
    for lo in range(0, n, GEN_CHUNK):
        chunk = out[lo:lo + GEN_CHUNK]
        chunk += 0.02 * rng.standard_normal(chunk.shape, dtype=np.float32)
        chunk /= np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def single_query_qps(built: Any, vectors: np.ndarray, n_queries: int = 500) -> float:
    """Queries per second, one query per call on one thread (what a query server does per request)."""
    faiss.omp_set_num_threads(1)
    queries = vectors[np.random.default_rng(99).choice(len(vectors), n_queries, replace=False)]
    started = time.perf_counter()
    for q in queries:
        search(built.index, built.params, q[None, :], 10)
    seconds = time.perf_counter() - started
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    return n_queries / seconds


def _cpu_name() -> str:
    with open("/proc/cpuinfo") as fh:
        return next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--intrinsic", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--out", help="result JSON (default bench/results/index_scale_<n>x<dim>.json)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    started_at, load_at_start = datetime.now(UTC).isoformat(), os.getloadavg()
    started = time.perf_counter()
    generated = clustered(args.n + args.queries, args.dim, clusters=args.clusters, intrinsic=args.intrinsic,
                          seed=args.seed)
    vectors, unseen = generated[:args.n], generated[args.n:]
    gen_s = time.perf_counter() - started
    LOG.info("generated %d x %d in %.1f s", args.n, args.dim, gen_s)
    cfg = IndexConfig()
    built = build_index(vectors, cfg)
    _, exact = exact_search(vectors, unseen, 10)
    _, approx = search(built.index, built.params, unseen, 10)
    result = {
        "n": args.n, "dim": args.dim,
        "generator": {k: v for k, v in vars(args).items() if k != "out"} | {"noise": 0.02, "spread": 0.5},
        "index_config": cfg.model_dump(), "params": asdict(built.params), "factory": built.params.factory,
        "nprobe": built.nprobe, "recall_at_10": built.recall_at_10, "eval_queries": built.eval_queries,
        "recall_at_10_unseen_queries": recall_at_k(approx, exact),
        "build_seconds": round(built.build_seconds, 1), "generate_seconds": round(gen_s, 1),
        "index_bytes": built.index_bytes, "memory_bytes": built.memory_bytes,
        "bytes_per_vector": round(built.index_bytes / args.n, 1), "selection": built.selection,
        "single_query_qps_1_thread": round(single_query_qps(built, vectors), 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                    "cpu": _cpu_name(), "faiss": faiss.__version__},
        "started_at": started_at, "finished_at": datetime.now(UTC).isoformat(),
        "load_avg_at_start": load_at_start, "load_avg_at_end": os.getloadavg(),
    }
    out = Path(args.out) if args.out else RESULTS / f"index_scale_{args.n}x{args.dim}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)  # temp-then-rename: a reader never sees half a result
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
