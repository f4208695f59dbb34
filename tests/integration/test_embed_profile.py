"""Stage-level scheduling stays off in local mode: `vidx embed` on local[2] runs every stage on the
default resource profile (the path it always took), even with encode.device=cuda asked for."""

from __future__ import annotations

import pytest

from vidx.config import load_config
from vidx.spark.embed import run_embed
from vidx.spark.resources import embed_profile
from vidx.synth import make_sample_archive


def test_local_embed_runs_on_the_default_profile(spark, tmp_path, monkeypatch):
    profiles: list[object] = []
    frame = type(spark.range(1))  # the session's DataFrame class (Spark Classic in pyspark 4)
    original = frame.mapInArrow

    def spy(self, func, schema, barrier=False, profile=None):
        profiles.append(profile)
        return original(self, func, schema, barrier=barrier, profile=profile)

    monkeypatch.setattr(frame, "mapInArrow", spy)
    make_sample_archive(tmp_path / "archive", n_videos=1, seed=3, with_corrupt=False)
    cfg = load_config(env={}, overrides={"warehouse": str(tmp_path / "w"), "spark.master": "local[2]"})
    report = run_embed(cfg, str(tmp_path / "archive"), spark=spark)
    assert report.ok == 1 and report.clips > 0
    assert profiles == [None, None]  # probe and embed: the default profile
    manager = spark.sparkContext._jsc.sc().resourceProfileManager()
    with pytest.raises(Exception, match="resourceProfileFromId"):  # no profile but the default (id 0)
        manager.resourceProfileFromId(1)
    cuda = load_config(env={}, overrides={"encode.device": "cuda",
                                          "spark.conf": {"spark.dynamicAllocation.enabled": "true"}})
    assert embed_profile(spark, cuda) is None  # local master: never a GPU profile
