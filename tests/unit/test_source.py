"""Where decoders get their bytes: the probe reads a remote header by ranged reads (no copy), a task
downloads each remote video once for all its units, and a video's units stay in one task."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pyarrow.fs as pafs
import pytest

from vidx import storage
from vidx.archive import balance_units, plan_units
from vidx.config import load_config
from vidx.decode.probe import probe
from vidx.decode.source import RangedReader, TaskDownloads
from vidx.errors import DecodeError
from vidx.synth import write_video


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("src") / "long.mp4"
    write_video(path, duration_s=12, fps=25, width=320, height=240, seed=5)
    return path


@pytest.fixture
def s3(s3_server, monkeypatch):
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    storage.configure(s3_server.options())
    yield s3_server
    storage.configure({})


def _upload(s3, path: Path) -> tuple[str, str]:
    bucket = s3.new_bucket("arch")
    s3.client().upload_file(str(path), bucket, f"v/{path.name}")
    return bucket, f"s3://{bucket}/v/{path.name}"


def test_ranged_probe_equals_path_probe_and_reads_little(video):
    size = video.stat().st_size
    reader = RangedReader(pafs.LocalFileSystem().open_input_file(str(video)), size)
    assert probe(str(video), source=reader) == probe(str(video))
    assert 0 < reader.fetched < 0.25 * size


def test_probe_task_reads_the_header_by_ranged_reads(s3, video):
    """The Spark probe of a remote file (in the decoder subprocess, options passed along) reads a
    fraction of it; the old probe downloaded the whole file first."""
    from vidx.spark.stages import _probe_one

    bucket, uri = _upload(s3, video)
    cfg = load_config(env={}, overrides={"storage.options": s3.options()})
    mark = s3.mark()
    facts = _probe_one(uri, cfg)
    local = probe(str(video))
    assert facts == {"duration_s": local.duration_s, "fps": local.fps, "width": local.width,
                     "height": local.height, "codec": local.codec}
    served = s3.bytes_served(bucket, mark)
    assert 0 < served < 0.25 * video.stat().st_size
    missing = _probe_one(f"s3://{bucket}/v/missing.mp4", cfg)
    assert missing["error_class"] == "unreadable"


def test_task_downloads_a_video_once_for_all_its_units(s3, video):
    bucket, uri = _upload(s3, video)
    downloads = TaskDownloads({uri: 3})
    mark = s3.mark()
    barrier, paths = threading.Barrier(3), []

    def unit() -> None:
        barrier.wait()
        with downloads.path(uri) as path:
            paths.append(path)
            assert Path(path).read_bytes() == video.read_bytes()

    threads = [threading.Thread(target=unit) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert downloads.downloads == 1 and len(set(paths)) == 1
    assert s3.bytes_served(bucket, mark) == video.stat().st_size
    assert not Path(paths[0]).exists()  # deleted after the task's last unit of the video
    with pytest.raises(DecodeError) as err, downloads.path(f"s3://{bucket}/v/missing.mp4"):
        pass
    assert err.value.error_class == "unreadable"
    downloads.close()


def test_local_videos_are_never_copied(video):
    with TaskDownloads({str(video): 2}).path(str(video)) as path:
        assert path == str(video.resolve())


def test_a_videos_units_stay_in_one_task_unless_it_outweighs_a_task():
    videos = [(f"v{i}", f"s3://b/{i}.mp4", 3_000, 12.0) for i in range(6)]
    units = plan_units(videos, max_unit_seconds=4, clip_seconds=4)
    assert len(units) == 18
    bins = balance_units(units, 4)
    assert all(len({u.video_id for u in b}) == len(b) // 3 for b in bins)  # whole videos only
    assert sorted(len(b) for b in bins) == [3, 3, 6, 6]
    # one video bigger than a task's share: split into runs of consecutive units, still balanced
    big = plan_units([("big", "s3://b/big.mp4", 8_000, 40.0)], max_unit_seconds=4, clip_seconds=4)
    bins = balance_units(big, 4)
    assert len(bins) == 4 and all(len(b) in (2, 3) for b in bins)
    for b in bins:
        idx = sorted(u.unit_idx for u in b)
        assert idx == list(range(idx[0], idx[0] + len(idx)))
