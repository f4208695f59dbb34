"""Decoder subprocess: `python -m vidx.decode.worker`, driven by `vidx.decode.isolated`.

Requests and replies are length-prefixed pickles on stdin/stdout. Running decoders here means a
hanging or crashing decoder (a real risk with damaged files) costs one killed subprocess, never
the Spark executor's Python worker.
"""

from __future__ import annotations

import os
import pickle
import struct
import sys
import time
from typing import Any, BinaryIO

from vidx.errors import DecodeError, WorkUnitError

_HEADER = struct.Struct("<Q")
# Test-only fault injection: a path containing this substring makes the decoder hang.
HANG_ENV = "VIDX_FAULT_DECODE_HANG"


def write_msg(stream: BinaryIO, obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def read_exact(stream: BinaryIO, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError("decoder pipe closed")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def read_msg(stream: BinaryIO) -> Any:
    (size,) = _HEADER.unpack(read_exact(stream, _HEADER.size))
    return pickle.loads(read_exact(stream, size))


def handle(request: dict[str, Any]) -> Any:
    from vidx import storage
    from vidx.decode.decoder import decode_range
    from vidx.decode.source import probe_uri

    pattern = os.environ.get(HANG_ENV)
    if pattern and pattern in request["path"]:
        time.sleep(10**6)
    if request["op"] == "probe":  # a URI: remote objects are probed by ranged reads, never copied
        storage.configure(request.get("storage_options"))
        return probe_uri(request["path"])
    if request["op"] == "decode":
        return decode_range(request["path"], start_s=request["start_s"], end_s=request["end_s"],
                            sample_fps=request["sample_fps"], image_size=request["image_size"],
                            info=request.get("info"), threads=request.get("threads", 1))
    raise ValueError(f"unknown decoder request {request['op']!r}")


def main() -> None:
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints must never corrupt the reply stream
    while True:
        try:
            request = read_msg(inp)
        except EOFError:
            return
        try:
            reply: Any = ("ok", handle(request))
        except DecodeError as exc:
            reply = ("decode_error", exc.error_class, str(exc))
        except WorkUnitError as exc:  # storage trouble, not the file's fault: the caller retries
            reply = ("retry", "", str(exc))
        except Exception as exc:  # any library failure on a file is that file's problem
            reply = ("decode_error", "corrupt", f"{type(exc).__name__}: {exc}")
        write_msg(out, reply)


if __name__ == "__main__":
    main()
