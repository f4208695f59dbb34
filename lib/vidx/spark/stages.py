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
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from vidx.config import VidxConfig
from vidx.errors import ConfigError, DecodeError, WorkUnitError
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
# Test-only: "<uri substring>#<unit index>" makes that unit fail to decode (a DecodeError).
FAIL_ENV = "VIDX_FAULT_UNIT_FAIL"
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

    try:  # the decoder subprocess reads a remote header by ranged reads: no download
        info = shared_decoder().probe(uri, timeout_s=cfg.decode.timeout_s)
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
        from vidx import storage

        storage.configure(self.cfg.storage.options)  # executors never load a config file
        for batch in batches:
            rows = [{"video_id": rec["video_id"], **_probe_one(rec["uri"], self.cfg)} for rec in batch.to_pylist()]
            yield pa.RecordBatch.from_pylist(rows, schema=PROBE_OUT)


@dataclass(frozen=True)
class EmbedTask:
    """Picklable mapInArrow function: decode -> encode -> pool -> write Parquet for a bin of units."""

    cfg: VidxConfig       # encode.precision: the run's decision (fp32/bf16/fp16), never "auto"
    run_id: str
    model_id: str
    clips_uri: str
    layout: ClipsLayout = DEFAULT_LAYOUT  # the clips table's partitioning, read once by the driver

    def __post_init__(self) -> None:
        if self.cfg.encode.precision == "auto":
            raise ConfigError("EmbedTask needs the run's decided precision (vidx.encode.precision."
                              "decide_precision on the driver), not encode.precision=auto")

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from vidx import storage
        from vidx.decode.source import TaskDownloads

        cfg = self.cfg
        storage.configure(cfg.storage.options)  # executors never load a config file
        lm, autocast = executor_model(cfg, self.model_id)
        # A video's units back to back: its one download serves them all, then is deleted.
        units = sorted((u for b in batches for u in b.to_pylist()), key=lambda u: (u["uri"], u["start_s"]))
        downloads = TaskDownloads(Counter(u["uri"] for u in units))
        try:
            yield from self._run(units, downloads, lm, autocast)
        finally:
            downloads.close()

    def _run(self, units: list[dict[str, Any]], downloads: Any, lm: Any, autocast: Any) -> Iterator[pa.RecordBatch]:
        from vidx.encode.batcher import decode_ahead

        cfg = self.cfg
        decoded = decode_ahead(units, lambda u: _decode_unit(cfg, u, lm.image_size, downloads),
                               workers=cfg.decode.workers, prefetch=cfg.decode.prefetch)
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
            # The video row quotes this: which part of the video failed, not only why.
            return None, {**result, "error_class": item.error.error_class,
                          "error": f"{unit_label(unit)}: {item.error}", "n_clips": 0, "n_frames": 0}
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


def unit_label(unit: dict[str, Any]) -> str:
    """`unit <video_id>:1 (4-8 s)`: a work unit and its time range, for error messages."""
    end = unit["end_s"]
    return f"unit {unit['unit_id']} ({unit['start_s']:g}-{end:g} s)" if math.isfinite(end) else \
        f"unit {unit['unit_id']} ({unit['start_s']:g} s-end)"


def _set_threads(threads: int) -> None:
    import torch
    from pyspark import TaskContext

    ctx = TaskContext.get()
    wanted = threads or (ctx.cpus() if ctx is not None else 0) or torch.get_num_threads()
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)


def _decode_unit(cfg: VidxConfig, unit: dict[str, Any], image_size: int, downloads: Any) -> Any:
    from vidx.decode.isolated import shared_decoder

    if os.environ.get(DELAY_ENV):  # test-only: stretch tasks so a fault test can kill mid-task
        time.sleep(float(os.environ[DELAY_ENV]))
    if os.environ.get(FAIL_ENV):
        pattern, _, index = os.environ[FAIL_ENV].rpartition("#")
        if pattern in unit["uri"] and unit["unit_id"].rsplit(":", 1)[-1] == index:
            raise DecodeError(f"fault injection ({FAIL_ENV})", error_class="corrupt")
    end_s = unit["end_s"]
    if not math.isfinite(end_s):
        # The last unit is open-ended: frames past a wrong header duration are kept. The decoder
        # drops sample times past the last real frame, so this bound only has to be generous.
        duration = unit["duration_s"]
        end_s = (duration + 60.0) if duration is not None and math.isfinite(duration) else 86_400.0
    try:
        with downloads.path(unit["uri"]) as path:
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
        _segments_array(item.segment_embeddings, n), _thumbnail_array(cfg, frames, windows),
        pa.nulls(n, pa.int32()),  # video_bucket: set by the writer (vidx.tables.layout)
    ], schema=_clips_schema())


def _thumbnail_array(cfg: VidxConfig, frames: Any, windows: Any) -> pa.Array:
    """The clips' JPEG thumbnails from the frames decoded for the encoder (nothing is decoded again)."""
    n = len(windows.clip_idx)
    if not cfg.thumbnails.enabled:
        return pa.nulls(n, pa.binary())
    from vidx.encode.thumbnails import clip_thumbnails

    return pa.array(clip_thumbnails(frames.frames, frames.times, windows.frame_clip, windows.start_s, windows.end_s,
                                    width=cfg.thumbnails.width, quality=cfg.thumbnails.quality), pa.binary())


# Per Python worker (Spark reuses workers across tasks AND runs): keyed by everything that makes
# the encoder object differ, so a later run with other weights or settings never gets this one.
_MODELS: dict[tuple[Any, ...], tuple[Any, Any]] = {}


def executor_model(cfg: VidxConfig, model_id: str) -> tuple[Any, Any]:
    """The model for this Python worker, on the GPU Spark assigned to the task (if any), at the
    precision the driver decided for the run (`cfg.encode.precision`, never probed here)."""
    import torch

    from vidx.encode.models import ModelSpec, load_model, model_id_for
    from vidx.encode.precision import apply_precision
    from vidx.spark.resources import task_device

    _set_threads(cfg.encode.threads)
    device = task_device(cfg.encode.device)  # one task per GPU: the one Spark assigned
    spec = ModelSpec(cfg.encode.model, cfg.encode.pretrained)
    tc = cfg.encode.token_clustering
    # model_id_for hashes a checkpoint's content (memoised by size + mtime), so a replaced file is a new key.
    key = (spec.name, spec.pretrained, model_id_for(spec), cfg.encode.precision, device, cfg.encode.compile,
           tc.model_dump_json() if tc.enabled else None)
    if key not in _MODELS:
        lm, autocast = apply_precision(load_model(spec, device=device), cfg.encode.precision)
        if cfg.encode.compile:
            lm.model.visual = torch.compile(lm.model.visual)
        LOG.info("encoder %s on %s, precision %s", lm.model_id, lm.device, cfg.encode.precision)
        _MODELS[key] = (lm, autocast)
    lm, autocast = _MODELS[key]
    _check_model_id(cfg, lm, model_id)  # every task, not only when the model was loaded
    return lm, autocast


def _check_model_id(cfg: VidxConfig, lm: Any, model_id: str) -> None:
    """The id this executor would write under (its weights + the task's recipe) must be the one the
    driver planned: different checkpoint files on two machines would otherwise mix under one id."""
    from vidx.encode.registry import Recipe, clips_model_id

    mine = clips_model_id(lm.model_id, Recipe.from_config(cfg, frame_size=lm.image_size,
                                                          precision=cfg.encode.precision))
    if mine != model_id:
        raise WorkUnitError(f"executor model is {mine}, driver planned {model_id}; "
                            "make the checkpoint file identical on every executor")


def _clips_schema() -> pa.Schema:
    from vidx_schemas import CLIPS_SCHEMA

    return CLIPS_SCHEMA
