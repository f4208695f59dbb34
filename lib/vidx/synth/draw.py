"""Vectorised numpy drawing for synthetic videos: palette, shape sprites and backgrounds.

Everything expensive (backgrounds, shape masks) is computed once per scene so that rendering a
frame is only a background copy plus a few masked slice assignments.
"""

from __future__ import annotations

import logging

import numpy as np

LOG = logging.getLogger(__name__)

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 190, 50),
    "blue": (30, 70, 230),
    "yellow": (240, 220, 30),
    "purple": (140, 40, 190),
    "orange": (250, 140, 20),
    "white": (250, 250, 250),
    "cyan": (30, 220, 230),
    "pink": (250, 120, 190),
    "black": (10, 10, 10),
}

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond", "ring", "cross")
BACKGROUNDS: tuple[str, ...] = ("solid", "gradient", "stripes", "checker")


def shape_mask(shape: str, size: int) -> np.ndarray:
    """Boolean (size, size) mask of `shape` centred in its box."""
    if size < 2:
        return np.ones((max(size, 1), max(size, 1)), dtype=bool)
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    x, y = (xx - c) / c, (yy - c) / c  # both in [-1, 1]
    r = np.hypot(x, y)
    if shape == "circle":
        return r <= 1.0
    if shape == "square":
        return (np.abs(x) <= 0.85) & (np.abs(y) <= 0.85)
    if shape == "triangle":  # apex up: the half-width grows linearly from top to bottom
        return (y >= -0.9) & (y <= 0.9) & (np.abs(x) <= (y + 0.9) / 1.8)
    if shape == "diamond":
        return np.abs(x) + np.abs(y) <= 1.0
    if shape == "ring":
        return (r <= 1.0) & (r >= 0.55)
    if shape == "cross":
        return ((np.abs(x) <= 0.3) | (np.abs(y) <= 0.3)) & (np.abs(x) <= 0.95) & (np.abs(y) <= 0.95)
    if shape == "star":  # five points: radius limit oscillates with the angle
        theta = np.arctan2(x, -y)
        limit = 0.45 + 0.55 * np.abs(np.cos(theta * 2.5)) ** 3
        return r <= limit
    raise ValueError(f"unknown shape {shape!r}; expected one of {', '.join(SHAPES)}")


def _mute(rgb: tuple[int, int, int], amount: float = 0.55) -> np.ndarray:
    """Blend a colour toward mid-grey so patterned backgrounds never drown the shapes."""
    return np.asarray(rgb, dtype=np.float32) * (1 - amount) + 110.0 * amount


def background(kind: str, color: str, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """(height, width, 3) uint8 background. `color` tints every kind; `solid` uses it as is."""
    base = np.asarray(PALETTE[color], dtype=np.float32)
    if kind == "solid":
        return np.broadcast_to(base, (height, width, 3)).astype(np.uint8)
    tint = _mute(PALETTE[color])
    dark = tint * 0.35
    if kind == "gradient":
        ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
        img = dark + (tint - dark) * ramp
        return np.broadcast_to(img, (height, width, 3)).astype(np.uint8)
    period = int(rng.integers(12, 28))
    if kind == "stripes":
        band = ((np.arange(width) // (period // 2)) % 2).astype(bool)[None, :, None]
        img = np.where(band, tint, dark)
        return np.broadcast_to(img, (height, width, 3)).astype(np.uint8)
    if kind == "checker":
        cols = (np.arange(width) // period) % 2
        rows = (np.arange(height) // period) % 2
        cell = (rows[:, None] ^ cols[None, :]).astype(bool)[:, :, None]
        return np.where(cell, tint, dark).astype(np.uint8)
    raise ValueError(f"unknown background {kind!r}; expected one of {', '.join(BACKGROUNDS)}")


def coarse_noise(rng: np.random.Generator, width: int, height: int, n: int, amp: int = 4) -> np.ndarray:
    """`n` low-frequency noise fields (int16) so that consecutive frames differ a little.

    Blocky noise (8x8 cells) rather than per-pixel noise: per-pixel noise makes H.264 files big
    and slow to encode, and it is not what the tests need.
    """
    cells = rng.integers(-amp, amp + 1, size=(n, height // 8 + 1, width // 8 + 1, 1), dtype=np.int16)
    full = cells.repeat(8, axis=1).repeat(8, axis=2)
    return np.ascontiguousarray(full[:, :height, :width])


def paste(frame: np.ndarray, mask: np.ndarray, rgb: np.ndarray, x: int, y: int) -> None:
    """Paint `rgb` through `mask` with its top-left corner at (x, y), clipped to the frame."""
    h, w = frame.shape[:2]
    mh, mw = mask.shape
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + mw, w), min(y + mh, h)
    if x0 >= x1 or y0 >= y1:
        return
    sub = mask[y0 - y : y1 - y, x0 - x : x1 - x]
    frame[y0:y1, x0:x1][sub] = rgb
