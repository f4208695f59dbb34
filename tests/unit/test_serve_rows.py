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
