"""Speed and fidelity of CenterCLIP token clustering against the per-frame baseline (random weights).

The measurement itself is `vidx.encode.centerclip_bench.bench_token_clustering` (also called by
bench/run.py): synthetic-world clips, baseline and clustered batches timed alternately, fidelity
as the cosine of clip embeddings and overlap@10 of their neighbour lists.

    .venv/bin/python bench/token_clustering.py                       # vidx-tiny and ViT-B-32
    OMP_NUM_THREADS=1 .venv/bin/python bench/token_clustering.py     # steadier on a loaded machine
    .venv/bin/python bench/token_clustering.py --models ViT-B-16 --clips 32 --centers 24

`--layer` defaults to half the model's depth (6 for ViT-B-32, 2 for vidx-tiny).
Writes bench/results/token_clustering_<model>.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
from pathlib import Path

import open_clip
import torch

import vidx.encode.models  # noqa: F401 - registers vidx-tiny with open_clip
from vidx.encode.centerclip import TokenClustering
from vidx.encode.centerclip_bench import bench_token_clustering

LOG = logging.getLogger("bench.token_clustering")
RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["vidx-tiny", "ViT-B-32"])
    parser.add_argument("--frames-per-clip", type=int, default=4)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--layer", type=int, default=None)
    parser.add_argument("--segments", type=int, default=TokenClustering.segments)
    parser.add_argument("--centers", type=int, default=TokenClustering.centers)
    parser.add_argument("--iters", type=int, default=TokenClustering.iters)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    RESULTS.mkdir(exist_ok=True)
    for name in args.models:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)  # the same random weights in every run
            model = open_clip.create_model(name, pretrained=None).eval()
        layer = len(model.visual.transformer.resblocks) // 2 if args.layer is None else args.layer
        clustering = TokenClustering(enabled=True, layer=layer, segments=args.segments, centers=args.centers,
                                     iters=args.iters)
        result = bench_token_clustering(model, args.frames_per_clip, args.clips, clustering, repeats=args.repeats)
        result.update(model=name, weights="random", machine=platform.processor() or platform.machine(),
                      cpus=os.cpu_count(), load_avg_1m=os.getloadavg()[0], torch=torch.__version__)
        LOG.info("%s: %s", name, json.dumps(result))
        (RESULTS / f"token_clustering_{name}.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
