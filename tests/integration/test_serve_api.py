"""POST /search (every query kind, filters, bad requests), /healthz, /readyz, /metrics over an IVF-PQ index."""

from __future__ import annotations

import base64
import json
import struct
import zlib

import numpy as np
import pytest
import requests

from indexkit import CLIP_S, IMAGE_COLOURS, TEXT_PROBES, image, model_id, png_bytes, publish_tiny
from servekit import running_server, server_config

pytestmark = pytest.mark.integration

N = 10_000
N_VIDEOS = 20  # clip i is clip i // 20 of video i % 20 (indexkit.ids_table)
MAX_K = 50


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    w = tmp_path_factory.mktemp("serve-api")
    published, vectors = publish_tiny(w, n=N, ivf=True)
    with running_server(server_config(w, **{"serve.max_k": MAX_K})) as server:
        server.wait_version(published.version)
        yield server, published, vectors


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_health_ready_and_manifest_facts(served):
    server, published, _ = served
    assert server.get("/healthz").json() == {"status": "ok"}
    ready = server.get("/readyz")
    assert ready.status_code == 200
    status = ready.json()
    assert status["ready"] and status["index_version"] == published.version
    assert status["model_id"] == model_id() and status["vectors"] == N and status["dim"] == 128
    assert status["factory"] == "IVF32,PQ8x8" and status["reload_error"] is None


def test_vector_query(served):
    server, published, vectors = served
    out = server.search(vector=vectors[1234].tolist(), k=7)
    assert out["index_version"] == published.version and out["model_id"] == model_id()
    results = out["results"]
    assert len(results) == 7
    assert set(results[0]) == {"video_id", "uri", "clip_idx", "start_s", "end_s", "score"}
    assert (results[0]["video_id"], results[0]["clip_idx"]) == ("vid014", 1234 // N_VIDEOS)
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True)


def test_text_image_and_clip_queries_find_their_planted_clip(served):
    server, _, _ = served
    for row, text in enumerate(TEXT_PROBES):
        top = server.search(text=text, k=3)["results"][0]
        assert (top["video_id"], top["clip_idx"]) == (f"vid{row:03d}", 0), text
    for i, colour in enumerate(IMAGE_COLOURS):
        row = len(TEXT_PROBES) + i
        for payload in (b64(png_bytes(image(colour))), "data:image/png;base64," + b64(png_bytes(image(colour)))):
            top = server.search(image=payload, k=3)["results"][0]
            assert (top["video_id"], top["clip_idx"]) == (f"vid{row:03d}", 0), colour
    top = server.search(clip={"video_id": "vid007", "clip_idx": 42}, k=5)["results"][0]
    assert (top["video_id"], top["clip_idx"], top["start_s"]) == ("vid007", 42, 42 * CLIP_S)


@pytest.mark.parametrize("filters", [
    {"uri_prefix": "/archive/cats/"},
    {"video_id": "vid003"},
    {"video_id": "vid003", "min_start_s": 100.0, "max_end_s": 200.0},
    # ~12 matching clips spread over many IVF lists: nprobe 1 must widen to find 10 of them.
    {"video_id": "vid011", "min_start_s": 400.0, "max_end_s": 448.0, "nprobe": 1},
])
def test_filters_return_k_matching_results(served, filters):
    server, _, vectors = served
    for q in (0, 777, 4321):
        results = server.search(vector=vectors[q].tolist(), k=10, **filters)["results"]
        assert len(results) == 10, (filters, q)
        for r in results:
            assert r["uri"].startswith(filters.get("uri_prefix", ""))
            assert r["video_id"] == filters.get("video_id", r["video_id"])
            assert r["start_s"] >= filters.get("min_start_s", 0.0)
            assert r["end_s"] <= filters.get("max_end_s", 1e9)


def test_filters_with_few_or_no_matches(served):
    server, _, vectors = served
    few = server.search(vector=vectors[5].tolist(), k=10, video_id="vid002", min_start_s=8.0, max_end_s=20.0)
    assert sorted(r["clip_idx"] for r in few["results"]) == [2, 3, 4]
    assert server.search(vector=vectors[5].tolist(), uri_prefix="gs://")["results"] == []
    assert server.search(vector=vectors[5].tolist(), video_id="nope")["results"] == []


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def tiny_png_header(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height: decoders learn the size before any pixel."""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _chunk(b"IEND", b""))


def _vec(value: float = 0.1, n: int = 128) -> list[float]:
    return [value] * n


BAD_REQUESTS = [
    (b"{not json", 400, "not valid JSON"),
    (b"", 400, "empty"),
    (b"\xff\xfe{", 400, "not valid JSON"),
    (b"[" * 100_000, 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"vector": [NaN]}', 400, "not valid JSON"),
    ({"text": ""}, 400, "non-empty"),
    ({"text": "   "}, 400, "non-empty"),
    ({}, 400, "exactly one"),
    ({"text": "a", "vector": _vec()}, 400, "exactly one"),
    ({"image": "x", "clip": {"video_id": "vid001", "clip_idx": 0}}, 400, "exactly one"),
    ({"vector": _vec(n=5)}, 400, "128-d"),
    ({"vector": _vec(0.0)}, 400, "not all zeros"),
    ({"vector": _vec(1e308)}, 200, ""),  # huge but finite: valid, normalised without overflow
    (b'{"vector": [' + b",".join([b"1e999"] * 128) + b"]}", 400, "finite"),
    ({"vector": "abc"}, 400, "vector"),
    ({"text": "a", "k": 0}, 400, "between 1 and 50"),
    ({"text": "a", "k": -3}, 400, "between 1 and 50"),
    ({"text": "a", "k": MAX_K + 1}, 400, "between 1 and 50"),
    ({"text": "a", "k": 10**30}, 400, "between 1 and 50"),
    ({"text": "a", "k": "ten"}, 400, "k"),
    ({"text": "a", "nprobe": 0}, 400, "nprobe"),
    ({"text": "a", "nprobe": 10**30}, 400, "nprobe"),
    ({"text": "a", "topk": 3}, 400, "topk"),
    ({"image": "!!!not base64!!!"}, 400, "base64"),
    ({"image": b64(b"definitely not an image")}, 400, "cannot be decoded"),
    ({"image": b64(png_bytes(image((1, 2, 3)))[:60])}, 400, "cannot be decoded"),
    ({"image": b64(tiny_png_header(7000, 7000))}, 400, "at most"),
    ({"image": b64(tiny_png_header(30000, 30000))}, 400, "cannot be decoded"),
    ({"clip": {"video_id": "nope", "clip_idx": 0}}, 404, "not in index"),
    ({"clip": {"video_id": "vid001", "clip_idx": 10**6}}, 404, "not in index"),
    ({"clip": {"video_id": "vid001"}}, 400, "clip_idx"),
    ({"clip": {"video_id": "vid001", "clip_idx": -1}}, 400, "clip_idx"),
]


@pytest.mark.parametrize(("body", "status", "fragment"), BAD_REQUESTS)
def test_bad_requests_get_4xx_with_message(served, body, status, fragment):
    server, _, _ = served
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = requests.post(server.url + "/search", data=data, timeout=30)
    assert resp.status_code == status, resp.text
    if status != 200:
        assert fragment in resp.json()["error"]


def test_oversized_bodies_get_413(served):
    server, _, _ = served
    big = json.dumps({"text": "x" * 1_200_000}).encode()
    resp = requests.post(server.url + "/search", data=big, timeout=30)
    assert resp.status_code == 413 and "max_body_bytes" in resp.json()["error"]
    # Chunked transfer has no Content-Length: the limit applies while the body streams in.
    chunked = requests.post(server.url + "/search", data=(big[i:i + 65536] for i in range(0, len(big), 65536)),
                            timeout=30)
    assert chunked.status_code == 413


def test_wrong_method_and_path(served):
    server, _, _ = served
    assert server.get("/search").status_code == 405
    missing = server.get("/nope")
    assert missing.status_code == 404 and "error" in missing.json()


def test_metrics(served):
    server, published, _ = served
    server.search(vector=np.ones(128).tolist(), k=3)
    requests.post(server.url + "/search", data=b"{", timeout=30)
    text = server.get("/metrics").text
    assert 'vidx_requests_total{endpoint="/search",method="POST",status="200"}' in text
    assert 'vidx_requests_total{endpoint="/search",method="POST",status="400"}' in text
    assert 'vidx_request_duration_seconds_bucket{endpoint="/search",le="0.005"}' in text
    assert f'vidx_index_info{{model_id="{model_id()}",version="{published.version}"}} 1.0' in text
    assert f"vidx_index_vectors {float(N)}" in text
    assert "vidx_index_ready 1.0" in text and "vidx_index_reload_failing 0.0" in text


def test_selective_filter_widens_nprobe(served):
    """At the index's nprobe the probed lists hold fewer than k matching clips; the server widens."""
    import faiss

    from vidx.serve.rows import RowFilter

    server, _, vectors = served
    index = server.holder.require()
    flt = RowFilter(video_id="vid011", min_start_s=400.0, max_end_s=448.0)
    mask = index.rows.mask(flt)
    bitmap = np.packbits(mask, bitorder="little")
    selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bitmap))
    narrow = index.searcher.search_vectors(vectors[:1], 10, 1, selector=selector)[0]
    assert len(narrow) < 10 <= int(mask.sum())
    assert len(index.search(vectors[0], 10, nprobe=1, flt=flt)) == 10
