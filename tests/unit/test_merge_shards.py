"""Driver side of a distributed build (vidx.index.distributed): shards merge one at a time, the
refine codes land directly in the index's own code array (no second copy of them), and many
fast-scan shards merge without tripping faiss' block-list bug (16 shards of ~20 vectors per list
reach lists of exactly 64 entries, where faiss 1.15 writes past the list and crashes)."""

from __future__ import annotations

import tracemalloc
from dataclasses import dataclass

import faiss
import numpy as np
import pyarrow as pa

from vectorkit import clustered
from vidx.index.build import deserialize
from vidx.index.distributed import Shard, _compact, _fill_shard, merge_shards

N, DIM, SHARDS = 20_000, 64, 16


@dataclass
class _Broadcast:  # what _fill_shard reads from a Spark broadcast
    value: bytes


def _shards(trained: bytes, x: np.ndarray, folder: str) -> list[Shard]:
    out = []
    for part in np.array_split(np.arange(N), SHARDS):
        batch = pa.RecordBatch.from_arrays([pa.array(part.astype(np.int64)),
                                            pa.array(list(x[part]), pa.list_(pa.float32()))], ["faiss_id", "embedding"])
        (row,) = next(_fill_shard(iter([batch]), trained=_Broadcast(trained), shards_uri=folder,
                                  refine=True)).to_pylist()
        out.append(Shard(row["uri"], row["codes_uri"], row["count"], row["min_id"]))
    return out


def test_refine_codes_are_merged_in_place(tmp_path):
    x = clustered(N, DIM, seed=3)
    index = faiss.index_factory(DIM, "IVF64,PQ16x4fs,Refine(SQ8)")
    index.train(x[:5_000])
    trained = faiss.serialize_index(index).tobytes()
    shards = _shards(trained, x, str(tmp_path / "shards"))
    target = deserialize(trained)
    tracemalloc.start()
    merged = merge_shards(target, shards, N)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    code_bytes = N * DIM  # SQ8: one byte per dimension
    # A full numpy array of the codes (then copied into faiss) would trace >= code_bytes on its own.
    assert peak < code_bytes / 2, (peak, code_bytes)
    single = deserialize(trained)
    single.add(x)
    queries = clustered(200, DIM, seed=4)
    for idx in (merged, single):
        faiss.extract_index_ivf(idx).nprobe = 8
    np.testing.assert_array_equal(merged.search(queries, 10)[1], single.search(queries, 10)[1])


def test_compact_moves_the_kept_rows_to_the_front_in_place():
    rows = np.arange(200_000 * 2, dtype=np.float32).reshape(200_000, 2)
    keep = np.sort(np.random.default_rng(0).choice(200_000, 150_000, replace=False))
    want = rows[keep].copy()
    got = _compact(rows, keep)
    assert np.shares_memory(got, rows) and np.array_equal(got, want)
