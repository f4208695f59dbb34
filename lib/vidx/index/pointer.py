"""The `CURRENT` pointer of a model's index versions, moved only by conditional writes.

Publish, promote and rollback each read CURRENT (its content and version tag), decide, and then
replace it only if it is still what they read (If-Match on S3, compare-and-replace under a lock
locally; If-None-Match / an exclusive create for the first publish). A concurrent move in between
is reported, never silently overwritten: the operator re-runs with the new state in view.
"""

from __future__ import annotations

import logging

from vidx import storage
from vidx.errors import ConcurrentUpdateError

LOG = logging.getLogger(__name__)
CURRENT_FILE = "CURRENT"


def read_current(model_root: str) -> tuple[str | None, str | None]:
    """(version CURRENT names, its tag); (None, None) before the first publish."""
    held = storage.read_tagged(storage.join(model_root, CURRENT_FILE))
    if held is None:
        return None, None
    return (held.data.decode().strip() or None), held.tag


def swap_current(model_root: str, version: str, *, expected: tuple[str | None, str | None]) -> None:
    """Point CURRENT at `version` if it still is `expected` (a `read_current` result)."""
    uri = storage.join(model_root, CURRENT_FILE)
    data = f"{version}\n".encode()
    before, tag = expected
    done = storage.put_if_absent(uri, data) if tag is None else storage.replace_if_match(uri, data, tag)
    if done is None:
        now, _ = read_current(model_root)
        raise ConcurrentUpdateError(f"CURRENT of {model_root} moved from {before} to {now} while pointing it at "
                                    f"{version}; another publish, promote or rollback ran at the same time. "
                                    f"Check `vidx index list` and promote the version you want.")
    LOG.info("%s: CURRENT %s -> %s", model_root, before, version)
