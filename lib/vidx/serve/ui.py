"""GET / : the search page (static HTML, CSS and plain JS packaged in vidx/serve/static, no build step).

The three files are read once from the package; a request names one of them, never a path.
The page talks to this server only: a Content-Security-Policy keeps scripts, images, media and
requests same-origin, and no CORS headers are ever sent, so other sites cannot script it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

from vidx.errors import QueryError

# Same-origin everything; `data:`/`blob:` images for the preview of a dropped query image.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
FILES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
         "app.css": "text/css; charset=utf-8"}


@dataclass(frozen=True)
class StaticFile:
    body: bytes
    media_type: str
    etag: str


@cache
def static_file(name: str) -> StaticFile:
    if name not in FILES:
        raise QueryError(f"no static file {name!r}", status=404)
    body = resources.files("vidx.serve").joinpath("static", name).read_bytes()
    return StaticFile(body, FILES[name], f'"{hashlib.sha256(body).hexdigest()[:16]}"')


def _respond(request: Request, name: str) -> Response:
    f = static_file(name)
    # Revalidated on every load (cheap 304s), so an upgraded server never runs a stale page.
    headers = {"ETag": f.etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
               "Referrer-Policy": "no-referrer"}
    if name == "index.html":
        headers |= {"Content-Security-Policy": CSP, "X-Frame-Options": "DENY"}
    if f.etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return Response(f.body, media_type=f.media_type, headers=headers)


def router() -> APIRouter:
    api = APIRouter(tags=["page"])

    @api.get("/")
    def page(request: Request) -> Response:
        return _respond(request, "index.html")

    @api.get("/static/{name}")
    def asset(request: Request, name: str) -> Response:
        if name == "index.html":  # the page lives at /, nowhere else
            raise QueryError(f"no static file {name!r}", status=404)
        return _respond(request, name)

    return api
