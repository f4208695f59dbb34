"""`vidx serve`: the FastAPI query server.

Endpoints: POST /search, GET /healthz, GET /readyz, GET /metrics, and clip-retrieval's
/indices-list, /knn-service, /metadata (compat.py); the search page GET / (ui.py) with
GET /thumb/{video_id}/{clip_idx} and GET /media/{video_id} (assets.py). Index loading and hot
reload: reload.py.
Error contract: a bad request gets a 4xx JSON `{"error": message}` (400 invalid, 404 unknown
clip/indice, 413 body too large), 503 while no index is loaded or, with `Retry-After`, while
`serve.max_concurrent_requests` requests are in flight; 500 only for bugs. The request limits
(limits.py) are middleware around every route, so routes added later get them too.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from vidx.config import VidxConfig
from vidx.errors import IndexNotFoundError, QueryError
from vidx.serve import assets, compat, ui
from vidx.serve.limits import BodyLimitMiddleware, ConcurrencyLimitMiddleware, RequestLimits
from vidx.serve.metrics import Metrics, MetricsMiddleware
from vidx.serve.payloads import SearchRequest, parse, read_json, run_search
from vidx.serve.reload import IndexHolder

LOG = logging.getLogger(__name__)

ENDPOINTS = frozenset({"/search", "/healthz", "/readyz", "/metrics", "/indices-list", "/knn-service", "/metadata",
                       "/"})


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def _install_error_handlers(app: FastAPI) -> None:
    async def query_error(_: Request, exc: Exception) -> JSONResponse:
        return _error(getattr(exc, "status", 400), str(exc))

    async def not_ready(_: Request, exc: Exception) -> JSONResponse:
        return _error(503, str(exc))

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        status = getattr(exc, "status_code", 500)
        return _error(status, str(getattr(exc, "detail", exc)))

    app.add_exception_handler(QueryError, query_error)
    app.add_exception_handler(IndexNotFoundError, not_ready)
    app.add_exception_handler(HTTPException, http_error)


def create_app(cfg: VidxConfig, *, model_id: str | None = None, pretrained: str | None = None,
               holder: IndexHolder | None = None) -> FastAPI:
    """The server app; the reload thread runs while the app's lifespan does (uvicorn starts it)."""
    metrics = Metrics(ENDPOINTS)
    holder = holder or IndexHolder(cfg.warehouse, model_id=model_id, pretrained=pretrained,
                                   interval_s=cfg.serve.reload_interval_s)
    holder.metrics = metrics
    max_k, default_k = cfg.serve.max_k, min(cfg.search.k, cfg.serve.max_k)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        holder.start()
        try:
            yield
        finally:
            holder.stop()

    app = FastAPI(title="vidx query server", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.holder, app.state.metrics = holder, metrics
    _install_error_handlers(app)
    app.include_router(compat.router(holder, max_k))
    app.include_router(assets.router(holder, cfg))
    app.include_router(ui.router())

    @app.post("/search")
    async def search(request: Request) -> JSONResponse:
        req = parse(SearchRequest, await read_json(request))
        served = holder.require()  # read once: this request stays on this version whatever reloads
        return JSONResponse(await run_in_threadpool(run_search, served, req, default_k=default_k, max_k=max_k,
                                                    search_cfg=cfg.search))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        status = holder.status()
        return JSONResponse(status, status_code=200 if status["ready"] else 503)

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    # Added inside out: metrics (outermost: also counts 413s and 503s), concurrency, body size.
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.serve.max_body_bytes)
    app.add_middleware(ConcurrencyLimitMiddleware, limits=RequestLimits.from_config(cfg.serve))
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    return app


def run_server(cfg: VidxConfig, *, model_id: str | None = None, pretrained: str | None = None) -> None:
    """Serve until interrupted. Fails fast when the warehouse holds several models and none was chosen."""
    import uvicorn

    from vidx.index.registry import resolve_model

    if model_id is None:
        model_id = resolve_model(cfg.warehouse, None, allow_none=True)
    app = create_app(cfg, model_id=model_id, pretrained=pretrained)
    LOG.info("vidx serve: %s (model %s) on http://%s:%d", cfg.warehouse, model_id or "to be published",
             cfg.serve.host, cfg.serve.port)
    # Access logs off: at thousands of requests/s they cost more than the search; /metrics counts requests.
    uvicorn.run(app, host=cfg.serve.host, port=cfg.serve.port, access_log=False, log_level="info")
