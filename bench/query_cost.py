"""Per-query search cost on this machine, for `vidx plan`'s query-replica model.

    python -m bench.query_cost [--n 100000] [--dim 512]

Builds vidx's default IVF-PQ layout (choose_params) on clustered synthetic vectors, then times one
query per call on one thread (what a query server does per request) at several nprobe values and
fits  seconds/query = fixed + per_byte * (bytes of PQ codes scanned). Writes
bench/results/query_cost_<n>x<dim>.json. Throughput on THIS machine; nothing here is a test threshold.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from bench.index_scale import clustered
from vidx.config import IndexConfig
from vidx.index.params import choose_params

RESULTS = Path(__file__).parent / "results"
NPROBES = (8, 32, 128)


def time_queries(index: Any, queries: np.ndarray, nprobe: int) -> dict[str, float]:
    index.nprobe = nprobe
    index.search(queries[:20], 10)  # warm-up: caches, allocator
    times = []
    for q in queries:
        t0 = time.perf_counter()
        index.search(q[None, :], 10)
        times.append(time.perf_counter() - t0)
    arr = np.array(times)
    return {"nprobe": nprobe, "mean_s": float(arr.mean()), "p50_s": float(np.median(arr)),
            "p99_s": float(np.quantile(arr, 0.99)), "queries": len(arr)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--queries", type=int, default=400)
    ap.add_argument("--train", type=int, default=8_000, help="training sample (default 8000)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    vectors = clustered(args.n + args.queries, args.dim, clusters=500, intrinsic=16, seed=0)
    print(f"generated in {time.perf_counter() - t0:.1f} s", flush=True)
    db, queries = vectors[:args.n], vectors[args.n:]
    params = choose_params(args.n, args.dim, IndexConfig())
    # One thread throughout: OpenMP spin-waits badly on a shared, oversubscribed 2-core VM, and a
    # query server answers each request on one thread anyway.
    faiss.omp_set_num_threads(1)
    t0 = time.perf_counter()
    index = faiss.index_factory(args.dim, params.factory)
    # Trained on a small sample: scan cost depends on list sizes and code length, not on how good
    # the codebooks are, and training 128 PQ sub-quantizers on all n takes ~10 min of one core here.
    index.train(db[:args.train])
    index.add(db)
    build_s = time.perf_counter() - t0
    print(f"built {params.factory} in {build_s:.1f} s", flush=True)
    ivf = faiss.extract_index_ivf(index)
    sizes = np.array([ivf.invlists.list_size(i) for i in range(ivf.nlist)])
    runs = [time_queries(index, queries, p) for p in NPROBES]
    # Bytes of codes a query scans: nprobe lists of average length, m bytes per code.
    scanned = np.array([p * sizes.mean() * params.m for p in NPROBES])
    per_byte, fixed = np.polyfit(scanned, [r["mean_s"] for r in runs], 1)
    result = {
        "n": args.n, "dim": args.dim, "factory": params.factory, "nlist": params.nlist, "m": params.m,
        "build_seconds": round(build_s, 1), "train_points": args.train, "runs": runs, "scanned_bytes": scanned.tolist(),
        "fit": {"fixed_s": float(fixed), "per_byte_s": float(per_byte)},
        "p99_over_mean": float(np.median([r["p99_s"] / r["mean_s"] for r in runs])),
        "threads": 1, "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine(),
                                  "faiss": faiss.__version__},
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"query_cost_{args.n}x{args.dim}.json"
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
