"""open_clip model loading: model name + pretrained tag, a local checkpoint, or a seeded random init.

`vidx-tiny` is vidx's own small architecture (model_configs/vidx-tiny.json), registered with
open_clip at import so every open_clip API knows it. Loading never falls back silently: when
weights cannot be fetched the error names the model and says how to pass a local checkpoint.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import open_clip
import torch

from vidx.encode.registry import encoder_id
from vidx.errors import ModelLoadError

LOG = logging.getLogger(__name__)

RANDOM_TAG = "random"
RANDOM_SEED = 0
_CONFIG_DIR = Path(__file__).parent / "model_configs"
WEIGHTS_DIR = Path(__file__).parent / "weights"
# Pretrained tags whose weights ship inside the package (no network): (model, tag) -> file in WEIGHTS_DIR.
# synthetic-v1: vidx-tiny trained by `vidx train-tiny` on the synthetic captioned world (weights/MODEL_CARD.md).
PACKAGED_WEIGHTS: dict[tuple[str, str], str] = {("vidx-tiny", "synthetic-v1"): "vidx-tiny-synthetic-v1.pt"}
open_clip.add_model_config(_CONFIG_DIR)

_CACHE: dict[tuple[str, str, str], LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


@dataclass(frozen=True)
class ModelSpec:
    """What the user asked for: an open_clip model name and a pretrained tag, path or `random`."""

    name: str
    pretrained: str = RANDOM_TAG

    @property
    def is_checkpoint(self) -> bool:
        return self.pretrained not in (RANDOM_TAG, "") and Path(self.pretrained).expanduser().is_file()

    def as_dict(self) -> dict[str, str]:
        return {"name": self.name, "pretrained": self.pretrained}


@dataclass(frozen=True)
class LoadedModel:
    spec: ModelSpec
    model: Any  # open_clip.CLIP (or CustomTextCLIP)
    tokenizer: Any
    device: torch.device
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    dim: int
    model_id: str


def model_config(name: str) -> dict[str, Any]:
    cfg = open_clip.get_model_config(name)
    if cfg is None:
        known = ", ".join(sorted(open_clip.list_models())[:12])
        raise ModelLoadError(f"unknown open_clip model {name!r}. Known models include: {known} ... "
                             "(see open_clip.list_models()).")
    return dict(cfg)


def embedding_dim(name: str) -> int:
    return int(model_config(name)["embed_dim"])


# sha256 prefix of each checkpoint by (path, size, mtime_ns): the executor checks its model id on
# every task, and rehashing a 600 MB file each time would cost seconds; a file replaced in place
# has a new mtime or size and is hashed again.
_DIGESTS: dict[tuple[str, int, int], str] = {}


def checkpoint_digest(path: str | Path) -> str:
    file = Path(path).expanduser().resolve()
    st = file.stat()
    key = (str(file), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        digest = hashlib.sha256()
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        _DIGESTS[key] = digest.hexdigest()[:12]
    return _DIGESTS[key]


def model_id_for(spec: ModelSpec) -> str:
    """The encoder id (vidx.encode.registry.encoder_id) naming architecture, weights and dimension.
    A checkpoint is named by its content hash, so renaming the file keeps the id and retraining
    changes it."""
    weights = "ckpt" + checkpoint_digest(spec.pretrained) if spec.is_checkpoint else spec.pretrained or RANDOM_TAG
    return encoder_id(spec.name, weights, embedding_dim(spec.name))


def packaged_weights(spec: ModelSpec) -> Path | None:
    """The packaged checkpoint for `spec`'s (model, tag), or None when the tag is not a packaged one."""
    name = PACKAGED_WEIGHTS.get((spec.name, spec.pretrained))
    if name is None:
        if spec.pretrained in {tag for _, tag in PACKAGED_WEIGHTS}:
            models = sorted(m for m, tag in PACKAGED_WEIGHTS if tag == spec.pretrained)
            raise ModelLoadError(f"pretrained tag {spec.pretrained!r} is vidx's packaged weights for "
                                 f"{', '.join(models)} only, not for {spec.name!r}; use --model {models[0]}")
        return None
    path = WEIGHTS_DIR / name
    if not path.is_file():
        raise ModelLoadError(f"packaged weights {path} for {spec.name} ({spec.pretrained}) are missing from this "
                             "install; reinstall vidx, or train them with `vidx train-tiny --out FILE` and pass "
                             "--pretrained FILE")
    return path


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("encode.device is 'cuda' but torch sees no GPU; use 'auto' or 'cpu'.")
    return torch.device(device)


def _create(spec: ModelSpec, device: torch.device) -> Any:
    if spec.pretrained in (RANDOM_TAG, ""):
        # Seeded without touching the caller's global RNG: identical weights in every process.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_SEED)
            return open_clip.create_model(spec.name, pretrained=None, device=device)
    packaged = packaged_weights(spec)
    if packaged is not None:
        return open_clip.create_model(spec.name, pretrained=str(packaged), device=device, require_pretrained=True)
    source = str(Path(spec.pretrained).expanduser()) if spec.is_checkpoint else spec.pretrained
    if not spec.is_checkpoint and ("/" in source or source.endswith((".pt", ".bin", ".safetensors"))):
        raise ModelLoadError(f"checkpoint {source!r} for model {spec.name!r} does not exist; pass an "
                             "existing file with --pretrained PATH.")
    try:
        return open_clip.create_model(spec.name, pretrained=source, device=device, require_pretrained=True)
    except Exception as exc:  # open_clip/hf_hub raise many types for network or format problems
        tags = open_clip.list_pretrained_tags_by_model(spec.name)
        raise ModelLoadError(
            f"could not load weights {source!r} for model {spec.name!r}: {type(exc).__name__}: {exc}\n"
            f"Known pretrained tags for {spec.name}: {', '.join(tags[:8]) or 'none'}. If this machine cannot "
            "reach the model hub, download the checkpoint elsewhere (e.g. open_clip_pytorch_model.bin) "
            f"and pass it with --pretrained /path/to/checkpoint (model {spec.name})."
        ) from exc


def load_model(spec: ModelSpec, *, device: str = "auto") -> LoadedModel:
    """Load (once per process) and return the model in eval mode with its tokenizer and preprocessing."""
    # The id is in the key: a checkpoint replaced at the same path must not return the old weights.
    key = (model_id_for(spec), spec.pretrained, device)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        cfg = model_config(spec.name)
        dev = resolve_device(device)
        LOG.info("loading model %s (%s) on %s", spec.name, spec.pretrained, dev)
        model = _create(spec, dev).eval()
        pre = open_clip.get_model_preprocess_cfg(model)
        size = pre.get("size", cfg["vision_cfg"]["image_size"])
        size = int(size[0] if isinstance(size, list | tuple) else size)
        loaded = LoadedModel(
            spec=spec, model=model, tokenizer=open_clip.get_tokenizer(spec.name), device=dev,
            image_size=size, mean=tuple(pre["mean"]), std=tuple(pre["std"]),  # type: ignore[arg-type]
            dim=int(cfg["embed_dim"]), model_id=key[0],
        )
        _CACHE[key] = loaded
        return loaded
