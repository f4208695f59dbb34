"""Pure parts of incremental runs: archive diff, checkpoint batching, manifests, the warehouse lock."""

from __future__ import annotations

import json
import time

import pytest

from vidx.archive import VideoFile, plan_units, video_id_for
from vidx.archive.diff import KnownVideo, diff_archive
from vidx.spark.embed import _batches
from vidx.tables.checkpoint import Checkpoint, TableActions, load_checkpoints, save_checkpoint
from vidx.tables.files import DataFile
from vidx.tables.lock import WarehouseLock, WarehouseLockedError
from vidx.tables.rewrite import RemovedFile


def vf(name: str, size: int = 10, mtime: int = 1) -> VideoFile:
    uri = f"/arch/{name}"
    return VideoFile(uri, size, mtime, video_id_for(uri))


def known(f: VideoFile, status: str = "ok", size: int | None = None) -> KnownVideo:
    return KnownVideo(f.video_id, f.uri, f.size_bytes if size is None else size, f.mtime_us, status)


def test_diff_classifies_new_changed_deleted_unchanged():
    a, b, c, d = vf("a.mp4"), vf("b.mp4"), vf("c.mp4"), vf("d.mp4")
    other = VideoFile("/elsewhere/x.mp4", 1, 1, video_id_for("/elsewhere/x.mp4"))
    kn = {a.video_id: known(a), b.video_id: known(b, size=99), d.video_id: known(d),
          other.video_id: known(other)}
    diff = diff_archive([a, b, c], kn, archive_root="/arch")
    assert [f.uri for f in diff.new] == [c.uri]
    assert [f.uri for f in diff.changed] == [b.uri]
    assert [k.uri for k in diff.deleted] == [d.uri]       # /elsewhere is another archive: untouched
    assert diff.unchanged == 1
    assert diff.replaced_ids == {b.video_id}
    assert [f.uri for f in diff.todo] == [b.uri, c.uri]


def test_diff_full_refresh_retry_and_resurrection():
    a, b, c = vf("a.mp4"), vf("b.mp4"), vf("c.mp4")
    kn = {a.video_id: known(a), b.video_id: known(b, "failed"), c.video_id: known(c, "deleted")}
    plain = diff_archive([a, b, c], kn, archive_root="/arch")
    assert plain.unchanged == 2 and [f.uri for f in plain.new] == [c.uri]   # a deleted file came back
    retry = diff_archive([a, b, c], kn, archive_root="/arch", retry_failed=True)
    assert [f.uri for f in retry.retried] == [b.uri]
    full = diff_archive([a, b, c], kn, archive_root="/arch", full_refresh=True)
    assert {f.uri for f in full.refreshed} == {a.uri, b.uri} and full.unchanged == 0
    assert diff_archive([a], {a.video_id: known(a)}, archive_root="/arch").empty


def test_batches_keep_videos_whole_and_bounded():
    files = [vf(f"{i}.mp4") for i in range(5)]
    units = plan_units([(f.video_id, f.uri, 100, d) for f, d in zip(files, [8, 30, 8, 8, 8], strict=True)],
                       max_unit_seconds=8, clip_seconds=4)
    batches = _batches(files, units, commit_every=2)
    assert [len(u) for _, u in batches] == [1, 4, 2, 1]   # the 30 s video (4 units) is alone
    assert [f.uri for vids, _ in batches for f in vids] == [f.uri for f in files]
    for vids, us in batches:
        assert {u.video_id for u in us} <= {v.video_id for v in vids}
    assert _batches([], [], 5) == [([], [])]              # deletions-only run still has one checkpoint


def test_checkpoint_roundtrip(tmp_path):
    add = DataFile("model_id=m/part-1.parquet", 10, {"model_id": "m"}, 5, 3, json.dumps({"numRecords": 3}))
    cp = Checkpoint("run1", 2, TableActions([add], [RemovedFile("old.parquet", 7, {"model_id": "m"})]),
                    TableActions([], []), {"videos": 1})
    save_checkpoint(str(tmp_path), cp)
    save_checkpoint(str(tmp_path), Checkpoint("run1", 1, TableActions(), TableActions()))
    loaded = load_checkpoints(str(tmp_path), "run1")
    assert [c.batch for c in loaded] == [1, 2]
    assert loaded[1].clips.adds == [add] and loaded[1].clips.removes[0].path == "old.parquet"
    assert load_checkpoints(str(tmp_path), "other") == []


def test_lock_excludes_other_runs_but_not_a_restart(tmp_path):
    first = WarehouseLock(str(tmp_path), "run-a", heartbeat_s=0.05)
    first.acquire()
    try:
        with pytest.raises(WarehouseLockedError, match="another run holds the warehouse: run run-a"):
            WarehouseLock(str(tmp_path), "run-b").acquire()
        again = WarehouseLock(str(tmp_path), "run-a")   # the same run, restarted after a crash
        again.acquire()
        again._stop.set()
    finally:
        first.release()
    second = WarehouseLock(str(tmp_path), "run-b")
    second.acquire()
    second.release()


def test_stale_lock_is_taken_over(tmp_path):
    dead = WarehouseLock(str(tmp_path), "dead-run")
    dead._create_exclusive()                 # acquired, then the process died: no heartbeat
    time.sleep(0.05)
    taker = WarehouseLock(str(tmp_path), "new-run", stale_after_s=0.01)
    taker.acquire()
    taker.release()
