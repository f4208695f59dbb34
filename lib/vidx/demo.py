"""`vidx demo`: generate a sample archive, embed it on Spark, build + publish the index, search it.

Image queries are frames grabbed from the source videos at full resolution, so the demo shows
whether the right clip comes back; text queries use the scenes' captions, which the default
weights (vidx-tiny synthetic-v1, trained on this synthetic world) understand.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import av
from rich.console import Console

from vidx.config import VidxConfig
from vidx.index.from_table import build_from_warehouse
from vidx.quality.validate import validate_warehouse
from vidx.report import print_build_result, print_embed_report, print_hits
from vidx.serve.query import Searcher
from vidx.spark.embed import run_embed
from vidx.synth import make_sample_archive

LOG = logging.getLogger(__name__)
CONSOLE = Console()


def grab_frame(video: Path, t: float, out: Path) -> Path:
    """Save the frame displayed at time t (full resolution) as PNG."""
    with av.open(str(video)) as container:
        stream = container.streams.video[0]
        chosen = None
        for frame in container.decode(stream):
            if frame.time is not None and frame.time > t + 1e-6 and chosen is not None:
                break
            chosen = frame
        if chosen is None:
            raise ValueError(f"{video} has no frames")
        chosen.to_image().save(out)
    return out


def _image_queries(archive: Path, queries: Path, searcher: Searcher, k: int) -> tuple[int, int]:
    truth = json.loads((archive / "truth.json").read_text())
    hits_right = total = 0
    for video in truth["videos"][:4]:
        scene = video["scenes"][len(video["scenes"]) // 2]
        t = (scene["start_s"] + scene["end_s"]) / 2
        png = grab_frame(archive / video["path"], t, queries / f"{Path(video['path']).stem}_{t:.1f}s.png")
        hits = searcher.search_image(png, k)
        top = hits[0] if hits else None
        right = top is not None and top.uri.endswith(video["path"]) and top.start_s <= t < top.end_s
        hits_right += int(right)
        total += 1
        print_hits(hits, title=f"image query: frame of {video['path']} at {t:.1f} s  "
                               f"[{'right clip first' if right else 'top hit elsewhere'}]")
    return hits_right, total


def _text_queries(archive: Path, searcher: Searcher, k: int) -> tuple[int, int]:
    """Search the first scene's caption of four videos; right = the top clip is in that video and
    overlaps that scene."""
    truth = json.loads((archive / "truth.json").read_text())
    hits_right = total = 0
    for video in truth["videos"][:4]:
        scene = video["scenes"][0]
        hits = searcher.search_text(scene["caption"], k)
        top = hits[0] if hits else None
        right = (top is not None and top.uri.endswith(video["path"]) and top.start_s < scene["end_s"]
                 and top.end_s > scene["start_s"])
        hits_right += int(right)
        total += 1
        print_hits(hits, title=f"text query: {scene['caption']!r} (in {video['path']} at {scene['start_s']:.1f}-"
                               f"{scene['end_s']:.1f} s)  [{'right scene first' if right else 'top hit elsewhere'}]")
    return hits_right, total


def run_demo(workdir: str, cfg: VidxConfig) -> None:
    t0 = time.perf_counter()
    root = Path(workdir).resolve()
    archive, queries = root / "archive", root / "queries"
    queries.mkdir(parents=True, exist_ok=True)
    cfg = cfg.with_overrides({"warehouse": str(root / "warehouse")})
    with CONSOLE.status("[1/4] generating a sample archive with PyAV ..."):
        videos = make_sample_archive(archive, n_videos=8, seed=0, with_corrupt=True)
    CONSOLE.print(f"[1/4] sample archive: {len(videos)} videos + 1 corrupt file in {archive}")
    CONSOLE.print(f"[2/4] embedding on Spark {cfg.spark.master} with {cfg.encode.model} ({cfg.encode.pretrained})")
    report = run_embed(cfg, str(archive))
    print_embed_report(report)
    with CONSOLE.status("[3/4] validating the clips table, then building the index ..."):
        checks = validate_warehouse(cfg)  # the publish gate: build-index refuses an unvalidated version
        for rec in checks:
            CONSOLE.print(f"[3/4] validation of clips v{rec.table_version}: "
                          f"{'passed' if rec.success else 'FAILED'} ({rec.n_expectations} expectations); "
                          f"data docs {rec.data_docs_uri}")
        result = build_from_warehouse(cfg)
    CONSOLE.print("[3/4] index:")
    print_build_result(result)
    CONSOLE.print("[4/4] searching")
    searcher = Searcher(cfg.warehouse)
    right, total = _image_queries(archive, queries, searcher, k=5)
    text_right, text_total = _text_queries(archive, searcher, k=5)
    if cfg.encode.pretrained == "random":
        CONSOLE.print("[dim]note: vidx-tiny with random weights embeds images consistently (so image "
                      "queries find their clip) but does not understand text: text results are arbitrary.[/]")
    elif cfg.encode.model == "vidx-tiny" and cfg.encode.pretrained == "synthetic-v1":
        CONSOLE.print("[dim]note: vidx-tiny synthetic-v1 was trained by `vidx train-tiny` on this synthetic world "
                      "(shapes, colours, counts, backgrounds), so it understands captions like these and nothing "
                      "else; for real footage use e.g. --model ViT-B-32 with a local checkpoint. "
                      "`vidx eval` measures Recall@K against a truth file.[/]")
    CONSOLE.print(f"demo done in {time.perf_counter() - t0:.1f} s: {report.ok} videos indexed, "
                  f"{report.failed} failed, {report.clips} clips, {report.frames_per_s:.1f} frames/s embed, "
                  f"image queries right-clip-first {right}/{total}, text queries right-scene-first "
                  f"{text_right}/{text_total}. Warehouse: {cfg.warehouse}")
    CONSOLE.print(f"search page: vidx serve --warehouse {cfg.warehouse}, then open "
                  f"http://{cfg.serve.host}:{cfg.serve.port}/")
