"""One writer per warehouse: a lease record `W/_vidx/lock.json` with a heartbeat.

Every change of the lease is a conditional write (vidx.storage): taking a free warehouse creates
the record only if it is absent (If-None-Match on S3, a hard link locally); taking over a released
or stale lease, each heartbeat and the release replace it only if it is still the version this run
read (If-Match with the ETag on S3, a compare-and-replace under an flock locally). So of two runs
racing for the warehouse exactly one holds the lease, with no write-then-read-back window.

A lease whose heartbeat is older than `stale_after_s` belongs to a dead run and can be taken over;
the same run id (a restarted run) may always take its own lease back. Release marks the record
released rather than deleting it, so that it too is a conditional write.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import Any

from vidx import storage
from vidx.errors import VidxError
from vidx.storage import join, normalize_uri

LOG = logging.getLogger(__name__)
_TAKE_TRIES = 5  # the lease changed between our read and our conditional write: look again


class WarehouseLockedError(VidxError):
    """Another run holds the warehouse."""


class WarehouseLock:
    def __init__(self, warehouse: str, run_id: str, *, stale_after_s: float = 600.0,
                 heartbeat_s: float = 30.0) -> None:
        self.uri = join(normalize_uri(warehouse), "_vidx", "lock.json")
        self.run_id = run_id
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.lost = False  # set when a heartbeat finds the lease taken over (we were presumed dead)
        self._tag: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self, *, released: bool = False) -> bytes:
        return json.dumps({"run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(),
                           "heartbeat": time.time(), "released": released}).encode()

    def _read(self) -> tuple[dict[str, Any], str] | None:
        held = storage.read_tagged(self.uri)
        if held is None:
            return None
        try:
            return dict(json.loads(held.data)), held.tag
        except ValueError:  # a damaged record protects nothing: treat it as free
            return {"released": True}, held.tag

    def _create_exclusive(self) -> bool:
        self._tag = storage.put_if_absent(self.uri, self._record())
        return self._tag is not None

    def _take(self) -> bool:
        """One attempt to take an existing lease; raises when someone else validly holds it."""
        found = self._read()
        if found is None:
            return self._create_exclusive()
        held, tag = found
        age = time.time() - float(held.get("heartbeat", 0))
        if not held.get("released") and held.get("run_id") != self.run_id and age < self.stale_after_s:
            raise WarehouseLockedError(
                f"another run holds the warehouse: run {held.get('run_id')} on {held.get('host')} "
                f"(pid {held.get('pid')}), last heartbeat {age:.0f} s ago. Wait for it to finish; if it "
                f"died, resume it with --run-id {held.get('run_id')} or remove {self.uri}.")
        if not held.get("released") and held.get("run_id") != self.run_id:
            LOG.warning("taking over the warehouse lock from run %s (heartbeat %.0f s ago)", held.get("run_id"), age)
        self._tag = storage.replace_if_match(self.uri, self._record(), tag)
        return self._tag is not None

    def acquire(self) -> None:
        if not self._create_exclusive():
            for _ in range(_TAKE_TRIES):
                if self._take():
                    break
            else:
                raise WarehouseLockedError(f"the lease {self.uri} kept changing hands while run {self.run_id} "
                                           "tried to take it; another run is starting: try again later")
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name="vidx-lock-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            if self._tag is None:
                return
            try:
                self._tag = storage.replace_if_match(self.uri, self._record(), self._tag)
            except OSError as exc:  # a transient storage error: the next beat tries again
                LOG.warning("lease heartbeat failed (%s); retrying in %.0f s", exc, self.heartbeat_s)
                continue
            if self._tag is None:
                self.lost = True
                LOG.error("run %s lost the warehouse lease %s: another run took it over as stale", self.run_id,
                          self.uri)
                return

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        tag, self._tag = self._tag, None
        if tag is not None and storage.replace_if_match(self.uri, self._record(released=True), tag):
            return
        # The lease is the run's, not the process's: a restart of this run id may have re-taken it.
        # Release that too, but never a lease another run holds.
        found = self._read()
        if found is not None and found[0].get("run_id") == self.run_id and not found[0].get("released"):
            storage.replace_if_match(self.uri, self._record(released=True), found[1])

    def __enter__(self) -> WarehouseLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
