"""Reference clip vectors computed directly (no Spark, no pipeline): decode a whole video, encode its
frames with one model at one precision, pool fixed windows - what the embed stage must have written."""

from __future__ import annotations

import numpy as np

from vidx.config import VidxConfig
from vidx.decode.decoder import decode_range
from vidx.decode.probe import probe
from vidx.encode.clips import fixed_windows
from vidx.encode.embedder import encode_frames, pool_clips
from vidx.encode.models import ModelSpec, load_model
from vidx.encode.precision import apply_precision
from vidx.tables import delta, table_uri


def reference_clips(path: str, cfg: VidxConfig, precision: str) -> dict[int, np.ndarray]:
    """clip_idx -> clip vector of `path` under `cfg` (model, sample_fps, clips.seconds) at `precision`."""
    lm, _ = apply_precision(load_model(ModelSpec(cfg.encode.model, cfg.encode.pretrained), device="cpu"), precision)
    info = probe(path)
    frames = decode_range(path, start_s=0.0, end_s=info.duration_s + 60.0, sample_fps=cfg.decode.sample_fps,
                          image_size=lm.image_size, info=info)
    emb = encode_frames(lm, frames.frames, batch_size=64)
    windows = fixed_windows(frames.times, clip_seconds=cfg.clips.seconds, duration_s=info.duration_s,
                            sample_fps=cfg.decode.sample_fps)
    pooled = pool_clips(emb, windows.frame_clip, len(windows.clip_idx))
    return {int(i): pooled[n] for n, i in enumerate(windows.clip_idx)}


def table_clips(warehouse: str, model_id: str) -> dict[str, dict[int, dict]]:
    """uri -> clip_idx -> clip row of `model_id` in the committed clips table."""
    uris = {r["video_id"]: r["uri"] for r in delta.read_table(table_uri(warehouse, "videos")).to_pylist()}
    out: dict[str, dict[int, dict]] = {}
    for row in delta.read_rows(table_uri(warehouse, "clips"), equals={"model_id": model_id}).to_pylist():
        out.setdefault(uris[row["video_id"]], {})[row["clip_idx"]] = row
    return out
