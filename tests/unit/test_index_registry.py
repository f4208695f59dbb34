"""Registry ops over published versions: list, promote, rollback, gc (local disk and an fsspec store).

These indexes are built from generated vectors, with no clips table to validate, so promote and rollback
skip the publish gate here (tests/integration/test_quality_gate.py covers the gate)."""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

import pytest

from indexkit import model_id, publish_tiny
from modelids import clips_id
from vidx.cli import main
from vidx.errors import ConfigError, IndexIntegrityError, IndexNotFoundError
from vidx.index import current_version, load_index, registry
from vidx.index.publish import CURRENT_FILE, MANIFEST_FILE


def publish_n(warehouse: Path | str, count: int) -> list[str]:
    return [publish_tiny(warehouse, n=300, seed=i, table_version=i, probes=False)[0].version for i in range(count)]


@pytest.fixture
def four(tmp_path) -> tuple[str, list[str]]:
    """Four versions published back to back (several within one second: order must still hold)."""
    return str(tmp_path), publish_n(tmp_path, 4)


def test_list_in_publish_order(four):
    w, published = four
    infos = registry.versions(w)
    assert [v.version for v in infos] == published
    assert [v.current for v in infos] == [False, False, False, True]
    summary = infos[0].summary()
    assert summary["count"] == 300 and summary["table_version"] == 0 and summary["bytes"] > 0


def test_promote_and_rollback(four):
    w, (v0, v1, v2, v3) = four
    assert registry.promote(w, v1, require_validation=False) == v3
    assert current_version(w, model_id()) == v1
    assert load_index(w).version == v1
    assert registry.rollback(w, require_validation=False) == (v1, v0)
    with pytest.raises(IndexNotFoundError, match="oldest"):
        registry.rollback(w, require_validation=False)
    registry.promote(w, v3, require_validation=False)
    assert registry.rollback(w, require_validation=False) == (v3, v2)
    with pytest.raises(IndexNotFoundError, match="does not exist"):
        registry.promote(w, "20990101T000000Z-t1-deadbeef", require_validation=False)


def test_promote_refuses_tampered_version(four):
    w, (_, v1, _, v3) = four
    index_file = Path(w) / "indexes" / model_id() / v1 / "index.faiss"
    data = bytearray(index_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    index_file.write_bytes(bytes(data))
    with pytest.raises(IndexIntegrityError, match="checksum"):
        registry.promote(w, v1, require_validation=False)
    assert current_version(w, model_id()) == v3


def test_gc_keeps_current_and_newer(four):
    w, (v0, v1, v2, v3) = four
    registry.promote(w, v1, require_validation=False)  # as after two rollbacks: v2 and v3 are newer than CURRENT
    report = registry.gc(w, keep=1)
    assert report.removed_versions == [v0]
    assert report.kept == [v1, v2, v3]
    registry.promote(w, v3, require_validation=False)
    report = registry.gc(w, keep=2, dry_run=True)
    assert report.removed_versions == [v1]
    assert [v.version for v in registry.versions(w)] == [v1, v2, v3]  # dry run deleted nothing
    registry.gc(w, keep=2)
    assert [v.version for v in registry.versions(w)] == [v2, v3]
    assert load_index(w).version == v3
    with pytest.raises(ConfigError):
        registry.gc(w, keep=0)


def test_gc_removes_stale_leftovers_only(tmp_path):
    w = str(tmp_path)
    (v0,) = publish_n(tmp_path, 1)
    root = tmp_path / "indexes" / model_id()
    old = time.time() - 2 * registry.STALE_AFTER_S
    leftovers = {".tmp-20200101T000000Z-t1-aaaa": True, "20200101T000000Z-t1-bbbb": True,
                 f".tmp-{uuid.uuid4().hex}": False}  # dead publish, object-store debris, CURRENT temp file
    for name, is_dir in leftovers.items():
        path = root / name
        if is_dir:
            path.mkdir()
            (path / "index.faiss").write_bytes(b"x")
            os.utime(path / "index.faiss", (old, old))
        else:
            path.write_bytes(b"x")
        os.utime(path, (old, old))
    fresh = root / ".tmp-20990101T000000Z-t1-cccc"  # a publish in progress
    fresh.mkdir()
    report = registry.gc(w, keep=1)
    assert report.removed_versions == []
    assert report.removed_debris == sorted(leftovers)
    assert sorted(p.name for p in root.iterdir()) == sorted([CURRENT_FILE, v0, fresh.name])


def test_several_models_need_model_id(tmp_path):
    from vidx.index import publish_index

    publish_n(tmp_path, 1)
    built_other = load_index(str(tmp_path))
    from vidx.index.build import BuiltIndex

    other = BuiltIndex(built_other.index, built_other.params, 0, 1.0, 300, 128, 0.0, 0)
    publish_index(other, built_other.ids, warehouse=str(tmp_path), model_id=clips_id("other", "x"), table_version=1,
                  model={"name": "vidx-tiny", "pretrained": "random"})
    with pytest.raises(IndexNotFoundError, match="--model-id"):
        registry.versions(str(tmp_path))
    assert len(registry.versions(str(tmp_path), clips_id("other", "x"))) == 1
    assert main(["index", "list", "-w", str(tmp_path)]) == 2


def test_object_store_registry():
    """The same ops through pyarrow's fsspec bridge (publish writes in place, manifest last)."""
    w = f"memory://vidx-{uuid.uuid4().hex[:8]}"
    v0, v1, v2 = publish_n(w, 3)
    assert [v.version for v in registry.versions(w)] == [v0, v1, v2]
    assert registry.rollback(w, require_validation=False) == (v2, v1)
    assert load_index(w).version == v1
    report = registry.gc(w, keep=1)
    assert report.removed_versions == [v0] and report.kept == [v1, v2]
    assert [v.version for v in registry.versions(w)] == [v1, v2]


def test_index_cli(four, capsys):
    w, (v0, v1, _, v3) = four
    assert main(["index", "list", "--json", "-w", w]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [v["version"] for v in listed][-1] == v3 and listed[-1]["current"]
    assert main(["index", "list", "-w", w]) == 0
    assert v3 in capsys.readouterr().out
    assert main(["index", "promote", v0, "-w", w, "--skip-validation"]) == 0
    assert f"{v3} -> {v0}" in capsys.readouterr().out
    assert main(["index", "rollback", "-w", w, "--skip-validation"]) == 2  # v0 is the oldest
    assert main(["index", "promote", v1, "-w", w, "--skip-validation"]) == 0
    assert main(["index", "gc", "--keep", "1", "-w", w]) == 0
    assert "deleted versions: " + v0 in capsys.readouterr().out
    assert not (Path(w) / "indexes" / model_id() / v0 / MANIFEST_FILE).exists()
