"""The search page's server side over the embedded sample archive: /search with group=moments and
its filters, `vidx search --moments`, thumbnails written by the embed stage, GET / and its assets,
and no CORS anywhere."""

from __future__ import annotations

import io
import json

import pytest
import requests
from PIL import Image

from servekit import running_server, server_config
from vidx.cli import main

pytestmark = pytest.mark.integration
MOMENT_KEYS = {"video_id", "uri", "start_s", "end_s", "score", "best_clip_idx", "n_clips"}


@pytest.fixture(scope="module")
def page(embedded, test_config):
    _, build = embedded
    with running_server(server_config(test_config.warehouse)) as server:
        server.wait_version(build.published.version)
        yield server, build.published


def _overlap(a: dict, b: dict) -> bool:
    return a["video_id"] == b["video_id"] and a["start_s"] < b["end_s"] and b["start_s"] < a["end_s"]


def test_moments_shape_order_and_k(page):
    server, published = page
    clips = server.search(text="two red circles", k=5)
    assert "group" not in clips and set(clips["results"][0]) == {"video_id", "uri", "clip_idx", "start_s", "end_s",
                                                                 "score"}  # the default keeps today's shape
    out = server.search(text="two red circles", k=5, group="moments")
    assert out["group"] == "moments" and out["index_version"] == published.version
    moments = out["results"]
    assert len(moments) == 5 and all(set(m) == MOMENT_KEYS for m in moments)
    scores = [m["score"] for m in moments]
    assert scores == sorted(scores, reverse=True)
    assert moments[0]["score"] == pytest.approx(clips["results"][0]["score"])  # the best clip leads its moment
    for m in moments:
        assert m["end_s"] > m["start_s"] and m["n_clips"] >= 1
        assert m["start_s"] <= 4.0 * m["best_clip_idx"] < m["end_s"]
    assert not any(_overlap(a, b) for i, a in enumerate(moments) for b in moments[i + 1:])
    # k counts moments, not clips
    n_clips = published.manifest["count"]
    assert len(server.search(text="two red circles", k=15, group="moments")["results"]) == 15
    # asking for more than the archive holds: every clip ends up in exactly one moment
    every = server.search(text="two red circles", k=n_clips + 5, group="moments")["results"]
    assert len(every) < n_clips and sum(m["n_clips"] for m in every) == n_clips


def test_moment_filters_are_applied_server_side(page):
    server, _ = page
    out = server.search(text="a blue square", k=10, group="moments", uri_prefix=_nested_prefix(server),
                        min_start_s=4.0, max_end_s=12.0)["results"]
    assert out, "the nested folder holds clips between 4 and 12 s"
    for m in out:
        assert "/nested/" in m["uri"] and m["start_s"] >= 4.0 and m["end_s"] <= 12.0
    clips = server.search(text="a blue square", k=10, uri_prefix=_nested_prefix(server), min_start_s=4.0,
                          max_end_s=12.0)["results"]
    assert clips and all("/nested/" in c["uri"] and c["start_s"] >= 4.0 and c["end_s"] <= 12.0 for c in clips)
    assert server.search(text="a blue square", k=5, group="moments", uri_prefix="/nowhere/")["results"] == []
    bad = server.post("/search", {"text": "x", "group": "scenes"})
    assert bad.status_code == 400 and "group" in bad.json()["error"]


def _nested_prefix(server) -> str:
    uris = {r["uri"] for r in server.search(text="a", k=50)["results"]}
    nested = sorted(u for u in uris if "/nested/" in u)
    return nested[0].split("/nested/")[0] + "/nested/"


def test_more_like_this_is_a_clip_query_with_moments(page):
    server, _ = page
    first = server.search(text="two red circles", k=3, group="moments")["results"][0]
    like = server.search(clip={"video_id": first["video_id"], "clip_idx": first["best_clip_idx"]}, k=3,
                         group="moments")["results"]
    assert like[0]["video_id"] == first["video_id"] and like[0]["score"] == pytest.approx(1.0, abs=1e-3)


def test_thumbnails_from_the_embed_stage_are_served(page):
    server, published = page
    for m in server.search(text="two red circles", k=6, group="moments")["results"]:
        resp = server.get(f"/thumb/{m['video_id']}/{m['best_clip_idx']}?v={published.version}")
        assert resp.status_code == 200 and resp.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(resp.content)).size == (64, 64)  # vidx-tiny decodes 64 px squares


def test_media_of_an_indexed_video_plays_in_ranges(page, sample_archive):
    server, _ = page
    hit = server.search(text="two red circles", k=1, group="moments")["results"][0]
    resp = server.get(f"/media/{hit['video_id']}", headers={"Range": "bytes=0-1023"})
    with open(hit["uri"], "rb") as fh:
        assert resp.status_code == 206 and resp.content == fh.read(1024)


def test_cli_search_moments(embedded, test_config, capsys):
    capsys.readouterr()
    assert main(["search", "two red circles", "--moments", "-k", "4", "--json", "--warehouse",
                 test_config.warehouse]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 4 and all(set(m) == MOMENT_KEYS for m in out)
    assert [m["score"] for m in out] == sorted((m["score"] for m in out), reverse=True)
    assert main(["search", "two red circles", "--moments", "-k", "2", "--warehouse", test_config.warehouse]) == 0
    assert "best clip" in capsys.readouterr().out


def test_page_and_assets(page):
    server, _ = page
    html = server.get("/")
    assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in html.headers["content-security-policy"]
    assert '<script src="/static/app.js"' in html.text and "/static/app.css" in html.text
    js = server.get("/static/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert '"Content-Type": "application/json"' in js.text  # every POST of the page says JSON
    assert server.get("/static/app.css").headers["content-type"].startswith("text/css")
    assert server.get("/", headers={"If-None-Match": html.headers["etag"]}).status_code == 304
    for bad in ("/static/index.html", "/static/../app.py", "/static/%2e%2e%2fstate.py", "/static/nope.js"):
        assert server.get(bad).status_code == 404, bad


def test_same_origin_only(page):
    server, _ = page
    evil = {"Origin": "https://evil.example"}
    for resp in (server.get("/", headers=evil), server.get("/readyz", headers=evil),
                 server.post("/search", {"text": "x", "k": 1}, headers=evil),
                 requests.options(server.url + "/search", timeout=30, headers={
                     **evil, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "content-type"})):
        assert not any(h.lower().startswith("access-control-") for h in resp.headers), resp.headers
    preflight = requests.options(server.url + "/search", timeout=30, headers=evil)
    assert preflight.status_code >= 400
