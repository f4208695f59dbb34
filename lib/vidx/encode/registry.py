"""The ONE place model ids are built, and the model record a model_id names: `W/models/<model_id>.json`.

A clip vector depends on the weights AND on how the frames were sampled, cut into clips, resized
and encoded. Everything of that goes into the clips model_id, so changing any of it embeds into a
partition (and index) of its own instead of mixing vectors that are not comparable:

    <encoder id>__<recipe>[__tc-<token clustering>]
    encoder id  <model>__<weights>__d<dim>          the weights (a checkpoint by content hash);
                                                   text/image queries use this encoder (query_model_id)
    recipe      fps<sample_fps>-fixed<seconds>s-px<frame size>-<precision>
                fps<sample_fps>-adaptive<min>-<max>s-t<threshold>-px<frame size>-<precision>

e.g. `vidx-tiny__synthetic-v1__d128__fps1-fixed4s-px64-bf16`. Precision is the one the driver
decided for the run (never "auto"; see vidx.encode.precision). The record holds the same settings
as data (`recipe`), so validation reads them instead of assuming the current config's.

The index manifest copies the record, so a query server loads the exact query encoder.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

from vidx.config import TokenClusteringConfig, VidxConfig
from vidx.errors import ConfigError
from vidx.storage import exists, join, normalize_uri, read_bytes, write_bytes_atomic

if TYPE_CHECKING:  # importing models pulls in torch; build-index and validate must not pay for it
    from vidx.encode.models import LoadedModel

PRECISIONS = ("fp32", "bf16", "fp16")
RECORD_FORMAT = 2  # 1 (no "recipe"): written before the recipe was part of the model_id


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-")


def _num(x: float) -> str:
    """Short and exact: 1.0 -> "1", 0.5 -> "0.5", 1/3 -> its full repr (never two values, one text)."""
    short = f"{x:.6g}"
    return short if float(short) == x else repr(float(x))


def encoder_id(name: str, weights: str, dim: int) -> str:
    """The id of an encoder (weights + dimension), filesystem safe: `ViT-B-32__laion2b_s34b_b79k__d512`."""
    return _slug(f"{name}__{weights}__d{dim}")


@dataclass(frozen=True)
class Recipe:
    """Everything besides the weights that changes a clip vector."""

    sample_fps: float
    clip_mode: str                  # "fixed" | "adaptive"
    clip_seconds: float             # fixed windows
    adaptive_threshold: float       # adaptive clips: cut threshold and bounds
    min_seconds: float
    max_seconds: float
    frame_size: int                 # frames are resized + centre-cropped to this square
    precision: str                  # fp32 | bf16 | fp16: the run's decision, never "auto"
    token_clustering: TokenClusteringConfig | None = None  # None: exact per-frame encoding

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ConfigError(f"a recipe needs a decided precision ({', '.join(PRECISIONS)}), not "
                              f"{self.precision!r}: resolve encode.precision=auto on the driver first")

    @classmethod
    def from_config(cls, cfg: VidxConfig, *, frame_size: int, precision: str) -> Recipe:
        c, tc = cfg.clips, cfg.encode.token_clustering
        return cls(sample_fps=cfg.decode.sample_fps, clip_mode=c.mode, clip_seconds=c.seconds,
                   adaptive_threshold=c.adaptive_threshold, min_seconds=c.min_seconds, max_seconds=c.max_seconds,
                   frame_size=frame_size, precision=precision, token_clustering=tc if tc.enabled else None)

    def tag(self) -> str:
        clips = (f"fixed{_num(self.clip_seconds)}s" if self.clip_mode == "fixed" else
                 f"adaptive{_num(self.min_seconds)}-{_num(self.max_seconds)}s-t{_num(self.adaptive_threshold)}")
        return f"fps{_num(self.sample_fps)}-{clips}-px{self.frame_size}-{self.precision}"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["token_clustering"] = self.token_clustering.model_dump() if self.token_clustering else None
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Recipe:
        tc = data.get("token_clustering")
        known = {f.name for f in fields(cls)} - {"token_clustering"}
        return cls(**{k: v for k, v in data.items() if k in known},
                   token_clustering=TokenClusteringConfig(**tc) if tc else None)


def clips_model_id(query_model_id: str, recipe: Recipe) -> str:
    """The model_id clips are stored and indexed under (see the module docstring for the format).
    Clustered clip vectors differ from exact ones, so token clustering settings are in it too;
    text queries use the same encoder either way (`query_model_id` in the record)."""
    out = f"{query_model_id}__{recipe.tag()}"
    c = recipe.token_clustering
    if c is not None:
        out += f"__tc-L{c.layer}-S{c.segments}-K{c.centers}-I{c.iters}-s{c.seed}"
    return _slug(out)


def plan_in_process(cfg: VidxConfig, lm: LoadedModel, device_kind: str = "cpu") -> tuple[VidxConfig, str]:
    """For one-process tools (benchmarks, the GPU check, tests that call EmbedTask directly): decide
    the precision once, here, as the embed driver does (`vidx.spark.embed.plan_model`, which also
    records it in the warehouse), and return the config the tasks get plus their model_id."""
    from vidx.encode.precision import decide_precision  # torch: only where a model is loaded anyway

    precision, _ = decide_precision(lm, cfg.encode, device_kind)
    cfg = cfg.with_overrides({"encode.precision": precision})
    return cfg, clips_model_id(lm.model_id, Recipe.from_config(cfg, frame_size=lm.image_size, precision=precision))


def model_record(lm: LoadedModel, recipe: Recipe, *, precision_rule: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "record_format": RECORD_FORMAT, "model_id": clips_model_id(lm.model_id, recipe),
        "query_model_id": lm.model_id, "name": lm.spec.name, "pretrained": lm.spec.pretrained,
        "dim": lm.dim, "image_size": lm.image_size, "recipe": recipe.as_dict(), "precision_rule": precision_rule}
    if recipe.token_clustering is not None:
        record["token_clustering"] = recipe.token_clustering.model_dump()
    return record


def record_uri(warehouse: str, model_id: str) -> str:
    return join(normalize_uri(warehouse), "models", f"{model_id}.json")


def save_model_record(warehouse: str, lm: LoadedModel, recipe: Recipe, *,
                      precision_rule: str | None = None) -> dict[str, Any]:
    record = model_record(lm, recipe, precision_rule=precision_rule)
    write_bytes_atomic(record_uri(warehouse, record["model_id"]),
                       json.dumps(record, indent=2, sort_keys=True).encode())
    return record


def auto_precision_uri(warehouse: str, query_model_id: str, device_kind: str) -> str:
    """Where the driver keeps its `encode.precision=auto` decision for an encoder (vidx.encode.precision)."""
    return join(normalize_uri(warehouse), "models", "auto-precision", f"{query_model_id}.{device_kind}.json")


def load_model_record(warehouse: str, model_id: str) -> dict[str, Any] | None:
    uri = record_uri(warehouse, model_id)
    if not exists(uri):
        return None
    return dict(json.loads(read_bytes(uri)))


def recorded_recipe(warehouse: str, model_id: str) -> Recipe | None:
    """The recipe `model_id`'s clips were made with; None for a record written before recipes were
    recorded (or no record at all): callers then fall back to the current config and say so."""
    record = load_model_record(warehouse, model_id)
    if record is None or "recipe" not in record:
        return None
    return Recipe.from_dict(record["recipe"])
