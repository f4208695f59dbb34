"""Small published indexes for registry and query-server tests, built straight from generated
vectors with vidx.index.build/publish (no Spark, no videos)."""

from __future__ import annotations

import io
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from vidx.config import IndexConfig, load_config
from vidx.encode import registry
from vidx.encode.embedder import encode_frames, encode_texts, prepare_image
from vidx.encode.models import LoadedModel, ModelSpec, load_model, model_id_for
from vidx.encode.registry import Recipe, clips_model_id
from vidx.index import BuiltIndex, IndexParams, PublishedIndex, build_index, publish_index

DIM = 128
CLIP_S = 4.0
CFG = IndexConfig(target_recall=0.5, eval_queries=100, seed=3)
IVF_PARAMS = IndexParams(kind="ivfpq", factory="IVF32,PQ8x8", nlist=32, m=8, nbits=8, metric="l2",
                         train_size=4096)  # small codes, small sample: trains in ~1 s
FLAT_PARAMS = IndexParams(kind="flat", factory="Flat", nlist=0, m=0, nbits=0, metric="ip", train_size=0)
# Each of these is encoded by vidx-tiny and planted as one clip, so text and image queries have
# a known right answer even with random weights (the query is the clip's own embedding).
TEXT_PROBES = ("a red square on grey", "two blue circles")
IMAGE_COLOURS = ((220, 30, 30), (30, 200, 60), (40, 60, 230))


@cache
def tiny() -> LoadedModel:
    return load_model(ModelSpec("vidx-tiny", "random"), device="cpu")


def recipe() -> Recipe:
    """The embedding recipe the planted vectors stand for: default config, exact fp32."""
    return Recipe.from_config(load_config(env={}), frame_size=tiny().image_size, precision="fp32")


def model_id() -> str:
    return clips_model_id(model_id_for(ModelSpec("vidx-tiny", "random")), recipe())


def model_record(**changes: Any) -> dict[str, Any]:
    return {**registry.model_record(tiny(), recipe()), **changes}


def clustered(n: int, seed: int, clusters: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + 0.3 * rng.standard_normal((n, DIM)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def image(colour: tuple[int, int, int], size: int = 96) -> Image.Image:
    """A flat colour with a white diagonal band, so different colours embed differently."""
    arr = np.full((size, size, 3), colour, np.uint8)
    for i in range(size):
        arr[i, max(0, i - 6):i + 6] = 255
    return Image.fromarray(arr)


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def probe_vectors() -> np.ndarray:
    """Embeddings of TEXT_PROBES then IMAGE_COLOURS, by the tiny model."""
    texts = encode_texts(tiny(), list(TEXT_PROBES))
    frames = np.stack([prepare_image(image(c), tiny().image_size) for c in IMAGE_COLOURS])
    return np.concatenate([texts, encode_frames(tiny(), frames, batch_size=8)])


def ids_table(n: int, n_videos: int = 20) -> pa.Table:
    """Clip i belongs to video i % n_videos; even videos live under /archive/cats/, odd under /archive/dogs/."""
    rows = np.arange(n)
    video = rows % n_videos
    clip_idx = rows // n_videos
    return pa.table({
        "faiss_id": pa.array(rows, pa.int64()),
        "video_id": pa.array([f"vid{v:03d}" for v in video]),
        "clip_idx": pa.array(clip_idx, pa.int32()),
        "start_s": pa.array(clip_idx * CLIP_S, pa.float64()),
        "end_s": pa.array((clip_idx + 1) * CLIP_S, pa.float64()),
        "uri": pa.array([f"/archive/{'cats' if v % 2 == 0 else 'dogs'}/video{v:03d}.mp4" for v in video]),
    })


def build_tiny(*, n: int = 2000, seed: int = 0, ivf: bool = False,
               probes: bool = True) -> tuple[BuiltIndex, np.ndarray]:
    """An index of `n` clustered vectors (the first rows replaced by the probe embeddings), not yet published."""
    vectors = clustered(n, seed)
    if probes:
        planted = probe_vectors()
        vectors[:len(planted)] = planted
    return build_index(vectors, CFG, IVF_PARAMS if ivf else FLAT_PARAMS), vectors


def publish_built(warehouse: str | Path, built: BuiltIndex, *, table_version: int = 1,
                  model: dict[str, Any] | None = None) -> PublishedIndex:
    return publish_index(built, ids_table(int(built.index.ntotal)), warehouse=str(warehouse), model_id=model_id(),
                         table_version=table_version, model=model or model_record())


def publish_tiny(warehouse: str | Path, *, n: int = 2000, seed: int = 0, ivf: bool = False, table_version: int = 1,
                 model: dict[str, Any] | None = None, probes: bool = True) -> tuple[PublishedIndex, np.ndarray]:
    """Build and publish (CURRENT moves to it) an index of `n` vectors; see build_tiny."""
    built, vectors = build_tiny(n=n, seed=seed, ivf=ivf, probes=probes)
    return publish_built(warehouse, built, table_version=table_version, model=model), vectors
