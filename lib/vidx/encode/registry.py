"""Which model made a model_id: `W/models/<model_id>.json`, written by the embed driver.

The index manifest copies it, so a query server can load the exact query encoder.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from vidx.storage import exists, join, normalize_uri, read_bytes, write_bytes_atomic

if TYPE_CHECKING:  # importing models pulls in torch; build-index and validate must not pay for it
    from vidx.encode.models import LoadedModel


def model_record(lm: LoadedModel) -> dict[str, Any]:
    return {"model_id": lm.model_id, "name": lm.spec.name, "pretrained": lm.spec.pretrained,
            "dim": lm.dim, "image_size": lm.image_size}


def record_uri(warehouse: str, model_id: str) -> str:
    return join(normalize_uri(warehouse), "models", f"{model_id}.json")


def save_model_record(warehouse: str, lm: LoadedModel) -> None:
    write_bytes_atomic(record_uri(warehouse, lm.model_id),
                       json.dumps(model_record(lm), indent=2, sort_keys=True).encode())


def load_model_record(warehouse: str, model_id: str) -> dict[str, Any] | None:
    uri = record_uri(warehouse, model_id)
    if not exists(uri):
        return None
    return dict(json.loads(read_bytes(uri)))
