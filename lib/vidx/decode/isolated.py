"""Probe and decode in a persistent subprocess with a deadline.

One decoder subprocess per Python worker is reused across units (start-up is paid once); on a
timeout it is killed and the unit becomes a `timeout` failure, on a crash a `corrupt` failure,
and the next unit gets a fresh subprocess.
"""

from __future__ import annotations

import atexit
import logging
import os
import select
import subprocess
import sys
import threading
import time
from typing import IO, Any

from vidx.decode.decoder import DecodedFrames
from vidx.decode.probe import VideoInfo
from vidx.decode.worker import read_msg, write_msg
from vidx.errors import DecodeError, WorkUnitError

LOG = logging.getLogger(__name__)


class IsolatedDecoder:
    def __init__(self) -> None:
        self._proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen([sys.executable, "-m", "vidx.decode.worker"], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
        return self._proc

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._proc = None

    @staticmethod
    def _write(proc: subprocess.Popen[bytes], request: dict[str, Any]) -> IO[bytes]:
        if proc.stdin is None or proc.stdout is None:
            raise RuntimeError("decoder subprocess started without pipes")
        write_msg(proc.stdin, request)  # type: ignore[arg-type]
        return proc.stdout

    def _call(self, request: dict[str, Any], timeout_s: float) -> Any:
        proc = self._start()
        try:
            stdout = self._write(proc, request)
        except BrokenPipeError:  # the subprocess died since the last call: one fresh try, not a loop
            self.close()
            proc = self._start()
            stdout = self._write(proc, request)
        ready, _, _ = select.select([stdout], [], [], timeout_s)
        if not ready:
            self.close()
            raise DecodeError(f"{request['path']}: decoder did not finish within {timeout_s:.0f} s and was "
                              "killed; raise decode.timeout_s if the file is just very long", error_class="timeout")
        try:
            reply = read_msg(stdout)  # type: ignore[arg-type]
        except EOFError as exc:
            code = proc.wait()
            self.close()
            raise DecodeError(f"{request['path']}: decoder crashed (exit code {code})",
                              error_class="corrupt") from exc
        if reply[0] == "decode_error":
            raise DecodeError(reply[2], error_class=reply[1])
        if reply[0] == "retry":
            raise WorkUnitError(reply[2])
        return reply[1]

    def probe(self, path: str, *, timeout_s: float) -> VideoInfo:
        """`path` may be a local path or any storage URI (probed by ranged reads in the subprocess)."""
        from vidx import storage

        info: VideoInfo = self._call({"op": "probe", "path": path, "storage_options": storage.options()},
                                     timeout_s)
        return info

    def decode(self, path: str, *, start_s: float, end_s: float, sample_fps: float, image_size: int,
               info: VideoInfo | None, threads: int, timeout_s: float) -> DecodedFrames:
        t0 = time.perf_counter()
        frames: DecodedFrames = self._call({
            "op": "decode", "path": path, "start_s": start_s, "end_s": end_s, "sample_fps": sample_fps,
            "image_size": image_size, "info": info, "threads": threads}, timeout_s)
        LOG.debug("decoded %d frames of %s in %.2f s", len(frames.times), path, time.perf_counter() - t0)
        return frames


_LOCAL = threading.local()


def shared_decoder() -> IsolatedDecoder:
    """This thread's decoder subprocess. Spark reuses Python workers across tasks, so it is started
    once per worker and decoding thread; a pipe is never shared between threads."""
    decoder: IsolatedDecoder | None = getattr(_LOCAL, "decoder", None)
    if decoder is None:
        decoder = IsolatedDecoder()
        atexit.register(decoder.close)
        _LOCAL.decoder = decoder
    return decoder


