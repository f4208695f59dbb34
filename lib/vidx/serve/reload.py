"""Hot reload: watch `CURRENT`, load a new version in the background, swap it in atomically.

The served index is one attribute holding an immutable ServedIndex. A reload builds the new
object completely (files read and sha256-verified, model loaded, a warm-up query answered) and
then assigns it: a single reference swap under the GIL. Requests read the attribute once and
keep that object, so in-flight requests finish on the old version, new ones get the new one, and
nobody ever sees a half-loaded index. A load that fails for any reason leaves the old version
served and is reported in /readyz and in the metrics.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vidx.errors import IndexNotFoundError
from vidx.index.publish import current_version, list_models
from vidx.serve.metrics import Metrics
from vidx.serve.state import ServedIndex

LOG = logging.getLogger(__name__)

Loader = Callable[[str, str, str, str | None], ServedIndex]
# A version is immutable, so a failed load usually fails again (bad checksum); it is retried only
# this often, in case the failure was transient (object-store hiccup, model file being copied).
MIN_RETRY_S = 60.0


@dataclass(frozen=True)
class LoadFailure:
    version: str | None
    error: str
    at: float

    def as_dict(self) -> dict[str, Any]:
        return {"version": self.version, "error": self.error,
                "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.at))}


class IndexHolder:
    """Owns the served index of one model and the thread that keeps it on `CURRENT`."""

    def __init__(self, warehouse: str, *, model_id: str | None = None, pretrained: str | None = None,
                 interval_s: float = 5.0, metrics: Metrics | None = None,
                 loader: Loader = ServedIndex.load) -> None:
        self.warehouse = warehouse
        self.model_id = model_id
        self.pretrained = pretrained
        self.interval_s = interval_s
        self.metrics = metrics
        self._loader = loader
        self.current: ServedIndex | None = None  # the one reference requests read
        self.failure: LoadFailure | None = None
        self.waiting_for: str = "the first poll of CURRENT"
        self._retry_after_s = max(MIN_RETRY_S, 10 * interval_s)
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="vidx-index-reload", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.interval_s)

    def require(self) -> ServedIndex:
        """The served index, or IndexNotFoundError (answered 503) saying why there is none yet."""
        served = self.current
        if served is None:
            raise IndexNotFoundError(f"no index is loaded yet: {self.not_ready_reason()}")
        return served

    def not_ready_reason(self) -> str:
        if self.failure is not None:
            return f"loading version {self.failure.version} failed: {self.failure.error}"
        return f"waiting for {self.waiting_for}"

    def poll_once(self) -> bool:
        """Check `CURRENT` once and load what it names if that is new. True when a new version was swapped in."""
        with self._poll_lock:
            try:
                model_id = self._resolve_model()
                target = current_version(self.warehouse, model_id)
            except _NothingYet:
                return False
            except Exception as exc:  # storage errors of any kind: keep serving, report, retry next poll
                self._failed(None, exc)
                return False
            if target is None:
                self.waiting_for = f"a published index of {model_id} in {self.warehouse} (run `vidx build-index`)"
                return False
            served = self.current
            if served is not None and served.version == target:
                if self.failure is not None:  # CURRENT moved back (rollback) to what we serve
                    self.failure = None
                    if self.metrics:
                        self.metrics.reload_recovered()
                return False
            failed = self.failure
            if failed is not None and failed.version == target and time.time() - failed.at < self._retry_after_s:
                return False
            return self._load(model_id, target)

    def _load(self, model_id: str, version: str) -> bool:
        self.waiting_for = f"version {version} to load"
        started = time.perf_counter()
        try:
            fresh = self._loader(self.warehouse, model_id, version, self.pretrained)
        except Exception as exc:  # whatever went wrong, the old version must stay in service
            self._failed(version, exc)
            return False
        seconds = time.perf_counter() - started
        previous = self.current
        self.current = fresh  # the atomic swap
        self.failure = None
        if self.metrics:
            self.metrics.index_loaded(fresh.model_id, fresh.version, fresh.count, seconds)
        LOG.info("serving index %s of %s (%d vectors, loaded in %.2f s; was %s)", version, model_id, fresh.count,
                 seconds, previous.version if previous else "none")
        return True

    def _failed(self, version: str | None, exc: Exception) -> None:
        self.failure = LoadFailure(version, f"{type(exc).__name__}: {exc}", time.time())
        if self.metrics:
            self.metrics.index_load_failed()
        serving = self.current.version if self.current else "nothing"
        LOG.error("could not load index version %s (still serving %s): %s", version, serving, exc)

    def _resolve_model(self) -> str:
        if self.model_id is None:
            models = list_models(self.warehouse)
            if len(models) > 1:
                raise IndexNotFoundError(f"{self.warehouse} holds indexes of several models ({', '.join(models)}); "
                                         "start the server with --model-id")
            if not models:
                self.waiting_for = f"a published index in {self.warehouse} (run `vidx build-index`)"
                raise _NothingYet
            self.model_id = models[0]
        return self.model_id

    def status(self) -> dict[str, Any]:
        served = self.current
        out: dict[str, Any] = {"ready": served is not None, "model_id": self.model_id,
                               "reload_error": self.failure.as_dict() if self.failure else None}
        if served is None:
            out["reason"] = self.not_ready_reason()
            return out
        out.update(index_version=served.version, vectors=served.count, dim=served.dim,
                   nprobe=served.manifest.get("nprobe"), factory=served.manifest["params"].get("factory"),
                   loaded_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(served.loaded_at)))
        return out


class _NothingYet(Exception):
    """No model has published an index yet: not a failure, just nothing to load."""
