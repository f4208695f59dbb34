"""`validations`: one row per (pinned clips version, model) checked by `vidx validate`.

The publish gate reads it: an index is built only from a clips version whose latest row here
succeeded (`index.require_validation`).
"""

import pyarrow as pa

VALIDATIONS_SCHEMA = pa.schema([
    pa.field("validation_id", pa.string(), nullable=False),
    pa.field("table_name", pa.string(), nullable=False),       # the pinned table: "clips"
    pa.field("table_version", pa.int64(), nullable=False),     # clips version validated
    pa.field("videos_version", pa.int64()),                    # videos version it was checked against
    pa.field("model_id", pa.string(), nullable=False),
    pa.field("success", pa.bool_(), nullable=False),
    pa.field("n_rows", pa.int64(), nullable=False),             # clips rows of this model
    pa.field("n_videos", pa.int64(), nullable=False),           # videos rows of this model
    pa.field("n_expectations", pa.int32(), nullable=False),
    pa.field("n_failed", pa.int32(), nullable=False),
    # "<suite>: <expectation type> <column(s)>" of each failed expectation
    pa.field("failed_expectations", pa.list_(pa.string()), nullable=False),
    pa.field("results_uri", pa.string()),                      # JSON results under W/quality/
    pa.field("data_docs_uri", pa.string()),                    # GX Data Docs page of this run
    pa.field("validated_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("gx_version", pa.string()),
])

# A few rows a day: partitioning would only make tiny files.
VALIDATIONS_PARTITION_BY: list[str] = []
