"""URIs to filesystems, object-store options, atomic artifact writes and conditional writes.

Every artifact is written to a temporary name and then renamed (`os.replace` locally), so a reader
never sees half a file. On object stores a single PUT is already atomic; the rename there is a
copy, which is why version folders are immutable and only the small `CURRENT` pointer moves.

Options: the standard AWS environment variables (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ALLOW_HTTP) are honoured by all three clients vidx uses
(pyarrow's S3FileSystem, deltalake's object_store, boto3). Users who cannot set the environment
put the same names in the config's `storage.options`; `configure` makes them this process's
options and they are translated here for pyarrow, fsspec, deltalake and boto3 alike.

Conditional writes (`put_if_absent`, `replace_if_match`) are what the warehouse lease and the
index `CURRENT` pointer are built on: If-None-Match / If-Match with the ETag on S3, a hard link /
`os.replace` under an flock on local disk. Other stores get a check-then-write that is atomic
only within one process (logged once).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import threading
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs

from vidx.errors import ArchiveError, ConfigError

LOG = logging.getLogger(__name__)

_S3_SCHEMES = ("s3", "s3a")
# Names accepted in `storage.options` (case-insensitive): the AWS environment variable names and
# the object_store aliases deltalake also accepts.
_ALIASES = {
    "endpoint": ("aws_endpoint_url", "aws_endpoint", "endpoint_url", "endpoint"),
    "key": ("aws_access_key_id", "access_key_id"),
    "secret": ("aws_secret_access_key", "secret_access_key"),
    "token": ("aws_session_token", "session_token", "aws_token", "token"),
    "region": ("aws_region", "aws_default_region", "region"),
    "allow_http": ("aws_allow_http", "allow_http"),
}
_OPTIONS: dict[str, str] = {}


def configure(options: Mapping[str, Any] | None) -> None:
    """Make `options` (config `storage.options`) this process's object-store options."""
    global _OPTIONS
    new = {str(k).lower(): str(v) for k, v in (options or {}).items()}
    _OPTIONS = new  # the client caches below are keyed by the options: nothing to invalidate


def options() -> dict[str, str]:
    """The configured options (empty when everything comes from the environment)."""
    return dict(_OPTIONS)


def _opt(name: str, opts: Mapping[str, str] | None = None) -> str | None:
    opts = _OPTIONS if opts is None else opts
    return next((opts[a] for a in _ALIASES[name] if opts.get(a)), None)


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def _endpoint(opts: Mapping[str, str]) -> tuple[str, str] | None:
    """(scheme, host[:port]) of the configured S3 endpoint, or None for AWS itself."""
    endpoint = _opt("endpoint", opts)
    if not endpoint:
        return None
    if "://" in endpoint:
        scheme, rest = endpoint.split("://", 1)
        return scheme, rest.rstrip("/")
    return ("http" if _truthy(_opt("allow_http", opts)) else "https"), endpoint.rstrip("/")


def pyarrow_s3_kwargs(opts: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`pyarrow.fs.S3FileSystem` arguments for the options (None values left to the environment)."""
    opts = _OPTIONS if opts is None else opts
    out: dict[str, Any] = {"access_key": _opt("key", opts), "secret_key": _opt("secret", opts),
                           "session_token": _opt("token", opts), "region": _opt("region", opts)}
    endpoint = _endpoint(opts)
    if endpoint:
        out["scheme"], out["endpoint_override"] = endpoint
    return {k: v for k, v in out.items() if v is not None}


def fsspec_kwargs(protocol: str, opts: Mapping[str, str] | None = None) -> dict[str, Any]:
    """fsspec `storage_options` for `protocol`: s3fs's names for S3, the options verbatim otherwise."""
    opts = _OPTIONS if opts is None else opts
    if protocol not in _S3_SCHEMES:
        return {k: v for k, v in opts.items() if not k.startswith("aws_")}
    out: dict[str, Any] = {"key": _opt("key", opts), "secret": _opt("secret", opts), "token": _opt("token", opts)}
    endpoint = _endpoint(opts)
    if endpoint:
        out["endpoint_url"] = "://".join(endpoint)
    if _opt("region", opts):
        out["client_kwargs"] = {"region_name": _opt("region", opts)}
    return {k: v for k, v in out.items() if v is not None}


def boto3_kwargs(opts: Mapping[str, str] | None = None) -> dict[str, Any]:
    opts = _OPTIONS if opts is None else opts
    endpoint = _endpoint(opts)
    out = {"endpoint_url": "://".join(endpoint) if endpoint else None, "aws_access_key_id": _opt("key", opts),
           "aws_secret_access_key": _opt("secret", opts), "aws_session_token": _opt("token", opts),
           "region_name": _opt("region", opts)}
    return {k: v for k, v in out.items() if v is not None}


def delta_options(uri: str) -> dict[str, str]:
    """deltalake `storage_options` for a table at `uri`: the options verbatim and, on S3, commits by
    conditional put (If-None-Match on the log entry), so two writers can never both win a version."""
    if urlparse(uri).scheme not in _S3_SCHEMES:
        return dict(_OPTIONS)
    if _truthy(_OPTIONS.get("aws_s3_allow_unsafe_rename") or os.environ.get("AWS_S3_ALLOW_UNSAFE_RENAME")):
        raise ConfigError("AWS_S3_ALLOW_UNSAFE_RENAME is set: with it two Delta writers can overwrite each "
                          "other's commit. Unset it; vidx commits with S3 conditional writes (If-None-Match).")
    out = dict(_OPTIONS)
    chosen = {"conditional_put", "aws_conditional_put", "copy_if_not_exists", "aws_copy_if_not_exists",
              "aws_s3_locking_provider"}
    if not chosen & set(out) and not os.environ.get("AWS_S3_LOCKING_PROVIDER"):
        out["conditional_put"] = "etag"
    return out


def is_local(uri: str) -> bool:
    scheme = urlparse(uri).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and os.name == "nt")


def local_path(uri: str) -> str:
    """The absolute local path of a `file://` or plain-path URI."""
    if uri.startswith("file://"):
        return urlparse(uri).path
    return str(Path(uri).expanduser().resolve())


def normalize_uri(uri: str) -> str:
    """Absolute local paths for local URIs; remote URIs unchanged (minus a trailing slash)."""
    return local_path(uri) if is_local(uri) else uri.rstrip("/")


def join(base: str, *parts: str) -> str:
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def child_uri(root_uri: str, root_path: str, path: str) -> str:
    """The URI of `path`, found by listing `root_path` (= `filesystem(root_uri)[1]`), written as
    `root_uri` plus the relative part: scheme, authority (HDFS namenode, bucket) and prefix are
    kept exactly as the user wrote them, whatever path form the filesystem lists in."""
    root_path = root_path.rstrip("/")
    if path.rstrip("/") == root_path:
        return root_uri
    if not path.startswith(root_path + "/"):
        raise ArchiveError(f"listed path {path!r} is not under {root_path!r} ({root_uri})")
    return join(root_uri, path[len(root_path) + 1:])


@functools.lru_cache(maxsize=8)
def _s3_filesystem(items: tuple[tuple[str, str], ...]) -> pafs.S3FileSystem:
    return pafs.S3FileSystem(**pyarrow_s3_kwargs(dict(items)))


def filesystem(uri: str) -> tuple[pafs.FileSystem, str]:
    """A pyarrow filesystem and the path inside it for any local, s3://, gs://, hdfs:// or fsspec URI."""
    if is_local(uri):
        return pafs.LocalFileSystem(), local_path(uri)
    parsed = urlparse(uri)
    if parsed.scheme in _S3_SCHEMES and pyarrow_s3_kwargs():
        return _s3_filesystem(tuple(sorted(_OPTIONS.items()))), f"{parsed.netloc}{parsed.path}".rstrip("/")
    try:
        return pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, ValueError, OSError) as exc:
        arrow_error: Exception = exc
    try:  # fall back to any fsspec implementation (gcsfs, adlfs, http...) wrapped for pyarrow
        import fsspec

        fs, path = fsspec.core.url_to_fs(uri, **fsspec_kwargs(parsed.scheme))
        return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path
    except (ImportError, ValueError, OSError) as exc:
        raise ArchiveError(f"cannot open {uri!r}: {arrow_error}; {exc}. Install the filesystem's "
                           "package (e.g. s3fs, gcsfs) or pass a local path.") from exc


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Write `data` to `uri` so that readers see either the old or the new content, never a mix."""
    fs, path = filesystem(uri)
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = _write_temp(parent, data)
        os.replace(tmp, path)
        return
    with fs.open_output_stream(path) as out:  # one PUT: atomic on object stores
        out.write(data)


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    with fs.open_input_stream(path) as src:
        return bytes(src.read())


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


# --- conditional writes ------------------------------------------------------------------------


@dataclass(frozen=True)
class Tagged:
    """An object's content and its version tag (S3 ETag; inode, mtime and hash locally)."""

    data: bytes
    tag: str


def read_tagged(uri: str) -> Tagged | None:
    """The content and version tag of `uri`, None when it does not exist."""
    scheme = urlparse(uri).scheme
    if is_local(uri):
        return _local_read(local_path(uri))
    if scheme in _S3_SCHEMES:
        return _s3_read(uri)
    try:
        data = read_bytes(uri)
    except FileNotFoundError:
        return None
    return Tagged(data, hashlib.sha256(data).hexdigest())


def put_if_absent(uri: str, data: bytes) -> str | None:
    """Create `uri` with `data` unless it exists (atomically). Returns the new tag, None if it existed."""
    if is_local(uri):
        return _local_put_if_absent(local_path(uri), data)
    if urlparse(uri).scheme in _S3_SCHEMES:
        return _s3_put(uri, data, IfNoneMatch="*")
    with _fallback_mutex(uri):
        if exists(uri):
            return None
        write_bytes_atomic(uri, data)
        return hashlib.sha256(data).hexdigest()


def replace_if_match(uri: str, data: bytes, tag: str) -> str | None:
    """Replace `uri` with `data` only if its version tag is still `tag` (atomically: no other writer
    can slip in between). Returns the new tag, None when the object changed or disappeared."""
    if is_local(uri):
        return _local_replace_if_match(local_path(uri), data, tag)
    if urlparse(uri).scheme in _S3_SCHEMES:
        return _s3_put(uri, data, IfMatch=tag)
    with _fallback_mutex(uri):
        current = read_tagged(uri)
        if current is None or current.tag != tag:
            return None
        write_bytes_atomic(uri, data)
        return hashlib.sha256(data).hexdigest()


def _write_temp(parent: str, data: bytes) -> str:
    tmp = f"{parent}/.tmp-{uuid.uuid4().hex}"
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    return tmp


def _local_read(path: str) -> Tagged | None:
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read()
    except FileNotFoundError:
        return None
    # A new inode for every write (temp file + link/replace) and a content hash: a tag is never reused.
    return Tagged(data, f"{st.st_ino}:{st.st_mtime_ns}:{hashlib.sha256(data).hexdigest()[:16]}")


@contextlib.contextmanager
def _local_mutex(path: str) -> Iterator[None]:
    """Exclusive flock that serialises conditional writers of `path` across processes: on the parent
    directory (an flock on the target itself would be lost when os.replace swaps its inode), or,
    where directories cannot be locked (NFS), on a hidden sidecar file."""
    parent, name = os.path.split(path)
    os.makedirs(parent, exist_ok=True)
    fd = os.open(parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        os.close(fd)
        fd = os.open(os.path.join(parent, f".{name}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        os.close(fd)  # closing drops the lock


def _local_put_if_absent(path: str, data: bytes) -> str | None:
    with _local_mutex(path):
        tmp = _write_temp(os.path.dirname(path), data)
        try:
            os.link(tmp, path)  # atomic create-if-absent with the whole content already in place
        except FileExistsError:
            return None
        finally:
            os.unlink(tmp)
        held = _local_read(path)
        return held.tag if held else None


def _local_replace_if_match(path: str, data: bytes, tag: str) -> str | None:
    with _local_mutex(path):
        current = _local_read(path)
        if current is None or current.tag != tag:
            return None
        os.replace(_write_temp(os.path.dirname(path), data), path)
        held = _local_read(path)
        return held.tag if held else None


_FALLBACK_LOCK = threading.Lock()
_WARNED: set[str] = set()


@contextlib.contextmanager
def _fallback_mutex(uri: str) -> Iterator[None]:
    scheme = urlparse(uri).scheme
    if scheme not in _WARNED:
        _WARNED.add(scheme)
        LOG.warning("%s: vidx has no conditional writes for this store; the warehouse lease and CURRENT are "
                    "safe against other threads of this process only", scheme)
    with _FALLBACK_LOCK:
        yield


@functools.lru_cache(maxsize=8)
def _s3_client_for(items: tuple[tuple[str, str], ...]) -> Any:
    import boto3

    return boto3.session.Session().client("s3", **boto3_kwargs(dict(items)))


def _s3_client() -> Any:
    return _s3_client_for(tuple(sorted(_OPTIONS.items())))


def _bucket_key(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def _s3_status(exc: Exception) -> tuple[int, str]:
    response = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)), \
        str(response.get("Error", {}).get("Code", ""))


def _s3_read(uri: str) -> Tagged | None:
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = _bucket_key(uri)
    try:
        got = _s3_client().get_object(Bucket=bucket, Key=key)
        return Tagged(got["Body"].read(), str(got["ETag"]))
    except ClientError as exc:
        if _s3_status(exc)[0] == 404:
            return None
        raise OSError(f"cannot read {uri}: {exc}") from exc
    except BotoCoreError as exc:
        raise OSError(f"cannot read {uri}: {exc}") from exc


def _s3_put(uri: str, data: bytes, **condition: str) -> str | None:
    """One conditional PUT. 412 (condition failed) and 404 (If-Match on a deleted object) mean we lost;
    409 is S3's answer to a concurrent conditional write on the same key: ask again to learn the outcome."""
    from botocore.exceptions import BotoCoreError, ClientError

    bucket, key = _bucket_key(uri)
    for _ in range(5):
        try:
            return str(_s3_client().put_object(Bucket=bucket, Key=key, Body=data, **condition)["ETag"])
        except ClientError as exc:
            status, code = _s3_status(exc)
            if status in (412, 404) or code in ("PreconditionFailed", "NoSuchKey"):
                return None
            if status != 409:
                raise OSError(f"conditional write of {uri} failed: {exc}") from exc
        except BotoCoreError as exc:
            raise OSError(f"conditional write of {uri} failed: {exc}") from exc
    raise OSError(f"conditional write of {uri} kept conflicting with concurrent writers (409); try again")
