"""vidx.storage: URIs that keep their authority, object-store options for every client, and the
conditional writes (put_if_absent / replace_if_match) on local disk and on an S3 server (moto)."""

from __future__ import annotations

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from vidx import storage
from vidx.archive import list_archive
from vidx.errors import ConcurrentUpdateError, ConfigError
from vidx.index.pointer import read_current, swap_current
from vidx.tables.lock import WarehouseLock, WarehouseLockedError

RACERS = 8


@pytest.fixture
def s3(s3_server, monkeypatch):
    """The S3 server through `storage.options` alone: no AWS_* variable in the environment."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    storage.configure(s3_server.options())
    yield s3_server
    storage.configure({})


def test_child_uri_keeps_scheme_authority_and_prefix():
    assert storage.child_uri("hdfs://namenode:8020/videos", "/videos", "/videos/a/b.mp4") == \
        "hdfs://namenode:8020/videos/a/b.mp4"
    assert storage.child_uri("s3://bucket/arch", "bucket/arch", "bucket/arch/x.mp4") == "s3://bucket/arch/x.mp4"
    assert storage.child_uri("gs://b/", "b", "b/x.mp4") == "gs://b/x.mp4"
    assert storage.child_uri("s3://bucket/one.mp4", "bucket/one.mp4", "bucket/one.mp4") == "s3://bucket/one.mp4"


def test_listing_keeps_the_hdfs_namenode(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.mp4").write_bytes(b"x" * 10)
    (tmp_path / "b.mkv").write_bytes(b"y")
    # The HDFS filesystem lists absolute paths without the namenode, as pyarrow's HadoopFileSystem does.
    monkeypatch.setattr("vidx.archive.listing.filesystem", lambda uri: (pafs.LocalFileSystem(), str(tmp_path)))
    files = list_archive("hdfs://namenode:8020/archive", [".mp4", ".mkv"])
    assert [f.uri for f in files] == ["hdfs://namenode:8020/archive/b.mkv", "hdfs://namenode:8020/archive/sub/a.mp4"]


def test_options_translate_for_every_client():
    opts = {"aws_endpoint_url": "http://127.0.0.1:9000", "aws_access_key_id": "k", "aws_secret_access_key": "s",
            "aws_region": "eu-west-1", "aws_allow_http": "true"}
    assert storage.pyarrow_s3_kwargs(opts) == {"access_key": "k", "secret_key": "s", "region": "eu-west-1",
                                               "scheme": "http", "endpoint_override": "127.0.0.1:9000"}
    assert storage.fsspec_kwargs("s3", opts) == {"key": "k", "secret": "s", "endpoint_url": "http://127.0.0.1:9000",
                                                 "client_kwargs": {"region_name": "eu-west-1"}}
    assert storage.boto3_kwargs(opts) == {"endpoint_url": "http://127.0.0.1:9000", "aws_access_key_id": "k",
                                          "aws_secret_access_key": "s", "region_name": "eu-west-1"}
    assert storage.fsspec_kwargs("gs", {"token": "anon", "aws_region": "x"}) == {"token": "anon"}
    # scheme-less endpoint: AWS_ALLOW_HTTP decides
    assert storage.pyarrow_s3_kwargs({"endpoint": "minio:9000", "allow_http": "true"})["scheme"] == "http"
    assert storage.pyarrow_s3_kwargs({"endpoint": "minio:9000"})["scheme"] == "https"


def test_delta_commits_by_conditional_put_and_refuse_unsafe_rename(monkeypatch):
    monkeypatch.delenv("AWS_S3_ALLOW_UNSAFE_RENAME", raising=False)
    monkeypatch.delenv("AWS_S3_LOCKING_PROVIDER", raising=False)
    storage.configure({"aws_region": "us-east-1"})
    try:
        assert storage.delta_options("s3://b/t") == {"aws_region": "us-east-1", "conditional_put": "etag"}
        assert storage.delta_options("/local/t") == {"aws_region": "us-east-1"}
        monkeypatch.setenv("AWS_S3_ALLOW_UNSAFE_RENAME", "true")
        with pytest.raises(ConfigError, match="AWS_S3_ALLOW_UNSAFE_RENAME"):
            storage.delta_options("s3://b/t")
    finally:
        storage.configure({})


def test_config_storage_options_reach_storage(tmp_path):
    from vidx.config import load_config

    cfg = load_config(env={"VIDX_STORAGE__OPTIONS": "{aws_region: eu-west-2, aws_allow_http: true}"})
    assert cfg.storage.options == {"aws_region": "eu-west-2", "aws_allow_http": "true"}
    assert storage.options() == {"aws_region": "eu-west-2", "aws_allow_http": "true"}
    load_config(env={})
    assert storage.options() == {}


def _race(fn, n=RACERS):
    barrier = threading.Barrier(n)

    def go(i):
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(go, range(n)))


def _conditional_semantics(uri: str) -> None:
    assert storage.read_tagged(uri) is None
    tag = storage.put_if_absent(uri, b"one")
    assert tag is not None and storage.read_tagged(uri) == storage.Tagged(b"one", tag)
    assert storage.put_if_absent(uri, b"two") is None
    new = storage.replace_if_match(uri, b"three", tag)
    assert new is not None and new != tag
    assert storage.replace_if_match(uri, b"four", tag) is None  # stale tag: refused
    assert storage.read_tagged(uri).data == b"three"
    assert storage.replace_if_match(uri + "-missing", b"x", new) is None


def _conditional_races(base: str) -> None:
    created = _race(lambda i: storage.put_if_absent(f"{base}/race-create", f"writer {i}".encode()))
    assert sum(t is not None for t in created) == 1
    held = storage.read_tagged(f"{base}/race-create")
    assert held.data == f"writer {next(i for i, t in enumerate(created) if t)}".encode()
    replaced = _race(lambda i: storage.replace_if_match(f"{base}/race-create", f"next {i}".encode(), held.tag))
    assert sum(t is not None for t in replaced) == 1


def test_conditional_writes_local(tmp_path):
    _conditional_semantics(str(tmp_path / "obj.json"))
    _conditional_races(str(tmp_path))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["obj.json", "race-create"]  # no temp debris


def test_conditional_writes_s3(s3):
    bucket = s3.new_bucket("cond")
    mark = s3.mark()
    _conditional_semantics(f"s3://{bucket}/obj.json")
    _conditional_races(f"s3://{bucket}/r")
    puts = [r for r in s3.since(mark) if r.method == "PUT" and r.bucket == bucket and r.key]
    # every write was conditional: If-None-Match for a create, If-Match (the ETag) for a replace
    assert puts and all(r.if_none_match == "*" or r.if_match for r in puts)
    assert {r.status for r in puts} == {200, 412, 404}


def test_s3_through_options_without_environment(s3):
    """storage.options alone reach pyarrow (write, list, read) and deltalake (commit, read)."""
    from vidx.tables import delta
    from vidx.tables.files import write_data_file

    bucket = s3.new_bucket("opts")
    storage.write_bytes_atomic(f"s3://{bucket}/a/b.txt", b"hello")
    assert storage.read_bytes(f"s3://{bucket}/a/b.txt") == b"hello"
    table_uri = f"s3://{bucket}/tables/t"
    data = write_data_file(pa.table({"video_id": ["v1", "v2"], "n": [1, 2]}), table_uri=table_uri,
                           partition_values={}, name_hint="t")
    delta.commit_files([data], table_uri=table_uri, schema=pa.schema([("video_id", pa.string()), ("n", pa.int64())]),
                       partition_by=[], app_id="app", txn_version=1)
    assert delta.read_table(table_uri)["n"].to_pylist() == [1, 2]
    assert delta.committed_txn_version(table_uri, "app") == 1


def test_lease_race_on_s3_has_one_winner(s3):
    bucket = s3.new_bucket("lease")
    locks = [WarehouseLock(f"s3://{bucket}/w", f"run-{i}", heartbeat_s=3600) for i in range(RACERS)]

    def take(i):
        try:
            locks[i].acquire()
            return True
        except WarehouseLockedError:
            return False

    won = _race(take)
    assert sum(won) == 1
    winner = locks[won.index(True)]
    assert json.loads(storage.read_bytes(winner.uri))["run_id"] == winner.run_id
    winner.release()
    # released: the next run takes it, by a conditional replace
    nxt = WarehouseLock(f"s3://{bucket}/w", "run-next", heartbeat_s=3600)
    nxt.acquire()
    nxt.release()


def test_stale_heartbeat_loses_the_lease(tmp_path):
    old = WarehouseLock(str(tmp_path), "old-run", heartbeat_s=3600)
    old.acquire()
    taker = WarehouseLock(str(tmp_path), "new-run", stale_after_s=0.0, heartbeat_s=3600)
    taker.acquire()  # old's heartbeat counts as stale: taken over
    old._tag = storage.replace_if_match(old.uri, old._record(), old._tag or "")  # what its next beat does
    assert old._tag is None  # the conditional write fails: old learns it lost the lease
    old.release()  # and never releases new-run's lease
    assert json.loads(storage.read_bytes(taker.uri))["run_id"] == "new-run"
    taker.release()


def test_current_pointer_refuses_a_stale_move(s3, tmp_path):
    for root in (str(tmp_path / "m"), f"s3://{s3.new_bucket('ptr')}/indexes/m"):
        seen = read_current(root)
        assert seen == (None, None)
        swap_current(root, "v1", expected=seen)
        first = read_current(root)
        assert first[0] == "v1"
        swap_current(root, "v2", expected=first)
        with pytest.raises(ConcurrentUpdateError, match="moved from v1 to v2"):
            swap_current(root, "v3", expected=first)  # decided on a CURRENT that has moved since
        with pytest.raises(ConcurrentUpdateError):
            swap_current(root, "v3", expected=seen)  # "first publish", but it exists
        assert read_current(root)[0] == "v2"
