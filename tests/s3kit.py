"""A real S3-compatible server for tests: moto on 127.0.0.1, in its own process, with request accounting.

`python tests/s3kit.py` serves moto's S3 (werkzeug, threaded) behind a WSGI middleware that
records every request (method, bucket, key, conditional headers, status, body bytes served), so
tests can count the bytes a run read from the archive bucket and check that Delta log entries
were written with If-None-Match; `GET /__requests__?since=N` returns that log as JSON. The
middleware also serialises mutating requests: moto checks a conditional PUT's precondition and
stores the object in two steps, which real S3 does atomically; one lock restores that guarantee.

Its own process, not a thread of the test process: some deltalake calls (`is_deltatable`) block
without releasing the GIL, which would starve an in-process server and hang the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

REGION = "us-east-1"
KEY_ID, SECRET = "vidx-test-key", "vidx-test-secret"
LOG_PATH = "/__requests__"


@dataclass
class Request:
    method: str
    bucket: str
    key: str
    if_none_match: str | None
    if_match: str | None
    status: int = 0
    sent: int = 0  # response body bytes


def _accounting(app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
    log: list[Request] = []
    log_lock, write_lock = threading.Lock(), threading.Lock()

    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = unquote(environ.get("PATH_INFO", ""))
        if path == LOG_PATH:
            since = int(parse_qs(environ.get("QUERY_STRING", "")).get("since", ["0"])[0])
            with log_lock:
                body = json.dumps([asdict(r) for r in log[since:]]).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        bucket, _, key = path.lstrip("/").partition("/")
        rec = Request(environ["REQUEST_METHOD"], bucket, key, environ.get("HTTP_IF_NONE_MATCH"),
                      environ.get("HTTP_IF_MATCH"))
        with log_lock:  # logged before answering, bytes counted before sending: a client never
            log.append(rec)  # sees a response its count is missing

        def recording_start(status: str, headers: Any, exc_info: Any = None) -> Any:
            rec.status = int(status.split(maxsplit=1)[0])
            return start_response(status, headers, exc_info)

        if rec.method in ("PUT", "POST", "DELETE"):
            with write_lock:  # S3's conditional writes are atomic; moto's are check-then-put
                chunks: Iterable[bytes] = list(app(environ, recording_start))
        else:
            chunks = app(environ, recording_start)
        return _counted(chunks, rec)

    return middleware


def _counted(chunks: Iterable[bytes], rec: Request) -> Iterable[bytes]:
    for chunk in chunks:
        rec.sent += len(chunk)
        yield chunk


def serve() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
    from werkzeug.serving import make_server

    class Quiet(MotoRequestHandler):
        def log_request(self, *args: Any, **kwargs: Any) -> None:  # a line per request would drown the log
            pass

    server = make_server("127.0.0.1", 0, _accounting(DomainDispatcherApplication(create_backend_app)), True,
                         request_handler=Quiet)
    parent = os.getppid()

    def orphan_watch() -> None:  # a test run killed without stopping us must not leave us running
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=orphan_watch, daemon=True).start()
    print(server.server_address[1], flush=True)
    server.serve_forever()


class S3Server:
    """The test side: starts `serve()` in a subprocess and reads its request log."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    def start(self) -> None:
        self._proc = subprocess.Popen([sys.executable, __file__], stdout=subprocess.PIPE, text=True)
        line = self._proc.stdout.readline() if self._proc.stdout else ""
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"the moto S3 server did not start (said {line!r})")
        self.port = int(line)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(10)
            self._proc = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The standard AWS variables, all a user sets."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,
                "AWS_REGION": REGION, "AWS_ALLOW_HTTP": "true"}

    def options(self) -> dict[str, str]:
        """The same settings as `storage.options` (for runs without the environment)."""
        return {k.lower(): v for k, v in self.env().items()}

    def client(self) -> Any:
        import boto3

        return boto3.session.Session().client("s3", endpoint_url=self.endpoint, aws_access_key_id=KEY_ID,
                                              aws_secret_access_key=SECRET, region_name=REGION)

    def new_bucket(self, prefix: str) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.client().create_bucket(Bucket=name)
        return name

    def since(self, mark: int = 0) -> list[Request]:
        with urllib.request.urlopen(f"{self.endpoint}{LOG_PATH}?since={mark}", timeout=30) as reply:
            return [Request(**r) for r in json.loads(reply.read())]

    def mark(self) -> int:
        """A position in the request log: `since(mark)` are the requests after it."""
        return len(self.since())

    def bytes_served(self, bucket: str, since: int = 0) -> int:
        """Object bytes that GET requests on `bucket` returned (ranged or whole)."""
        return sum(r.sent for r in self.since(since) if r.bucket == bucket and r.method == "GET" and r.key
                   and r.status in (200, 206))


if __name__ == "__main__":
    serve()
