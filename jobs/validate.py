"""spark-submit entry point of the data-quality gate (driver-only; same arguments as `vidx validate`).

    spark-submit jobs/validate.py --warehouse W [--version V] [--model-id M] [--json]
"""

import sys

from vidx.cli import main

if __name__ == "__main__":
    sys.exit(main(["validate", *sys.argv[1:]]))
