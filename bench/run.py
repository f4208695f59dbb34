"""`make bench`: decode, encode, token clustering, Spark overhead and thumbnail cost, side by side in one run.

Writes bench/results/<UTC time>.json (or --out PATH). Videos are generated (30 fps H.264, 360p and
1080p); set BENCH_VIDEOS=/path/to/folder to also measure real footage. Figures are throughput on
THIS machine; nothing here is a test threshold. How figures are combined: bench/summary.py.
`python -m bench.report RESULT.json` prints the README's performance table from the JSON.

Each Spark case runs in a fresh process (`python -m bench.run --case spark ...`): its first run is
cold (new JVM, new Python workers importing torch), the second warm, in that same process.

Keys other tools read (stable; `vidx plan` takes its per-frame costs from them):
  machine.cores                      CPU cores the figures were measured on
  encode.model, encode.precision     the encoder and the precision `encode.precision=auto` chose
  encode.pipeline_ips                frames/s through vidx's whole embed path (decode + encode),
                                     median of the paired runs; 1 / it = wall seconds per frame
  encode.bare_ips                    frames/s of the bare forward pass (median of the paired runs)
  encode.decode_thread_s_per_frame   decoder-thread seconds per frame inside the embed path
  decode.sparse_fps                  sampled frames/s of vidx's sparse decode, pooled over the files
  decode.files[].sparse_s / sampled  per-file seconds and frames behind it
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.summary import summarise_decode, summarise_pairs

LOG = logging.getLogger("bench")
RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
FORMAT = 2  # 2: pooled decode speed-ups, paired-run efficiency, decided precision, Spark cases in fresh processes
ENCODE_PAIRS = 5  # (bare, pipeline) pairs per encode case; their order alternates


def machine() -> dict[str, Any]:
    cpu = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.is_available(), "bf16_cpu": "avx512_bf16" in open("/proc/cpuinfo").read()}


def bench_decode(path: Path, image_size: int = 224) -> dict[str, Any]:
    """Sparse (vidx: 1 frame/s by timestamp, resized in decord) vs decoding every frame and dropping.

    Two baselines with the same library: the naive reader (every frame decoded and converted at
    its native size, one kept per second) and the same with decord resizing every frame to vidx's
    output size, so the figure isolates what sparse sampling itself buys.
    """
    import decord

    from vidx.decode.decoder import _decord_size, decode_range
    from vidx.decode.probe import probe

    info = probe(str(path))
    t0 = time.perf_counter()
    sparse = decode_range(str(path), start_s=0, end_s=info.duration_s + 1, sample_fps=1.0, image_size=image_size,
                          info=info)
    sparse_s = time.perf_counter() - t0
    step = max(1, round(info.fps))

    def decode_all(**size: int) -> tuple[int, float]:
        start = time.perf_counter()
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0), num_threads=1, **size)
        kept = 0
        for i in range(len(vr)):  # decode all, keep one per second: what a naive reader does
            frame = vr.next()
            if i % step == 0:
                kept += int(frame.shape[0] > 0)
        return kept, time.perf_counter() - start

    kept, full_s = decode_all()
    w, h = _decord_size(info, image_size)
    _, resized_s = decode_all(width=w, height=h)
    sampled = len(sparse.times)
    sparse_fps, full_fps, resized_fps = sampled / sparse_s, kept / full_s, kept / resized_s
    # Raw frames and seconds are kept so that summaries pool totals (bench.summary), not ratios.
    return {"file": path.name, "duration_s": info.duration_s, "height": info.height, "fps": info.fps,
            "gop_frames": _gop(path), "sampled": sampled, "sparse_s": sparse_s, "kept": kept, "full_s": full_s,
            "resized_s": resized_s, "sparse_fps": sparse_fps, "full_fps": full_fps, "full_resized_fps": resized_fps,
            "speedup": sparse_fps / full_fps, "speedup_vs_resized": sparse_fps / resized_fps}


def _gop(path: Path) -> float:
    """Mean keyframe interval in frames (from the packet index, no decoding)."""
    import av

    with av.open(str(path)) as container:
        flags = [p.is_keyframe for p in container.demux(container.streams.video[0]) if p.size]
    return len(flags) / max(1, sum(flags))


def auto_precision(model: str, pretrained: str) -> str:
    """The precision `encode.precision=auto` picks for this model on this machine, decided once per bench
    run (as a run decides once on its driver) so every case of that model uses the same one."""
    from vidx.encode.models import ModelSpec, load_model
    from vidx.encode.precision import with_precision

    return with_precision(load_model(ModelSpec(model, pretrained), device="cpu"), "auto")[1]


def at_precision(lm: Any, precision: str) -> Any:
    """`lm` with its weights in an already decided precision."""
    from vidx.encode.precision import with_precision

    out, used = with_precision(lm, precision)  # type: ignore[arg-type]
    if used != precision:
        raise RuntimeError(f"{lm.model_id}: asked for {precision}, got {used}")
    return out


def bench_encode(videos: list[Path], model: str, pretrained: str, batch: int, precision: str) -> dict[str, Any]:
    """Bare forward (tensor prepared) vs vidx's whole embed path (decode, prefetch, batch, encode).

    Steady state, as inside a long Spark task: one untimed pass starts the decoder subprocesses and
    warms the model, then the same units are timed again.
    """
    from vidx.config import load_config
    from vidx.decode.source import TaskDownloads
    from vidx.encode.batcher import decode_ahead, encode_batched
    from vidx.encode.embedder import encode_frames
    from vidx.encode.models import ModelSpec, load_model
    from vidx.spark.stages import _decode_unit

    cfg = load_config(env={}, overrides={"encode.model": model, "encode.pretrained": pretrained})
    lm = at_precision(load_model(ModelSpec(model, pretrained), device="cpu"), precision)
    x = torch.randn(batch, 3, lm.image_size, lm.image_size).to(next(lm.model.parameters()).dtype)

    def bare() -> float:
        with torch.inference_mode():
            t0 = time.perf_counter()
            for _ in range(10):  # about as long as one pipeline pass (300 frames)
                lm.model.encode_image(x)
            return 10 * batch / (time.perf_counter() - t0)

    units = [{"unit_id": f"{p.name}:0", "video_id": p.name, "uri": str(p), "start_s": 0.0,
              "end_s": float("inf"), "duration_s": None} for p in videos]

    def pipeline() -> tuple[int, float, float]:
        t0, n, decode_s = time.perf_counter(), 0, 0.0
        decoded = decode_ahead(units, lambda u: _decode_unit(cfg, u, lm.image_size, TaskDownloads({})),
                               workers=cfg.decode.workers, prefetch=cfg.decode.prefetch)
        for item in encode_batched(decoded, lambda f: encode_frames(lm, f, batch_size=len(f)), batch_size=batch,
                                   dim=lm.dim):
            n += 0 if item.embeddings is None else len(item.embeddings)
            decode_s += item.decode_s
        return n, time.perf_counter() - t0, decode_s

    with torch.inference_mode():
        lm.model.encode_image(x)
    pipeline()  # warm-up: decoder subprocesses, allocator, first batches
    # Pairs of adjacent runs, in alternating order so that drift hits both kinds alike: on a shared
    # 2-core VM single measurements of the same forward pass varied by +-30% here. Efficiency is the
    # median of the per-pair ratios (bench.summary.summarise_pairs).
    bares, rates, n, decode_s = [], [], 0, 0.0
    for i in range(ENCODE_PAIRS):
        for kind in ("bare", "pipeline")[:: 1 if i % 2 == 0 else -1]:
            if kind == "bare":
                bares.append(bare())
            else:
                n, seconds, spent = pipeline()
                rates.append(n / seconds)
                decode_s += spent
    return {"model": model, "pretrained": pretrained, "precision": precision, "batch": batch,
            **summarise_pairs(bares, rates), "pairs": ENCODE_PAIRS, "frames": n, "videos": len(videos),
            "gop_frames": _gop(videos[0]), "decode_thread_s_per_frame": decode_s / max(1, n * ENCODE_PAIRS)}


def bench_spark(videos_dir: Path, workdir: Path, model: str, pretrained: str) -> dict[str, Any]:
    """`vidx embed` on local[2] vs the same work in-process: list, probe (the same isolated decoder),
    plan, then every unit through EmbedTask (model load, decode, encode, Parquet). The first Spark run
    includes the session start and fresh Python workers; the second (a new warehouse) reuses them.
    Cold only means cold in a fresh process: main() runs this through spark_in_fresh_process."""
    import pyarrow as pa

    from vidx.archive import list_archive, plan_units
    from vidx.config import load_config
    from vidx.encode.models import ModelSpec, load_model
    from vidx.spark.embed import plan_model, run_embed
    from vidx.spark.stages import UNITS_IN, EmbedTask, _probe_one

    def config(name: str) -> Any:
        return load_config(env={}, overrides={"warehouse": str(workdir / name), "spark.master": "local[2]",
                                              "spark.conf": {"spark.ui.enabled": "false"},
                                              "encode.model": model, "encode.pretrained": pretrained})

    cfg = config("w")
    t0 = time.perf_counter()
    report = run_embed(cfg, str(videos_dir))
    local_wall = time.perf_counter() - t0
    t0 = time.perf_counter()
    run_embed(config("w-warm"), str(videos_dir))
    warm_wall = time.perf_counter() - t0
    from vidx.spark import stages

    stages._MODELS.clear()  # in-process pays its model load, as each Spark worker does
    t0 = time.perf_counter()
    files = list_archive(str(videos_dir), cfg.archive.extensions)
    durations = {f.video_id: _probe_one(f.uri, cfg)["duration_s"] for f in files}
    units = plan_units([(f.video_id, f.uri, f.size_bytes, durations[f.video_id]) for f in files],
                       max_unit_seconds=cfg.archive.max_unit_seconds, clip_seconds=cfg.clips.seconds)
    rows = [{"bin": 0, "unit_id": u.unit_id, "video_id": u.video_id, "uri": u.uri, "start_s": u.start_s,
             "end_s": u.end_s, "duration_s": durations[u.video_id]} for u in units]
    # the same precision decision and model_id as the Spark runs (kept in the warehouse by the first)
    task_cfg, model_id = plan_model(cfg, load_model(ModelSpec(cfg.encode.model, cfg.encode.pretrained), device="cpu"))
    task = EmbedTask(cfg=task_cfg, run_id="bench", model_id=model_id, clips_uri=str(workdir / "inprocess"))
    out = list(task(iter([pa.RecordBatch.from_pylist(rows, schema=UNITS_IN)])))
    inprocess = time.perf_counter() - t0
    return {"local_wall_s": local_wall, "warm_wall_s": warm_wall, "inprocess_wall_s": inprocess,
            "overhead": local_wall / inprocess, "warm_overhead": warm_wall / inprocess, "videos": len(files),
            "frames": report.frames, "clips": report.clips, "model": cfg.encode.model, "result_batches": len(out),
            "precision_setting": cfg.encode.precision}


def spark_in_fresh_process(videos_dir: Path, workdir: Path, model: str, pretrained: str) -> dict[str, Any]:
    """bench_spark in a new Python process (new JVM, new Python workers): `python -m bench.run --case spark`."""
    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "spark-case.json"
    cmd = [sys.executable, "-m", "bench.run", "--case", "spark", "--model", model, "--pretrained", pretrained,
           "--videos", str(videos_dir), "--workdir", str(workdir), "--out", str(out)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    result: dict[str, Any] = json.loads(out.read_text())
    # the whole child, Python start and imports included: what a fresh `vidx embed` costs on top
    return {**result, "fresh_process": True, "process_wall_s": time.perf_counter() - t0}


def spark_case(args: argparse.Namespace) -> None:
    """The child side of spark_in_fresh_process: one case, its JSON to --out, the session stopped."""
    from pyspark.sql import SparkSession

    result = bench_spark(Path(args.videos), Path(args.workdir), args.model, args.pretrained)
    session = SparkSession.getActiveSession()
    if session is not None:
        session.stop()
    write_json(Path(args.out), result)


def video_frames(paths: list[Path], lm: Any, limit: int) -> torch.Tensor:
    """Frames sampled at 1/s from `paths` through vidx's decoder, normalised for `lm`, in time order."""
    from vidx.decode.decoder import decode_range
    from vidx.decode.probe import probe
    from vidx.encode.embedder import frames_to_tensor

    chunks, total = [], 0
    for path in paths:
        info = probe(str(path))
        frames = decode_range(str(path), start_s=0, end_s=info.duration_s, sample_fps=1.0,
                              image_size=lm.image_size, info=info).frames
        usable = len(frames) // 4 * 4  # whole 4-frame clips of one video
        chunks.append(frames[:usable])
        total += usable
        if total >= limit:
            break
    return frames_to_tensor(np.concatenate(chunks)[:limit], lm).float()


def bench_token_clustering(model: str, pretrained: str, layer: int, footage: dict[str, list[Path]],
                           precision: str) -> dict[str, Any]:
    """Speed and fidelity of token clustering for one model, on rendered scenes and on decoded video.

    Clustered and exact paths both run at `precision` (what `auto` picks here, as in the encode case):
    a clustered bf16 model against an exact fp32 one would credit bf16's speed to the clustering."""
    from vidx.encode.centerclip import TokenClustering
    from vidx.encode.centerclip_bench import bench_token_clustering as bench
    from vidx.encode.models import ModelSpec, load_model

    lm = at_precision(load_model(ModelSpec(model, pretrained), device="cpu"), precision)
    clustering = TokenClustering(enabled=True, layer=layer)
    out: dict[str, Any] = {"model": model, "pretrained": pretrained, "precision": precision,
                           "rendered": dict(bench(lm.model, frames_per_clip=4, n_clips=24, clustering=clustering))}
    for name, paths in footage.items():
        if paths:
            frames = video_frames(paths, lm, limit=96)
            out[name] = dict(bench(lm.model, frames_per_clip=4, n_clips=len(frames) // 4, clustering=clustering,
                                   frames=frames))
    return out


# (name, width, height, seconds, gop in frames): 30 fps H.264 at a phone camera's keyframe interval
# (1 s), a streaming one (2 s) and x264's default (250 frames), where no seek can skip anything.
DECODE_VIDEOS = [(f"{h}p_gop{gop or 250}", w, h, secs, gop) for w, h, secs in ((640, 360, 30), (1920, 1080, 16))
                 for gop in (30, 60, None)]


def make_videos(root: Path) -> dict[str, list[Path]]:
    from vidx.synth import write_video
    from vidx.synth.world import ArchiveSpec, make_captioned_archive

    out: dict[str, list[Path]] = {"decode": [], "archive": [], "archive_gop1s": [], "world": []}
    for i, (name, w, h, secs, gop) in enumerate(DECODE_VIDEOS):
        path = root / "decode" / f"{name}.mp4"
        write_video(path, duration_s=secs, fps=30, width=w, height=h, seed=1 + i, gop=gop)
        out["decode"].append(path)
    for i in range(10):  # the "5-minute archive": 10 x 30 s at x264's default keyframe interval
        path = root / "archive" / f"a{i:02d}.mp4"
        write_video(path, duration_s=30, fps=25, width=320, height=240, seed=10 + i)
        out["archive"].append(path)
    for i in range(10):  # the same kind of footage with a keyframe every second (phone cameras)
        path = root / "archive_gop1s" / f"a{i:02d}.mp4"
        write_video(path, duration_s=30, fps=25, width=320, height=240, seed=10 + i, gop=25)
        out["archive_gop1s"].append(path)
    # captioned scenes the trained vidx-tiny knows, through the codec (held-out seed)
    make_captioned_archive(root / "world", seed=4242, spec=ArchiveSpec(n_videos=6, sizes=((160, 120),), fps=(10.0,)))
    out["world"] = sorted((root / "world").glob("video_*"))
    return out


def _real_videos(folder: str | None) -> list[Path]:
    """Video files under BENCH_VIDEOS (vidx's default archive extensions), in name order."""
    if not folder:
        return []
    from vidx.config import DEFAULT_EXTENSIONS

    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in DEFAULT_EXTENSIONS)


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=2, default=float) + "\n")
    tmp.replace(path)  # temp-then-rename: a reader never sees half a result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="result JSON (default bench/results/<UTC time>.json)")
    ap.add_argument("--case", choices=["all", "spark"], default="all", help="spark: one Spark case (a child run)")
    ap.add_argument("--model", help="--case spark: encoder")
    ap.add_argument("--pretrained", help="--case spark: weights")
    ap.add_argument("--videos", help="--case spark: archive folder")
    ap.add_argument("--workdir", help="--case spark: scratch folder")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if args.case == "spark":
        spark_case(args)
        return
    model = os.environ.get("BENCH_MODEL", "ViT-B-32")
    result: dict[str, Any] = {"format": FORMAT, "machine": machine(), "started_at": datetime.now(UTC).isoformat(),
                              "load_avg_1m_at_start": os.getloadavg()[0], "load_avg_at_start": os.getloadavg()}
    # decided once per model and used by every case of it (encode and token clustering alike)
    precision = {model: auto_precision(model, "random"), "vidx-tiny": auto_precision("vidx-tiny", "synthetic-v1")}
    result["precision"] = {"auto_chose": precision, "decided_by": "vidx.encode.precision.with_precision(lm, 'auto')"}
    with tempfile.TemporaryDirectory(prefix="vidx-bench-") as tmp:
        root = Path(tmp)
        videos = make_videos(root)
        real = _real_videos(os.environ.get("BENCH_VIDEOS"))
        result["decode"] = summarise_decode([bench_decode(p) for p in videos["decode"] + real[:5]])
        result["encode"] = bench_encode(videos["archive_gop1s"], model, "random", 32, precision[model])
        result["encode_gop250"] = bench_encode(videos["archive"], model, "random", 32, precision[model])
        footage = {"video_archive": videos["archive"][:4], "video_world": videos["world"], "bench_videos": real[:5]}
        runs = {f"{model}/random": bench_token_clustering(model, "random", 6, footage, precision[model]),
                "vidx-tiny/synthetic-v1": bench_token_clustering("vidx-tiny", "synthetic-v1", 2, footage,
                                                                 precision["vidx-tiny"])}
        head = runs[f"{model}/random"]["video_archive"]
        result["token_clustering"] = {
            **{key: head[key] for key in ("speedup", "fidelity_cosine", "overlap_at_10")},
            "precision": precision[model], "trained_precision": precision["vidx-tiny"],
            "trained_speedup": runs["vidx-tiny/synthetic-v1"]["video_world"]["speedup"],
            "trained_fidelity_cosine": runs["vidx-tiny/synthetic-v1"]["video_world"]["fidelity_cosine"],
            "trained_overlap_at_10": runs["vidx-tiny/synthetic-v1"]["video_world"]["overlap_at_10"], "runs": runs}
        result["spark"] = spark_in_fresh_process(root / "archive", root / "spark", model, "random")
        result["spark_vidx_tiny"] = spark_in_fresh_process(root / "archive", root / "spark-tiny", "vidx-tiny",
                                                           "synthetic-v1")
        # embed with and without clip thumbnails (thumbnails.enabled), paired alternating runs
        from bench.thumbnails import bench_thumbnails

        result["thumbnails"] = {spec: bench_thumbnails(videos["archive"][:6], *spec.split(":", 1))
                                for spec in ("vidx-tiny:synthetic-v1", f"{model}:random")}
    result["finished_at"] = datetime.now(UTC).isoformat()
    result["load_avg_at_end"] = os.getloadavg()
    path = Path(args.out) if args.out else RESULTS / f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    write_json(path, result)
    print(json.dumps({k: v for k, v in result.items() if k not in ("token_clustering", "decode")}, indent=2,
                     default=float))
    print(f"wrote {path}; README table: python -m bench.report {path}")


if __name__ == "__main__":
    main()
