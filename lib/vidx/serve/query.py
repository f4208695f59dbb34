"""A loaded index plus the model that made its vectors. Used by `vidx search` and the query server."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

from vidx.encode.embedder import encode_image_files, encode_texts
from vidx.encode.models import LoadedModel, ModelSpec, load_model
from vidx.errors import ModelMismatchError, VidxError
from vidx.index.build import search
from vidx.index.publish import LoadedIndex, load_index
from vidx.serve.rows import ClipRows, Hit

LOG = logging.getLogger(__name__)

Modality = Literal["image", "text"]
# CLIP text vectors lie apart from image vectors (the "modality gap"), so the clips nearest a text
# query spread over more IVF lists than those nearest an image or clip query, and the nprobe that
# the build tunes on held-out clip vectors is too small for them (held-out synthetic eval,
# IVF256,Flat: text recall@10 0.79 at the tuned nprobe 2, 0.975 at 8). Text queries therefore probe
# TEXT_NPROBE_FACTOR x the tuned nprobe, and never fewer than TEXT_NPROBE_MIN lists: where clip
# queries find their neighbours in one list (tuned nprobe 1), 8 lists still lost 1-3 of the 48
# caption hits (R@5) that exact search finds on some builds, 32 lost at most 1 (README "vidx eval",
# tests/integration/test_retrieval_quality.py). At scale the factor dominates and the floor costs
# nothing: 32 lists of IVF131072 over 400M clips are ~100k codes.
TEXT_NPROBE_FACTOR = 8.0
TEXT_NPROBE_MIN = 32
__all__ = ["Hit", "Searcher"]


class Searcher:
    """Index + query encoder. Refuses to pair an index with a model other than the one it was built with."""

    def __init__(self, warehouse: str, *, model_id: str | None = None, pretrained: str | None = None,
                 version: str | None = None, text_nprobe_factor: float = TEXT_NPROBE_FACTOR,
                 text_nprobe_min: int = TEXT_NPROBE_MIN) -> None:
        """`version` None loads the one `CURRENT` names."""
        self.text_nprobe_factor = text_nprobe_factor
        self.text_nprobe_min = text_nprobe_min
        self.loaded: LoadedIndex = load_index(warehouse, model_id, version)
        self._pretrained_override = pretrained
        self._model: LoadedModel | None = None
        self.rows = ClipRows(self.loaded.ids)

    @property
    def manifest(self) -> dict[str, Any]:
        return self.loaded.manifest

    @property
    def model(self) -> LoadedModel:
        """The query encoder named in the manifest, loaded on first use."""
        if self._model is None:
            info = self.manifest.get("model", {})
            if "name" not in info or "pretrained" not in info:
                raise ModelMismatchError(f"index {self.loaded.version} does not name its model and weights; "
                                         "rebuild it with `vidx build-index`")
            spec = ModelSpec(info["name"], self._pretrained_override or info["pretrained"])
            model = load_model(spec, device="auto")
            # Clips encoded with token clustering carry its settings in their model_id; their text
            # and image queries go through the plain encoder the record names.
            expected = info.get("query_model_id", self.manifest["model_id"])
            if model.model_id != expected:
                raise ModelMismatchError(
                    f"query model {model.model_id} differs from the index's {expected}: "
                    "pass the same --pretrained weights the clips were embedded with")
            self._model = model
        return self._model

    def nprobe_for(self, modality: Modality) -> int | None:
        """The index's tuned nprobe for image/clip queries. For text queries `text_nprobe_factor`
        times it, at least `text_nprobe_min` and at most nlist. None for a flat index."""
        tuned = int(self.manifest["nprobe"]) or None
        if tuned is None or modality != "text":
            return tuned
        nlist = int(self.loaded.params.nlist) or tuned
        wanted = max(round(tuned * self.text_nprobe_factor), self.text_nprobe_min)
        return max(tuned, min(nlist, wanted))

    def search_vectors(self, queries: np.ndarray, k: int, nprobe: int | None = None,
                       selector: faiss.IDSelector | None = None, *,
                       modality: Modality = "image") -> list[list[Hit]]:
        dim = int(self.manifest["dim"])
        if queries.ndim != 2 or queries.shape[1] != dim:
            raise VidxError(f"query vectors must have shape (n, {dim}), got {queries.shape}")
        if k <= 0:
            raise VidxError("k must be positive")
        # nprobe 0 in the manifest means "not an IVF index"; None lets search use the tuned value.
        scores, ids = search(self.loaded.index, self.loaded.params, queries.astype(np.float32), k,
                             nprobe or self.nprobe_for(modality), selector=selector)
        return [[self.rows.hit(int(i), float(s)) for s, i in zip(row_s, row_i, strict=True) if i >= 0]
                for row_s, row_i in zip(scores, ids, strict=True)]

    def search_text(self, text: str, k: int) -> list[Hit]:
        return self.search_vectors(encode_texts(self.model, [text]), k, modality="text")[0]

    def search_image(self, path: str | Path, k: int) -> list[Hit]:
        return self.search_vectors(encode_image_files(self.model, [path]), k)[0]
