"""Sharded builds on Spark (vidx.index.distributed): same results as one process, on-disk lists, serving them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import faiss
import numpy as np
import pyarrow as pa
import pytest

from vectorkit import clustered
from vidx.config import IndexConfig
from vidx.errors import IndexBuildError, IndexIntegrityError
from vidx.index import build_index, load_index, ondisk, publish_index, search
from vidx.index.distributed import build_index_distributed, remove_scratch, scratch_uri, vectors_frame

pytestmark = pytest.mark.integration

N, DIM = 20_000, 32
CFG = IndexConfig(flat_below=1_000, eval_queries=300, seed=7)


@pytest.fixture(scope="module")
def data() -> np.ndarray:
    return clustered(N, DIM, seed=11)


# Two merge paths: refine (IVF lists merged, re-ranking codes placed by id) and plain IVF-PQ
# (16-d so that its 8-bit codebooks train in a second; a low target so the first PQ passes).
@pytest.mark.parametrize(("candidates", "target", "dim"), [(("ivfpq_refine",), 0.95, DIM), (("ivfpq",), 0.6, 16)],
                         ids=["refine", "ivfpq"])
def test_sharded_build_matches_single_process(spark, tmp_path: Path, candidates: tuple[str, ...], target: float,
                                              dim: int) -> None:
    data = clustered(N, dim, seed=11)
    cfg = CFG.model_copy(update={"candidates": candidates, "target_recall": target})
    single = build_index(data, cfg)
    scratch = scratch_uri(str(tmp_path), "m")
    sharded = build_index_distributed(spark, vectors_frame(spark, data, 3), cfg, scratch=scratch)
    assert (sharded.params, sharded.nprobe, sharded.recall_at_10) == (single.params, single.nprobe,
                                                                     single.recall_at_10)
    assert sharded.index.ntotal == N and sharded.ivfdata is None
    queries = clustered(500, dim, seed=12)  # new points, not rows of the index
    for nprobe in (None, 1, 16):
        want = search(single.index, single.params, queries, 10, nprobe)
        got = search(sharded.index, sharded.params, queries, 10, nprobe)
        np.testing.assert_array_equal(got[1], want[1])
        np.testing.assert_array_equal(got[0], want[0])
    assert not Path(scratch).exists()  # shards are deleted once merged


def test_on_disk_build_publishes_and_serves_from_disk(spark, data: np.ndarray, tmp_path: Path) -> None:
    cfg = CFG.model_copy(update={"candidates": ("ivfflat",), "ondisk_above": 1})  # nothing to train but k-means
    warehouse = tmp_path / "w"
    built = build_index_distributed(spark, vectors_frame(spark, data, 2), cfg,
                                    scratch=scratch_uri(str(warehouse), "m"))
    assert built.ivfdata and Path(built.ivfdata).name == "index.ivfdata" and built.params.kind == "ivfflat"
    in_memory = build_index(data, cfg)
    queries = clustered(200, DIM, seed=13)
    want = search(in_memory.index, in_memory.params, queries, 10)
    np.testing.assert_array_equal(search(built.index, built.params, queries, 10)[1], want[1])
    pub = publish_index(built, pa.table({"faiss_id": np.arange(N, dtype=np.int64)}), warehouse=str(warehouse),
                        model_id="m", table_version=1, model={})
    remove_scratch(built)  # the version folder holds its own link/copy of the lists
    assert not [p for p in (warehouse / "indexes" / "m").iterdir() if p.name.startswith(".tmp-")]
    files = pub.manifest["files"]
    assert pub.manifest["on_disk"] and files["index.ivfdata"]["sha256"] == ondisk.sha256_file(
        Path(pub.uri) / "index.ivfdata")
    assert pub.manifest["index_bytes"] == files["index.faiss"]["bytes"] + files["index.ivfdata"]["bytes"]
    # Load and search in a child process: a faiss crash (as IO_FLAG_MMAP gives) fails this test, not pytest.
    got = _search_in_subprocess(str(warehouse), queries)
    np.testing.assert_array_equal(got, want[1])
    ivfdata = Path(pub.uri) / "index.ivfdata"
    raw = bytearray(ivfdata.read_bytes())
    raw[len(raw) // 3] ^= 0x01
    ivfdata.write_bytes(bytes(raw))
    with pytest.raises(IndexIntegrityError, match=r"index\.ivfdata"):
        load_index(str(warehouse))


def test_loader_never_uses_the_crashing_mmap_flag() -> None:
    assert not ondisk.OPEN_FLAGS & faiss.IO_FLAG_MMAP


def test_bad_ids_are_refused(spark, tmp_path: Path) -> None:
    x = clustered(2_000, 8, seed=1)
    table = pa.table({"faiss_id": pa.array(np.r_[np.arange(1_999), 5].astype(np.int64)),
                      "embedding": pa.array(list(x), pa.list_(pa.float32()))})
    with pytest.raises(IndexBuildError, match="unique"):
        build_index_distributed(spark, spark.createDataFrame(table), CFG, scratch=str(tmp_path / "s"))


def _search_in_subprocess(warehouse: str, queries: np.ndarray) -> np.ndarray:
    np.save(Path(warehouse) / "queries.npy", queries)
    code = textwrap.dedent(f"""
        import json, numpy as np
        from vidx.index import load_index, search
        loaded = load_index({warehouse!r})
        faiss_ivf = __import__("faiss").extract_index_ivf(loaded.index)
        faiss_ivf.make_direct_map(True)  # what the query server does before clip queries
        _, ids = search(loaded.index, loaded.params, np.load({warehouse!r} + "/queries.npy"), 10)
        print(json.dumps(ids.tolist()))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}, check=False)
    died = f"loading/searching the on-disk index died (rc {proc.returncode}): {proc.stderr[-2000:]}"
    assert proc.returncode == 0, died
    return np.array(json.loads(proc.stdout.strip().splitlines()[-1]))
