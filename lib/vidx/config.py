"""One typed configuration, loaded from defaults < YAML file < `VIDX_*` env < CLI flags.

Env names map onto fields with a double underscore between section and key, e.g.
`VIDX_WAREHOUSE=/data/w`, `VIDX_ENCODE__BATCH_SIZE=128`, `VIDX_ARCHIVE__EXTENSIONS='[.mp4, .mkv]'`.
Values are parsed as YAML so lists, numbers and booleans work from the shell.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vidx.errors import ConfigError

ENV_PREFIX = "VIDX_"
DEFAULT_EXTENSIONS = (".mp4", ".mkv", ".avi", ".mov", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ArchiveConfig(_Section):
    """How the archive is listed and cut into work units."""

    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    # A unit must stay cheap to retry: long videos are split into ranges of at most this length.
    max_unit_seconds: float = Field(default=600.0, gt=0)
    # Spark tasks for the embed stage; 0 = 4 x default parallelism (bounded by the unit count).
    partitions: int = Field(default=0, ge=0)
    # Work units per checkpoint: each checkpoint is one Delta commit per table, so a crash loses
    # at most this much work, and a week-long backfill is resumable.
    commit_every: int = Field(default=256, gt=0)

    @field_validator("extensions")
    @classmethod
    def _normalise_ext(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in value)


class StorageConfig(_Section):
    """Object-store options for users who cannot set the standard AWS environment variables.

    Keys are those variables' names in any case (`aws_endpoint_url`, `aws_access_key_id`,
    `aws_secret_access_key`, `aws_session_token`, `aws_region`, `aws_allow_http`); they are passed to
    deltalake verbatim (so any other object_store key works there too) and translated for pyarrow,
    fsspec and boto3 by vidx.storage. Empty: everything comes from the environment.
    """

    options: dict[str, str] = Field(default_factory=dict)

    @field_validator("options", mode="before")
    @classmethod
    def _strings(cls, value: Any) -> Any:
        # YAML turns `aws_allow_http: true` into a bool; object stores want the string.
        if isinstance(value, Mapping):
            return {str(k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in value.items()}
        return value


class SparkConfig(_Section):
    master: str = "local[*]"
    app_name: str = "vidx"
    driver_memory: str = "2g"
    # Extra `spark.*` settings passed to the session builder verbatim.
    conf: dict[str, str] = Field(default_factory=dict)


class DecodeConfig(_Section):
    sample_fps: float = Field(default=1.0, gt=0)
    # Decoder threads per task; 0 lets the decoder choose.
    threads: int = Field(default=1, ge=0)
    # Decoder threads (each with its own decoder subprocess) and how many units they may run ahead
    # of the encoder: decode overlaps encode, so the encoder never waits for frames.
    workers: int = Field(default=2, ge=1)
    prefetch: int = Field(default=4, ge=1)
    # A decoder that takes longer than this for one probe or work unit is killed (error "timeout").
    timeout_s: float = Field(default=600.0, gt=0)
    # Files beyond these limits become failed rows with error class "too_large".
    max_duration_s: float = Field(default=24 * 3600.0, gt=0)
    max_pixels: int = Field(default=7680 * 4320, gt=0)


class ClipsConfig(_Section):
    # fixed: windows of `seconds`; adaptive: cut when the frame embedding drifts from the running
    # clip centre by more than `adaptive_threshold` (cosine distance), within min/max seconds.
    mode: Literal["fixed", "adaptive"] = "fixed"
    seconds: float = Field(default=4.0, gt=0)
    adaptive_threshold: float = Field(default=0.15, gt=0, lt=2)
    min_seconds: float = Field(default=2.0, gt=0)
    max_seconds: float = Field(default=10.0, gt=0)


class TokenClusteringConfig(_Section):
    """CenterCLIP token clustering (vidx.encode.centerclip): fewer tokens in the later ViT blocks.

    After block `layer` the frames of a clip are split into `segments` contiguous groups; each
    group's patch tokens are reduced to `centers` k-medoids++ medoids (`iters` iterations, `seed`)
    and the remaining blocks run on [mean CLS, medoids], giving one embedding per segment.
    Off by default: it trades fidelity for speed and changes the embeddings, so an index must not
    mix clips encoded with and without it. Defaults suit ViT-B-32 on 4-frame clips: at most 1.7x
    fewer block FLOPs; bench/token_clustering.py measures speed and fidelity.
    """

    enabled: bool = False
    # Blocks run per frame before clustering, at most the model's depth. Mid-depth: early tokens are
    # still low-level, and clustering them costs more fidelity. vidx-tiny has 4 blocks: use 2.
    layer: int = Field(default=6, ge=0)
    # Contiguous groups of frames per clip; each gives one embedding (2 = two 2 s halves of a 4 s clip).
    segments: int = Field(default=2, gt=0)
    # Medoid tokens kept per segment (ViT-B-32: 2 frames x 49 patches = 98 tokens -> 16).
    centers: int = Field(default=16, gt=0)
    algorithm: Literal["kmedoids"] = "kmedoids"
    iters: int = Field(default=10, ge=0)
    seed: int = 0


class EncodeConfig(_Section):
    model: str = "vidx-tiny"
    # open_clip pretrained tag, a packaged tag ("synthetic-v1": vidx-tiny trained on vidx's synthetic
    # world, shipped in vidx/encode/weights), a local checkpoint path, or "random" (random init, seed 0).
    pretrained: str = "synthetic-v1"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    batch_size: int = Field(default=64, gt=0)
    # torch intra-op threads per task; 0 = executor cores / concurrent tasks.
    threads: int = Field(default=0, ge=0)
    token_clustering: TokenClusteringConfig = TokenClusteringConfig()
    # auto: bf16 weights on CPU when faithful (cosine >= 0.999 vs fp32) and faster, bf16 autocast on GPU.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # torch.compile the image encoder (no gain measured on this project's CPUs; try it on GPUs).
    compile: bool = False


_BYTE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
               "pb": 10**15, "p": 2**50, "pib": 2**50}


def parse_bytes(value: Any) -> int:
    """A byte count from an int or a string: "8GB" (10^9), "8GiB" or Spark-style "8g" (2^30), "512MiB"."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a byte size")
    if isinstance(value, int | float):
        return int(value)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _BYTE_UNITS:
        raise ValueError(f"{value!r} is not a byte size; write e.g. 17179869184, \"16GiB\", \"16g\" or \"500MB\"")
    return int(float(match.group(1)) * _BYTE_UNITS[unit])


IndexCandidate = Literal["ivfpq", "opq", "ivfpq_refine", "ivfflat"]


class IndexConfig(_Section):
    # Below this many vectors an exact flat index is both smaller to reason about and fast enough;
    # above it IVF needs >= 39 training points per list at nlist = 4*sqrt(N), i.e. N >= ~24k.
    flat_below: int = Field(default=30_000, ge=1)
    # recall@10 (vs exact search, held-out queries) the chosen index and nprobe must reach.
    target_recall: float = Field(default=0.95, gt=0, le=1)
    # Budget for the index's size in bytes (int or "16GiB"/"16g"/"500MB"): in RAM, or on disk for
    # an on-disk index. Candidates estimated above it are skipped; none left is an IndexBuildError.
    max_memory: int = Field(default=16 * 2**30, gt=0)
    # Index families the selection may choose from (vidx.index.select): plain IVF-PQ, OPQ-rotated
    # IVF-PQ (best recall per byte, slowest to train), 4-bit fast-scan IVF-PQ re-ranked with SQ8
    # codes, IVF-Flat.
    candidates: tuple[IndexCandidate, ...] = ("ivfpq", "opq", "ivfpq_refine", "ivfflat")
    # Candidates are compared on the held-out queries' exact neighbours plus random vectors, this
    # many in all (every vector when N is smaller); the chosen one is then measured on all N.
    select_sample: int = Field(default=100_000, ge=1_000)
    # `vidx build-index` adds vectors on Spark (train once on the driver, one shard per partition,
    # merge) from this many vectors up; below it the driver builds alone, which is faster.
    distributed_above: int = Field(default=2_000_000, ge=1)
    # A distributed build whose estimated index size exceeds this keeps its inverted lists in an
    # on-disk `.ivfdata` file (served memory-mapped) instead of in RAM.
    ondisk_above: int = Field(default=16 * 2**30, gt=0)
    eval_queries: int = Field(default=1000, gt=0)
    train_per_list: int = Field(default=64, ge=30, le=256)
    # Dimensions per PQ sub-quantizer of `choose_params`' fixed layout (used only when the caller
    # passes IndexParams instead of letting the selection choose): 4 -> 512-d vectors cost 128 B.
    pq_dims: int = Field(default=4, ge=1)
    seed: int = 1234

    @field_validator("max_memory", "ondisk_above", mode="before")
    @classmethod
    def _parse_bytes(cls, value: Any) -> int:
        return parse_bytes(value)

    @field_validator("candidates")
    @classmethod
    def _some_candidates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("list at least one index family (ivfpq, opq, ivfpq_refine, ivfflat)")
        return value
    # Publish only from a clips version whose latest `vidx validate` succeeded (the `validations`
    # table); `vidx build-index --skip-validation` is the development escape hatch.
    require_validation: bool = True


class QualityConfig(_Section):
    """`vidx validate`: thresholds of the great-expectations suites."""

    # Share of a model's live (not deleted) videos that may have failed to decode. A higher share
    # means something systemic (a missing codec, an unreadable mount), not a few bad files.
    max_failed_share: float = Field(default=0.2, ge=0, le=1)
    # Clip vectors are L2-normalised: |norm - 1| above this is a broken encoder or a bad write.
    norm_tolerance: float = Field(default=0.01, gt=0, lt=1)


class SearchConfig(_Section):
    k: int = Field(default=10, gt=0, le=10_000)
    # Moments (`"group": "moments"`, `vidx search --moments`): consecutive clips of one video whose
    # scores lie within `moment_drop` (cosine) of that video's best clip merge into one span (gaps
    # of one clip allowed). 0.15: the smallest drop reaching the best R@1 at IoU >= 0.5 in
    # `python -m bench.moments` (vidx-tiny, a tuning seed, not the README's evaluation seed). The
    # scale depends on the model's scores: re-tune with `vidx eval --moments` for another model.
    moment_drop: float = Field(default=0.15, ge=0, le=2)
    # k moments need more than k clips: k x moment_fanout clips are fetched (widened if too few).
    moment_fanout: int = Field(default=10, ge=1, le=100)


class ServeConfig(_Section):
    """`vidx serve`: the HTTP query server."""

    # Loopback by default: exposing the server is a deliberate choice (--host 0.0.0.0).
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65_535)
    max_k: int = Field(default=1000, gt=0, le=10_000)
    # A base64 image of a few MB is the largest legitimate request; anything bigger is refused (413).
    max_body_bytes: int = Field(default=8 * 2**20, gt=0)
    # How often the server polls CURRENT for a new version (one small read per poll).
    reload_interval_s: float = Field(default=5.0, gt=0)
    # GET /media/{video_id} streams indexed source files to the search page; off where the archive
    # must not be exposed (the page then shows thumbnails and spans only).
    media: bool = True

    # Requests in flight at once (health, readiness and metrics not counted); one more gets 503 with
    # Retry-After instead of queueing without bound.
    max_concurrent_requests: int = Field(default=64, gt=0)
    # Decoded image pixels per request (query images are PNG/JPEG/WebP only); more is a 400.
    max_image_pixels: int = Field(default=40_000_000, gt=0)
    # Largest nprobe a request may ask for (each probed list costs a scan); more is a 400.
    max_nprobe: int = Field(default=4096, gt=0)


class ThumbnailsConfig(_Section):
    """One small JPEG per clip, written by the embed stage from frames it decoded anyway."""

    enabled: bool = True
    # Largest width in pixels. Thumbnails are the square the encoder saw (decoded frames are
    # centre-cropped to the model's input size), never upscaled: vidx-tiny's 64 px stay 64 px.
    width: int = Field(default=160, ge=16, le=1024)
    quality: int = Field(default=80, ge=10, le=95)


class VidxConfig(_Section):
    warehouse: str = "./warehouse"
    storage: StorageConfig = StorageConfig()
    archive: ArchiveConfig = ArchiveConfig()
    spark: SparkConfig = SparkConfig()
    decode: DecodeConfig = DecodeConfig()
    clips: ClipsConfig = ClipsConfig()
    encode: EncodeConfig = EncodeConfig()
    index: IndexConfig = IndexConfig()
    quality: QualityConfig = QualityConfig()
    search: SearchConfig = SearchConfig()
    serve: ServeConfig = ServeConfig()
    thumbnails: ThumbnailsConfig = ThumbnailsConfig()

    @model_validator(mode="after")
    def _clustering_needs_fixed_clips(self) -> VidxConfig:
        # Adaptive clips are cut from per-frame embeddings, which the clustered encoder never
        # computes (it encodes whole clips); the two cannot be combined.
        if self.encode.token_clustering.enabled and self.clips.mode != "fixed":
            raise ValueError("encode.token_clustering needs clips.mode=fixed (adaptive clips are cut from "
                             "per-frame embeddings); disable one of them")
        return self

    def with_overrides(self, overrides: Mapping[str, Any]) -> VidxConfig:
        """A copy with dotted-key overrides applied (`{"encode.model": "ViT-B-32"}`)."""
        data = self.model_dump()
        _deep_merge(data, _expand_dotted(overrides))
        return _validate(data, "overrides")


def _expand_dotted(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in flat.items():
        if value is None:
            continue  # an unset CLI flag never overrides anything
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for name, raw in env.items():
        if (not name.startswith(ENV_PREFIX) or name == "VIDX_CONFIG" or name.startswith("VIDX_FAULT_")
                or name.startswith("VIDX_AIRFLOW_")):
            # VIDX_FAULT_* are test-only fault-injection switches; VIDX_AIRFLOW_* configure the DAGs
            continue
        key = name[len(ENV_PREFIX):].lower().replace("__", ".")
        try:
            flat[key] = yaml.safe_load(raw) if raw != "" else raw
        except yaml.YAMLError:
            flat[key] = raw
        if key in {"warehouse", "encode.pretrained", "encode.model", "spark.master"}:
            flat[key] = raw  # paths and names stay strings even if they look like YAML
    return _expand_dotted(flat)


def _validate(data: Mapping[str, Any], source: str) -> VidxConfig:
    from vidx import storage

    try:
        cfg = VidxConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"invalid configuration from {source}:\n{exc}\n"
                          "Fix the value or remove it to use the documented default.") from exc
    # The loaded config's object-store options become the process's (filesystems, Delta, conditional
    # writes); Spark tasks, which never load a config, apply cfg.storage.options themselves.
    storage.configure(cfg.storage.options)
    return cfg


def load_config(path: str | os.PathLike[str] | None = None,
                overrides: Mapping[str, Any] | None = None,
                env: Mapping[str, str] | None = None) -> VidxConfig:
    """Load the configuration: defaults < YAML (`path` or `$VIDX_CONFIG`) < `VIDX_*` env < overrides."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    path = path or env.get("VIDX_CONFIG")
    if path:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file {file} does not exist; pass an existing YAML file or omit it")
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {file} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {file} must hold a mapping at the top level")
        data = loaded
    _deep_merge(data, _env_overrides(env))
    _deep_merge(data, _expand_dotted(overrides or {}))
    return _validate(data, str(path) if path else "environment")
