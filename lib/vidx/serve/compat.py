"""clip-retrieval's back-end API (`/indices-list`, `/knn-service`, `/metadata`) over the served index.

ClipClient posts `json.dumps(body)` with no Content-Type header and always sends all 14 keys
(unused ones null), so bodies are parsed by hand and unknown keys are ignored, as clip-retrieval
does. One index is served, named by its model id. Items are video clips: `url` is the clip as a
media fragment (`uri#t=start,end`), `caption` names the file and time range.

Ids are faiss row numbers of the served version: after a reload the same id may name another
clip. Every knn-service result carries its metadata inline, so clients never need /metadata.
"""

from __future__ import annotations

import logging
from pathlib import PurePosixPath
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from vidx.errors import QueryError
from vidx.serve.payloads import check_k, parse, read_json
from vidx.serve.reload import IndexHolder
from vidx.serve.rows import Hit, media_url
from vidx.serve.state import ServedIndex

LOG = logging.getLogger(__name__)


class _Lenient(BaseModel):
    # clip-retrieval reads the keys it knows and ignores the rest; so do we.
    model_config = ConfigDict(extra="ignore")


class KnnRequest(_Lenient):
    text: str | None = None
    image: str | None = None
    image_url: str | None = None
    embedding_input: list[float] | None = None
    modality: str = "image"
    num_images: int = 40          # ClipClient's default
    num_result_ids: int | None = None
    indice_name: str | None = None
    use_mclip: bool | None = False
    # Accepted for compatibility and ignored: vidx has no dedup, safety or aesthetic models.
    deduplicate: bool | None = None
    use_safety_model: bool | None = None
    use_violence_detector: bool | None = None
    aesthetic_score: int | str | None = None
    aesthetic_weight: float | str | None = None


class MetadataRequest(_Lenient):
    ids: list[int] = Field(default_factory=list)
    indice_name: str | None = None


def clip_record(served: ServedIndex, hit: Hit) -> dict[str, Any]:
    name = PurePosixPath(hit.uri).name or hit.uri
    return {"url": media_url(hit.uri, hit.start_s, hit.end_s),
            "caption": f"{name} {hit.start_s:g}-{hit.end_s:g}s",
            "video_id": hit.video_id, "clip_idx": hit.clip_idx, "uri": hit.uri,
            "start_s": hit.start_s, "end_s": hit.end_s, "index_version": served.version}


def _check_indice(served: ServedIndex, name: str | None) -> None:
    if name is not None and name != served.model_id:
        raise QueryError(f"unknown indice_name {name!r}; this server serves [{served.model_id!r}] "
                         "(see /indices-list)", status=404)


def knn(served: ServedIndex, req: KnnRequest, max_k: int) -> list[dict[str, Any]]:
    _check_indice(served, req.indice_name)
    if req.modality != "image":
        raise QueryError(f"modality {req.modality!r} is not served: vidx indexes video clips (image "
                         "embeddings), so use modality 'image' (text queries work with it)")
    if req.use_mclip:
        raise QueryError("use_mclip is not supported: queries are encoded with the index's own model")
    k = check_k(req.num_images, max_k, "num_images")
    given = [n for n in ("text", "image", "image_url", "embedding_input") if getattr(req, n) not in (None, "")]
    if len(given) != 1:
        raise QueryError(f"give exactly one of text, image, embedding_input; got {', '.join(given) or 'none'}")
    if given[0] == "image_url":
        raise QueryError("image_url is not supported (the server does not fetch URLs); send the image "
                         "base64-encoded in `image`")
    if req.text:
        vec = served.text_vector(req.text)
    elif req.image:
        vec = served.image_vector(req.image)
    else:
        vec = served.vector(req.embedding_input or [])
    # text vectors get the text nprobe (query.TEXT_NPROBE_FACTOR x the tuned one), as on /search
    hits = served.search(vec, k, modality="text" if req.text else "image")
    return [{"id": hit.row, "similarity": hit.score, **clip_record(served, hit)} for hit in hits]


def metadata(served: ServedIndex, req: MetadataRequest, max_k: int) -> list[dict[str, Any]]:
    _check_indice(served, req.indice_name)
    if len(req.ids) > max_k:
        raise QueryError(f"at most {max_k} ids per request (serve.max_k), got {len(req.ids)}")
    bad = [i for i in req.ids if not 0 <= i < served.count]
    if bad:
        raise QueryError(f"ids {bad[:5]} are not rows of index {served.version} (0..{served.count - 1})")
    return [{"id": i, "metadata": clip_record(served, served.rows.hit(i, 0.0))} for i in req.ids]


def router(holder: IndexHolder, max_k: int) -> APIRouter:
    api = APIRouter(tags=["clip-retrieval"])

    @api.get("/indices-list")
    def indices_list() -> list[str]:
        served = holder.current
        return [served.model_id] if served else ([holder.model_id] if holder.model_id else [])

    @api.post("/knn-service")
    async def knn_service(request: Request) -> JSONResponse:
        req = parse(KnnRequest, await read_json(request))
        served = holder.require()
        return JSONResponse(await run_in_threadpool(knn, served, req, max_k))

    @api.post("/metadata")
    async def metadata_service(request: Request) -> JSONResponse:
        req = parse(MetadataRequest, await read_json(request))
        served = holder.require()
        return JSONResponse(await run_in_threadpool(metadata, served, req, max_k))

    return api
