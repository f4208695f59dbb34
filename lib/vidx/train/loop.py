"""`vidx train-tiny`: train an open_clip architecture (vidx-tiny) on the synthetic captioned world.

Standard CLIP recipe at toy scale: symmetric contrastive loss (open_clip `ClipLoss`) with a learnable
temperature, AdamW (no decay on gains, biases, embeddings and the temperature), linear warm-up then
cosine decay. Batches come from `vidx.train.data` (rendered frames, distinct captions, hard
negatives). Deterministic given the seed and the thread count: the model init, the data and the
order of operations depend on nothing else.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import open_clip
import torch

from vidx.encode.models import model_config  # registers vidx-tiny with open_clip
from vidx.errors import ConfigError, VidxError
from vidx.synth.world import AttributeSplit
from vidx.train.data import BatchSpec, training_batch

LOG = logging.getLogger(__name__)

# ln(100): open_clip clamps the learnable temperature at 100 as well.
_MAX_LOGIT_SCALE = math.log(100.0)


@dataclass(frozen=True)
class TrainConfig:
    model: str = "vidx-tiny"
    seed: int = 0
    steps: int = 400
    batch_size: int = 128
    lr: float = 2e-3
    warmup_steps: int = 40
    weight_decay: float = 0.1
    hard_share: float = 0.5
    threads: int = 2
    log_every: int = 25
    split: AttributeSplit = field(default_factory=AttributeSplit)

    def check(self) -> None:
        if self.steps <= 0 or self.batch_size < 2:
            raise ConfigError(f"steps must be > 0 and batch_size >= 2, got {self.steps} and {self.batch_size}")
        if not 0 < self.lr < 1 or self.threads <= 0:
            raise ConfigError(f"lr must be in (0, 1) and threads > 0, got {self.lr} and {self.threads}")


@dataclass
class TrainResult:
    path: Path
    steps: int
    seconds: float
    losses: list[float]
    size_bytes: int
    sha256: str

    @property
    def final_loss(self) -> float:
        tail = self.losses[-10:]
        return float(sum(tail) / len(tail)) if tail else math.nan


def build_model(name: str, seed: int) -> Any:
    """A freshly initialised open_clip model, seeded without touching the caller's global RNG."""
    model_config(name)  # ModelLoadError naming the known models when `name` is unknown
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        try:
            model = open_clip.create_model(name, pretrained=None, device="cpu")
        except RuntimeError as exc:
            raise ConfigError(f"cannot build open_clip model {name!r}: {exc}") from exc
    return model.train()


def make_optimizer(model: Any, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; gains, biases, embeddings and the temperature are not decayed (as in open_clip)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        skip = param.ndim < 2 or "embedding" in name or "logit_scale" in name or ".ln" in name
        (no_decay if skip else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up over `warmup_steps`, then cosine decay to zero at `steps`."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return 0.5 * cfg.lr * (1.0 + math.cos(math.pi * min(1.0, progress)))


def images_to_tensor(frames: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    """(N, S, S, 3) uint8 -> normalised (N, 3, S, S) float32, exactly as `vidx.encode.embedder` does."""
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def train_step(model: Any, loss_fn: Any, opt: torch.optim.Optimizer, images: torch.Tensor,
               tokens: torch.Tensor) -> float:
    image_features, text_features, logit_scale = model(images, tokens)[:3]
    loss = loss_fn(image_features, text_features, logit_scale)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, _MAX_LOGIT_SCALE)
    return float(loss.detach())


def save_checkpoint(model: Any, path: str | Path) -> tuple[int, str]:
    """fp16 state dict (open_clip loads it with `pretrained=PATH`), the same bytes for the same weights,
    written atomically. Returns (size, sha256)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to(torch.float16) if v.is_floating_point() else v.detach()
             for k, v in model.state_dict().items()}
    buffer = io.BytesIO()  # not the file: torch.save would name the archive's root folder after it
    torch.save(state, buffer)
    data = buffer.getvalue()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return len(data), hashlib.sha256(data).hexdigest()


def _run_steps(cfg: TrainConfig, model: Any) -> list[float]:
    pre = open_clip.get_model_preprocess_cfg(model)
    size = pre["size"][0] if isinstance(pre["size"], tuple | list) else int(pre["size"])
    tokenizer = open_clip.get_tokenizer(cfg.model)
    spec = BatchSpec(batch_size=cfg.batch_size, image_size=int(size), hard_share=cfg.hard_share)
    rng = np.random.default_rng(cfg.seed)
    opt = make_optimizer(model, cfg)
    loss_fn = open_clip.ClipLoss()
    losses: list[float] = []
    t0 = time.perf_counter()
    for step in range(cfg.steps):
        frames, captions = training_batch(rng, cfg.split, spec)
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = train_step(model, loss_fn, opt, images_to_tensor(frames, pre["mean"], pre["std"]),
                          tokenizer(captions))
        if not math.isfinite(loss):
            raise VidxError(f"training diverged at step {step} (loss {loss}); lower --lr or change --seed")
        losses.append(loss)
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            LOG.info("step %d/%d  loss %.3f  lr %.2e  temp %.1f  %.1f s", step + 1, cfg.steps,
                     float(np.mean(losses[-cfg.log_every:])), lr_at(step, cfg),
                     float(model.logit_scale.detach().exp()), time.perf_counter() - t0)
    return losses


def train_tiny(cfg: TrainConfig, out: str | Path) -> TrainResult:
    """Train `cfg.model` from scratch on the synthetic world and save an fp16 checkpoint at `out`."""
    cfg.check()
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    try:
        t0 = time.perf_counter()
        model = build_model(cfg.model, cfg.seed)
        losses = _run_steps(cfg, model)
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    size, digest = save_checkpoint(model.eval(), out)
    LOG.info("trained %s for %d steps in %.0f s; checkpoint %s (%.1f MB, sha256 %s)", cfg.model, cfg.steps,
             seconds, out, size / 1e6, digest[:12])
    return TrainResult(Path(out), cfg.steps, seconds, losses, size, digest)
