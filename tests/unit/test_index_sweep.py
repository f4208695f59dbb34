"""The nprobe sweep of index selection (vidx.index.select.sweep_nprobe): it never gives up on a
candidate that can still reach the target, and never decides from a timing."""

from __future__ import annotations

import numpy as np
import pytest

from vidx.index import select
from vidx.index.params import IndexParams

TARGET = 0.95


def _params(kind: str, nlist: int = 64) -> IndexParams:
    factory = f"IVF{nlist},Flat" if kind == "ivfflat" else f"IVF{nlist},PQ8x8"
    return IndexParams(kind=kind, factory=factory, nlist=nlist, m=0 if kind == "ivfflat" else 8,  # type: ignore[arg-type]
                       nbits=0 if kind == "ivfflat" else 8, metric="l2", train_size=1000)


def _scripted(monkeypatch: pytest.MonkeyPatch, recalls: dict[int, float]) -> list[int]:
    """measure_recall answers from `recalls`; returns the nprobe values asked for, in order."""
    asked: list[int] = []

    def fake(index, params, data, nprobe, id_map=None):  # type: ignore[no-untyped-def]
        asked.append(nprobe)
        return recalls[nprobe]

    monkeypatch.setattr(select, "measure_recall", fake)
    return asked


# recall flat from 2 to 8 lists, then rising: the plateau is a local one
LOCAL_PLATEAU = {1: 0.5, 2: 0.6, 4: 0.6005, 8: 0.601, 16: 0.9, 32: 0.96, 64: 0.97}


def test_probe_steps_reach_nlist() -> None:
    assert select.probe_steps(256) == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert select.probe_steps(100) == [1, 2, 4, 8, 16, 32, 64, 100]
    assert select.probe_steps(1) == [1]


def test_ivfflat_sweeps_to_nlist_through_any_plateau(monkeypatch: pytest.MonkeyPatch) -> None:
    recalls = {1: 0.3, 2: 0.5, 4: 0.5, 8: 0.5, 16: 0.5, 32: 0.7, 64: 1.0}
    asked = _scripted(monkeypatch, recalls)
    sweep = select.sweep_nprobe(None, _params("ivfflat"), None, TARGET)  # type: ignore[arg-type]
    assert sweep == select.Sweep(64, 1.0, True)  # exact at nprobe = nlist: found, not given up
    assert asked == [1, 2, 4, 8, 16, 32, 64]


def test_lossy_code_past_a_local_plateau_when_a_full_scan_reaches_the_target(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _scripted(monkeypatch, LOCAL_PLATEAU)
    sweep = select.sweep_nprobe(None, _params("ivfpq"), None, TARGET)  # type: ignore[arg-type]
    assert sweep == select.Sweep(32, 0.96, True)  # the smallest power of two that reaches it
    assert asked == [1, 2, 4, 8, 64, 16, 32]  # plateau at 8 -> full scan confirms the target is reachable


def test_lossy_code_gives_up_only_when_a_full_scan_misses_too(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _scripted(monkeypatch, {**LOCAL_PLATEAU, 64: 0.62})
    sweep = select.sweep_nprobe(None, _params("ivfpq"), None, TARGET)  # type: ignore[arg-type]
    assert sweep == select.Sweep(64, 0.62, False)
    assert asked == [1, 2, 4, 8, 64]


def test_full_scale_sweep_stops_at_a_plateau_without_a_full_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _scripted(monkeypatch, LOCAL_PLATEAU)
    sweep = select.sweep_nprobe(None, _params("ivfpq"), None, TARGET, confirm_plateau=False)  # type: ignore[arg-type]
    assert not sweep.passed and sweep.nprobe == 8
    assert asked == [1, 2, 4, 8]


def test_uniform_data_needs_more_than_a_sixteenth_of_the_lists() -> None:
    """Uniform vectors on the 16-d sphere: a query's 10 neighbours spread over many lists, so recall@10
    0.99 needs far more than nlist/16 probes. IVF-Flat at nprobe = nlist is exact: selection must
    choose it with the nprobe it needs instead of failing (it did, with nprobe capped at nlist/16)."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((12_000, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    from vidx.config import IndexConfig
    from vidx.index import build_index

    cfg = IndexConfig(flat_below=1_000, eval_queries=200, seed=7, target_recall=0.99, candidates=("ivfflat",))
    built = build_index(x, cfg)
    nlist = built.params.nlist
    assert built.params.kind == "ivfflat" and nlist == 256
    assert nlist // 16 < built.nprobe <= nlist and built.recall_at_10 >= 0.99
    assert built.selection is not None
    assert (built.selection["nprobe"], built.selection["max_nprobe"]) == (built.nprobe, nlist)
    assert built.selection["candidates"][-1]["status"] == "chosen"
    data = select.local_eval_set(x, cfg)
    assert select.measure_recall(built.index, built.params, data, built.nprobe // 2) < 0.99  # the smallest
    assert built.qps is not None and built.qps["nprobe"] == built.nprobe and built.qps["queries"] == 200
