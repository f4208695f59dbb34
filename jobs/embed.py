"""spark-submit entry point of the embed stage.

    spark-submit --master spark://host:7077 jobs/embed.py ARCHIVE --warehouse W [--model M --pretrained P]

Arguments are those of `vidx embed`; the session spark-submit created is used as is.
"""

import sys

from vidx.cli import main

if __name__ == "__main__":
    sys.exit(main(["embed", *sys.argv[1:]]))
