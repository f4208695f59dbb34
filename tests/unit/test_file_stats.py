"""Per-file stats of long strings (vidx.tables.files): truncated to valid bounds, never left out, so a
filter on a long model_id still finds its rows (delta-rs prunes a file whose bound is missing)."""

from __future__ import annotations

import json
import random

import pyarrow as pa

from vidx.tables import delta, write_data_file
from vidx.tables.files import _MAX_STAT_STRING, file_stats
from vidx_schemas import VIDEOS_PARTITION_BY, VIDEOS_SCHEMA


def test_long_string_bounds_enclose_every_value():
    rng = random.Random(3)
    alphabet = ["a", "z", "~", "\u00e9", "\uffff", "\U0001f600", "\ud7ff"]
    for _ in range(200):
        values = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 2 * _MAX_STAT_STRING)))
                  for _ in range(rng.randint(1, 5))]
        stats = json.loads(file_stats(pa.table({"s": pa.array(values, pa.string())})))
        low, high = stats["minValues"]["s"], stats["maxValues"]["s"]
        assert len(low) <= _MAX_STAT_STRING and all(
            low.encode() <= v.encode() <= high.encode() for v in values), (values, low, high)


def test_rows_with_a_long_model_id_are_found_by_a_filter(tmp_path):
    uri = str(tmp_path / "videos")
    now = pa.scalar(0, pa.timestamp("us", tz="UTC")).as_py()
    long_id = "ViT-B-32__laion2b_s34b_b79k__d512__fps1-adaptive2-10s-t0.15-px224-bf16__tc-L6-S2-K16-I10-s0"
    for n, model in enumerate([long_id, long_id[:-1] + "1", "short"]):
        rows = [{"video_id": f"v{n}", "uri": "/a.mp4", "size_bytes": 1, "mtime": now, "status": "ok",
                 "model_id": model, "run_id": "r", "indexed_at": now}]
        f = write_data_file(pa.Table.from_pylist(rows, schema=VIDEOS_SCHEMA), table_uri=uri, partition_values={},
                            name_hint="t")
        delta.commit_files([f], table_uri=uri, schema=VIDEOS_SCHEMA, partition_by=VIDEOS_PARTITION_BY,
                           app_id="t", txn_version=n + 1)
    assert delta.read_rows(uri, equals={"model_id": long_id})["video_id"].to_pylist() == ["v0"]
    assert delta.read_rows(uri, equals={"model_id": "short"})["video_id"].to_pylist() == ["v2"]
