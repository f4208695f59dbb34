"""What runs inside Spark tasks: probe and embed (clip-retrieval's reader -> mapper -> writer).

Each task gets an iterator of Arrow batches of work items and yields Arrow batches of results.
Builders (model, decoder) are called inside the executor; the model is cached per Python worker,
and Spark reuses workers, so it loads once per worker, not once per task. A bad video becomes a
`failed` result and the task goes on; anything else (storage, out of memory) raises so Spark
retries the task.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from vidx.config import VidxConfig
from vidx.errors import DecodeError, WorkUnitError
from vidx.tables.layout import DEFAULT_LAYOUT, ClipsLayout, write_clip_files

LOG = logging.getLogger(__name__)

PROBE_IN = pa.schema([("video_id", pa.string()), ("uri", pa.string())])
PROBE_OUT = pa.schema([
    ("video_id", pa.string()), ("duration_s", pa.float64()), ("fps", pa.float64()),
    ("width", pa.int32()), ("height", pa.int32()), ("codec", pa.string()),
    ("error_class", pa.string()), ("error", pa.string()),
])
UNITS_IN = pa.schema([("bin", pa.int32()), ("unit_id", pa.string()), ("video_id", pa.string()),
                      ("uri", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64()),
                      ("duration_s", pa.float64())])
EMBED_OUT = pa.schema([
    ("kind", pa.string()),            # "unit" (one per work unit) or "file" (one per data file)
    ("unit_id", pa.string()), ("video_id", pa.string()),
    ("error_class", pa.string()), ("error", pa.string()),
    ("n_clips", pa.int32()), ("n_frames", pa.int32()),
    ("decode_s", pa.float64()), ("encode_s", pa.float64()),
    ("file", pa.string()),            # DataFile JSON for kind == "file"
])
DELAY_ENV = "VIDX_FAULT_UNIT_DELAY_S"
_FLUSH_ROWS = 50_000  # bounds executor memory: ~50k clips x 512 floats ~ 100 MB


def _check_limits(info: Any, cfg: VidxConfig) -> None:
    if info.duration_s > cfg.decode.max_duration_s:
        raise DecodeError(f"duration {info.duration_s:.0f} s exceeds decode.max_duration_s="
                          f"{cfg.decode.max_duration_s:.0f}", error_class="too_large")
    if info.width * info.height > cfg.decode.max_pixels:
        raise DecodeError(f"resolution {info.width}x{info.height} exceeds decode.max_pixels="
                          f"{cfg.decode.max_pixels}", error_class="too_large")


def _probe_one(uri: str, cfg: VidxConfig) -> dict[str, Any]:
    from vidx.decode.isolated import shared_decoder
    from vidx.decode.source import local_copy

    try:
        with local_copy(uri) as path:
            info = shared_decoder().probe(path, timeout_s=cfg.decode.timeout_s)
        facts = {"duration_s": info.duration_s, "fps": info.fps, "width": info.width, "height": info.height,
                 "codec": info.codec}
        _check_limits(info, cfg)
    except DecodeError as exc:
        return {**(facts if exc.error_class == "too_large" else {}), "error_class": exc.error_class,
                "error": str(exc)}
    except OSError as exc:
        return {"error_class": "unreadable", "error": f"{type(exc).__name__}: {exc}"}
    return facts


@dataclass(frozen=True)
class ProbeTask:
    """Picklable mapInArrow function: header probe of each file (duration, fps, size, codec) or the
    reason it is unusable, in the isolated decoder so a hanging file costs only a timeout."""

    cfg: VidxConfig

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            rows = [{"video_id": rec["video_id"], **_probe_one(rec["uri"], self.cfg)} for rec in batch.to_pylist()]
            yield pa.RecordBatch.from_pylist(rows, schema=PROBE_OUT)


@dataclass(frozen=True)
class EmbedTask:
    """Picklable mapInArrow function: decode -> encode -> pool -> write Parquet for a bin of units."""

    cfg: VidxConfig
    run_id: str
    model_id: str
    clips_uri: str
    layout: ClipsLayout = DEFAULT_LAYOUT  # the clips table's partitioning, read once by the driver

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from vidx.encode.batcher import decode_ahead

        cfg = self.cfg
        lm, autocast = executor_model(cfg, self.model_id)
        units = (u for b in batches for u in b.to_pylist())
        decoded = decode_ahead(units, lambda u: _decode_unit(cfg, u, lm.image_size), workers=cfg.decode.workers,
                               prefetch=cfg.decode.prefetch)
        encoded = _encode(cfg, lm, autocast, decoded)
        pending: list[pa.Table] = []
        n_pending = 0
        for item in encoded:
            clips, result = self._finish_unit(item)
            rows = [result]
            if clips is not None and clips.num_rows:
                pending.append(clips)
                n_pending += clips.num_rows
            if n_pending >= _FLUSH_ROWS:
                rows.extend(self._flush(pending))
                pending, n_pending = [], 0
            yield pa.RecordBatch.from_pylist(rows, schema=EMBED_OUT)
        if pending:
            yield pa.RecordBatch.from_pylist(self._flush(pending), schema=EMBED_OUT)

    def _finish_unit(self, item: Any) -> tuple[pa.Table | None, dict[str, Any]]:
        unit = item.unit
        result: dict[str, Any] = {"kind": "unit", "unit_id": unit["unit_id"], "video_id": unit["video_id"],
                                  "decode_s": item.decode_s, "encode_s": item.encode_s}
        if isinstance(item.error, DecodeError):
            LOG.warning("unit %s (%s) failed: %s", unit["unit_id"], unit["uri"], item.error)
            return None, {**result, "error_class": item.error.error_class, "error": str(item.error),
                          "n_clips": 0, "n_frames": 0}
        if item.error is not None:  # not the video's fault: fail the task so Spark retries it
            raise WorkUnitError(f"unit {unit['unit_id']} ({unit['uri']}) failed: {item.error}") from item.error
        clips = _clip_rows(self, unit, item)
        return clips, {**result, "n_clips": clips.num_rows, "n_frames": len(item.decoded.times)}

    def _flush(self, pending: list[pa.Table]) -> list[dict[str, Any]]:
        """One data file per partition the pending clips fall in (vidx.tables.layout)."""
        from pyspark import TaskContext

        ctx = TaskContext.get()
        hint = f"{self.run_id}-p{ctx.partitionId()}-a{ctx.attemptNumber()}" if ctx else self.run_id
        try:
            files = write_clip_files(pa.concat_tables(pending), clips_uri=self.clips_uri, layout=self.layout,
                                     model_id=self.model_id, name_hint=hint)
        except OSError as exc:  # storage trouble is not the video's fault: let Spark retry the task
            raise WorkUnitError(f"writing clips to {self.clips_uri} failed: {exc}") from exc
        return [{"kind": "file", "file": data.to_json()} for data in files]


def _set_threads(threads: int) -> None:
    import torch
    from pyspark import TaskContext

    ctx = TaskContext.get()
    wanted = threads or (ctx.cpus() if ctx is not None else 0) or torch.get_num_threads()
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


def _decode_unit(cfg: VidxConfig, unit: dict[str, Any], image_size: int) -> Any:
    from vidx.decode.isolated import shared_decoder
    from vidx.decode.source import local_copy

    if os.environ.get(DELAY_ENV):  # test-only: stretch tasks so a fault test can kill mid-task
        time.sleep(float(os.environ[DELAY_ENV]))
    end_s = unit["end_s"]
    if not math.isfinite(end_s):
        # The last unit is open-ended: frames past a wrong header duration are kept. The decoder
        # drops sample times past the last real frame, so this bound only has to be generous.
        duration = unit["duration_s"]
        end_s = (duration + 60.0) if duration is not None and math.isfinite(duration) else 86_400.0
    try:
        with local_copy(unit["uri"]) as path:
            return shared_decoder().decode(path, start_s=unit["start_s"], end_s=end_s,
                                           sample_fps=cfg.decode.sample_fps, image_size=image_size, info=None,
                                           threads=cfg.decode.threads, timeout_s=cfg.decode.timeout_s)
    except FileNotFoundError as exc:
        raise DecodeError(f"file disappeared before decoding: {exc}", error_class="unreadable") from exc


def _encode(cfg: VidxConfig, lm: Any, autocast: Any, decoded: Iterator[Any]) -> Iterator[Any]:
    """Per-frame encoding (clip = mean of its frames), or whole clips through token clustering."""
    from vidx.encode.batcher import encode_batched, encode_clips_batched
    from vidx.encode.centerclip import TokenClustering
    from vidx.encode.embedder import encode_clip_frames_batch, encode_frames

    if not cfg.encode.token_clustering.enabled:
        return encode_batched(decoded, lambda f: encode_frames(lm, f, batch_size=len(f), autocast=autocast),
                              batch_size=cfg.encode.batch_size, dim=lm.dim)
    clustering = TokenClustering.from_config(cfg.encode.token_clustering)

    def lengths(item: Any) -> list[int]:  # fixed windows: the config forbids clustering + adaptive
        windows = _fixed(cfg, item.unit, item.decoded.times)
        return np.bincount(windows.frame_clip, minlength=len(windows.clip_idx)).tolist()

    return encode_clips_batched(
        decoded, lambda f, n: encode_clip_frames_batch(lm, f, n, clustering=clustering, autocast=autocast),
        batch_size=cfg.encode.batch_size, dim=lm.dim, clip_lengths=lengths)


def _fixed(cfg: VidxConfig, unit: dict[str, Any], times: np.ndarray) -> Any:
    from vidx.encode.clips import fixed_windows

    return fixed_windows(times, clip_seconds=cfg.clips.seconds, duration_s=unit["duration_s"],
                         sample_fps=cfg.decode.sample_fps)


def _list_array(rows: np.ndarray) -> pa.ListArray:
    """(n, dim) float32 -> list<float32> without a Python loop."""
    dim = rows.shape[1]
    offsets = pa.array(np.arange(0, (len(rows) + 1) * dim, dim, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(rows.reshape(-1), type=pa.float32()))


def _segments_array(segments: list[np.ndarray] | None, n: int) -> pa.Array:
    if segments is None:
        return pa.nulls(n, _clips_schema().field("segment_embeddings").type)
    counts = np.array([len(s) for s in segments], dtype=np.int32)
    outer = pa.array(np.concatenate([[0], np.cumsum(counts)]).astype(np.int32))
    return pa.ListArray.from_arrays(outer, _list_array(np.concatenate(segments)))


def _clip_rows(task: EmbedTask, unit: dict[str, Any], item: Any) -> pa.Table:
    from vidx.encode.clips import adaptive_windows
    from vidx.encode.embedder import pool_clips

    cfg, frames, emb = task.cfg, item.decoded, item.embeddings
    if len(frames.times) == 0 or (emb is None and item.clip_embeddings is None):
        return pa.Table.from_pylist([], schema=_clips_schema())
    if cfg.clips.mode == "adaptive":
        windows = adaptive_windows(frames.times, emb, threshold=cfg.clips.adaptive_threshold,
                                   min_seconds=cfg.clips.min_seconds, max_seconds=cfg.clips.max_seconds,
                                   duration_s=unit["duration_s"], sample_fps=cfg.decode.sample_fps)
    else:
        windows = _fixed(cfg, unit, frames.times)
    n = len(windows.clip_idx)
    pooled = item.clip_embeddings if item.clip_embeddings is not None else pool_clips(emb, windows.frame_clip, n)
    n_frames = np.bincount(windows.frame_clip, minlength=n)
    frame_ts = [frames.pts[windows.frame_clip == i].tolist() for i in range(n)]
    return pa.Table.from_arrays([
        pa.array([unit["video_id"]] * n, pa.string()), pa.array(windows.clip_idx, pa.int32()),
        pa.array(windows.start_s, pa.float64()), pa.array(windows.end_s, pa.float64()),
        pa.array(n_frames, pa.int32()), pa.array(frame_ts, pa.list_(pa.float64())),
        pa.array([task.model_id] * n, pa.string()), _list_array(pooled), pa.array([task.run_id] * n, pa.string()),
        _segments_array(item.segment_embeddings, n),
        pa.nulls(n, pa.int32()),  # video_bucket: set by the writer (vidx.tables.layout)
    ], schema=_clips_schema())


_MODELS: dict[tuple[str, str], tuple[Any, Any]] = {}


def executor_model(cfg: VidxConfig, model_id: str) -> tuple[Any, Any]:
    """The model for this Python worker, on the GPU Spark assigned to the task (if any), with its
    inference precision chosen once per worker."""
    import torch
    from pyspark import TaskContext

    from vidx.encode.models import ModelSpec, load_model
    from vidx.encode.precision import autocast_dtype, with_precision
    from vidx.encode.registry import clips_model_id

    _set_threads(cfg.encode.threads)
    device: str = cfg.encode.device
    ctx = TaskContext.get()
    gpus = ctx.resources().get("gpu") if ctx is not None else None
    if gpus is not None and gpus.addresses and device != "cpu" and torch.cuda.is_available():
        device = f"cuda:{gpus.addresses[0]}"  # one task per GPU: the one Spark assigned
    key = (device, cfg.encode.precision)
    if key not in _MODELS:
        lm = load_model(ModelSpec(cfg.encode.model, cfg.encode.pretrained), device=device)
        if clips_model_id(lm.model_id, cfg.encode.token_clustering) != model_id:
            raise WorkUnitError(f"executor loaded model {lm.model_id}, driver planned {model_id}; "
                                "make the checkpoint file identical on every executor")
        lm, name = with_precision(lm, cfg.encode.precision)
        if cfg.encode.compile:
            lm.model.visual = torch.compile(lm.model.visual)
        LOG.info("encoder %s on %s, precision %s", lm.model_id, lm.device, name)
        _MODELS[key] = (lm, autocast_dtype(lm, cfg.encode.precision))
    return _MODELS[key]


def _clips_schema() -> pa.Schema:
    from vidx_schemas import CLIPS_SCHEMA

    return CLIPS_SCHEMA
