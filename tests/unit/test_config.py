import pytest

from vidx.config import VidxConfig, load_config
from vidx.errors import ConfigError


def test_defaults_are_documented_values():
    cfg = load_config(env={})
    assert cfg.warehouse == "./warehouse"
    assert cfg.decode.sample_fps == 1.0
    assert cfg.clips.seconds == 4.0
    assert cfg.encode.model == "vidx-tiny"
    assert cfg.spark.master == "local[*]"
    assert ".mp4" in cfg.archive.extensions


def test_precedence_yaml_env_cli(tmp_path):
    path = tmp_path / "vidx.yaml"
    path.write_text("warehouse: /from/yaml\nencode:\n  batch_size: 8\n  model: ViT-B-32\ndecode:\n  sample_fps: 2\n")
    env = {"VIDX_ENCODE__BATCH_SIZE": "16", "VIDX_ARCHIVE__EXTENSIONS": "[MP4, .mkv]", "OTHER": "x"}
    cfg = load_config(path, overrides={"decode.sample_fps": 0.5, "warehouse": None}, env=env)
    assert cfg.warehouse == "/from/yaml"          # None override does not clobber
    assert cfg.encode.batch_size == 16            # env beats yaml
    assert cfg.encode.model == "ViT-B-32"         # yaml beats default
    assert cfg.decode.sample_fps == 0.5           # cli beats yaml
    assert cfg.archive.extensions == (".mp4", ".mkv")


def test_config_file_from_env(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("clips: {seconds: 2}\n")
    assert load_config(env={"VIDX_CONFIG": str(path)}).clips.seconds == 2


@pytest.mark.parametrize("text", ["decode: {sample_fps: -1}", "encode: {nope: 1}", "- a list"])
def test_invalid_config_raises_config_error(tmp_path, text):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_config(path, env={})


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", env={})


def test_config_is_frozen_and_with_overrides_copies():
    cfg = VidxConfig()
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen error type
        cfg.warehouse = "x"  # type: ignore[misc]
    other = cfg.with_overrides({"index.flat_below": 10})
    assert other.index.flat_below == 10 and cfg.index.flat_below == 30_000


def test_publish_gate_and_quality_defaults_and_airflow_env_ignored():
    cfg = load_config(env={"VIDX_AIRFLOW_ARCHIVE": "/data/videos", "VIDX_AIRFLOW_RETRIES": "0",
                           "VIDX_QUALITY__MAX_FAILED_SHARE": "0.5"})
    assert cfg.index.require_validation is True           # VIDX_AIRFLOW_* configure the DAGs, not vidx
    assert cfg.quality.max_failed_share == 0.5 and cfg.quality.norm_tolerance == 0.01
