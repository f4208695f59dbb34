"""Prometheus metrics of the query server, and the ASGI middleware that records request metrics.

Each app gets its own CollectorRegistry, so several servers (tests, or two models in one process)
never share or double-register series.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LOG = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Vector searches take ~0.1-5 ms, text/image encoding tens of ms, an IVF full scan 100+ ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self, endpoints: frozenset[str]) -> None:
        # Unknown paths share one label: a scanner probing random URLs cannot blow up cardinality.
        self.endpoints = endpoints
        self.registry = CollectorRegistry()
        reg = self.registry
        self.requests = Counter("vidx_requests", "HTTP requests by endpoint, method and status",
                                ["endpoint", "method", "status"], registry=reg)
        self.latency = Histogram("vidx_request_duration_seconds", "HTTP request latency by endpoint",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=reg)
        self.index_info = Gauge("vidx_index_info", "The served index version (value 1)",
                                ["model_id", "version"], registry=reg)
        self.vectors = Gauge("vidx_index_vectors", "Vectors in the served index", registry=reg)
        self.ready = Gauge("vidx_index_ready", "1 while an index is loaded and served", registry=reg)
        self.loads = Counter("vidx_index_loads", "Index version loads by result (ok, failed)", ["result"],
                             registry=reg)
        self.load_seconds = Gauge("vidx_index_load_seconds", "Seconds the served version took to load",
                                  registry=reg)
        self.reload_failing = Gauge(
            "vidx_index_reload_failing",
            "1 while CURRENT names a version that failed to load (the previous version is still served)",
            registry=reg)

    def index_loaded(self, model_id: str, version: str, vectors: int, seconds: float) -> None:
        self.index_info.clear()
        self.index_info.labels(model_id=model_id, version=version).set(1)
        self.vectors.set(vectors)
        self.ready.set(1)
        self.load_seconds.set(seconds)
        self.loads.labels(result="ok").inc()
        self.reload_failing.set(0)

    def index_load_failed(self) -> None:
        self.loads.labels(result="failed").inc()
        self.reload_failing.set(1)

    def reload_recovered(self) -> None:
        self.reload_failing.set(0)

    def observe(self, path: str, method: str, status: int, seconds: float) -> None:
        endpoint = path if path in self.endpoints else "other"
        self.requests.labels(endpoint=endpoint, method=method, status=str(status)).inc()
        self.latency.labels(endpoint=endpoint).observe(seconds)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsMiddleware:
    """Times every HTTP request and counts it by final status (500 when the app raised)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe(scope["path"], scope["method"], status, time.perf_counter() - started)
