"""Config keys of moments, thumbnails and media, and the CLI flags that set them."""

from __future__ import annotations

import pytest

from vidx.cli import _config, build_parser
from vidx.config import load_config
from vidx.errors import ConfigError


def test_defaults():
    cfg = load_config(env={})
    assert (cfg.search.moment_drop, cfg.search.moment_fanout) == (0.15, 10)
    assert (cfg.thumbnails.enabled, cfg.thumbnails.width, cfg.thumbnails.quality) == (True, 160, 80)
    assert cfg.serve.media is True


def test_env_and_flags():
    cfg = load_config(env={"VIDX_THUMBNAILS__ENABLED": "false", "VIDX_SEARCH__MOMENT_DROP": "0.05"})
    assert cfg.thumbnails.enabled is False and cfg.search.moment_drop == 0.05
    args = build_parser().parse_args(["serve", "--warehouse", "/w", "--no-media"])
    assert _config(args).serve.media is False
    args = build_parser().parse_args(["search", "x", "--moments", "-k", "3", "--warehouse", "/w"])
    assert args.moments and _config(args).search.k == 3


@pytest.mark.parametrize("bad", [{"search.moment_drop": -0.1}, {"search.moment_fanout": 0},
                                 {"thumbnails.width": 8}, {"thumbnails.quality": 100}])
def test_invalid_values_are_refused(bad):
    with pytest.raises(ConfigError):
        load_config(env={}, overrides=bad)
