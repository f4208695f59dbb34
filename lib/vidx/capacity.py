"""`vidx plan`: a capacity model of embedding and serving an archive, from measured per-frame costs.

Every rate comes from a bench/results JSON (README: Capacity plan), never from a constant here,
except the published GPU figures below, which the output marks `measured_by_vidx: false`:
  - CPU embed path (decode + encode per frame, core-seconds): `encode` of the newest bench run
    (`make bench`) for the model, e.g. the committed bench/results/reference/*.json;
  - GPU encode frames/s: a `gpu_check` JSON (bench/gpu_check.sh) for this GPU kind if one exists;
  - search cost (fixed + per byte of PQ codes scanned, p99/mean): bench/query_cost.py's JSON.
The index layout is the one a default `vidx build-index` tries first for that many vectors: the
cheapest candidate (vidx.index.candidates) that fits the default `index.max_memory`.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from vidx.config import IndexConfig, parse_bytes
from vidx.errors import ConfigError

# Published GPU throughput (images/s per GPU, batch inference), NOT measured by vidx: clip-retrieval's
# distributed-inference benchmark (docs/distributed_clip_inference.md: one node of 8 A100, ViT-B/32
# 2500, ViT-B/16 1100, ViT-L/14 312 samples/s per GPU) and its README (RTX 3080, ViT-B/32 1500).
PUBLISHED_GPU_FPS: dict[tuple[str, str], tuple[float, str]] = {
    ("a100", "ViT-B-32"): (2500.0, "clip-retrieval docs/distributed_clip_inference.md (8x A100, ViT-B/32)"),
    ("a100", "ViT-B-16"): (1100.0, "clip-retrieval docs/distributed_clip_inference.md (8x A100, ViT-B/16)"),
    ("a100", "ViT-L-14"): (312.0, "clip-retrieval docs/distributed_clip_inference.md (8x A100, ViT-L/14)"),
    ("rtx3080", "ViT-B-32"): (1500.0, "clip-retrieval README (clip inference on a 3080)"),
}
MODEL_DIMS = {"ViT-B-32": 512, "ViT-B-16": 512, "ViT-L-14": 768, "vidx-tiny": 128}
# Delta bytes of one clip row besides its embedding: ids, times, counts (Parquet, estimated).
CLIP_ROW_BYTES = 96
# Bytes per frame timestamp kept in a clip row (float64 list).
FRAME_TS_BYTES = 8
BITRATE_UNITS = {"bps": 1, "kbps": 10**3, "mbps": 10**6, "gbps": 10**9}


@dataclass(frozen=True)
class PlanInput:
    hours: float
    archive_bytes: int | None
    bitrate_bps: float
    sample_fps: float
    clip_seconds: float
    model: str
    gpus: int
    gpu_kind: str
    target_qps: float
    p99_ms: float
    replica_cores: int
    cpus_per_gpu: int = 16
    nprobe: int = 64

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> PlanInput:
        bitrate = parse_bitrate(args.avg_bitrate)
        try:
            size = parse_bytes(args.archive_bytes) if args.archive_bytes else None
        except ValueError as exc:
            raise ConfigError(f"--archive-bytes: {exc}") from exc
        hours = args.archive_hours if args.archive_hours is not None else archive_hours(size or 0, bitrate)
        if hours <= 0 or args.gpus < 1 or args.sample_fps <= 0 or args.clip_seconds <= 0:
            raise ConfigError("plan needs a positive archive size, --gpus >= 1, --sample-fps and --clip-seconds > 0")
        return cls(hours=hours, archive_bytes=size, bitrate_bps=bitrate, sample_fps=args.sample_fps,
                   clip_seconds=args.clip_seconds, model=args.model, gpus=args.gpus,
                   gpu_kind=normalise_gpu(args.gpu_kind), target_qps=args.target_qps, p99_ms=args.p99_ms,
                   replica_cores=args.replica_cores, cpus_per_gpu=args.cpus_per_gpu, nprobe=args.nprobe)


def parse_bitrate(text: str) -> float:
    """"5Mbps" -> 5e6 bits/s (decimal units, as bitrates are quoted)."""
    m = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([kmg]?bps)?\s*", str(text).lower())
    if not m:
        raise ConfigError(f"bitrate {text!r}: use e.g. 5Mbps, 800kbps or 5e6")
    return float(m.group(1)) * BITRATE_UNITS[m.group(2) or "bps"]


def archive_hours(size_bytes: int, bitrate_bps: float) -> float:
    return size_bytes * 8 / bitrate_bps / 3600


def normalise_gpu(name: str) -> str:
    """"NVIDIA H200" / "H200" / "h200" -> "h200"; "NVIDIA GeForce RTX 3080" -> "rtx3080"."""
    text = name.lower().replace("nvidia", "").replace("geforce", "").replace("tesla", "")
    return re.sub(r"[^a-z0-9]", "", text.split("-")[0] if "sxm" in text else text)


def _json_files(root: Path) -> list[Path]:
    found = list(root.glob("*.json")) + list(root.glob("reference/*.json"))
    return sorted(found, key=lambda p: p.name, reverse=True)  # names start with the UTC date: newest first


def load_costs(results: str | Path | None, *, model: str, gpu_kind: str) -> dict[str, Any]:
    """The per-frame and per-query costs the plan uses, each with the file it came from."""
    root = Path(results) if results else default_results()
    if not root.is_dir():
        raise ConfigError(f"bench results folder {root} not found: pass --results DIR (run `make bench`)")
    files = [(_shown(p), json.loads(p.read_text())) for p in _json_files(root)]
    cpu = next(((p, d["encode"]) for p, d in files if d.get("encode", {}).get("model") == model), None)
    if cpu is None:
        raise ConfigError(f"no bench result in {root} measured the embed path of {model}: run "
                          f"`BENCH_MODEL={model} make bench` or plan with a measured model")
    query = next(((p, d) for p, d in files if "fit" in d and "p99_over_mean" in d), None)
    if query is None:
        raise ConfigError(f"no search-cost result in {root}: run `python -m bench.query_cost`")
    path, enc = cpu
    cores = next(d["machine"]["cores"] for p, d in files if p == path)
    return {"cpu": {"core_s_per_frame": cores / enc["pipeline_ips"], "frames_per_s": enc["pipeline_ips"],
                    "cores": cores, "precision": enc.get("precision"),
                    "decode_core_s_per_frame": enc["decode_thread_s_per_frame"], "source": str(path)},
            "gpu": _gpu_cost(files, model, gpu_kind),
            "query": {**query[1]["fit"], "p99_over_mean": query[1]["p99_over_mean"], "source": str(query[0])}}


def _gpu_cost(files: list[tuple[Path, dict[str, Any]]], model: str, gpu_kind: str) -> dict[str, Any]:
    for path, data in files:
        check = data.get("gpu_check", {})
        fps = check.get("frames_per_s", {}).get("results", {}).get(model)
        if fps and normalise_gpu(check.get("gpu_name", "")) == gpu_kind:
            return {"frames_per_s": float(fps), "measured_by_vidx": True, "source": str(path)}
    published = PUBLISHED_GPU_FPS.get((gpu_kind, model))
    if published is None:
        known = sorted({f"{k}/{m}" for k, m in PUBLISHED_GPU_FPS})
        raise ConfigError(f"no measured or published GPU figure for {gpu_kind} with {model}: run "
                          f"bench/gpu_check.sh on that GPU, or use one of {', '.join(known)}")
    fps, source = published
    return {"frames_per_s": fps, "measured_by_vidx": False, "source": f"published, not measured by vidx: {source}"}


def _shown(path: Path) -> Path:
    """The path relative to the working directory when it lies below it (plans name their sources)."""
    try:
        return path.resolve().relative_to(Path.cwd())
    except ValueError:
        return path


def default_results() -> Path:
    here = Path.cwd() / "bench" / "results"
    return here if here.is_dir() else Path(__file__).resolve().parents[2] / "bench" / "results"


def make_plan(inp: PlanInput, costs: dict[str, Any]) -> dict[str, Any]:
    """The plan as a JSON-able dict (see README: Capacity plan for each figure)."""
    seconds = inp.hours * 3600
    frames = seconds * inp.sample_fps
    clips = math.ceil(seconds / inp.clip_seconds)
    dim = MODEL_DIMS.get(inp.model)
    if dim is None:
        raise ConfigError(f"unknown embedding size of {inp.model}; known: {', '.join(MODEL_DIMS)}")
    index = _index(clips, dim, inp.model)
    return {"inputs": asdict(inp), "frames": round(frames), "clips": clips,
            "embed": _embed(inp, frames, costs), "storage": _storage(inp, clips, dim),
            "index": index, "query": _query(inp, clips, index, costs["query"]),
            "sources": {k: v["source"] for k, v in costs.items()}}


def _embed(inp: PlanInput, frames: float, costs: dict[str, Any]) -> dict[str, Any]:
    gpu, cpu = costs["gpu"], costs["cpu"]
    decode = cpu["decode_core_s_per_frame"]
    # Decoding stays on the executor's CPUs: a GPU encodes no faster than its cores decode.
    fed = inp.cpus_per_gpu / decode
    rate = min(gpu["frames_per_s"], fed)
    gpu_hours = frames / rate / 3600
    return {"gpu_kind": inp.gpu_kind, "gpu_encode_frames_per_s": gpu["frames_per_s"],
            "measured_by_vidx": gpu["measured_by_vidx"], "decode_core_s_per_frame": decode,
            "cpus_per_gpu_to_keep_up": math.ceil(gpu["frames_per_s"] * decode),
            "frames_per_s_per_gpu": rate, "bottleneck": "decode (add CPUs per GPU)" if fed < gpu["frames_per_s"]
            else "encode", "gpu_hours": gpu_hours, "wall_hours": gpu_hours / inp.gpus,
            "gpu_hours_if_fed": frames / gpu["frames_per_s"] / 3600,
            "cpu_only_core_hours": frames * cpu["core_s_per_frame"] / 3600, "cpu_precision": cpu["precision"]}


def _storage(inp: PlanInput, clips: int, dim: int) -> dict[str, Any]:
    per_clip = 4 * dim + CLIP_ROW_BYTES + FRAME_TS_BYTES * inp.sample_fps * inp.clip_seconds
    return {"bytes_per_clip": per_clip, "delta_clips_bytes": round(clips * per_clip)}


def _index(clips: int, dim: int, model: str) -> dict[str, Any]:
    from vidx.deploy.query_resources import query_memory_bytes
    from vidx.index.candidates import candidates

    cfg = IndexConfig()
    # A default build tries the allowed candidates cheapest first and skips those over
    # index.max_memory (index/select.py): the cheapest that fits is the layout it builds unless
    # its recall misses the target. The next finer code is named with the budget it would need.
    ranked = candidates(clips, dim, cfg)
    fits = [c for c in ranked if c.estimate(clips) <= cfg.max_memory]
    chosen = fits[0] if fits else ranked[0]
    finer = next((c for c in ranked if c.params.kind == chosen.params.kind
                  and c.estimate(clips) > chosen.estimate(clips)), None)
    index_bytes = chosen.estimate(clips)
    manifest = {"memory_bytes": index_bytes, "count": clips, "model": {"name": model}}
    return {"factory": chosen.params.factory, "nlist": chosen.params.nlist,
            "code_bytes": _code_bytes(chosen.params.m, chosen.params.nbits, dim),
            "index_bytes": index_bytes, "max_memory": cfg.max_memory, "fits_default_budget": bool(fits),
            "finer": None if finer is None else {"factory": finer.params.factory, "index_bytes": finer.estimate(clips)},
            "ram_per_query_replica_bytes": query_memory_bytes(manifest)}


def _code_bytes(m: int, nbits: int, dim: int) -> int:
    """Bytes of codes a query scans per vector in a probed list (IVF-Flat: the float vector)."""
    return (m * nbits + 7) // 8 if m else 4 * dim


def _query(inp: PlanInput, clips: int, index: dict[str, Any], cost: dict[str, Any]) -> dict[str, Any]:
    nprobe = min(inp.nprobe, max(1, index["nlist"]))
    scanned = nprobe * clips / max(1, index["nlist"]) * index["code_bytes"]
    mean_s = cost["fixed_s"] + cost["per_byte_s"] * scanned
    p99_s = mean_s * cost["p99_over_mean"]
    # One query per core at a time; keep cores <= 70% busy so queueing stays small next to p99.
    qps_per_replica = 0.7 * inp.replica_cores / mean_s
    return {"nprobe": nprobe, "scanned_bytes_per_query": round(scanned), "mean_ms": mean_s * 1e3,
            "p99_ms": p99_s * 1e3, "meets_p99": p99_s * 1e3 <= inp.p99_ms, "qps_per_replica": qps_per_replica,
            "target_qps": inp.target_qps, "replicas": max(2, math.ceil(inp.target_qps / qps_per_replica))}


def print_plan(plan: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    e, s, i, q = plan["embed"], plan["storage"], plan["index"], plan["query"]
    gib = 2**30
    rows = [
        ("frames to encode", f"{plan['frames']:,}"), ("clips", f"{plan['clips']:,}"),
        (f"GPU encode rate ({e['gpu_kind']})", f"{e['gpu_encode_frames_per_s']:,.0f} frames/s"
         + ("" if e["measured_by_vidx"] else "  [published, not measured by vidx]")),
        ("CPUs per GPU to keep it fed", f"{e['cpus_per_gpu_to_keep_up']} (bottleneck: {e['bottleneck']})"),
        ("GPU-hours / wall time", f"{e['gpu_hours']:,.0f} h / {e['wall_hours']:,.1f} h on {plan['inputs']['gpus']}"),
        ("CPU-only instead", f"{e['cpu_only_core_hours']:,.0f} core-hours"),
        ("Delta clips table", f"{s['delta_clips_bytes'] / gib:,.0f} GiB"),
        ("index", f"{i['factory']}: {i['index_bytes'] / gib:,.1f} GiB"
                  + (f" (finer: {i['finer']['factory']}, {i['finer']['index_bytes'] / gib:,.1f} GiB: raise "
                     "index.max_memory)" if i["finer"] else "")),
        ("RAM per query replica", f"{i['ram_per_query_replica_bytes'] / gib:,.1f} GiB"),
        ("search (1 thread)", f"mean {q['mean_ms']:.1f} ms, p99 {q['p99_ms']:.1f} ms (nprobe {q['nprobe']})"),
        ("query replicas", f"{q['replicas']} for {q['target_qps']:g} QPS"
         + ("" if q["meets_p99"] else "  [p99 target missed: shard the index or lower nprobe]")),
    ]
    table = Table("", "", title="vidx plan", show_header=False)
    for row in rows:
        table.add_row(*row)
    Console().print(table)
