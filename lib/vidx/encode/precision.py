"""Inference precision: decided ONCE per run on the driver, applied as recorded on every executor.

On this project's CPUs (AVX512-BF16), `model.to(torch.bfloat16)` ran ViT-B-32 ~2.3x faster than
fp32 while autocast gave nothing, so on CPU "auto" means bf16 weights - but only after a fidelity
check (cosine >= 0.999 vs fp32 on a fixed probe batch) and only if it is actually faster for this
model (tiny models can be slower in bf16). On GPU "auto" is bf16 autocast with fp32 weights.

bf16 and fp32 vectors differ (cosine ~0.999, not 1), so the decided precision is part of the clips
model_id (vidx.encode.registry). A probe on each executor could decide differently per worker (a
busy one finds bf16 "not faster") and mix precisions under one id: executors only `apply_precision`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Literal

import numpy as np
import torch

from vidx.config import EncodeConfig
from vidx.encode.models import LoadedModel
from vidx.errors import ConfigError

LOG = logging.getLogger(__name__)
Precision = Literal["auto", "fp32", "bf16", "fp16"]
MIN_COSINE = 0.999
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _probe_batch(lm: LoadedModel, n: int = 8) -> torch.Tensor:
    """Smooth deterministic images (blurred noise): closer to video frames than white noise."""
    gen = torch.Generator().manual_seed(1234)
    small = torch.rand((n, 3, 8, 8), generator=gen)
    img = torch.nn.functional.interpolate(small, size=lm.image_size, mode="bilinear", align_corners=False)
    mean = torch.tensor(lm.mean).view(1, 3, 1, 1)
    std = torch.tensor(lm.std).view(1, 3, 1, 1)
    return ((img - mean) / std).to(lm.device)


def _embed(model: torch.nn.Module, x: torch.Tensor) -> tuple[np.ndarray, float]:
    dtype = next(model.parameters()).dtype
    t0 = time.perf_counter()
    with torch.inference_mode():
        out = model.encode_image(x.to(dtype)).float()  # type: ignore[operator]
    seconds = time.perf_counter() - t0
    emb = out.cpu().numpy()
    return emb / np.linalg.norm(emb, axis=1, keepdims=True), seconds


def _encode(models: list[torch.nn.Module], x: torch.Tensor, rounds: int = 5) -> list[tuple[np.ndarray, float]]:
    """Each model's embeddings of `x` and its best time over `rounds`, the models taking turns: a
    load spike on a shared machine then slows both, not one (best of a few is the steady speed)."""
    embeddings = [_embed(m, x)[0] for m in models]  # warm-up: first calls allocate
    times = [float("inf")] * len(models)
    for _ in range(rounds):
        for i, m in enumerate(models):
            embeddings[i], seconds = _embed(m, x)
            times[i] = min(times[i], seconds)
    return list(zip(embeddings, times, strict=True))


def probe_cpu_precision(lm: LoadedModel) -> str:
    """bf16 when this machine runs `lm` faithfully (min cosine >= MIN_COSINE vs fp32) and faster in
    bf16, else fp32. A speed measurement: called once per run, on the driver, never on executors."""
    x = _probe_batch(lm)
    candidate = copy.deepcopy(lm.model).to(torch.bfloat16).eval()
    try:
        (ref, ref_s), (emb, seconds) = _encode([lm.model, candidate], x)
    except RuntimeError as exc:  # op not implemented for this dtype on this device
        LOG.info("bf16 unavailable for %s: %s", lm.model_id, exc)
        return "fp32"
    cosine = float(np.min(np.sum(emb * ref, axis=1)))
    LOG.info("%s bf16: min cosine %.5f vs fp32, %.1f ms vs %.1f ms", lm.model_id, cosine, seconds * 1e3,
             ref_s * 1e3)
    return "bf16" if cosine >= MIN_COSINE and seconds < 0.9 * ref_s else "fp32"


def planned_device_kind(encode: EncodeConfig, spark_conf: Mapping[str, str] | None = None) -> str:
    """Where the executors will encode: "cuda" when encode.device says so, or when it is "auto" and
    GPUs are planned (a Spark task GPU amount in spark.conf) or the driver itself sees one."""
    if encode.device != "auto":
        return encode.device
    gpu_conf = (spark_conf or {}).get("spark.task.resource.gpu.amount", "0")
    return "cuda" if float(gpu_conf or 0) > 0 or torch.cuda.is_available() else "cpu"


def decide_precision(lm: LoadedModel, encode: EncodeConfig, device_kind: str) -> tuple[str, str]:
    """(precision, the rule that chose it) for a run; the driver calls this once.

    - fp32 / bf16 / fp16 in the config: used as given, on every device;
    - auto on cuda: bf16 (autocast), by rule: no probe, the driver may not even have the GPU;
    - auto on cpu: `probe_cpu_precision` on the driver's CPU (the caller records the outcome so
      later runs on a busier or different driver do not flip it; see vidx.spark.embed).
    """
    if encode.precision != "auto":
        return encode.precision, "configured"
    if device_kind == "cuda":
        return "bf16", "auto: bf16 autocast on cuda"
    return probe_cpu_precision(lm), "auto: cpu probe on the driver"


def apply_precision(lm: LoadedModel, precision: str) -> tuple[LoadedModel, torch.dtype | None]:
    """The model and autocast dtype that run a DECIDED precision on `lm`'s device, without probing:
    on GPU the weights stay fp32 and autocast runs in bf16/fp16; on CPU (where autocast gave no
    gain) the weights are converted. The cached fp32 model is copied, never changed in place."""
    if precision not in _DTYPES:
        raise ConfigError(f"precision {precision!r} was not decided: executors need fp32, bf16 or fp16")
    if precision == "fp32":
        return lm, None
    if lm.device.type == "cuda":
        return lm, _DTYPES[precision]
    return dataclasses.replace(lm, model=copy.deepcopy(lm.model).to(_DTYPES[precision]).eval()), None


def with_precision(lm: LoadedModel, precision: Precision) -> tuple[LoadedModel, str]:
    """Decide (probing on CPU for "auto") and apply, in this process: for benchmarks and one-off
    scripts. Spark executors never call this; they apply the precision the driver recorded."""
    device_kind = "cuda" if lm.device.type == "cuda" else "cpu"
    name, _ = decide_precision(lm, EncodeConfig(precision=precision), device_kind)
    return apply_precision(lm, name)[0], name


def run_precision(warehouse: str, lm: LoadedModel, encode: EncodeConfig,
                  spark_conf: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The precision of an embed run and the rule that chose it: decided once, on the driver.

    "auto" on CPU probes the driver once per warehouse and encoder, and keeps the outcome in
    `W/models/auto-precision/`: the precision is part of the model_id, so a later run whose probe
    flipped (a busier driver) would otherwise re-embed the whole archive under a new id, and a
    resumed run would not find its own checkpoints' model. Delete that file, or set
    encode.precision, to decide again.
    """
    from vidx.encode.registry import auto_precision_uri
    from vidx.storage import exists, read_bytes, write_bytes_atomic

    kind = planned_device_kind(encode, spark_conf)
    if encode.precision != "auto" or kind == "cuda":
        return decide_precision(lm, encode, kind)
    uri = auto_precision_uri(warehouse, lm.model_id, kind)
    if not exists(uri):
        name, rule = decide_precision(lm, encode, kind)
        write_bytes_atomic(uri, json.dumps({"precision": name, "rule": rule, "encoder": lm.model_id,
                                            "decided_at": datetime.now(UTC).isoformat(timespec="seconds")}).encode())
    saved = json.loads(read_bytes(uri))
    return str(saved["precision"]), f"{saved['rule']} at {saved['decided_at']}, kept in {uri}"
