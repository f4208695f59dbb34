"""A loaded index plus the model that made its vectors. Used by `vidx search` and the query server."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from vidx.encode.embedder import encode_image_files, encode_texts
from vidx.encode.models import LoadedModel, ModelSpec, load_model
from vidx.errors import ModelMismatchError, VidxError
from vidx.index.build import search
from vidx.index.publish import LoadedIndex, load_index
from vidx.serve.rows import ClipRows, Hit

LOG = logging.getLogger(__name__)
__all__ = ["Hit", "Searcher"]


class Searcher:
    """Index + query encoder. Refuses to pair an index with a model other than the one it was built with."""

    def __init__(self, warehouse: str, *, model_id: str | None = None, pretrained: str | None = None,
                 version: str | None = None) -> None:
        """`version` None loads the one `CURRENT` names."""
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
            if model.model_id != self.manifest["model_id"]:
                raise ModelMismatchError(
                    f"query model {model.model_id} differs from the index's {self.manifest['model_id']}: "
                    "pass the same --pretrained weights the clips were embedded with")
            self._model = model
        return self._model

    def search_vectors(self, queries: np.ndarray, k: int, nprobe: int | None = None,
                       selector: faiss.IDSelector | None = None) -> list[list[Hit]]:
        dim = int(self.manifest["dim"])
        if queries.ndim != 2 or queries.shape[1] != dim:
            raise VidxError(f"query vectors must have shape (n, {dim}), got {queries.shape}")
        if k <= 0:
            raise VidxError("k must be positive")
        # nprobe 0 in the manifest means "not an IVF index"; None lets search use the tuned value.
        scores, ids = search(self.loaded.index, self.loaded.params, queries.astype(np.float32), k,
                             nprobe or int(self.manifest["nprobe"]) or None, selector=selector)
        return [[self.rows.hit(int(i), float(s)) for s, i in zip(row_s, row_i, strict=True) if i >= 0]
                for row_s, row_i in zip(scores, ids, strict=True)]

    def search_text(self, text: str, k: int) -> list[Hit]:
        return self.search_vectors(encode_texts(self.model, [text]), k)[0]

    def search_image(self, path: str | Path, k: int) -> list[Hit]:
        return self.search_vectors(encode_image_files(self.model, [path]), k)[0]
