"""Model ids for tests that write tables by hand: always built by vidx.encode.registry, never typed in."""

from __future__ import annotations

from typing import Any

from vidx.config import load_config
from vidx.encode.registry import Recipe, clips_model_id, encoder_id


def recipe(*, frame_size: int = 64, precision: str = "fp32", **overrides: Any) -> Recipe:
    """The recipe of the default config (1 frame/s, fixed 4 s clips), with dotted-key overrides."""
    return Recipe.from_config(load_config(env={}, overrides=overrides), frame_size=frame_size, precision=precision)


def clips_id(name: str = "vidx-tiny", weights: str = "random", dim: int = 128, **recipe_args: Any) -> str:
    return clips_model_id(encoder_id(name, weights, dim), recipe(**recipe_args))
