"""model_id = encoder + everything that changes a clip vector (vidx.encode.registry), and the
run's precision decided once on the driver (vidx.encode.precision.run_precision)."""

from __future__ import annotations

import json

import pytest

from vidx.config import load_config
from vidx.encode import precision, registry
from vidx.encode.models import ModelSpec, load_model
from vidx.encode.registry import Recipe, clips_model_id, encoder_id, recorded_recipe
from vidx.errors import ConfigError


def _recipe(precision_name: str = "fp32", **overrides) -> Recipe:
    return Recipe.from_config(load_config(env={}, overrides=overrides), frame_size=64, precision=precision_name)


def test_model_id_format_is_readable_and_deterministic():
    enc = encoder_id("vidx-tiny", "synthetic-v1", 128)
    # The one place the format is spelled out (README "model_id"): every other test asks the registry.
    assert clips_model_id(enc, _recipe("bf16")) == "vidx-tiny__synthetic-v1__d128__fps1-fixed4s-px64-bf16"
    adaptive = _recipe(**{"clips.mode": "adaptive", "decode.sample_fps": 0.5})
    assert clips_model_id(enc, adaptive) == "vidx-tiny__synthetic-v1__d128__fps0.5-adaptive2-10s-t0.15-px64-fp32"
    tc = _recipe(**{"encode.token_clustering.enabled": True, "encode.token_clustering.layer": 2})
    assert clips_model_id(enc, tc).endswith("__fps1-fixed4s-px64-fp32__tc-L2-S2-K16-I10-s0")
    assert clips_model_id(enc, _recipe()) == clips_model_id(enc, _recipe())


@pytest.mark.parametrize("change", [
    {"decode.sample_fps": 2.0}, {"decode.sample_fps": 1 / 3}, {"clips.seconds": 5.0}, {"clips.mode": "adaptive"},
    {"encode.token_clustering.enabled": True},
])
def test_every_setting_that_changes_a_vector_changes_the_id(change):
    enc = encoder_id("vidx-tiny", "random", 128)
    assert clips_model_id(enc, _recipe(**change)) != clips_model_id(enc, _recipe())


def test_adaptive_parameters_precision_and_frame_size_are_in_the_id():
    enc = encoder_id("m", "w", 8)
    adaptive = {"clips.mode": "adaptive"}
    ids = {clips_model_id(enc, r) for r in [
        _recipe(**adaptive), _recipe(**adaptive, **{"clips.adaptive_threshold": 0.2}),
        _recipe(**adaptive, **{"clips.min_seconds": 1.0}), _recipe(**adaptive, **{"clips.max_seconds": 12.0}),
        _recipe("bf16", **adaptive), _recipe("fp16", **adaptive),
        Recipe.from_config(load_config(env={}, overrides=adaptive), frame_size=224, precision="fp32")]}
    assert len(ids) == 7
    # 1/3 and its 6-digit rounding are different settings: the id keeps them apart
    assert clips_model_id(enc, _recipe(**{"decode.sample_fps": 1 / 3})) != clips_model_id(
        enc, _recipe(**{"decode.sample_fps": 0.333333}))


def test_recipe_needs_a_decided_precision():
    with pytest.raises(ConfigError, match="decided precision"):
        _recipe("auto")


def test_record_keeps_the_recipe_and_old_records_have_none(tmp_path):
    lm = load_model(ModelSpec("vidx-tiny", "random"), device="cpu")
    recipe = _recipe("bf16", **{"decode.sample_fps": 2.0, "clips.seconds": 3.0})
    record = registry.save_model_record(str(tmp_path), lm, recipe, precision_rule="configured")
    assert record["model_id"] == clips_model_id(lm.model_id, recipe) and record["query_model_id"] == lm.model_id
    assert recorded_recipe(str(tmp_path), record["model_id"]) == recipe
    legacy = {k: record[k] for k in ("name", "pretrained", "dim", "image_size")}
    (tmp_path / "models" / "old.json").write_text(json.dumps({**legacy, "model_id": "old"}))
    assert recorded_recipe(str(tmp_path), "old") is None
    assert recorded_recipe(str(tmp_path), "never-written") is None


def test_auto_precision_is_decided_once_and_kept(tmp_path, monkeypatch):
    lm = load_model(ModelSpec("vidx-tiny", "random"), device="cpu")
    answers = iter(["bf16", "fp32"])
    calls = []

    def probe(model):
        calls.append(model.model_id)
        return next(answers)

    monkeypatch.setattr(precision, "probe_cpu_precision", probe)
    cpu_auto = load_config(env={}, overrides={"encode.device": "cpu"}).encode
    first = precision.run_precision(str(tmp_path), lm, cpu_auto)
    again = precision.run_precision(str(tmp_path), lm, cpu_auto)  # a busier driver would now say fp32
    assert first == again and first[0] == "bf16" and calls == [lm.model_id]
    assert precision.run_precision(str(tmp_path / "other"), lm, cpu_auto)[0] == "fp32"  # its own warehouse
    cuda_auto = load_config(env={}, overrides={"encode.device": "cuda"}).encode
    assert precision.run_precision(str(tmp_path), lm, cuda_auto) == ("bf16", "auto: bf16 autocast on cuda")
    fixed = load_config(env={}, overrides={"encode.precision": "fp16"}).encode
    assert precision.run_precision(str(tmp_path), lm, fixed) == ("fp16", "configured")
    assert len(calls) == 2
    gpu_conf = {"spark.task.resource.gpu.amount": "1"}
    assert precision.planned_device_kind(load_config(env={}).encode, gpu_conf) == "cuda"
