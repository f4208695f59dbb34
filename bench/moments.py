"""Sweep `search.moment_drop` on a captioned synthetic archive (a tuning seed, never the held-out
evaluation's) and report moment vs clip recall at temporal IoU >= 0.5 for each value.

    .venv/bin/python -m bench.moments [--seed 777] [--drops 0 0.01 0.02 ...]

Writes bench/results/moments-<UTC time>.json. The default of `search.moment_drop` comes from here;
tests/integration/test_retrieval_quality.py then measures it on the held-out seed.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
TUNING_SEED = 777  # the held-out evaluation uses 20_261_122


def main() -> None:
    from vidx.config import SearchConfig, load_config
    from vidx.index.from_table import build_from_warehouse
    from vidx.quality.moment_eval import evaluate_moments
    from vidx.spark.embed import run_embed
    from vidx.synth.world import ArchiveSpec, make_captioned_archive

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=TUNING_SEED)
    parser.add_argument("--drops", type=float, nargs="+",
                        default=[0.0, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3])
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    # the same archive shape as the held-out evaluation (tests/integration/test_retrieval_quality.py)
    spec = ArchiveSpec(n_videos=14, sizes=((96, 72), (128, 72), (80, 80)), fps=(8.0, 10.0), unseen_share=0.3)
    with tempfile.TemporaryDirectory(prefix="vidx-moments-") as tmp:
        root = Path(tmp)
        truth = make_captioned_archive(root / "archive", seed=args.seed, spec=spec)
        cfg = load_config(env={}, overrides={"warehouse": str(root / "w"), "spark.master": "local[2]",
                                             "spark.conf": {"spark.ui.enabled": "false"}})
        run_embed(cfg, str(root / "archive"))
        build_from_warehouse(cfg, skip_validation=True)
        sweep = [evaluate_moments(cfg.warehouse, truth, cfg=SearchConfig(moment_drop=d)).as_dict()
                 for d in args.drops]
    best = max(sweep, key=lambda r: (r["moments"]["recall_at_1"], r["moments"]["mean_iou_at_1"]))
    out = {"seed": args.seed, "finished_at": datetime.now(UTC).isoformat(), "best_drop": best["moment_drop"],
           "clips": sweep[0]["clips"], "sweep": [{"moment_drop": r["moment_drop"], **r["moments"]} for r in sweep]}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"moments-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(out, indent=2))
    print(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
