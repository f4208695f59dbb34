"""One loaded, verified, ready-to-answer index version: the unit the query server swaps.

A ServedIndex is immutable once built; the server replaces the whole object on reload, so a
request that picked one up keeps a consistent index, id map and model until it finishes.
"""

from __future__ import annotations

import base64
import binascii
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import faiss
import numpy as np
from PIL import Image

from vidx.encode.embedder import encode_frames, encode_texts, prepare_image
from vidx.errors import ModelMismatchError, QueryError
from vidx.serve.limits import check_nprobe, open_query_image
from vidx.serve.query import Modality, Searcher
from vidx.serve.rows import ClipRows, Hit, RowFilter

LOG = logging.getLogger(__name__)

# Each widening multiplies nprobe by this until the probed lists hold k matching clips.
NPROBE_WIDEN = 4


@dataclass
class ServedIndex:
    searcher: Searcher
    loaded_at: float = field(default_factory=time.time)

    @classmethod
    def load(cls, warehouse: str, model_id: str, version: str, pretrained: str | None = None) -> ServedIndex:
        """Load and verify `version`, load its query model and check it end to end.

        Raises IndexIntegrityError / IndexNotFoundError (files), ModelLoadError / ModelMismatchError
        (model): the caller keeps serving what it had.
        """
        searcher = Searcher(warehouse, model_id=model_id, version=version, pretrained=pretrained)
        served = cls(searcher)
        if searcher.loaded.params.kind != "flat":
            # Clip queries reconstruct stored vectors; IVF needs an id -> list map for that (8 B/vector).
            faiss.extract_index_ivf(searcher.loaded.index).make_direct_map(True)
        probe = encode_texts(searcher.model, ["warm-up query"])
        if probe.shape[1] != served.dim:
            raise ModelMismatchError(f"model {searcher.model.model_id} makes {probe.shape[1]}-d vectors but index "
                                     f"{version} holds {served.dim}-d ones; rebuild the index")
        served.search(probe[0], 1)
        return served

    @property
    def manifest(self) -> dict[str, Any]:
        return self.searcher.manifest

    @property
    def version(self) -> str:
        return self.searcher.loaded.version

    @property
    def model_id(self) -> str:
        return str(self.manifest["model_id"])

    @property
    def dim(self) -> int:
        return int(self.manifest["dim"])

    @property
    def count(self) -> int:
        return int(self.searcher.loaded.index.ntotal)

    @property
    def rows(self) -> ClipRows:
        return self.searcher.rows

    def text_vector(self, text: str) -> np.ndarray:
        if not text.strip():
            raise QueryError("text must be a non-empty string")
        return encode_texts(self.searcher.model, [text])[0]

    def image_vector(self, image_b64: str) -> np.ndarray:
        """Embedding of a base64 (optionally `data:image/...;base64,`) PNG/JPEG/WebP image."""
        if image_b64.startswith("data:") and "," in image_b64:
            image_b64 = image_b64.split(",", 1)[1]
        try:
            data = base64.b64decode(image_b64, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise QueryError(f"image is not valid base64: {exc}") from exc
        model = self.searcher.model
        try:
            # PNG/JPEG/WebP only, its pixels charged to the request's budget (serve.max_image_pixels)
            with open_query_image(data) as img:
                frame = prepare_image(img, model.image_size)
        # PIL reports unreadable or truncated data as OSError/ValueError, some malformed headers as
        # SyntaxError, and absurd sizes as DecompressionBombError: all are the client's bad image.
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            raise QueryError(f"image cannot be decoded ({type(exc).__name__}: {exc}); send a PNG, JPEG or WebP, "
                             "base64-encoded") from exc
        return encode_frames(model, np.array(frame[None]), batch_size=1)[0]  # a writable copy for torch

    def clip_vector(self, video_id: str, clip_idx: int) -> np.ndarray:
        row = self.rows.row_of(video_id, clip_idx)
        if row is None:
            raise QueryError(f"clip {clip_idx} of video {video_id!r} is not in index {self.version}", status=404)
        return np.asarray(self.searcher.loaded.index.reconstruct(row), dtype=np.float32)

    def vector(self, values: list[float]) -> np.ndarray:
        vec = np.asarray(values, dtype=np.float64)
        if vec.shape != (self.dim,):
            raise QueryError(f"vector has {vec.size} values; index {self.version} holds {self.dim}-d vectors")
        if not np.isfinite(vec).all() or not np.any(vec):
            raise QueryError("vector must be finite and not all zeros")
        vec = vec / np.abs(vec).max()  # scaled first, so squaring in the norm cannot overflow
        return (vec / np.linalg.norm(vec)).astype(np.float32)

    def search(self, vector: np.ndarray, k: int, *, nprobe: int | None = None,
               flt: RowFilter | None = None, modality: Modality = "image") -> list[Hit]:
        """Top-k clips for one query vector, restricted to the clips that pass `flt`.

        Filtering happens inside faiss (an IDSelector over the matching rows), so k results come
        back whenever k clips match. With IVF, the probed lists may hold fewer than k matching
        clips; nprobe then widens until they do (at nlist every list is scanned).
        """
        check_nprobe(nprobe)  # a client's nprobe, within serve.max_nprobe
        query = vector.reshape(1, -1)
        if flt is None or not flt.active:
            return self.searcher.search_vectors(query, k, nprobe, modality=modality)[0]
        mask = self.rows.mask(flt)
        matches = int(np.count_nonzero(mask))
        if matches == 0:
            return []
        bitmap = np.packbits(mask, bitorder="little")  # faiss reads bit i of byte i // 8 LSB-first
        selector = faiss.IDSelectorBitmap(len(mask), faiss.swig_ptr(bitmap))
        nlist = int(self.searcher.loaded.params.nlist)
        probe = nprobe or self.searcher.nprobe_for(modality)
        while True:
            hits = self.searcher.search_vectors(query, k, probe, selector, modality=modality)[0]
            if len(hits) >= min(k, matches) or probe is None or probe >= nlist:
                return hits
            probe = min(nlist, probe * NPROBE_WIDEN)
