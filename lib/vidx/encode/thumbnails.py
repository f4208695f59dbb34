"""Clip thumbnails: one small JPEG per clip from the frames the embed stage already decoded.

The decoder hands the encoder frames centre-cropped to the model's square input (224 px for
ViT-B-32, 64 px for vidx-tiny), and nothing else is kept, so a thumbnail is that square: exactly
the picture the clip's vector was computed from. The cropped-away sides were never decoded into
memory, so the source aspect ratio cannot be restored without decoding again, which is what this
must not do. Frames wider than `width` are downscaled; smaller ones are kept as they are (an
upscaled 64 px frame holds no more detail, only more bytes: the page scales it with CSS).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def midpoint_frames(times: np.ndarray, frame_clip: np.ndarray, start_s: np.ndarray, end_s: np.ndarray) -> np.ndarray:
    """Index of the frame nearest each clip's midpoint (the earlier one on a tie).

    `frame_clip[i]` is the clip position of frame i; every clip must own at least one frame.
    """
    n_clips = len(start_s)
    mid = (np.asarray(start_s, np.float64) + np.asarray(end_s, np.float64)) / 2.0
    clip = np.asarray(frame_clip, np.int64)
    distance = np.abs(np.asarray(times, np.float64) - mid[clip])
    # Sorted by clip, then distance, then frame order: the first frame of each clip's block wins.
    order = np.lexsort((np.arange(len(clip)), distance, clip))
    first = np.ones(len(order), dtype=bool)
    first[1:] = clip[order][1:] != clip[order][:-1]
    picked = order[first]
    if len(picked) != n_clips:
        raise ValueError(f"{n_clips} clips but frames cover {len(picked)} of them")
    return picked


def jpeg(frame: np.ndarray, *, width: int, quality: int) -> bytes:
    """JPEG bytes of one (H, W, 3) uint8 RGB frame, downscaled to at most `width` px wide."""
    image = Image.fromarray(np.ascontiguousarray(frame), "RGB")
    if image.width > width:
        height = max(1, round(image.height * width / image.width))
        image = image.resize((width, height), Image.Resampling.BILINEAR, reducing_gap=2.0)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def clip_thumbnails(frames: np.ndarray, times: np.ndarray, frame_clip: np.ndarray, start_s: np.ndarray,
                    end_s: np.ndarray, *, width: int, quality: int) -> list[bytes]:
    """One JPEG per clip, in clip order, from the decoded `frames` (N, S, S, 3)."""
    return [jpeg(frames[i], width=width, quality=quality)
            for i in midpoint_frames(times, frame_clip, start_s, end_s)]
