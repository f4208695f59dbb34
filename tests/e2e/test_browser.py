"""The search page in a real browser: Debian's chromium driven by Playwright (`make browser` installs it).

A generated archive of captioned scenes (H.264 .mp4, which Debian's chromium plays) is embedded,
indexed and served; the page runs a text query, plays the first moment from its start and stops
at its end, runs "more like this", searches by an uploaded image, and shows errors for a bad image
and for a server without an index. Screenshots go to the test's tmp folder.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from pathlib import Path

import pytest

from servekit import running_server, server_config
from vidx.config import load_config
from vidx.demo import grab_frame
from vidx.synth.world import ArchiveSpec, make_captioned_archive

LOG = logging.getLogger(__name__)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SEED = 4_141
SPEC = ArchiveSpec(n_videos=3, scenes_per_video=(2, 3), scene_seconds=(6.0, 10.0), sizes=((320, 180),), fps=(10.0,),
                   suffixes=(".mp4",), unseen_share=0.0)
TIMEOUT_MS = 20_000  # any one wait in the page; the whole test is bounded by pytest-timeout

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def site(spark, tmp_path_factory):
    from vidx.index.from_table import build_from_warehouse
    from vidx.spark.embed import run_embed

    root = tmp_path_factory.mktemp("browser")
    truth = json.loads(make_captioned_archive(root / "archive", seed=SEED, spec=SPEC).read_text())
    cfg = load_config(env={}, overrides={"warehouse": str(root / "w"), "spark.master": "local[2]"})
    report = run_embed(cfg, str(root / "archive"), spark=spark)
    assert report.failed == 0
    build = build_from_warehouse(cfg, skip_validation=True)
    with running_server(server_config(cfg.warehouse)) as server:
        server.wait_version(build.published.version)
        yield server, truth, root


@pytest.fixture
def browser_page(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (installs Debian's chromium and chromium-driver)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 860})
        try:
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            yield page
        finally:
            context.close()


def _scene(truth: dict) -> tuple[dict, dict]:
    """The query scene: the longest one in the archive (its caption names only it)."""
    return max(((v, s) for v in truth["videos"] for s in v["scenes"]), key=lambda vs: vs[1]["end_s"] - vs[1]["start_s"])


def _until(page, predicate: str, what: str, timeout_s: float = TIMEOUT_MS / 1000):
    """Poll a JS function until it returns something truthy. page.wait_for_function would eval() its
    predicate inside the page, which the page's Content-Security-Policy (rightly) forbids."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = page.evaluate(predicate)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.025)


def _shot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def _cards(page) -> list[dict]:
    return page.eval_on_selector_all("#grid .moment", "els => els.map(e => ({video_id: e.dataset.videoId, "
                                     "start: Number(e.dataset.start), end: Number(e.dataset.end)}))")


def _text_query(page, server, tmp_path: Path, caption: str) -> list[dict]:
    page.keyboard.press("/")  # keyboard: / focuses the search box
    assert page.evaluate("document.activeElement.id") == "q"
    page.keyboard.type(caption)
    page.keyboard.press("Enter")
    page.wait_for_selector("#grid .moment")
    api = server.search(text=caption, k=24, group="moments")["results"]
    assert [c["video_id"] for c in _cards(page)] == [m["video_id"] for m in api]
    _until(page, "() => [...document.querySelectorAll('#grid img')].slice(0, 3).every(i => i.complete "
                 "&& i.naturalWidth > 0)", "thumbnails")
    _shot(page, tmp_path, "1-results")
    return api


def _play_first(page, tmp_path: Path, first: dict) -> None:
    """Arrows move between moments, Enter plays from start_s; playback stops at end_s."""
    page.focus("#grid .moment .thumb")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.closest('.moment').dataset.index") == "1"
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("Enter")
    playing = _until(page, "() => { const v = document.getElementById('player');"
                     " return (v.readyState >= 3 && !v.paused && !v.seeking && v.currentTime > 0) ?"
                     " {t: v.currentTime, paused: v.paused, src: v.currentSrc} : null; }", "playback")
    assert abs(playing["t"] - first["start_s"]) <= 0.5, (playing, first)
    assert not playing["paused"] and playing["src"].endswith(f"/media/{first['video_id']}")
    _shot(page, tmp_path, "2-playing")
    # jump close to the end rather than wait for the whole moment
    page.evaluate(f"document.getElementById('player').currentTime = {max(first['start_s'], first['end_s'] - 0.6)}")
    stopped = _until(page, "() => { const v = document.getElementById('player'); return v.paused ? "
                     "{t: v.currentTime} : null; }", "the stop at end_s")["t"]
    assert first["end_s"] - 0.05 <= stopped <= first["end_s"] + 0.5, (stopped, first)
    page.keyboard.press("Escape")
    assert page.is_hidden("#player-panel")


def _drop_bad_image(page, tmp_path: Path) -> None:
    garbage = base64.b64encode(b"\x89PNG\r\n\x1a\nnot really a png" * 8).decode()
    page.evaluate("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], 'bad.png', {type: 'image/png'}));
        document.getElementById('drop').dispatchEvent(new DragEvent('drop', {dataTransfer: dt, bubbles: true,
                                                                              cancelable: true}));
    }""", garbage)
    page.wait_for_selector("#error", state="visible")
    assert "image" in page.inner_text("#error-text").lower()
    assert page.is_hidden("#query-image")  # no preview of an image the server could not read
    _shot(page, tmp_path, "3-bad-image")


def test_search_play_upload_and_errors_in_chromium(site, browser_page, tmp_path):
    server, truth, _ = site
    page = browser_page
    started = time.perf_counter()
    posts: list[dict] = []
    page.on("request", lambda r: posts.append(r.headers) if r.method == "POST" else None)
    page.goto(server.url + "/")
    _until(page, "() => document.getElementById('index-info').textContent.startsWith('index ')", "index info")
    assert "model" in page.inner_text("#index-info")

    # a text query: the expected scene's moment comes first
    video, scene = _scene(truth)
    first = _text_query(page, server, tmp_path, scene["caption"])[0]
    assert first["uri"] == video["uri"], (scene, first)
    assert first["start_s"] < scene["end_s"] and scene["start_s"] < first["end_s"], (scene, first)
    _play_first(page, tmp_path, first)

    # more like this: a clip query of the moment's best clip
    page.click("#grid .moment .more")
    _until(page, "() => /^\\d+ moments? like /.test(document.getElementById('status').textContent)", "more like this")
    assert _cards(page)[0]["video_id"] == first["video_id"]

    # image upload: a frame from the middle of the scene finds its video first
    frame = grab_frame(Path(video["uri"]), (scene["start_s"] + scene["end_s"]) / 2, tmp_path / "query.png")
    page.set_input_files("#file", str(frame))
    _until(page, "() => document.getElementById('status').textContent.includes('for image query.png')", "image query")
    assert _cards(page)[0]["video_id"] == first["video_id"]
    _until(page, "() => !document.getElementById('query-image').hidden", "the query image preview")

    _drop_bad_image(page, tmp_path)  # dropped on the page: the server's error is shown

    # filters go to the server: a prefix no uri has gives no moments
    page.fill("#uri-prefix", "/nowhere/")
    page.fill("#q", scene["caption"])
    page.click("#search-button")
    _until(page, "() => document.getElementById('status').textContent.startsWith('No moments')", "filtered search")
    assert page.is_hidden("#error")  # a good search clears the error
    assert posts and all(h.get("content-type") == "application/json" for h in posts)
    LOG.info("browser part: %.1f s, screenshots in %s", time.perf_counter() - started, tmp_path)


def test_page_without_an_index_says_so(browser_page, tmp_path):
    with running_server(server_config(tmp_path / "empty-warehouse")) as server:
        browser_page.goto(server.url + "/")
        browser_page.wait_for_selector("#error", state="visible")
        assert "No index is loaded" in browser_page.inner_text("#error-text")
        browser_page.fill("#q", "anything")
        browser_page.keyboard.press("Enter")
        _until(browser_page, "() => document.getElementById('error-text').textContent.includes('No index')",
               "the no-index error")
        _shot(browser_page, tmp_path, "4-no-index")

