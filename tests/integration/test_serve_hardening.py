"""Query-server hardening, through a real server on 127.0.0.1: the text nprobe on both query endpoints,
image formats and the per-request pixel budget, the nprobe cap, the concurrency limit (503 +
Retry-After) and readable 413s for oversized bodies (also chunked, also with `Connection: close`)."""

from __future__ import annotations

import base64
import io
import json
import socket
import threading
from typing import Any
from urllib.parse import urlparse

import pytest
import requests

import vidx.serve.query as query_mod
from indexkit import TEXT_PROBES, image, publish_tiny
from servekit import running_server, server_config

pytestmark = pytest.mark.integration

MAX_PIXELS = 5_000  # a 64x64 query image (4,096 pixels) fits, a 96x96 one (9,216) does not
MAX_NPROBE = 8
MAX_BODY = 1_000_000
WAIT_S = 30  # every wait in this module is bounded


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    w = tmp_path_factory.mktemp("serve-hardening")
    published, vectors = publish_tiny(w, n=10_000, ivf=True)
    cfg = server_config(w, **{"serve.max_image_pixels": MAX_PIXELS, "serve.max_nprobe": MAX_NPROBE,
                              "serve.max_concurrent_requests": 1, "serve.max_body_bytes": MAX_BODY})
    with running_server(cfg) as server:
        server.wait_version(published.version)
        yield server, vectors


@pytest.fixture
def nprobes(monkeypatch) -> list[int | None]:
    """Every nprobe the searcher passes to faiss (vidx.index.build.search), in call order."""
    used: list[int | None] = []
    real = query_mod.search

    def spy(index, params, queries, k, nprobe=None, **kw):  # type: ignore[no-untyped-def]
        used.append(nprobe)
        return real(index, params, queries, k, nprobe, **kw)

    monkeypatch.setattr(query_mod, "search", spy)
    return used


def encoded(fmt: str, size: int = 64) -> str:
    buf = io.BytesIO()
    image((200, 40, 40), size=size).save(buf, format=fmt)
    return base64.b64encode(buf.getvalue()).decode()


def knn(server, **body: Any) -> requests.Response:
    # clip-retrieval's client posts json.dumps(body) without a Content-Type header
    return requests.post(server.url + "/knn-service", data=json.dumps({"num_images": 3, **body}), timeout=WAIT_S)


def test_text_nprobe_factor_on_search_and_knn_service(served, nprobes):
    server, vectors = served
    searcher = server.holder.require().searcher
    tuned, nlist = int(searcher.manifest["nprobe"]), int(searcher.loaded.params.nlist)
    assert 1 <= tuned < nlist  # room for a text nprobe above the tuned one
    text = min(nlist, max(round(query_mod.TEXT_NPROBE_FACTOR * tuned), query_mod.TEXT_NPROBE_MIN))
    assert text > tuned
    server.search(text=TEXT_PROBES[0], k=3)
    server.search(vector=vectors[7].tolist(), k=3)
    assert knn(server, text=TEXT_PROBES[0]).status_code == 200
    assert knn(server, embedding_input=vectors[7].tolist()).status_code == 200
    assert knn(server, image=encoded("PNG")).status_code == 200
    server.search(text=TEXT_PROBES[0], k=3, nprobe=3)  # a request's own nprobe is used as given
    assert nprobes == [text, tuned, text, tuned, tuned, 3]
    # The factor and the floor, not constants, are what both endpoints apply.
    cases = [(2.0, 1, min(nlist, 2 * tuned)), (1.0, tuned + 1, tuned + 1), (1.0, 10 * nlist, nlist)]
    for factor, floor, expected in cases:
        nprobes.clear()
        searcher.text_nprobe_factor, searcher.text_nprobe_min = factor, floor
        try:
            server.search(text=TEXT_PROBES[1], k=3)
            assert knn(server, text=TEXT_PROBES[1]).status_code == 200
        finally:
            searcher.text_nprobe_factor = query_mod.TEXT_NPROBE_FACTOR
            searcher.text_nprobe_min = query_mod.TEXT_NPROBE_MIN
        assert nprobes == [expected, expected], (factor, floor)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_png_jpeg_webp_images_are_accepted(served, fmt):
    server, _ = served
    assert len(server.search(image=encoded(fmt), k=2)["results"]) == 2
    assert knn(server, image=encoded(fmt)).status_code == 200


@pytest.mark.parametrize("fmt", ["GIF", "BMP", "TIFF", "ICO", "PPM"])
def test_other_image_formats_are_refused(served, fmt):
    server, _ = served
    for resp in (server.post("/search", {"image": encoded(fmt)}), knn(server, image=encoded(fmt))):
        assert resp.status_code == 400, resp.text
        assert "PNG, JPEG or WebP" in resp.json()["error"]


def test_decoded_pixels_are_bounded_per_request_by_config(served):
    server, _ = served
    for resp in (server.post("/search", {"image": encoded("PNG", size=96)}), knn(server, image=encoded("JPEG", 96))):
        assert resp.status_code == 400, resp.text
        assert "96x96" in resp.json()["error"] and "serve.max_image_pixels" in resp.json()["error"]


def test_request_nprobe_is_capped_by_config(served):
    server, vectors = served
    assert len(server.search(vector=vectors[1].tolist(), k=2, nprobe=MAX_NPROBE)["results"]) == 2
    resp = server.post("/search", {"vector": vectors[1].tolist(), "nprobe": MAX_NPROBE + 1})
    assert resp.status_code == 400 and "serve.max_nprobe" in resp.json()["error"]


def test_concurrency_limit_answers_503_with_retry_after(served, monkeypatch):
    """One request held inside the search fills the server (serve.max_concurrent_requests = 1)."""
    server, vectors = served
    entered, release = threading.Event(), threading.Event()
    real = query_mod.search

    def blocked(*args, **kw):  # type: ignore[no-untyped-def]
        entered.set()
        release.wait(WAIT_S)
        return real(*args, **kw)

    monkeypatch.setattr(query_mod, "search", blocked)
    first: dict[str, Any] = {}
    holder = threading.Thread(target=lambda: first.update(resp=server.post("/search", {"vector": vectors[2].tolist()})))
    holder.start()
    try:
        assert entered.wait(WAIT_S), "the first request never reached the search"
        busy = server.post("/search", {"vector": vectors[3].tolist()})
        assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
        assert "serve.max_concurrent_requests" in busy.json()["error"]
        assert knn(server, text="x").status_code == 503  # every route shares the limit
        for path in ("/healthz", "/readyz", "/metrics"):  # never limited: a busy server is alive
            assert server.get(path).status_code == 200, path
        # the page and its assets are I/O, not query CPU: a busy server still shows the page
        # (and plays media: test_serve_media), so viewers never lock queries out or the reverse
        assert server.get("/").status_code == 200
    finally:
        release.set()
        holder.join(WAIT_S)
    assert first["resp"].status_code == 200
    monkeypatch.setattr(query_mod, "search", real)
    assert server.post("/search", {"vector": vectors[3].tolist()}).status_code == 200  # the slot is free again
    assert 'vidx_requests_total{endpoint="/search",method="POST",status="503"} 1.0' in server.get("/metrics").text


def raw_post(url: str, body: bytes, *, chunked: bool, expect_continue: bool = False) -> tuple[str | None, bytes]:
    """POST with `Connection: close` over a plain socket: (error while sending or None, the response)."""
    u = urlparse(url)
    head = ["POST /search HTTP/1.1", f"Host: {u.hostname}", "Connection: close",
            "Transfer-Encoding: chunked" if chunked else f"Content-Length: {len(body)}"]
    if expect_continue:
        head.append("Expect: 100-continue")
    with socket.create_connection((u.hostname, u.port), timeout=WAIT_S) as sock:
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
        error = None
        if not expect_continue:
            try:
                for i in range(0, len(body), 65_536):
                    part = body[i:i + 65_536]
                    sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n" if chunked else part)
                if chunked:
                    sock.sendall(b"0\r\n\r\n")
            except OSError as exc:  # the server closed with our body unread: a reset
                error = f"{type(exc).__name__} while sending"
        reply = b""
        while chunk := sock.recv(65_536):
            reply += chunk
    return error, reply


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_oversized_body_gets_a_readable_413_not_a_reset(served, chunked):
    """20 MB (more than the socket buffers hold) to a 1 MB limit, the connection to be closed after the
    answer: the server reads and drops the body, so the client sends it all and then reads the 413."""
    server, _ = served
    body = json.dumps({"text": "x" * 20_000_000}).encode()
    error, reply = raw_post(server.url, body, chunked=chunked)
    assert error is None
    head, _, payload = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), reply[:200]
    assert "serve.max_body_bytes" in json.loads(payload)["error"]


def test_oversized_body_awaiting_100_continue_is_refused_unsent(served):
    server, _ = served
    error, reply = raw_post(server.url, b"x" * (MAX_BODY + 1), chunked=False, expect_continue=True)
    assert error is None and reply.startswith(b"HTTP/1.1 413") and b"100 Continue" not in reply
