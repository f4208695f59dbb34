"""Batched image/text encoding and clip pooling.

Frames arrive already resized (in the decoder) and centre-cropped to the model's input size, so
the only per-frame work left here is one normalisation; no PIL round-trip, no second resize.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vidx.encode.centerclip import TokenClustering, encode_clips
from vidx.encode.models import LoadedModel
from vidx.errors import VidxError

LOG = logging.getLogger(__name__)


def l2_normalize(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


def frames_to_tensor(frames: np.ndarray, lm: LoadedModel) -> torch.Tensor:
    """(N, S, S, 3) uint8 RGB -> normalised (N, 3, S, S) float tensor on the model's device."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise VidxError(f"expected (N, H, W, 3) uint8 frames, got shape {frames.shape}")
    x = torch.from_numpy(np.ascontiguousarray(frames))
    if lm.device.type == "cuda":
        # Pinned host memory lets the copy run asynchronously while the GPU finishes the last batch.
        x = x.pin_memory().to(lm.device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(lm.mean, device=lm.device).view(1, 3, 1, 1)
    std = torch.tensor(lm.std, device=lm.device).view(1, 3, 1, 1)
    x = ((x - mean) / std).to(next(lm.model.parameters()).dtype)
    if lm.device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def encode_frames(lm: LoadedModel, frames: np.ndarray, *, batch_size: int,
                  autocast: torch.dtype | None = None) -> np.ndarray:
    """L2-normalised image embeddings (N, dim) float32 for prepared frames."""
    out = np.empty((len(frames), lm.dim), dtype=np.float32)
    with torch.inference_mode(), torch.autocast(lm.device.type, dtype=autocast, enabled=autocast is not None):
        for lo in range(0, len(frames), batch_size):
            batch = frames_to_tensor(frames[lo:lo + batch_size], lm)
            out[lo:lo + len(batch)] = lm.model.encode_image(batch).float().cpu().numpy()
    return l2_normalize(out)


def encode_clip_frames_batch(lm: LoadedModel, frames: np.ndarray, lengths: list[int], *,
                             clustering: TokenClustering,
                             autocast: torch.dtype | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Prepared frames of whole clips (clip after clip, `lengths` frames each) -> ((clips, dim) clip
    vectors, one (segments, dim) array per clip), through CenterCLIP token clustering."""
    x = frames_to_tensor(frames, lm)
    with torch.autocast(lm.device.type, dtype=autocast, enabled=autocast is not None):
        encoded = encode_clips(lm.model, x, lengths, clustering=clustering)
    # ClipEncoding vectors are float32 on the CPU already (centerclip._assemble)
    return np.stack([e.clip_embedding.numpy() for e in encoded]), [e.segment_embeddings.numpy() for e in encoded]


def encode_texts(lm: LoadedModel, texts: Sequence[str], *, batch_size: int = 256) -> np.ndarray:
    if not texts or any(not t.strip() for t in texts):
        raise VidxError("text queries must be non-empty strings")
    out = np.empty((len(texts), lm.dim), dtype=np.float32)
    with torch.inference_mode():
        for lo in range(0, len(texts), batch_size):
            tokens = lm.tokenizer(list(texts[lo:lo + batch_size])).to(lm.device)
            out[lo:lo + len(tokens)] = lm.model.encode_text(tokens).float().cpu().numpy()
    return l2_normalize(out)


def prepare_image(image: Image.Image, size: int) -> np.ndarray:
    """A query image through the same geometry as video frames: shortest side -> size, centre crop."""
    image = image.convert("RGB")
    w, h = image.size
    scale = size / min(w, h)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    image = image.resize((new_w, new_h), Image.Resampling.BILINEAR)
    left, top = (new_w - size) // 2, (new_h - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)


def encode_image_files(lm: LoadedModel, paths: Sequence[str | Path]) -> np.ndarray:
    frames = []
    for path in paths:
        try:
            with Image.open(path) as img:
                frames.append(prepare_image(img, lm.image_size))
        except (OSError, ValueError) as exc:
            raise VidxError(f"cannot read image {path}: {exc}; pass a PNG or JPEG file") from exc
    return encode_frames(lm, np.stack(frames), batch_size=64)


def pool_clips(frame_emb: np.ndarray, clip_of_frame: np.ndarray, n_clips: int) -> np.ndarray:
    """Clip embedding = mean of its frames' normalised embeddings, renormalised.

    Clips with no frames get a zero row; callers drop them (they never reach the table).
    """
    sums = np.zeros((n_clips, frame_emb.shape[1]), dtype=np.float64)
    np.add.at(sums, clip_of_frame, frame_emb)
    return l2_normalize(sums)
