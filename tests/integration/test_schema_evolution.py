"""A nullable column added to `schemas/` after a table exists reaches the table on the next commit.

The table is created as vidx did before clips had a video_bucket partition (model_id only, no
segment_embeddings or video_bucket): both columns arrive as data columns, and the layout stays.
"""

from __future__ import annotations

import pyarrow as pa
import pytest

from vidx.errors import TableError
from vidx.tables import ClipsLayout, clips_layout, delta, write_clip_files
from vidx.tables.files import write_data_file
from vidx_schemas import CLIPS_SCHEMA, video_bucket

OLD = pa.schema([f for f in CLIPS_SCHEMA if f.name not in ("segment_embeddings", "thumbnail", "video_bucket")])
LEGACY = ClipsLayout(("model_id",), 0)  # created by an older vidx


def _rows(schema: pa.Schema, n: int) -> pa.Table:
    cols = {"video_id": ["v"] * n, "clip_idx": list(range(n)), "start_s": [0.0] * n, "end_s": [1.0] * n,
            "n_frames": [1] * n, "frame_ts": [[0.0]] * n, "model_id": ["m"] * n, "embedding": [[1.0, 0.0]] * n,
            "run_id": ["r"] * n}
    if "segment_embeddings" in schema.names:
        cols["segment_embeddings"] = [[[1.0, 0.0]]] * n
    if "thumbnail" in schema.names:
        cols["thumbnail"] = [b"\xff\xd8\xff"] * n
    if "video_bucket" in schema.names:
        cols["video_bucket"] = [None] * n
    return pa.table(cols, schema=schema)


def _commit(uri: str, schema: pa.Schema, txn: int) -> None:
    layout = clips_layout(uri) if delta.table_exists(uri) else LEGACY
    files = write_clip_files(_rows(schema, 2), clips_uri=uri, layout=layout, model_id="m", name_hint=f"t{txn}")
    delta.commit_files(files, table_uri=uri, schema=schema, partition_by=list(LEGACY.partition_by), app_id="x",
                       txn_version=txn)


def test_new_nullable_column_is_added_and_old_rows_read_null(tmp_path):
    uri = str(tmp_path / "clips")
    _commit(uri, OLD, 1)
    _commit(uri, CLIPS_SCHEMA, 2)
    table = delta.read_table(uri)
    assert table.schema.names == CLIPS_SCHEMA.names and table.num_rows == 4
    assert clips_layout(uri).partition_by == ("model_id",)  # the old layout is kept
    assert table["video_bucket"].to_pylist()[2:] == [video_bucket("v")] * 2  # new files carry the bucket
    values = table["segment_embeddings"].to_pylist()
    assert values.count(None) == 2 and [v for v in values if v is not None] == [[[1.0, 0.0]]] * 2
    assert table["thumbnail"].to_pylist().count(None) == 2
    assert "segment_embeddings" not in delta.read_table(uri, version=0).schema.names  # time travel intact
    _commit(uri, CLIPS_SCHEMA, 3)  # no second evolution commit once the column exists
    assert delta.latest_version(uri) == 3


def test_missing_required_column_is_refused(tmp_path):
    uri = str(tmp_path / "clips")
    narrow = pa.schema([f for f in OLD if f.name != "run_id"])
    f = write_data_file(_rows(OLD, 1).drop_columns(["run_id"]), table_uri=uri, partition_values={"model_id": "m"},
                        name_hint="a")
    delta.commit_files([f], table_uri=uri, schema=narrow, partition_by=list(LEGACY.partition_by), app_id="x",
                       txn_version=1)
    with pytest.raises(TableError, match="required columns"):
        _commit(uri, CLIPS_SCHEMA, 2)
