"""Which model made a model_id: `W/models/<model_id>.json`, written by the embed driver.

The index manifest copies it, so a query server can load the exact query encoder.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from vidx.config import TokenClusteringConfig
from vidx.storage import exists, join, normalize_uri, read_bytes, write_bytes_atomic

if TYPE_CHECKING:  # importing models pulls in torch; build-index and validate must not pay for it
    from vidx.encode.models import LoadedModel


def clips_model_id(query_model_id: str, clustering: TokenClusteringConfig) -> str:
    """The model_id clips are stored and indexed under: the encoder's id, plus the token clustering
    settings when they are on. Clustered clip vectors differ from exact ones, so they get their own
    partition and index instead of mixing with (or being skipped as "unchanged" against) exact ones.
    Text queries use the same encoder either way (`query_model_id` in the record)."""
    if not clustering.enabled:
        return query_model_id
    c = clustering
    return f"{query_model_id}__tc-L{c.layer}-S{c.segments}-K{c.centers}-I{c.iters}-s{c.seed}"


def model_record(lm: LoadedModel, clustering: TokenClusteringConfig | None = None) -> dict[str, Any]:
    enabled = clustering is not None and clustering.enabled
    record = {"model_id": clips_model_id(lm.model_id, clustering) if clustering else lm.model_id,
              "query_model_id": lm.model_id, "name": lm.spec.name, "pretrained": lm.spec.pretrained,
              "dim": lm.dim, "image_size": lm.image_size}
    if enabled and clustering is not None:
        record["token_clustering"] = clustering.model_dump()
    return record


def record_uri(warehouse: str, model_id: str) -> str:
    return join(normalize_uri(warehouse), "models", f"{model_id}.json")


def save_model_record(warehouse: str, lm: LoadedModel, clustering: TokenClusteringConfig | None = None) -> None:
    record = model_record(lm, clustering)
    write_bytes_atomic(record_uri(warehouse, record["model_id"]),
                       json.dumps(record, indent=2, sort_keys=True).encode())


def load_model_record(warehouse: str, model_id: str) -> dict[str, Any] | None:
    uri = record_uri(warehouse, model_id)
    if not exists(uri):
        return None
    return dict(json.loads(read_bytes(uri)))
