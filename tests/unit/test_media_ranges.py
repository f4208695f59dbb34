"""HTTP Range parsing for GET /media, content types, and ranged streaming over pyarrow/fsspec filesystems."""

from __future__ import annotations

import asyncio

import fsspec
import pyarrow.fs as pafs
import pytest

from vidx.serve.ranges import ByteRange, RangeNotSatisfiable, content_type, parse_range, stream_file


@pytest.mark.parametrize(("header", "size", "expected"), [
    (None, 100, None),
    ("bytes=0-", 100, ByteRange(0, 99)),
    ("bytes=10-19", 100, ByteRange(10, 19)),
    ("bytes=90-500", 100, ByteRange(90, 99)),      # clipped to the file
    ("bytes=-10", 100, ByteRange(90, 99)),         # the last 10 bytes
    ("bytes=-500", 100, ByteRange(0, 99)),
    (" bytes = 5-5 ", 100, ByteRange(5, 5)),
    ("items=0-5", 100, None),                      # unknown unit: ignored, whole file
    ("bytes=0-1,5-6", 100, None),                  # multi-range: whole file (allowed by RFC 9110)
])
def test_parse_range(header, size, expected):
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(("header", "size"), [
    ("bytes=100-", 100), ("bytes=100-200", 100), ("bytes=20-10", 100), ("bytes=-0", 100), ("bytes=abc", 100),
    ("bytes=-", 100), ("bytes=1-x", 100), ("bytes=0-", 0), ("bytes=--5", 100), ("bytes=5", 100),
])
def test_unsatisfiable_or_malformed_ranges(header, size):
    with pytest.raises(RangeNotSatisfiable):
        parse_range(header, size)


def test_content_range_and_length():
    part = ByteRange(10, 19)
    assert part.length == 10 and part.content_range(100) == "bytes 10-19/100"


@pytest.mark.parametrize(("uri", "kind"), [
    ("/a/b.mp4", "video/mp4"), ("s3://bucket/x/y.MOV", "video/quicktime"), ("/a/b.webm", "video/webm"),
    ("/a/b.mkv", "video/x-matroska"), ("/a/c.avi", "video/x-msvideo"), ("/a/d.ts", "video/mp2t"),
    ("/a/e.bin", "application/octet-stream"),
])
def test_content_type(uri, kind):
    assert content_type(uri) == kind


def _collect(fs: pafs.FileSystem, path: str, start: int, length: int) -> bytes:
    async def run() -> bytes:
        return b"".join([chunk async for chunk in stream_file(fs, path, start, length)])
    return asyncio.run(run())


def test_stream_reads_only_the_range_through_fsspec_memory(monkeypatch):
    from vidx.serve import ranges

    data = bytes(range(256)) * 4096  # 1 MiB
    mem = fsspec.filesystem("memory")
    mem.pipe("/vids/a.mp4", data)
    monkeypatch.setattr(ranges, "CHUNK_BYTES", 64 * 1024)
    fs = pafs.PyFileSystem(pafs.FSSpecHandler(mem))
    assert _collect(fs, "/vids/a.mp4", 1000, 300_000) == data[1000:301_000]
    assert _collect(fs, "/vids/a.mp4", len(data) - 5, 5) == data[-5:]


def test_stream_local_file(tmp_path):
    path = tmp_path / "v.mp4"
    path.write_bytes(b"0123456789" * 10)
    assert _collect(pafs.LocalFileSystem(), str(path), 95, 5) == b"56789"
