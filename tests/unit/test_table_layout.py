"""Clips partitioning (vidx.tables.layout) and what it buys: an incremental checkpoint reads only the
files that hold the videos it replaces; tables in the old model_id-only layout keep working."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from vidx.archive import VideoFile, video_id_for
from vidx.spark.commit import BatchInput, build_checkpoint, commit_checkpoint
from vidx.tables import clips_layout, delta, table_uri, write_clip_files, write_data_file
from vidx.tables import rewrite as rewrite_mod
from vidx.tables.layout import BUCKET_COLUMN, DEFAULT_LAYOUT, ClipsLayout, description
from vidx_schemas import CLIPS_PARTITION_BY, CLIPS_SCHEMA, VIDEOS_SCHEMA, video_bucket, video_buckets

MODEL = "vidx-tiny__random__d8"
NOW = datetime(2026, 1, 2, tzinfo=UTC)
N_TASKS, VIDEOS_PER_TASK, CLIPS = 8, 25, 3


def _files(n: int) -> list[VideoFile]:
    return [VideoFile(f"/arch/{i:04d}.mp4", 100, 1, video_id_for(f"/arch/{i:04d}.mp4")) for i in range(n)]


def _clips(videos: list[VideoFile], run: str = "r1") -> pa.Table:
    n = len(videos) * CLIPS
    vec = np.random.default_rng(len(videos)).normal(size=(n, 8)).astype(np.float32)
    vec /= np.linalg.norm(vec, axis=1, keepdims=True)
    idx = np.tile(np.arange(CLIPS), len(videos))
    return pa.table({
        "video_id": np.repeat([v.video_id for v in videos], CLIPS), "clip_idx": pa.array(idx, pa.int32()),
        "start_s": idx * 4.0, "end_s": idx * 4.0 + 4.0, "n_frames": pa.array(np.full(n, 4), pa.int32()),
        "frame_ts": pa.nulls(n, pa.list_(pa.float64())), "model_id": [MODEL] * n,
        "embedding": pa.array(list(vec), pa.list_(pa.float32())), "run_id": [run] * n,
        "segment_embeddings": pa.nulls(n, CLIPS_SCHEMA.field("segment_embeddings").type),
        "thumbnail": pa.nulls(n, pa.binary()), "video_bucket": pa.nulls(n, pa.int32())}, schema=CLIPS_SCHEMA)


def _videos(videos: list[VideoFile]) -> pa.Table:
    return pa.Table.from_pylist([{"video_id": v.video_id, "uri": v.uri, "size_bytes": v.size_bytes, "mtime": NOW,
                                  "status": "ok", "model_id": MODEL, "n_clips": CLIPS, "run_id": "r1",
                                  "indexed_at": NOW} for v in videos], schema=VIDEOS_SCHEMA).sort_by("video_id")


def _warehouse(root: str, layout: ClipsLayout = DEFAULT_LAYOUT) -> list[VideoFile]:
    """Tables as an embed run leaves them: each Spark task wrote its videos' clips (one file per
    partition they fall in), one videos file per task; one commit per table."""
    files = _files(N_TASKS * VIDEOS_PER_TASK)
    clips_uri, videos_uri = table_uri(root, "clips"), table_uri(root, "videos")
    clip_files, video_files = [], []
    for t in range(N_TASKS):
        mine = files[t * VIDEOS_PER_TASK:(t + 1) * VIDEOS_PER_TASK]
        clip_files += write_clip_files(_clips(mine), clips_uri=clips_uri, layout=layout, model_id=MODEL,
                                       name_hint=f"t{t}")
        video_files.append(write_data_file(_videos(mine), table_uri=videos_uri, partition_values={},
                                           name_hint=f"t{t}"))
    delta.commit_files(clip_files, table_uri=clips_uri, schema=CLIPS_SCHEMA, partition_by=list(layout.partition_by),
                       app_id="seed", txn_version=1, description=description(layout) if layout.buckets else None)
    delta.commit_files(video_files, table_uri=videos_uri, schema=VIDEOS_SCHEMA, partition_by=[], app_id="seed",
                       txn_version=1)
    return files


def _count_reads(monkeypatch) -> tuple[list[str], list[int]]:
    """(paths opened by the rewrite, one entry per whole-file read)."""
    opened: list[str] = []
    full: list[int] = []
    real = rewrite_mod.filesystem
    real_read = rewrite_mod._read_full

    def read_full(parquet):
        full.append(1)
        return real_read(parquet)

    def counting(uri: str):
        fs, root = real(uri)

        class Counting:
            def open_input_file(self, path: str):
                opened.append(path)
                return fs.open_input_file(path)

        return Counting(), root

    monkeypatch.setattr(rewrite_mod, "filesystem", counting)
    monkeypatch.setattr(rewrite_mod, "_read_full", read_full)
    return opened, full


def _holding(table_uri_: str, video_ids: set[str]) -> set[str]:
    """Data files of the table that hold a row of `video_ids` (checked by reading every file)."""
    out = set()
    for uri in delta.file_uris(table_uri_):
        if set(pq.read_table(uri, columns=["video_id"])["video_id"].to_pylist()) & video_ids:
            out.add(uri.removeprefix("file://"))
    return out


def test_video_bucket_is_stable_and_vectorised():
    ids = [v.video_id for v in _files(200)]
    assert video_bucket("abc") == 891568578 % 64  # crc32: the same on every machine and Python version
    assert video_buckets(pa.array(ids)).to_pylist() == [video_bucket(v) for v in ids]
    assert video_buckets(pa.chunked_array([pa.array(ids[:5]), pa.array(ids[5:9])]), 7).to_pylist() == [
        video_bucket(v, 7) for v in ids[:9]]


def test_executor_files_are_split_by_bucket_and_sorted(tmp_path):
    videos = _files(40)
    uri = table_uri(str(tmp_path), "clips")
    written = write_clip_files(_clips(videos), clips_uri=uri, layout=DEFAULT_LAYOUT, model_id=MODEL, name_hint="x")
    assert len(written) == len({video_bucket(v.video_id) for v in videos}) > 20
    for f in written:
        bucket = int(f.partition_values[BUCKET_COLUMN])
        assert f.path.startswith(f"model_id={MODEL}/video_bucket={bucket}/")
        data = pq.read_table(str(tmp_path / "tables" / "clips" / f.path))
        assert BUCKET_COLUMN not in data.column_names  # a partition column lives in the log only
        assert {video_bucket(v) for v in data["video_id"].to_pylist()} == {bucket}
        keys = list(zip(data["video_id"].to_pylist(), data["clip_idx"].to_pylist(), strict=True))
        assert keys == sorted(keys)
    delta.commit_files(written, table_uri=uri, schema=CLIPS_SCHEMA, partition_by=CLIPS_PARTITION_BY, app_id="a",
                       txn_version=1, description=description())
    assert clips_layout(uri) == DEFAULT_LAYOUT
    assert delta.read_table(uri)[BUCKET_COLUMN].to_pylist() == [
        video_bucket(v) for v in delta.read_table(uri)["video_id"].to_pylist()]


def test_checkpoint_reads_only_the_files_holding_the_changed_videos(tmp_path, monkeypatch):
    root = str(tmp_path)
    files = _warehouse(root)
    clips_uri, videos_uri = table_uri(root, "clips"), table_uri(root, "videos")
    total = len(delta.file_uris(clips_uri))
    changed = [files[3], files[77], files[150]]
    ids = {f.video_id for f in changed}
    holding = _holding(clips_uri, ids)
    opened, full = _count_reads(monkeypatch)
    cp = build_checkpoint(BatchInput(2, changed, [], ids, {}, []), warehouse=root, run_id="r2", model_id=MODEL)
    opened_clips = {p for p in opened if "/tables/clips/" in p}
    buckets = {f"video_bucket={video_bucket(i)}/" for i in ids}
    # Only files of the changed videos' buckets are opened, and there only those whose video_id
    # min/max encloses one of the ids (their id column is read); whole files are read only when
    # they hold one: the 3 clips files and the 3 videos files (one per seeding task) of these videos.
    assert all(any(b in p for b in buckets) for p in opened_clips)
    assert holding <= opened_clips and len(opened_clips) <= len(holding) + 2 and total > 100
    assert len(full) == len(cp.clips.removes) + len(cp.videos.removes) == len(holding) + 3
    commit_checkpoint(cp, warehouse=root, pipeline_id="p", model_id=MODEL)
    left = delta.read_table(clips_uri)
    assert set(left["video_id"].to_pylist()) == {f.video_id for f in files} - ids
    assert left.num_rows == (len(files) - 3) * CLIPS
    videos = delta.read_table(videos_uri).to_pylist()
    assert len(videos) == len(files) and {v["video_id"] for v in videos if v["run_id"] == "r2"} == ids


def test_old_model_id_only_layout_keeps_working(tmp_path, monkeypatch):
    """A table created before buckets: its layout is read from the table, executors keep writing
    model_id-only files (the bucket becomes a data column), and checkpoints still drop the right rows."""
    root = str(tmp_path)
    legacy = ClipsLayout(("model_id",), 0)
    files = _warehouse(root, legacy)
    clips_uri = table_uri(root, "clips")
    assert clips_layout(clips_uri) == legacy
    changed = [files[10], files[11]]
    ids = {f.video_id for f in changed}
    opened, _ = _count_reads(monkeypatch)
    cp = build_checkpoint(BatchInput(2, changed, [], ids, {}, []), warehouse=root, run_id="r2", model_id=MODEL)
    new = write_clip_files(_clips(changed, run="r2"), clips_uri=clips_uri, layout=clips_layout(clips_uri),
                           model_id=MODEL, name_hint="new")
    assert [f.partition_values for f in new] == [{"model_id": MODEL}]
    cp.clips.adds.extend(new)
    commit_checkpoint(cp, warehouse=root, pipeline_id="p", model_id=MODEL)
    table = delta.read_table(clips_uri)
    assert table.num_rows == len(files) * CLIPS and len(opened) >= 1
    mine = table.filter(pa.compute.is_in(table["video_id"], value_set=pa.array(sorted(ids))))
    assert set(mine["run_id"].to_pylist()) == {"r2"} and mine.num_rows == 2 * CLIPS


@pytest.mark.parametrize("layout", [DEFAULT_LAYOUT, ClipsLayout(("model_id",), 0)])
def test_split_keeps_every_row_once(layout):
    table = _clips(_files(30))
    parts = layout.split(table, MODEL)
    assert sum(p.num_rows for _, p in parts) == table.num_rows
    assert len(parts) == (len({video_bucket(v.video_id) for v in _files(30)}) if layout.bucketed else 1)


def test_migrate_rewrites_an_old_table_into_buckets(tmp_path, capsys):
    from vidx.cli import main

    root = str(tmp_path)
    legacy = ClipsLayout(("model_id",), 0)
    files = _warehouse(root, legacy)
    clips_uri = table_uri(root, "clips")
    before = delta.read_table(clips_uri).sort_by([("video_id", "ascending"), ("clip_idx", "ascending")])
    assert main(["tables", "migrate", "--warehouse", root]) == 0
    assert '"migrated": true' in capsys.readouterr().out
    assert clips_layout(clips_uri) == DEFAULT_LAYOUT
    after = delta.read_table(clips_uri).sort_by([("video_id", "ascending"), ("clip_idx", "ascending")])
    assert after.num_rows == before.num_rows == len(files) * CLIPS
    for column in ("video_id", "clip_idx", "embedding", "run_id"):
        assert after[column].equals(before[column]), column
    assert after[BUCKET_COLUMN].to_pylist() == [video_bucket(v) for v in after["video_id"].to_pylist()]
    assert delta.read_table(clips_uri, version=0).num_rows == before.num_rows  # time travel intact
    assert main(["tables", "migrate", "--warehouse", root]) == 0
    assert '"migrated": false' in capsys.readouterr().out


def test_file_stats_are_tested_against_the_ids_of_their_own_bucket(tmp_path):
    """A bucket laid out as `tables optimize` leaves it (several files, each a sorted id range): only
    the files holding one of 100 changed videos are candidates. Ids of other buckets fall inside the
    ranges of every bucket's files, so testing each file against all ids would select ~50% more."""
    from vidx.tables.rewrite import candidate_files

    videos = sorted(_files(600), key=lambda f: (video_bucket(f.video_id), f.video_id))
    uri = table_uri(str(tmp_path), "clips")
    written = []
    for lo in range(0, len(videos), 5):  # 5 videos per file, never across buckets
        chunk = [v for v in videos[lo:lo + 5] if video_bucket(v.video_id) == video_bucket(videos[lo].video_id)]
        rest = videos[lo + len(chunk):lo + 5]
        for part in (chunk, rest):
            if part:
                written += write_clip_files(_clips(part), clips_uri=uri, layout=DEFAULT_LAYOUT, model_id=MODEL,
                                            name_hint=f"c{lo}")
    delta.commit_files(written, table_uri=uri, schema=CLIPS_SCHEMA, partition_by=CLIPS_PARTITION_BY, app_id="a",
                       txn_version=1, description=description())
    targets = {v.video_id for v in videos[::6]}
    got = {uri + "/" + p for p in candidate_files(uri, targets, {"model_id": MODEL})["rel_path"].to_pylist()}
    assert got == _holding(uri, targets) and len(written) > 120
