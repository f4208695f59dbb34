"""`vidx train-tiny`: train, save, and say how good the result is (rendered-scene probe)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import open_clip

from vidx.train.loop import TrainConfig, TrainResult, train_tiny
from vidx.train.probe import ProbeResult, probe_model

LOG = logging.getLogger(__name__)


def probe_checkpoint(cfg: TrainConfig, path: str | Path) -> ProbeResult:
    """Load a saved checkpoint the way `--pretrained PATH` does and probe it."""
    model = open_clip.create_model(cfg.model, pretrained=str(path), device="cpu")
    return probe_model(model, open_clip.get_tokenizer(cfg.model), split=cfg.split)


def train_command(out: str, *, seed: int | None = None, steps: int | None = None,
                  batch_size: int | None = None, threads: int | None = None) -> tuple[TrainResult, ProbeResult]:
    """Train with the defaults of `TrainConfig` except the given values; print a summary."""
    given: dict[str, Any] = {"seed": seed, "steps": steps, "batch_size": batch_size, "threads": threads}
    cfg = replace(TrainConfig(), **{k: v for k, v in given.items() if v is not None})
    LOG.info("training %s: seed %d, %d steps of %d, lr %.0e, %d threads", cfg.model, cfg.seed, cfg.steps,
             cfg.batch_size, cfg.lr, cfg.threads)
    result = train_tiny(cfg, out)
    probe = probe_checkpoint(cfg, out)
    print(f"trained {cfg.model} (seed {cfg.seed}) for {result.steps} steps in {result.seconds:.0f} s, "
          f"final loss {result.final_loss:.3f}")
    print(f"checkpoint {result.path} ({result.size_bytes / 1e6:.1f} MB, sha256 {result.sha256[:16]})")
    print(probe.summary())
    print(f"use it: vidx embed ARCHIVE --model {cfg.model} --pretrained {result.path}")
    return result, probe
