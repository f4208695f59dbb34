"""Where each table lives under the warehouse root."""

from __future__ import annotations

from vidx.storage import join, normalize_uri

TABLE_NAMES = ("videos", "clips", "runs", "validations")


def table_uri(warehouse: str, name: str) -> str:
    if name not in TABLE_NAMES:
        raise ValueError(f"unknown table {name!r}; expected one of {TABLE_NAMES}")
    return join(normalize_uri(warehouse), "tables", name)
