"""Request bodies of the query server: strict JSON parsing, validation, and the /search operation.

Bodies are read and parsed here rather than by FastAPI's body binding because clip-retrieval's
client posts JSON without a Content-Type header; every malformed body becomes a QueryError (4xx)
with a message that says what to fix.
"""

from __future__ import annotations

import json
import logging
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from vidx.config import SearchConfig
from vidx.errors import QueryError
from vidx.serve.moments import search_moments
from vidx.serve.query import Modality
from vidx.serve.rows import RowFilter
from vidx.serve.state import ServedIndex

LOG = logging.getLogger(__name__)

# faiss keeps nprobe in a size_t; anything near this is a full scan of any sane nlist anyway.
MAX_NPROBE = 1 << 20
QUERY_KINDS = ("text", "image", "vector", "clip")
M = TypeVar("M", bound=BaseModel)


class _Strict(BaseModel):
    # Unknown keys are refused so that a typo ("vectors", "topk") is an error, not a silent default.
    model_config = ConfigDict(extra="forbid")


class ClipRef(_Strict):
    video_id: str
    clip_idx: int = Field(ge=0)


class SearchRequest(_Strict):
    text: str | None = None
    image: str | None = Field(default=None, description="base64 PNG/JPEG (a data: URL prefix is allowed)")
    vector: list[float] | None = None
    clip: ClipRef | None = None
    k: int | None = None
    nprobe: int | None = Field(default=None, gt=0, le=MAX_NPROBE)
    uri_prefix: str | None = None
    video_id: str | None = None
    min_start_s: float | None = None
    max_end_s: float | None = None
    # "moments": adjacent clips of a video merged into spans (vidx.serve.moments); k counts moments.
    group: Literal["clips", "moments"] = "clips"

    def kind(self) -> str:
        given = [name for name in QUERY_KINDS if getattr(self, name) is not None]
        if len(given) != 1:
            raise QueryError(f"give exactly one of {', '.join(QUERY_KINDS)}; got "
                             f"{', '.join(given) if given else 'none'}")
        return given[0]

    def row_filter(self) -> RowFilter:
        return RowFilter(uri_prefix=self.uri_prefix, video_id=self.video_id, min_start_s=self.min_start_s,
                         max_end_s=self.max_end_s)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: Request) -> Any:
    """The parsed body; NaN/Infinity literals, empty and non-UTF-8 bodies are refused."""
    body = await request.body()
    if not body.strip():
        raise QueryError("request body is empty; send a JSON object")
    try:
        return json.loads(body, parse_constant=_no_constants)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise QueryError(f"request body is not valid JSON: {exc}") from exc


def parse(model: type[M], data: Any) -> M:
    if not isinstance(data, dict):
        raise QueryError(f"request body must be a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors())
        raise QueryError(f"invalid request: {problems}") from exc


def check_k(k: int, max_k: int, name: str = "k") -> int:
    if not 1 <= k <= max_k:
        raise QueryError(f"{name} must be between 1 and {max_k} (serve.max_k), got {k}")
    return k


def query_vector(served: ServedIndex, req: SearchRequest) -> np.ndarray:
    kind = req.kind()
    if kind == "text":
        return served.text_vector(req.text or "")
    if kind == "image":
        return served.image_vector(req.image or "")
    if kind == "vector":
        return served.vector(req.vector or [])
    clip = req.clip
    if clip is None:  # unreachable: kind() said it is set; keeps mypy and readers sure
        raise QueryError("clip is missing")
    return served.clip_vector(clip.video_id, clip.clip_idx)


def run_search(served: ServedIndex, req: SearchRequest, *, default_k: int, max_k: int,
               search_cfg: SearchConfig | None = None) -> dict[str, Any]:
    """The /search response for `req` against one served index version (blocking: run in a thread)."""
    k = check_k(req.k if req.k is not None else default_k, max_k)
    vec = query_vector(served, req)
    modality: Modality = "text" if req.kind() == "text" else "image"
    if req.group == "moments":
        cfg = search_cfg or SearchConfig()
        moments = search_moments(lambda n: served.search(vec, n, nprobe=req.nprobe, flt=req.row_filter(),
                                                         modality=modality),
                                 served.rows, k, fanout=cfg.moment_fanout, drop=cfg.moment_drop)
        return {"index_version": served.version, "model_id": served.model_id, "group": "moments",
                "results": [m.as_dict() for m in moments]}
    hits = served.search(vec, k, nprobe=req.nprobe, flt=req.row_filter(), modality=modality)
    return {"index_version": served.version, "model_id": served.model_id,
            "results": [h.as_dict() for h in hits]}
