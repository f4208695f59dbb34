"""`vidx plan` arithmetic on hand-made bench results, and query-server sizing from a manifest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from vidx.capacity import PlanInput, archive_hours, load_costs, make_plan, normalise_gpu, parse_bitrate
from vidx.cli import main
from vidx.config import parse_bytes
from vidx.deploy.query_resources import (
    BASE_BYTES,
    IDS_RAM_BYTES_PER_ROW,
    MODEL_BYTES,
    query_memory_bytes,
    resources_patch,
)
from vidx.errors import ConfigError

CPU = {"machine": {"cores": 2}, "encode": {"model": "ViT-B-32", "precision": "bf16", "pipeline_ips": 40.0,
                                           "decode_thread_s_per_frame": 0.01}}
QUERY = {"fit": {"fixed_s": 0.001, "per_byte_s": 1e-9}, "p99_over_mean": 2.0}


@pytest.fixture
def results(tmp_path: Path) -> Path:
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / "2026-01-01-cpu.json").write_text(json.dumps(CPU))
    (tmp_path / "query_cost_100000x512.json").write_text(json.dumps(QUERY))
    return tmp_path


def _input(**kw) -> PlanInput:
    base = {"hours": 1000.0, "archive_bytes": None, "bitrate_bps": 5e6, "sample_fps": 1.0, "clip_seconds": 4.0,
            "model": "ViT-B-32", "gpus": 10, "gpu_kind": "a100", "target_qps": 100.0, "p99_ms": 200.0,
            "replica_cores": 8, "cpus_per_gpu": 16, "nprobe": 64}
    return PlanInput(**{**base, **kw})


def test_units_of_the_archive():
    assert parse_bytes("1PB") == 10**15 and parse_bitrate("5Mbps") == 5e6
    assert archive_hours(10**15, 5e6) == pytest.approx(444_444.4, rel=1e-6)  # DESIGN: 1 PB at 5 Mb/s ~ 440k h
    assert normalise_gpu("NVIDIA H200") == "h200" and normalise_gpu("A100") == "a100"


def test_embed_arithmetic_from_the_bench_figures(results):
    plan = make_plan(_input(), load_costs(results, model="ViT-B-32", gpu_kind="a100"))
    e = plan["embed"]
    assert plan["frames"] == 3_600_000 and plan["clips"] == 900_000
    # Published A100 rate 2500/s; 16 cores at 0.01 core-s/frame decode 1600/s: decode-bound.
    assert e["measured_by_vidx"] is False and e["frames_per_s_per_gpu"] == 1600
    assert e["cpus_per_gpu_to_keep_up"] == 25 and e["bottleneck"].startswith("decode")
    assert e["gpu_hours"] == pytest.approx(3_600_000 / 1600 / 3600) and e["wall_hours"] == e["gpu_hours"] / 10
    assert e["gpu_hours_if_fed"] == pytest.approx(3_600_000 / 2500 / 3600)
    assert e["cpu_only_core_hours"] == pytest.approx(3_600_000 * (2 / 40) / 3600)
    assert plan["storage"]["bytes_per_clip"] == 4 * 512 + 96 + 8 * 4


def test_index_and_query_arithmetic(results):
    plan = make_plan(_input(), load_costs(results, model="ViT-B-32", gpu_kind="a100"))
    i, q = plan["index"], plan["query"]
    # the cheapest default candidate: 8-bit PQ with dim/8 codes, id, centroids and codebooks
    assert i["factory"] == f"IVF{i['nlist']},PQ64x8" and i["code_bytes"] == 64 and i["fits_default_budget"]
    assert i["index_bytes"] == 900_000 * (64 + 8) + (i["nlist"] + 256) * 512 * 4
    ram = BASE_BYTES + MODEL_BYTES["ViT-B-32"] + 2 * (i["index_bytes"] + 900_000 * IDS_RAM_BYTES_PER_ROW)
    assert i["ram_per_query_replica_bytes"] == ram
    scanned = 64 * 900_000 / i["nlist"] * i["code_bytes"]
    assert q["mean_ms"] == pytest.approx((0.001 + 1e-9 * scanned) * 1e3)
    assert q["p99_ms"] == pytest.approx(2 * q["mean_ms"]) and q["meets_p99"]
    assert q["replicas"] == max(2, -(-100 // (0.7 * 8 / (q["mean_ms"] / 1e3))))


def test_a_measured_gpu_result_wins_over_published_figures(results):
    check = {"gpu_check": {"gpu_name": "NVIDIA A100-SXM4-80GB", "frames_per_s": {"results": {"ViT-B-32": 3000.0}}}}
    (results / "gpu_check_20260102.json").write_text(json.dumps(check))
    gpu = load_costs(results, model="ViT-B-32", gpu_kind="a100")["gpu"]
    assert gpu["frames_per_s"] == 3000.0 and gpu["measured_by_vidx"] is True
    assert gpu["source"].endswith("gpu_check_20260102.json")
    with pytest.raises(ConfigError, match="no measured or published GPU figure"):
        load_costs(results, model="ViT-B-32", gpu_kind="t4")


def test_plan_cli_json_on_the_committed_reference(capsys):
    root = Path(__file__).resolve().parents[2] / "bench" / "results"
    assert main(["plan", "--archive-bytes", "1PB", "--results", str(root), "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["frames"] == pytest.approx(1.6e9, rel=0.01) and plan["clips"] == pytest.approx(4e8, rel=0.01)
    # issue 12.5: what a default build runs at 400M x 512 fits the default 16 GiB
    assert plan["index"]["factory"] == "IVF131072,PQ32x8" and plan["index"]["fits_default_budget"]
    assert plan["index"]["index_bytes"] <= 16 * 2**30 < plan["index"]["finer"]["index_bytes"]
    assert all(Path(src.split(": ")[-1]).exists() for key, src in plan["sources"].items() if key != "gpu")


def test_query_resources_from_a_manifest():
    manifest = {"memory_bytes": 3 * 2**30, "count": 1_000_000, "files": {"ids.parquet": {"bytes": 10**6}}}
    want = BASE_BYTES + 2 * (3 * 2**30 + 1_000_000 * IDS_RAM_BYTES_PER_ROW)
    assert query_memory_bytes(manifest) == want
    patch = resources_patch(manifest, source="m/v1", cpu="2")
    res = patch["spec"]["template"]["spec"]["containers"][0]["resources"]
    mib = -(-want // 2**20)
    assert res == {"requests": {"cpu": "2", "memory": f"{mib}Mi"}, "limits": {"memory": f"{mib}Mi"}}
    assert yaml.safe_load(yaml.safe_dump(patch))["metadata"]["annotations"]["vidx.dev/sized-from"] == "m/v1"
