"""GET /media and GET /thumb over a hand-made warehouse: ranges, content types, the videos version
behind the served index, ids that try to be paths, caching headers, and `serve.media` off."""

from __future__ import annotations

import http.client
import io
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pyarrow as pa
import pytest
import requests
from PIL import Image

from indexkit import CFG, FLAT_PARAMS, model_id, model_record
from servekit import running_server, server_config
from vidx.index import build_index, publish_index
from vidx.synth import write_video
from vidx.tables import delta, table_uri, write_data_file
from vidx_schemas import CLIPS_PARTITION_BY, CLIPS_SCHEMA, VIDEOS_PARTITION_BY, VIDEOS_SCHEMA

pytestmark = pytest.mark.integration
NOW = datetime(2026, 1, 2, tzinfo=UTC)
# name -> (file, status in the videos version the index was built with)
VIDEOS = {"vmp4": ("a.mp4", "ok"), "vmkv": ("sub/b.mkv", "ok"), "vlate": ("c.mp4", "failed"),
          "vgone": ("gone.mp4", "ok")}
CLIPS_PER_VIDEO = 2


def _jpeg(level: int) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((64, 64, 3), level, np.uint8)).save(out, "JPEG")
    return out.getvalue()


def _commit(warehouse: str, name: str, rows: list[dict], run: str) -> None:
    schema, part = (CLIPS_SCHEMA, CLIPS_PARTITION_BY) if name == "clips" else (VIDEOS_SCHEMA, VIDEOS_PARTITION_BY)
    uri = table_uri(warehouse, name)
    f = write_data_file(pa.Table.from_pylist(rows, schema=schema), table_uri=uri,
                        partition_values={"model_id": model_id()} if part else {}, name_hint=run)
    delta.commit_files([f], table_uri=uri, schema=schema, partition_by=part, app_id=f"test:{run}", txn_version=1,
                       metadata={"vidx.run_id": run, "vidx.batch": 1})


def _video_row(vid: str, uri: str, status: str, run: str) -> dict:
    return {"video_id": vid, "uri": uri, "size_bytes": 1, "mtime": NOW, "status": status, "model_id": model_id(),
            "n_clips": CLIPS_PER_VIDEO, "run_id": run, "indexed_at": NOW}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    archive, warehouse = root / "archive", str(root / "w")
    uris = {vid: str(archive / name) for vid, (name, _) in VIDEOS.items()}
    for name, _ in VIDEOS.values():
        write_video(archive / name, duration_s=3, fps=10, width=96, height=64, seed=len(name))
    clips, ids = [], []
    for v, vid in enumerate(VIDEOS):
        for i in range(CLIPS_PER_VIDEO):
            clips.append({"video_id": vid, "clip_idx": i, "start_s": 4.0 * i, "end_s": 4.0 * i + 4.0, "n_frames": 4,
                          "frame_ts": [4.0 * i], "model_id": model_id(), "embedding": [0.0] * 128, "run_id": "r1",
                          "thumbnail": _jpeg(40 * v + 10 * i)})
            ids.append({"faiss_id": len(ids), "video_id": vid, "clip_idx": i, "start_s": 4.0 * i,
                        "end_s": 4.0 * i + 4.0, "uri": uris[vid]})
    _commit(warehouse, "clips", clips, "r1")
    _commit(warehouse, "videos", [_video_row(v, uris[v], s, "r1") for v, (_, s) in VIDEOS.items()], "r1")
    # a later run re-embeds vlate successfully, but the served index was built before it
    _commit(warehouse, "videos", [_video_row("vlate", uris["vlate"], "ok", "r2")], "r2")
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((len(ids), 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    published = publish_index(build_index(vectors, CFG, FLAT_PARAMS), pa.Table.from_pylist(ids),
                              warehouse=warehouse, model_id=model_id(), table_version=0, model=model_record())
    (archive / VIDEOS["vgone"][0]).unlink()  # indexed, then removed from the archive
    return warehouse, published, {vid: Path(u) for vid, u in uris.items()}


@pytest.fixture(scope="module")
def served(site):
    warehouse, published, files = site
    with running_server(server_config(warehouse)) as server:
        server.wait_version(published.version)
        yield server, published, files


def _raw_get(url: str, path: str) -> int:
    """GET with the path sent byte for byte (requests/urllib3 would normalise `..` away)."""
    parsed = urlparse(url)
    conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def test_full_file_and_ranges(served):
    server, _, files = served
    data = files["vmp4"].read_bytes()
    full = server.get("/media/vmp4")
    assert full.status_code == 200 and full.content == data
    assert full.headers["content-type"] == "video/mp4" and full.headers["accept-ranges"] == "bytes"
    assert int(full.headers["content-length"]) == len(data)
    part = server.get("/media/vmp4", headers={"Range": "bytes=100-199"})
    assert part.status_code == 206 and part.content == data[100:200]
    assert part.headers["content-range"] == f"bytes 100-199/{len(data)}"
    assert part.headers["content-length"] == "100"
    tail = server.get("/media/vmp4", headers={"Range": "bytes=-10"})
    assert tail.status_code == 206 and tail.content == data[-10:]
    opened = server.get("/media/vmp4", headers={"Range": "bytes=0-"})  # what <video> sends first
    assert opened.status_code == 206 and opened.content == data
    mkv = server.get("/media/vmkv", headers={"Range": "bytes=0-3"})
    assert mkv.status_code == 206 and mkv.headers["content-type"] == "video/x-matroska"
    assert mkv.content == files["vmkv"].read_bytes()[:4]


@pytest.mark.parametrize("header", ["bytes=999999999-", "bytes=50-10", "bytes=x-y"])
def test_bad_ranges_are_416(served, header):
    server, _, files = served
    resp = server.get("/media/vmp4", headers={"Range": header})
    assert resp.status_code == 416
    assert resp.headers["content-range"] == f"bytes */{files['vmp4'].stat().st_size}"
    assert "error" in resp.json()


def test_stale_if_range_gets_the_whole_file(served):
    server, _, files = served
    etag = server.get("/media/vmp4", headers={"Range": "bytes=0-0"}).headers["etag"]
    same = server.get("/media/vmp4", headers={"Range": "bytes=0-0", "If-Range": etag})
    stale = server.get("/media/vmp4", headers={"Range": "bytes=0-0", "If-Range": '"old"'})
    assert same.status_code == 206 and stale.status_code == 200
    assert stale.content == files["vmp4"].read_bytes()


def test_only_ok_files_of_the_served_videos_version(served):
    server, _, _ = served
    # vlate failed in the videos version behind the index; a later version says ok: still 404
    assert server.get("/media/vlate").status_code == 404
    assert server.get("/media/vgone").status_code == 404  # recorded ok, no longer in the archive
    assert server.get("/media/unknown").status_code == 404
    head = requests.head(server.url + "/media/vmp4", timeout=30)
    assert head.status_code == 200 and not head.content and head.headers["accept-ranges"] == "bytes"


@pytest.mark.parametrize("path", [
    "/media/..", "/media/../../etc/passwd", "/media/%2e%2e%2f%2e%2e%2fetc%2fpasswd", "/media/%2Fetc%2Fpasswd",
    "/media//etc/passwd", "/media/..%2F..%2Fetc%2Fpasswd", "/media/vmp4%00", "/media/vmp4/../vmkv/..",
    "/media/%252e%252e%252f", "/media/vmp4%2F..%2F..%2Fa.mp4",
])
def test_paths_in_the_request_are_never_files(served, path):
    server, _, _ = served
    assert _raw_get(server.url, path) == 404


def test_the_uri_itself_is_not_an_id(served):
    server, _, files = served
    from urllib.parse import quote

    assert _raw_get(server.url, "/media/" + quote(str(files["vmp4"]), safe="")) == 404
    assert _raw_get(server.url, "/media/" + quote("file://" + str(files["vmp4"]), safe="")) == 404


def test_thumbnails_with_caching_headers(served):
    server, published, _ = served
    version = published.version
    pinned = server.get(f"/thumb/vmkv/1?v={version}")
    assert pinned.status_code == 200 and pinned.headers["content-type"] == "image/jpeg"
    assert "immutable" in pinned.headers["cache-control"] and version in pinned.headers["etag"]
    level = np.asarray(Image.open(io.BytesIO(pinned.content)).convert("L")).mean()
    assert level == pytest.approx(40 * 1 + 10 * 1, abs=3)  # vmkv is video 1, clip 1
    loose = server.get("/thumb/vmkv/1")
    assert loose.status_code == 200 and loose.headers["cache-control"] == "no-cache"
    again = server.get("/thumb/vmkv/1", headers={"If-None-Match": loose.headers["etag"]})
    assert again.status_code == 304 and not again.content
    for bad in ("/thumb/vmkv/7", "/thumb/vmkv/-1", "/thumb/vmkv/x", "/thumb/nope/0", "/thumb/vmkv/99999999999"):
        assert server.get(bad).status_code == 404, bad


def test_media_switched_off(site):
    warehouse, published, _ = site
    with running_server(server_config(warehouse, **{"serve.media": False})) as server:
        server.wait_version(published.version)
        assert server.get("/media/vmp4").status_code == 404
        assert server.get("/thumb/vmp4/0").status_code == 200  # thumbnails stay


def test_an_index_without_tables_has_no_thumbnails_or_media(tmp_path):
    from indexkit import publish_tiny

    published, _ = publish_tiny(tmp_path, n=200)  # ids only: no clips or videos table behind it
    with running_server(server_config(tmp_path)) as server:
        server.wait_version(published.version)
        assert server.get("/thumb/vid000/0").status_code == 404
        assert server.get("/media/vid000").status_code == 404
