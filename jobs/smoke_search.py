"""Smoke search of the published (CURRENT) index: vector self-queries and a text query.

    python jobs/smoke_search.py --warehouse W [--model-id M] [-k 10]

Exits non-zero when the index does not answer sensibly (see vidx.quality.smoke). Driver-only: run
it with the main venv's python (or spark-submit, which runs it on the driver).
"""

import argparse
import json
import logging
import sys

from vidx.config import load_config
from vidx.errors import VidxError
from vidx.quality.smoke import smoke_search

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", "-w", help="warehouse root (default: config / $VIDX_WAREHOUSE)")
    parser.add_argument("--model-id", help="which model's index (default: the only one)")
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = load_config(overrides={"warehouse": args.warehouse})
    try:
        print(json.dumps(smoke_search(cfg.warehouse, model_id=args.model_id, k=args.k).as_dict()))
    except VidxError as exc:
        logging.getLogger("vidx").error("%s", exc)
        sys.exit(2)
