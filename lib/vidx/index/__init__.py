"""FAISS index: choose parameters, build and evaluate, publish to the warehouse registry, load.

Typical use::

    built = build_index(vectors, cfg.index)
    publish_index(built, ids, warehouse=W, model_id=M, table_version=v, model={...})
    loaded = load_index(W)                      # the only model, CURRENT version, sha256-verified
    scores, ids = search(loaded.index, loaded.params, queries, k=10)
"""

from vidx.index.build import BuiltIndex, build_index, exact_search, recall_at_k, sample_rows, search
from vidx.index.params import IndexParams, choose_params
from vidx.index.publish import (
    LoadedIndex,
    PublishedIndex,
    current_version,
    list_models,
    list_versions,
    load_index,
    load_manifest,
    publish_index,
)

__all__ = [
    "BuiltIndex",
    "IndexParams",
    "LoadedIndex",
    "PublishedIndex",
    "build_index",
    "choose_params",
    "current_version",
    "exact_search",
    "list_models",
    "list_versions",
    "load_index",
    "load_manifest",
    "publish_index",
    "recall_at_k",
    "sample_rows",
    "search",
]
