"""One writer per warehouse: a lease file `W/_vidx/lock.json` with a heartbeat.

Local filesystems get an exclusive create (O_EXCL), so two runs racing for the lock cannot both
win. Object stores without conditional writes get write-then-read-back, which narrows but does not
close the race; the Delta commit protocol still rejects a conflicting second commit there.
A lease whose heartbeat is older than `stale_after_s` belongs to a dead run and can be taken over;
the same run id (a restarted run) may always take its own lease back.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import Any

from vidx.errors import VidxError
from vidx.storage import exists, filesystem, is_local, join, local_path, normalize_uri, read_bytes, write_bytes_atomic

LOG = logging.getLogger(__name__)


class WarehouseLockedError(VidxError):
    """Another run holds the warehouse."""


class WarehouseLock:
    def __init__(self, warehouse: str, run_id: str, *, stale_after_s: float = 600.0,
                 heartbeat_s: float = 30.0) -> None:
        self.uri = join(normalize_uri(warehouse), "_vidx", "lock.json")
        self.run_id = run_id
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self) -> bytes:
        return json.dumps({"run_id": self.run_id, "host": socket.gethostname(), "pid": os.getpid(),
                           "heartbeat": time.time()}).encode()

    def _read(self) -> dict[str, Any] | None:
        try:
            return dict(json.loads(read_bytes(self.uri)))
        except (FileNotFoundError, ValueError):
            return None

    def _create_exclusive(self) -> bool:
        if is_local(self.uri):
            path = local_path(self.uri)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "wb") as fh:
                fh.write(self._record())
            return True
        if exists(self.uri):
            return False
        write_bytes_atomic(self.uri, self._record())
        held = self._read()
        return held is not None and held.get("run_id") == self.run_id

    def acquire(self) -> None:
        if not self._create_exclusive():
            held = self._read() or {}
            age = time.time() - float(held.get("heartbeat", 0))
            if held.get("run_id") != self.run_id and age < self.stale_after_s:
                raise WarehouseLockedError(
                    f"another run holds the warehouse: run {held.get('run_id')} on {held.get('host')} "
                    f"(pid {held.get('pid')}), last heartbeat {age:.0f} s ago. Wait for it to finish; if it "
                    f"died, resume it with --run-id {held.get('run_id')} or remove {self.uri}.")
            LOG.warning("taking over the warehouse lock from run %s (heartbeat %.0f s ago)", held.get("run_id"), age)
            write_bytes_atomic(self.uri, self._record())
        self._thread = threading.Thread(target=self._beat, name="vidx-lock-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            write_bytes_atomic(self.uri, self._record())

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        held = self._read()
        if held is not None and held.get("run_id") == self.run_id:
            fs, path = filesystem(self.uri)
            fs.delete_file(path)

    def __enter__(self) -> WarehouseLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
