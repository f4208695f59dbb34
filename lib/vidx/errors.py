"""Typed errors. Every message says what went wrong *and* what the user can do next."""

from __future__ import annotations


class VidxError(Exception):
    """Base class of every error vidx raises on purpose."""


class ConfigError(VidxError):
    """The configuration (YAML, VIDX_* env or CLI flags) is invalid."""


class ArchiveError(VidxError):
    """The archive cannot be listed or read."""


class DecodeError(VidxError):
    """A video could not be probed or decoded; becomes a `status="failed"` row, never a crash.

    `error_class` is one of `corrupt`, `unsupported_codec`, `timeout`, `too_large`, `unreadable`
    (`no_frames` is set by the embed stage for a video that decoded but yielded no clip).
    """

    def __init__(self, message: str, *, error_class: str = "corrupt") -> None:
        super().__init__(message)
        self.error_class = error_class


class ModelLoadError(VidxError):
    """Model weights or architecture could not be loaded."""


class TableError(VidxError):
    """A Delta table is missing, has an unexpected schema, or a commit failed."""


class IndexBuildError(VidxError):
    """The FAISS index could not be built (no vectors, bad parameters...)."""


class IndexNotFoundError(VidxError):
    """No published index exists for the requested model."""


class IndexIntegrityError(VidxError):
    """A published index failed its sha256 check or its manifest is malformed."""


class ModelMismatchError(VidxError):
    """A query model differs from the one the index was built with."""


class QueryError(VidxError):
    """A query-server request is invalid (malformed JSON, bad k, wrong vector size...).

    `status` is the HTTP status it is answered with (400 unless said otherwise, e.g. 413).
    """

    def __init__(self, message: str, *, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class WorkUnitError(VidxError):
    """A work unit failed for a reason that is not the video's fault (storage, OOM...).

    Raised inside Spark tasks so that Spark retries the unit.
    """


class DataQualityError(VidxError):
    """A table version failed validation, or was never validated, so nothing is published from it."""


class ConcurrentUpdateError(VidxError):
    """A conditional write lost a race: the object (e.g. an index's CURRENT) changed since it was read."""
