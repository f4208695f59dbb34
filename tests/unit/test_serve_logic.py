"""ClipRows: row -> clip, filter masks, (video, clip) lookup; request parsing of the query server."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from vidx.errors import IndexIntegrityError, QueryError
from vidx.serve.payloads import SearchRequest, check_k, parse
from vidx.serve.rows import ClipRows, RowFilter, media_url


def ids() -> pa.Table:
    return pa.table({
        "video_id": ["b", "a", "b", "c", "a"],
        "clip_idx": pa.array([1, 0, 0, 0, 1], pa.int32()),
        "start_s": [4.0, 0.0, 0.0, 0.0, 4.0],
        "end_s": [8.0, 4.0, 4.0, 4.0, 8.0],
        "uri": ["s3://x/dogs/b.mp4", "/data/cats/a.mp4", "s3://x/dogs/b.mp4", "/data/cats/c.mkv", "/data/cats/a.mp4"],
    })


def test_hit_and_lookup():
    rows = ClipRows(ids())
    hit = rows.hit(3, 0.5)
    assert (hit.video_id, hit.uri, hit.clip_idx, hit.start_s, hit.end_s, hit.score, hit.row) == \
        ("c", "/data/cats/c.mkv", 0, 0.0, 4.0, 0.5, 3)
    assert set(hit.as_dict()) == {"video_id", "uri", "clip_idx", "start_s", "end_s", "score"}
    assert [rows.row_of(v, c) for v, c in [("b", 1), ("a", 0), ("b", 0), ("c", 0), ("a", 1)]] == [0, 1, 2, 3, 4]
    assert rows.row_of("a", 2) is None
    assert rows.row_of("zzz", 0) is None
    assert rows.row_of("a", 2**40) is None


@pytest.mark.parametrize(("flt", "expected"), [
    (RowFilter(), [0, 1, 2, 3, 4]),
    (RowFilter(uri_prefix="/data/cats/"), [1, 3, 4]),
    (RowFilter(uri_prefix="s3://"), [0, 2]),
    (RowFilter(uri_prefix="gs://"), []),
    (RowFilter(video_id="a"), [1, 4]),
    (RowFilter(video_id="nope"), []),
    (RowFilter(min_start_s=4.0), [0, 4]),
    (RowFilter(max_end_s=4.0), [1, 2, 3]),
    (RowFilter(uri_prefix="/data/", min_start_s=1.0, max_end_s=8.0), [4]),
])
def test_masks(flt, expected):
    rows = ClipRows(ids())
    assert np.flatnonzero(rows.mask(flt)).tolist() == expected
    assert flt.active == (flt != RowFilter())


def test_empty_ids_and_missing_columns():
    empty = ClipRows(ids().slice(0, 0))
    assert len(empty) == 0 and empty.row_of("a", 0) is None
    assert empty.mask(RowFilter(uri_prefix="x")).tolist() == []
    with pytest.raises(IndexIntegrityError, match="uri"):
        ClipRows(ids().drop(["uri"]))


def test_media_url():
    assert media_url("/data/a b.mp4", 4.0, 8.5) == "file:///data/a%20b.mp4#t=4,8.5"
    assert media_url("s3://bucket/v.mp4", 0.0, 4.0) == "s3://bucket/v.mp4#t=0,4"


def test_search_request_parsing():
    req = parse(SearchRequest, {"text": "cat", "k": 5, "uri_prefix": "/data"})
    assert req.kind() == "text" and req.row_filter().active
    assert parse(SearchRequest, {"clip": {"video_id": "a", "clip_idx": 2}}).kind() == "clip"
    for body, fragment in [({}, "exactly one"), ({"text": "a", "vector": [1.0]}, "exactly one"),
                           ({"text": "a", "topk": 3}, "topk"), ({"vector": "abc"}, "vector"),
                           ({"clip": {"video_id": "a"}}, "clip_idx"), ({"text": "a", "nprobe": 0}, "nprobe")]:
        with pytest.raises(QueryError, match=fragment):
            parse(SearchRequest, body).kind()
    with pytest.raises(QueryError, match="JSON object"):
        parse(SearchRequest, [1, 2])
    assert check_k(1, 10) == 1
    for bad in (0, -1, 11):
        with pytest.raises(QueryError, match="between 1 and 10"):
            check_k(bad, 10)


def test_serve_config_defaults_and_env():
    from vidx.config import load_config

    cfg = load_config(env={})
    assert (cfg.serve.host, cfg.serve.port, cfg.serve.max_k) == ("127.0.0.1", 8000, 1000)
    cfg = load_config(env={"VIDX_SERVE__PORT": "9001", "VIDX_SERVE__RELOAD_INTERVAL_S": "0.5"})
    assert cfg.serve.port == 9001 and cfg.serve.reload_interval_s == 0.5
    from vidx.errors import ConfigError

    with pytest.raises(ConfigError):
        load_config(env={"VIDX_SERVE__RELOAD_INTERVAL_S": "0"})


class _FakeServed:
    def __init__(self, version: str) -> None:
        self.version, self.model_id, self.count, self.dim = version, "m", 1, 4
        self.manifest, self.loaded_at = {"nprobe": 0, "params": {"factory": "Flat"}}, 0.0


def test_holder_swaps_keeps_old_on_failure_and_retries_later(tmp_path):
    from vidx.serve.reload import IndexHolder

    calls: list[str] = []

    def loader(warehouse, model_id, version, pretrained):
        calls.append(version)
        if version.startswith("bad"):
            raise RuntimeError(f"{version} is broken")
        return _FakeServed(version)

    current = tmp_path / "indexes" / "m" / "CURRENT"
    current.parent.mkdir(parents=True)
    holder = IndexHolder(str(tmp_path), model_id="m", loader=loader)
    assert not holder.poll_once() and "published index" in holder.not_ready_reason()
    current.write_text("v1\n")
    assert holder.poll_once() and holder.require().version == "v1"
    assert not holder.poll_once() and calls == ["v1"]  # unchanged CURRENT: nothing loaded
    current.write_text("bad2\n")
    assert not holder.poll_once()
    assert holder.require().version == "v1" and holder.failure.version == "bad2"
    assert holder.status()["reload_error"]["error"] == "RuntimeError: bad2 is broken"
    assert not holder.poll_once() and calls == ["v1", "bad2"]  # not retried at once...
    holder.failure = type(holder.failure)("bad2", "old", holder.failure.at - 3600)
    holder.poll_once()
    assert calls == ["v1", "bad2", "bad2"]  # ...but after a while
    current.write_text("v1\n")  # rolled back to what is served: the alarm clears
    assert not holder.poll_once() and holder.failure is None
    current.write_text("v3\n")
    assert holder.poll_once() and holder.require().version == "v3"
