"""spark-submit entry point of the index build (driver-only today; same arguments as `vidx build-index`).

    spark-submit jobs/build_index.py --warehouse W [--model-id M] [--version V]
"""

import sys

from vidx.cli import main

if __name__ == "__main__":
    sys.exit(main(["build-index", *sys.argv[1:]]))
