"""Table schemas, defined once (pyarrow) and imported by the writers, the quality suites and the tests.

Importable as `vidx_schemas` (lib/vidx_schemas links here).
"""

from vidx_schemas.clips import CLIPS_PARTITION_BY, CLIPS_SCHEMA, CLIPS_VIDEO_BUCKETS, video_bucket, video_buckets
from vidx_schemas.runs import RUN_STATUSES, RUNS_PARTITION_BY, RUNS_SCHEMA
from vidx_schemas.validations import VALIDATIONS_PARTITION_BY, VALIDATIONS_SCHEMA
from vidx_schemas.videos import VIDEO_STATUSES, VIDEOS_PARTITION_BY, VIDEOS_SCHEMA

TABLES = {"videos": VIDEOS_SCHEMA, "clips": CLIPS_SCHEMA, "runs": RUNS_SCHEMA, "validations": VALIDATIONS_SCHEMA}
PARTITION_BY = {"videos": VIDEOS_PARTITION_BY, "clips": CLIPS_PARTITION_BY, "runs": RUNS_PARTITION_BY,
                "validations": VALIDATIONS_PARTITION_BY}

__all__ = ["CLIPS_PARTITION_BY", "CLIPS_SCHEMA", "CLIPS_VIDEO_BUCKETS", "PARTITION_BY", "RUNS_PARTITION_BY",
           "RUNS_SCHEMA", "RUN_STATUSES", "TABLES", "VALIDATIONS_PARTITION_BY", "VALIDATIONS_SCHEMA",
           "VIDEOS_PARTITION_BY", "VIDEOS_SCHEMA", "VIDEO_STATUSES", "video_bucket", "video_buckets"]
