"""GET /thumb/{video_id}/{clip_idx} and GET /media/{video_id}: what the search page shows and plays.

Both look the request's ids up in the Delta versions behind the served index: the clips version
its manifest pins (`table_version`) and the videos version committed with it (the one validation
checked, `vidx.quality.frames.matching_videos_version`). No path or URI ever comes from the
request: an id that is not in the served index, or a video that is not `ok` in that videos
version, is a 404, whatever characters it holds.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from vidx.config import VidxConfig
from vidx.errors import ArchiveError, QueryError, TableError
from vidx.serve.ranges import ByteRange, RangeNotSatisfiable, content_type, parse_range, stream_file
from vidx.serve.reload import IndexHolder
from vidx.serve.state import ServedIndex
from vidx.storage import filesystem
from vidx.tables import delta, table_uri

LOG = logging.getLogger(__name__)

THUMB_CACHE_ENTRIES = 4096  # ~10 MB of 2 KB JPEGs; a results page asks for a few dozen
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class MediaFile:
    video_id: str
    uri: str


class VersionTables:
    """The clips and videos versions behind one served index version, opened once."""

    def __init__(self, warehouse: str, served: ServedIndex) -> None:
        from vidx.quality.frames import matching_videos_version

        self.version = served.version
        self.model_id = served.model_id
        self.clips_version = int(served.manifest["table_version"])
        self.clips = delta.to_dataset(table_uri(warehouse, "clips"), version=self.clips_version)
        videos_version = matching_videos_version(warehouse, self.clips_version)
        self.videos: ds.Dataset | None = None
        if videos_version is not None:
            self.videos = delta.to_dataset(table_uri(warehouse, "videos"), version=videos_version)
        LOG.info("index %s: thumbnails from clips v%d, media from videos v%s", self.version, self.clips_version,
                 videos_version)

    def thumbnail(self, video_id: str, clip_idx: int) -> bytes | None:
        if "thumbnail" not in self.clips.schema.names:  # a version written before thumbnails existed
            return None
        found = self.clips.to_table(columns=["thumbnail"], filter=(pc.field("model_id") == self.model_id)
                                    & (pc.field("video_id") == video_id) & (pc.field("clip_idx") == clip_idx))
        values = [v for v in found["thumbnail"].to_pylist() if v is not None]
        return values[0] if values else None

    def media(self, video_id: str) -> MediaFile | None:
        """The video's file when its row in this videos version says `ok`."""
        if self.videos is None:
            return None
        rows = self.videos.to_table(columns=["uri", "status", "indexed_at"],
                                    filter=(pc.field("model_id") == self.model_id)
                                    & (pc.field("video_id") == video_id)).to_pylist()
        if not rows:
            return None
        latest = max(rows, key=lambda r: r["indexed_at"])
        return MediaFile(video_id, latest["uri"]) if latest["status"] == "ok" else None


class Assets:
    """Per-version tables and a small thumbnail cache, shared by the requests of one server."""

    def __init__(self, warehouse: str) -> None:
        self.warehouse = warehouse
        self._tables: OrderedDict[str, VersionTables] = OrderedDict()
        self._thumbs: OrderedDict[tuple[str, str, int], bytes | None] = OrderedDict()
        self._lock = threading.Lock()
        self._open_lock = threading.Lock()

    def tables(self, served: ServedIndex) -> VersionTables:
        with self._lock:
            found = self._tables.get(served.version)
        if found is not None:
            return found
        # One opening per version even when a page asks for 24 thumbnails at once; cache hits
        # above never wait for it.
        with self._open_lock:
            with self._lock:
                found = self._tables.get(served.version)
            if found is None:
                found = VersionTables(self.warehouse, served)
                with self._lock:
                    self._tables[served.version] = found
                    while len(self._tables) > 2:  # the served version and the one before a reload
                        self._tables.popitem(last=False)
        return found

    def thumbnail(self, served: ServedIndex, video_id: str, clip_idx: int) -> bytes | None:
        key = (served.version, video_id, clip_idx)
        with self._lock:
            if key in self._thumbs:
                self._thumbs.move_to_end(key)
                return self._thumbs[key]
        data = self.tables(served).thumbnail(video_id, clip_idx)
        with self._lock:
            self._thumbs[key] = data
            while len(self._thumbs) > THUMB_CACHE_ENTRIES:
                self._thumbs.popitem(last=False)
        return data


def _clip_idx(text: str) -> int:
    if not text.isdigit() or len(text) > 10:
        raise QueryError(f"no clip {text!r}: clip numbers are non-negative integers", status=404)
    return int(text)


def _tables_unavailable(what: str, exc: Exception) -> QueryError:
    """A missing table is a 404 (nothing to show); storage trouble is a 503 (try again)."""
    LOG.warning("%s: %s", what, exc)
    if isinstance(exc, TableError):
        return QueryError(f"{what}: {exc}", status=404)
    return QueryError(f"{what}: the warehouse could not be read ({type(exc).__name__}); try again", status=503)


def _thumb(assets: Assets, served: ServedIndex, request: Request, video_id: str, clip: str) -> Response:
    clip_idx = _clip_idx(clip)
    if served.rows.row_of(video_id, clip_idx) is None:
        raise QueryError(f"clip {clip_idx} of video {video_id!r} is not in index {served.version}", status=404)
    etag = f'"{served.version}-{video_id}-{clip_idx}"'
    # The page asks with ?v=<index version>: that URL names immutable bytes. Without it (or with an
    # older version) the answer can change on the next reload, so the browser must revalidate.
    cache = IMMUTABLE if request.query_params.get("v") == served.version else "no-cache"
    headers = {"ETag": etag, "Cache-Control": cache, "X-Content-Type-Options": "nosniff"}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    try:
        data = assets.thumbnail(served, video_id, clip_idx)
    except (TableError, OSError, pa.ArrowException) as exc:
        raise _tables_unavailable(f"thumbnail of clip {clip_idx} of {video_id!r}", exc) from exc
    if data is None:
        raise QueryError(f"clip {clip_idx} of video {video_id!r} has no thumbnail (embedded with "
                         "thumbnails.enabled false, or before vidx wrote them)", status=404)
    return Response(data, media_type="image/jpeg", headers=headers)


def _media(assets: Assets, served: ServedIndex, request: Request, video_id: str) -> Response:
    try:
        record = assets.tables(served).media(video_id) if served.rows.has_video(video_id) else None
    except (TableError, OSError, pa.ArrowException) as exc:
        raise _tables_unavailable(f"video {video_id!r}", exc) from exc
    if record is None:
        raise QueryError(f"video {video_id!r} is not a playable file of index {served.version}", status=404)
    try:
        fs, path = filesystem(record.uri)
        info = fs.get_file_info(path)
    except (ArchiveError, OSError, pa.ArrowException) as exc:
        raise _tables_unavailable(f"video {video_id!r}", exc) from exc
    if info.size is None:  # listed and embedded, then removed from the archive
        raise QueryError(f"video {video_id!r} is no longer in the archive", status=404)
    size = int(info.size)
    etag = f'"{video_id}-{size}-{info.mtime_ns or 0}"'
    headers = {"Accept-Ranges": "bytes", "ETag": etag, "Cache-Control": "no-cache",
               "X-Content-Type-Options": "nosniff"}
    wanted = request.headers.get("range")
    if_range = request.headers.get("if-range")
    if if_range is not None and if_range != etag:  # the client's copy is stale: send it all
        wanted = None
    try:
        part = parse_range(wanted, size)
    except RangeNotSatisfiable as exc:
        return JSONResponse({"error": str(exc)}, status_code=416,
                            headers={"Content-Range": f"bytes */{size}", **headers})
    span = part or ByteRange(0, size - 1)
    if part is not None:
        headers["Content-Range"] = part.content_range(size)
    headers["Content-Length"] = str(max(0, span.length))
    status = 206 if part is not None else 200
    media_type = content_type(record.uri)
    if request.method == "HEAD" or size == 0:
        return Response(status_code=status, headers=headers, media_type=media_type)
    return StreamingResponse(stream_file(fs, path, span.start, span.length), status_code=status, headers=headers,
                             media_type=media_type)


def router(holder: IndexHolder, cfg: VidxConfig) -> APIRouter:
    api = APIRouter(tags=["assets"])
    assets = Assets(cfg.warehouse)

    @api.get("/thumb/{video_id}/{clip}")
    def thumb(request: Request, video_id: str, clip: str) -> Response:
        return _thumb(assets, holder.require(), request, video_id, clip)

    if cfg.serve.media:
        @api.api_route("/media/{video_id}", methods=["GET", "HEAD"])
        def media(request: Request, video_id: str) -> Response:
            return _media(assets, holder.require(), request, video_id)

    return api

