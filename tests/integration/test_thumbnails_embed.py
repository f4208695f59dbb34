"""Thumbnails in the embed stage: one midpoint JPEG per clip, made from the frames decoded for the
encoder (no second decode), switchable, and never read by validation or index builds."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from vidx.config import load_config
from vidx.decode.decoder import decode_range
from vidx.decode.sampling import sample_times
from vidx.encode.models import ModelSpec, load_model
from vidx.encode.registry import plan_in_process
from vidx.synth import write_video
from vidx.tables import delta, table_uri
from vidx.tables.files import DataFile

pytestmark = pytest.mark.integration


def test_every_clip_has_its_midpoint_frame_as_thumbnail(embedded, test_config):
    clips = delta.read_table(table_uri(test_config.warehouse, "clips"),
                             columns=["video_id", "clip_idx", "start_s", "end_s", "thumbnail"]).to_pylist()
    uris = {r["video_id"]: r["uri"] for r in delta.read_table(
        table_uri(test_config.warehouse, "videos"), columns=["video_id", "uri"]).to_pylist()}
    assert clips and all(c["thumbnail"] is not None for c in clips)
    sizes = {Image.open(io.BytesIO(c["thumbnail"])).size for c in clips}
    assert sizes == {(64, 64)}  # vidx-tiny's decoded square, not upscaled
    assert max(len(c["thumbnail"]) for c in clips) < 8_000
    for c in clips[::7]:  # a spread of videos and clip positions
        times = sample_times(c["start_s"], c["end_s"], test_config.decode.sample_fps)
        t = times[np.argmin(np.abs(times - (c["start_s"] + c["end_s"]) / 2))]
        ref = decode_range(uris[c["video_id"]], start_s=t, end_s=t + 1e-3, sample_fps=1000.0, image_size=64).frames[0]
        got = np.asarray(Image.open(io.BytesIO(c["thumbnail"])).convert("RGB"), np.float64)
        assert np.abs(got - ref).mean() < 8, (c["video_id"], c["clip_idx"], t)  # JPEG loss only


def _run_task(tmp_path, name: str, video: str, monkeypatch, *, thumbnails: bool) -> tuple[pa.Table, int]:
    """EmbedTask in-process on one video; returns its clip rows and how often a video was decoded."""
    import decord

    from vidx.decode.isolated import IsolatedDecoder
    from vidx.spark.stages import UNITS_IN, EmbedTask

    cfg = load_config(env={}, overrides={"warehouse": str(tmp_path / name), "thumbnails.enabled": thumbnails})
    lm = load_model(ModelSpec(cfg.encode.model, cfg.encode.pretrained), device="cpu")
    decodes = []
    real = IsolatedDecoder.decode

    def counting(self, path, **kw):
        decodes.append(path)
        return real(self, path, **kw)

    def no_decoding_here(*_a, **_k):
        raise AssertionError("the embed task decoded video in-process (a second decode)")

    monkeypatch.setattr(IsolatedDecoder, "decode", counting)
    monkeypatch.setattr(decord, "VideoReader", no_decoding_here)
    monkeypatch.setattr("av.open", no_decoding_here)
    cfg, model_id = plan_in_process(cfg.with_overrides({"encode.precision": "fp32"}), lm)
    task = EmbedTask(cfg=cfg, run_id="t", model_id=model_id, clips_uri=str(tmp_path / name / "clips"))
    unit = {"bin": 0, "unit_id": "u0", "video_id": "v", "uri": video, "start_s": 0.0, "end_s": float("inf"),
            "duration_s": 10.0}
    out = pa.Table.from_batches(list(task(iter([pa.RecordBatch.from_pylist([unit], schema=UNITS_IN)]))))
    files = [DataFile.from_json(f) for f in out["file"].to_pylist() if f]
    rows = pa.concat_tables([pq.read_table(str(tmp_path / name / "clips" / f.path)) for f in files])
    monkeypatch.undo()
    return rows.sort_by("clip_idx"), len(decodes)


def test_thumbnails_reuse_the_decoded_frames_and_can_be_switched_off(tmp_path, monkeypatch):
    video = str(tmp_path / "v.mp4")
    write_video(video, duration_s=10, fps=10, width=160, height=90, seed=5)
    with_thumbs, decodes_on = _run_task(tmp_path, "on", video, monkeypatch, thumbnails=True)
    without, decodes_off = _run_task(tmp_path, "off", video, monkeypatch, thumbnails=False)
    assert decodes_on == decodes_off == 1  # one decode per unit either way
    assert with_thumbs.num_rows == without.num_rows == 3
    assert all(t is not None for t in with_thumbs["thumbnail"].to_pylist())
    assert without["thumbnail"].null_count == 3
    a = np.array(with_thumbs["embedding"].to_pylist())
    b = np.array(without["embedding"].to_pylist())
    np.testing.assert_allclose(a, b, atol=1e-6)  # thumbnails never touch the vectors


class _Spy:
    """A pyarrow dataset that records the columns of every scan made through it."""

    def __init__(self, dataset, reads: list) -> None:
        self._dataset, self._reads = dataset, reads

    def __getattr__(self, name: str):
        attr = getattr(self._dataset, name)
        if name not in ("to_table", "to_batches", "head", "scanner", "take"):
            return attr

        def scan(*args, **kw):
            self._reads.append((name, kw.get("columns")))
            return attr(*args, **kw)
        return scan


def test_validation_and_index_readers_never_read_thumbnails(embedded, test_config, monkeypatch, tmp_path):
    from vidx.index import from_table
    from vidx.quality import batches, frames

    clips_uri = table_uri(test_config.warehouse, "clips")
    reads: list[tuple[str, list[str] | None]] = []
    real = delta.to_dataset

    def spy(uri, **kw):
        dataset = real(uri, **kw)
        return _Spy(dataset, reads) if uri == clips_uri else dataset

    monkeypatch.setattr(delta, "to_dataset", spy)
    real_file = from_table.read_file

    def spy_file(uri, columns):  # build-index reads the pinned version's data files itself
        reads.append(("read_file", list(columns)))
        return real_file(uri, columns)

    monkeypatch.setattr(from_table, "read_file", spy_file)
    version = delta.latest_version(clips_uri)
    model = from_table.clip_models(test_config.warehouse, version=version)[0]
    videos_version = frames.matching_videos_version(test_config.warehouse, version)
    spilled = batches.spill(test_config.warehouse, model, version, videos_version, str(tmp_path))  # `vidx validate`
    assert "thumbnail" not in spilled.schemas["clips"].names
    from_table.load_clips(test_config.warehouse, model, version)              # what `vidx build-index` reads
    from_table.load_ids(test_config.warehouse, model, version)
    assert {name for name, _ in reads} == {"to_batches", "read_file"} and len(reads) >= 3, reads
    assert all(cols is not None and "thumbnail" not in cols for _, cols in reads), reads
