"""The GPU check (bench/gpu_check.sh runs it; bench/GPU_CHECK.md says how, on which machine).

Each piece runs in its own try/except and the JSON is rewritten after every piece, so one failure
(or a time-out) never loses the others' figures:
  demo_embed        the demo's embed path in-process (list, probe, plan, EmbedTask: decode, encode,
                    Parquet) with encode.device=cuda; embeddings compared with the CPU path's
  fidelity          bf16 autocast vs fp32 encoder outputs (cosine), ViT-B-32 random weights
  token_clustering  CenterCLIP clustering on the GPU: speed-up and fidelity vs the exact path
  index             faiss GPU train + add on N vectors; when faiss has no GPU, the same work (coarse
                    k-means + assigning every vector) in torch on the GPU, and the reason faiss did not
  frames_per_s      ViT-B-32 (random weights) images/s, fp32 and bf16 autocast, batch 256
No Spark (pyspark may be absent: a stand-in TaskContext says "not in a task") and no Delta unless
deltalake imports. `--cpu` runs the same code on CPU at toy sizes (what the tests run here).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import tempfile
import time
import traceback
import types
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:  # a finder that refuses the name (tests simulate a machine without it)
        return False


def _pyspark_stand_in() -> None:
    """vidx's task code asks pyspark.TaskContext which GPU Spark assigned; outside Spark: none."""
    if _has("pyspark"):
        return
    module = types.ModuleType("pyspark")
    module.TaskContext = type("TaskContext", (), {"get": staticmethod(lambda: None)})  # type: ignore[attr-defined]
    sys.modules["pyspark"] = module


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def demo_embed(device: str, small: bool) -> dict[str, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from vidx.archive import list_archive, plan_units
    from vidx.config import load_config
    from vidx.encode.models import ModelSpec, load_model
    from vidx.encode.registry import plan_in_process
    from vidx.spark.stages import UNITS_IN, EmbedTask, _probe_one
    from vidx.synth import make_sample_archive

    work = Path(tempfile.mkdtemp(prefix="vidx-gpu-check-"))
    make_sample_archive(work / "archive", n_videos=3 if small else 8, seed=0)
    out: dict[str, Any] = {}
    tables = {}
    for dev in dict.fromkeys([device, "cpu"]):
        cfg = load_config(env={}, overrides={"encode.device": "cuda" if dev.startswith("cuda") else "cpu"})
        files = list_archive(str(work / "archive"), cfg.archive.extensions)
        probes = {f.video_id: _probe_one(f.uri, cfg) for f in files}
        ok = [f for f in files if probes[f.video_id].get("error") is None]
        units = plan_units([(f.video_id, f.uri, f.size_bytes, probes[f.video_id]["duration_s"]) for f in ok],
                           max_unit_seconds=cfg.archive.max_unit_seconds, clip_seconds=cfg.clips.seconds)
        rows = [{"bin": 0, "unit_id": u.unit_id, "video_id": u.video_id, "uri": u.uri, "start_s": u.start_s,
                 "end_s": u.end_s, "duration_s": probes[u.video_id]["duration_s"]} for u in units]
        lm = load_model(ModelSpec(cfg.encode.model, cfg.encode.pretrained), device="cpu")
        # As the embed driver does (without recording it: no deltalake here): precision decided once
        # for the device kind, then the recipe's model_id.
        cfg, model_id = plan_in_process(cfg, lm, "cuda" if dev.startswith("cuda") else "cpu")
        precision = cfg.encode.precision
        clips_dir = work / f"clips-{dev.split(':')[0]}"
        task = EmbedTask(cfg=cfg, run_id="gpu-check", model_id=model_id, clips_uri=str(clips_dir))
        t0 = time.perf_counter()
        results = [r for b in task(iter([pa.RecordBatch.from_pylist(rows, schema=UNITS_IN)])) for r in b.to_pylist()]
        wall = time.perf_counter() - t0
        files_written = [json.loads(r["file"])["path"] for r in results if r["kind"] == "file"]
        table = pa.concat_tables([pq.read_table(clips_dir / p) for p in files_written])
        tables[dev] = table.sort_by([("video_id", "ascending"), ("clip_idx", "ascending")])
        frames = sum(r["n_frames"] or 0 for r in results if r["kind"] == "unit")
        out[dev.split(":")[0]] = {"videos": len(ok), "units": len(units), "clips": table.num_rows, "frames": frames,
                                  "wall_s": wall, "frames_per_s": frames / wall if wall else 0.0,
                                  "model_id": model_id, "precision": precision}
    if len(tables) == 2:
        a, b = (np.array(t.column("embedding").to_pylist(), dtype=np.float32) for t in tables.values())
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
        out["gpu_vs_cpu_cosine_min"], out["gpu_vs_cpu_cosine_mean"] = float(cos.min()), float(cos.mean())
    out["delta"] = _maybe_delta(tables[device], work)
    return out


def _maybe_delta(table: Any, work: Path) -> str:
    if not _has("deltalake"):
        return "deltalake not installed: clips kept as Parquet files"
    from deltalake import write_deltalake

    write_deltalake(str(work / "clips-delta"), table.drop_columns(["segment_embeddings"]))
    return f"written to {work / 'clips-delta'}"


def _vit(device: str, name: str = "ViT-B-32") -> Any:
    from vidx.encode.models import ModelSpec, load_model

    return load_model(ModelSpec(name, "random"), device=device)


def fidelity(device: str, small: bool) -> dict[str, Any]:
    from vidx.encode.precision import _probe_batch

    out = {}
    for name in ("vidx-tiny",) if small else ("ViT-B-32", "vidx-tiny"):
        lm = _vit(device, name)
        x = _probe_batch(lm, n=16 if small else 64)
        with torch.inference_mode():
            ref = lm.model.encode_image(x).float()
            with torch.autocast(lm.device.type, dtype=torch.bfloat16):
                low = lm.model.encode_image(x).float()
        cos = torch.nn.functional.cosine_similarity(ref, low, dim=1).cpu().numpy()
        out[name] = {"bf16_vs_fp32_cosine_min": float(cos.min()), "bf16_vs_fp32_cosine_mean": float(cos.mean()),
                     "images": len(cos)}
    return out


def token_clustering(device: str, small: bool) -> dict[str, Any]:
    from vidx.config import TokenClusteringConfig
    from vidx.encode.centerclip import TokenClustering
    from vidx.encode.centerclip_bench import bench_token_clustering

    name = "vidx-tiny" if small else "ViT-B-32"
    lm = _vit(device, name)
    clustering = TokenClustering.from_config(TokenClusteringConfig(enabled=True))
    return {"model": name, **bench_token_clustering(lm.model, 4, 8 if small else 128, clustering,
                                                    batch_frames=64 if small else 256, repeats=2)}


def index(device: str, small: bool, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"vectors": n, "dim": 512}
    try:
        import faiss

        gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
        out["faiss"] = faiss.__version__
    except ImportError as exc:
        gpus, out["faiss"] = 0, f"not installed ({exc})"
    if gpus > 0:
        return {**out, **_faiss_gpu(n, small)}
    out["faiss_gpu"] = ("blocked: no faiss GPU build here (faiss-gpu-cu12 needs the CUDA 12 cuBLAS wheel, "
                        "554 MiB, over the device machine's 64 MiB transfer); timed the same work in torch")
    return {**out, **_torch_ivf(device, n, small)}


def _faiss_gpu(n: int, small: bool) -> dict[str, Any]:
    import faiss

    from vidx.index import devices

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 512), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    nlist = 256 if small else 4096
    t0 = time.perf_counter()
    centroids = devices.train_coarse(x[:64 * nlist], nlist, seed=0)
    train_s = time.perf_counter() - t0
    quantizer = faiss.IndexFlatL2(512)
    quantizer.add(centroids)
    ivf = faiss.IndexIVFFlat(quantizer, 512, nlist)
    ivf.is_trained = True
    t0 = time.perf_counter()
    filled = devices.add_vectors(ivf, x)
    return {"backend": "faiss-gpu", "nlist": nlist, "train_s": train_s, "add_s": time.perf_counter() - t0,
            "ntotal": int(filled.ntotal), "gpus_used": devices.target_gpus()}


def _torch_ivf(device: str, n: int, small: bool) -> dict[str, Any]:
    gen = torch.Generator(device=device).manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(n, 512, device=device, generator=gen), dim=1)
    nlist = 256 if small else 4096
    train = x[:64 * nlist]
    centroids = train[torch.randperm(len(train), device=device, generator=gen)[:nlist]].clone()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(10):  # faiss' IVF k-means iterations (vidx.index.devices.KMEANS_NITER)
        assign = _nearest(train, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, assign, train)
        counts = torch.bincount(assign, minlength=nlist).clamp_min(1).unsqueeze(1)
        centroids = sums / counts
    _sync(device)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    lists = _nearest(x, centroids)
    sizes = torch.bincount(lists, minlength=nlist)
    _sync(device)
    return {"backend": "torch", "nlist": nlist, "train_points": len(train), "train_s": train_s,
            "add_s": time.perf_counter() - t0, "ntotal": int(sizes.sum()), "largest_list": int(sizes.max())}


def _nearest(x: torch.Tensor, centroids: torch.Tensor, chunk: int = 262_144) -> torch.Tensor:
    c_norm = (centroids * centroids).sum(1)
    return torch.cat([(c_norm - 2 * x[i:i + chunk] @ centroids.T).argmin(1) for i in range(0, len(x), chunk)])


def frames_per_s(device: str, small: bool) -> dict[str, Any]:
    """Images/s of the bare image encoder: the median of `repeats` timed windows of `iters` batches
    each, after a warm-up (one window is a fraction of a second on a big GPU: a single one is noise)."""
    name, batch, iters, repeats = ("vidx-tiny", 32, 3, 3) if small else ("ViT-B-32", 256, 50, 5)
    lm = _vit(device, name)
    x = torch.randn(batch, 3, lm.image_size, lm.image_size, device=lm.device)
    runs: dict[str, list[float]] = {}
    for label, dtype in (("fp32", None), ("bf16_autocast", torch.bfloat16)):
        with torch.inference_mode(), torch.autocast(lm.device.type, dtype=dtype or torch.float32,
                                                    enabled=dtype is not None):
            for _ in range(5):
                lm.model.encode_image(x)
            _sync(device)
            for _ in range(repeats):
                t0 = time.perf_counter()
                for _ in range(iters):
                    lm.model.encode_image(x)
                _sync(device)
                runs.setdefault(label, []).append(iters * batch / (time.perf_counter() - t0))
    medians = {label: float(np.median(rates)) for label, rates in runs.items()}
    return {"model": name, "batch": batch, "iters": iters, "images_per_s": medians, "windows": runs,
            "results": {name: max(medians.values())}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="dry run on CPU at toy sizes")
    ap.add_argument("--out", help="JSON file (default $OUT/gpu_check.json, else bench/results/gpu_check_<time>.json)")
    ap.add_argument("--vectors", type=int, help="vectors for the index piece (default 1,000,000; --cpu 20,000)")
    args = ap.parse_args(argv)
    _pyspark_stand_in()
    device = "cpu" if args.cpu else "cuda"
    if not args.cpu and not torch.cuda.is_available():
        print("no CUDA device: use --cpu for a dry run", file=sys.stderr)
        return 2
    stamp = f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    out = Path(args.out or (Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT")
                            else ROOT / "bench" / "results" / f"gpu_check_{stamp}.json"))
    small, n = args.cpu, args.vectors or (20_000 if args.cpu else 1_000_000)
    report: dict[str, Any] = {"started_at": stamp, "device": device, "torch": torch.__version__,
                              "cuda": torch.version.cuda, "python": sys.version.split()[0],
                              "gpu_name": torch.cuda.get_device_name(0) if device == "cuda" else "none (--cpu)"}
    pieces: dict[str, Callable[[], dict[str, Any]]] = {
        "demo_embed": lambda: demo_embed(device, small), "fidelity": lambda: fidelity(device, small),
        "token_clustering": lambda: token_clustering(device, small), "index": lambda: index(device, small, n),
        "frames_per_s": lambda: frames_per_s(device, small)}
    for name, piece in pieces.items():
        t0 = time.perf_counter()
        try:
            report[name] = {"ok": True, **piece()}
        except Exception as exc:  # one piece failing must not lose the others' figures
            report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        report[name]["seconds"] = round(time.perf_counter() - t0, 2)
        print(f"[gpu_check] {name}: {'ok' if report[name]['ok'] else report[name]['error']} "
              f"({report[name]['seconds']} s)", flush=True)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps({"gpu_check": report}, indent=2, default=str))
        tmp.replace(out)
    print(f"[gpu_check] wrote {out}")
    return 0 if all(report[name]["ok"] for name in pieces) else 1


if __name__ == "__main__":
    sys.exit(main())
