"""Smoke search of the published index: what the nightly DAG runs after publishing.

It goes through the query path a server uses (`Searcher`: CURRENT, checksum-verified files, the
manifest's model) and checks two things a broken publish gets wrong: clips of the indexed table
version find themselves among the top k (ids and vectors line up), and a text query returns k hits
(the query encoder loads and matches the index's model).
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np
import pyarrow.compute as pc

from vidx.errors import VidxError
from vidx.tables import delta, table_uri

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class SmokeResult:
    version: str
    model_id: str
    queries: int
    self_found: float   # share of sampled clips found among their own top k
    text_hits: int

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def smoke_search(warehouse: str, *, model_id: str | None = None, n_queries: int = 8, k: int = 10,
                 text: str = "a person walking", min_self_found: float = 0.75) -> SmokeResult:
    """Raise VidxError unless the CURRENT index answers vector and text queries sensibly."""
    from vidx.encode.embedder import l2_normalize
    from vidx.serve.query import Searcher

    searcher = Searcher(warehouse, model_id=model_id)
    manifest = searcher.manifest
    model = str(manifest["model_id"])
    # head() reads only as many files as it needs: cheap on a 400M-row table.
    sample = delta.to_dataset(table_uri(warehouse, "clips"), version=int(manifest["table_version"])).head(
        n_queries, columns=["video_id", "clip_idx", "embedding"], filter=pc.field("model_id") == model)
    if sample.num_rows == 0:
        raise VidxError(f"smoke search: clips version {manifest['table_version']} has no rows of {model}")
    vectors = l2_normalize(np.array(sample["embedding"].to_pylist(), dtype=np.float32))
    keys = list(zip(sample["video_id"].to_pylist(), sample["clip_idx"].to_pylist(), strict=True))
    hits = searcher.search_vectors(vectors, k)
    found = sum((vid, idx) in {(h.video_id, h.clip_idx) for h in row}
                for (vid, idx), row in zip(keys, hits, strict=True)) / len(keys)
    text_hits = len(searcher.search_text(text, k))
    result = SmokeResult(searcher.loaded.version, model, len(keys), found, text_hits)
    LOG.info("smoke search of %s: %s", searcher.loaded.version, result)
    if found < min_self_found:
        raise VidxError(f"smoke search of index {result.version}: only {found:.0%} of {len(keys)} indexed clips "
                        f"find themselves in their top {k}; ids and vectors may not line up. Roll back with "
                        "`vidx index rollback` and rebuild.")
    if text_hits < min(k, int(manifest["count"])):
        raise VidxError(f"smoke search of index {result.version}: a text query returned {text_hits} hits, "
                        f"expected {k}")
    return result
