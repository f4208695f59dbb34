"""Request limits of the query server, applied to every route (those added later too).

Two ASGI middlewares wrap the whole app, so no route has to remember them:

* `BodyLimitMiddleware`: a body over `serve.max_body_bytes` gets a readable 413 JSON error. A
  declared Content-Length is checked before anything is read; a chunked body (no Content-Length)
  is read up to the limit before the app sees it. The rest of an oversized body is read and
  dropped (up to DRAIN_MAX_BYTES) before answering, so the client finishes sending and reads the
  413 instead of a reset connection (a server that closes with unread data sends a TCP RST).
* `ConcurrencyLimitMiddleware`: at most `serve.max_concurrent_requests` requests in flight; one
  more gets 503 with `Retry-After` at once instead of queueing without bound. Health, readiness
  and metrics are never limited (an orchestrator must see a busy server as alive). It also gives
  each request its `RequestBudget` (a context variable, so handlers running in the thread pool
  see it too).

Shared helpers read the budget, wherever a route needs them: `open_query_image` (PNG/JPEG/WebP
only; decoded pixels bounded per request by `serve.max_image_pixels`) and `check_nprobe` (a
request's nprobe at most `serve.max_nprobe`).
"""

from __future__ import annotations

import io
import json
import logging
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from vidx.config import ServeConfig
from vidx.errors import QueryError
from vidx.serve.metrics import ASGIApp, Message, Receive, Scope, Send

LOG = logging.getLogger(__name__)

# PIL identifies only these (Image.open(formats=...)): no TIFF, BMP, PSD, EPS... parsers reachable
# from a request, and every accepted format states its size in a header read before decoding.
QUERY_IMAGE_FORMATS = ("PNG", "JPEG", "WEBP")
UNLIMITED_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/"})
# The limit guards the CPU that queries spend (encoding, search). The page's assets, thumbnails and
# media streams are I/O, and a paused <video> can hold its ranged response open for minutes: counted
# against the same slots, a few viewers would lock every query out.
UNLIMITED_PREFIXES = ("/static/", "/thumb/", "/media/")
# A full server frees a slot within a search or two (milliseconds to a second).
RETRY_AFTER_S = 1
# Reading and dropping more than this to answer one oversized request is no longer worth it: past
# it the connection is closed and the client may see a reset instead of the 413.
DRAIN_MAX_BYTES = 64 << 20


@dataclass(frozen=True)
class RequestLimits:
    max_body_bytes: int
    max_concurrent: int
    max_image_pixels: int
    max_nprobe: int

    @classmethod
    def from_config(cls, serve: ServeConfig) -> RequestLimits:
        return cls(max_body_bytes=serve.max_body_bytes, max_concurrent=serve.max_concurrent_requests,
                   max_image_pixels=serve.max_image_pixels, max_nprobe=serve.max_nprobe)


@dataclass
class RequestBudget:
    """What one request may still spend."""

    limits: RequestLimits
    pixels_left: int = field(init=False)

    def __post_init__(self) -> None:
        self.pixels_left = self.limits.max_image_pixels

    def take_pixels(self, width: int, height: int) -> None:
        pixels = width * height
        if pixels > self.pixels_left:
            spent = self.limits.max_image_pixels - self.pixels_left
            raise QueryError(f"image is {width}x{height} pixels ({pixels:,}); a request may decode at most "
                             f"{self.limits.max_image_pixels:,} pixels in all (serve.max_image_pixels"
                             + (f", {spent:,} already used" if spent else "") + "): send a smaller image")
        self.pixels_left -= pixels


_BUDGET: ContextVar[RequestBudget | None] = ContextVar("vidx_request_budget", default=None)


def current_budget() -> RequestBudget:
    """The budget of the request being served; outside a request (library use), a fresh default one."""
    return _BUDGET.get() or RequestBudget(RequestLimits.from_config(ServeConfig()))


def check_nprobe(nprobe: int | None) -> int | None:
    """A request's nprobe, refused (400) above serve.max_nprobe: each probed list costs a scan."""
    limit = current_budget().limits.max_nprobe
    if nprobe is not None and not 1 <= nprobe <= limit:
        raise QueryError(f"nprobe must be between 1 and {limit} (serve.max_nprobe), got {nprobe}")
    return nprobe


def open_query_image(data: bytes) -> Image.Image:
    """A PNG, JPEG or WebP image from a request, charged to the request's pixel budget before any
    pixel is decoded. Raises QueryError (4xx) for anything else; the caller closes the image."""
    try:
        img = Image.open(io.BytesIO(data), formats=QUERY_IMAGE_FORMATS)
    except Image.UnidentifiedImageError as exc:
        raise QueryError("image cannot be decoded as PNG, JPEG or WebP (other formats are refused); "
                         "send one of those, complete and base64-encoded") from exc
    try:
        current_budget().take_pixels(*img.size)
    except QueryError:
        img.close()
        raise
    return img


async def send_json(send: Send, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
    body = json.dumps(payload).encode()
    extra = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *extra]})
    await send({"type": "http.response.body", "body": body})


class ConcurrencyLimitMiddleware:
    """At most `limits.max_concurrent` requests in flight (503 + Retry-After beyond); one budget per request."""

    def __init__(self, app: ASGIApp, limits: RequestLimits) -> None:
        self.app = app
        self.limits = limits
        self.in_flight = 0  # only touched on the event loop thread: no lock needed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _BUDGET.set(RequestBudget(self.limits))
        try:
            if scope["path"] in UNLIMITED_PATHS or scope["path"].startswith(UNLIMITED_PREFIXES):
                await self.app(scope, receive, send)
                return
            if self.in_flight >= self.limits.max_concurrent:
                await send_json(send, 503, {"error": f"server busy: {self.in_flight} requests in flight "
                                            f"(serve.max_concurrent_requests); retry in {RETRY_AFTER_S} s"},
                                {"Retry-After": str(RETRY_AFTER_S)})
                return
            self.in_flight += 1
            try:
                await self.app(scope, receive, send)
            finally:
                self.in_flight -= 1
        finally:
            _BUDGET.reset(token)


class BodyLimitMiddleware:
    """Refuses bodies over `max_bytes` with a readable 413 (see the module doc), before the app buffers them."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            if declared.isdigit() and int(declared) <= self.max_bytes:
                await self.app(scope, receive, send)
                return
            size = declared.decode(errors="replace")
            # A client waiting for "100 Continue" has sent nothing yet: answer without reading.
            if declared.isdigit() and int(declared) <= DRAIN_MAX_BYTES \
                    and headers.get(b"expect", b"").lower() != b"100-continue":
                await self._drain(receive, 0)
            await self._too_large(send, size)
            return
        if b"transfer-encoding" not in headers:  # HTTP/1.1: no length and not chunked means no body
            await self.app(scope, receive, send)
            return
        body, read, more = await self._read_up_to_limit(receive)
        if read > self.max_bytes:
            if more:
                await self._drain(receive, read)
            await self._too_large(send, f"more than {self.max_bytes}")
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read_up_to_limit(self, receive: Receive) -> tuple[bytes, int, bool]:
        """(the body if it fits the limit, bytes read, whether it does not fit and more is left)."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks), size, False  # disconnected: the app sees what came
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                return b"", size, message.get("more_body", False)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks), size, False

    async def _drain(self, receive: Receive, already: int) -> None:
        """Read and drop the rest of the body, so the client can finish sending and read our answer."""
        drained = already
        while drained <= DRAIN_MAX_BYTES:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
            drained += len(message.get("body", b""))

    async def _too_large(self, send: Send, size: str) -> None:
        await send_json(send, 413, {"error": f"request body of {size} bytes exceeds serve.max_body_bytes "
                                             f"({self.max_bytes})"})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the already-read body once, then defers to the server's (disconnects)."""
    pending: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay
