"""index.* settings of the recall-driven selection: byte sizes, defaults, families."""

from __future__ import annotations

import pytest

from vidx.config import IndexConfig, load_config, parse_bytes
from vidx.errors import ConfigError


@pytest.mark.parametrize(("text", "expected"), [(1024, 1024), ("1024", 1024), ("8GB", 8 * 10**9), ("8 GiB", 8 * 2**30),
                                                ("16g", 16 * 2**30), ("1.5MiB", 3 * 2**19), ("500mb", 500 * 10**6)])
def test_byte_sizes(text: object, expected: int) -> None:
    assert parse_bytes(text) == expected


def test_defaults_and_env() -> None:
    cfg = IndexConfig()
    assert (cfg.target_recall, cfg.max_memory, cfg.ondisk_above) == (0.95, 16 * 2**30, 16 * 2**30)
    assert set(cfg.candidates) == {"ivfpq", "opq", "ivfpq_refine", "ivfflat"}
    env = {"VIDX_INDEX__MAX_MEMORY": "2GiB", "VIDX_INDEX__CANDIDATES": "[ivfpq, ivfflat]"}
    loaded = load_config(env=env).index
    assert (loaded.max_memory, loaded.candidates) == (2 * 2**30, ("ivfpq", "ivfflat"))


@pytest.mark.parametrize("bad", [{"max_memory": "lots"}, {"max_memory": "12XB"}, {"max_memory": True},
                                 {"max_memory": 0}, {"candidates": []}, {"candidates": ["hnsw"]},
                                 {"target_recall": 1.5}])
def test_bad_values_are_config_errors(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        load_config(env={}, overrides={f"index.{k}": v for k, v in bad.items()})
