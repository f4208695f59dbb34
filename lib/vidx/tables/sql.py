"""`vidx sql`: DuckDB over the warehouse's Delta tables, registered by name, at pinned versions.

Each table is a pyarrow dataset of one Delta version (`delta.to_dataset`), so DuckDB pushes
filters and projections into the Parquet scan (DuckDB's own `delta_scan` would download an
extension). A table that does not exist yet is registered empty with its schema, so a query
over e.g. `validations` on a fresh warehouse returns no rows instead of failing.

Versions: `--version N` pins `clips` at N and `videos` at the state that matches it (the same
embed checkpoint); `--version TABLE=N` pins one table; `--version index` pins `clips` (and
`videos`) at the version the CURRENT index was built from.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa

from vidx.errors import VidxError
from vidx.storage import exists, join, normalize_uri, read_bytes
from vidx.tables import delta, table_uri
from vidx.tables.paths import TABLE_NAMES
from vidx_schemas import TABLES

LOG = logging.getLogger(__name__)
_PIN = re.compile(r"^(?:(?P<table>[a-z_]+)=)?(?P<version>\d+)$")


class SqlError(VidxError):
    """The query or a --version argument is invalid."""


@dataclass
class Pins:
    """Table versions a query runs at; absent tables are read at their latest version."""

    versions: dict[str, int] = field(default_factory=dict)

    def describe(self) -> str:
        return ", ".join(f"{t}@{v}" for t, v in sorted(self.versions.items())) or "latest"


def index_table_version(warehouse: str, model_id: str | None = None) -> int:
    """The clips version the CURRENT index of `model_id` (default: the only model) was built from."""
    import json

    root = join(normalize_uri(warehouse), "indexes")
    models = [model_id] if model_id else _indexed_models(root)
    if len(models) != 1:
        raise SqlError(f"--version index needs one model; indexes exist for {models or 'none'}: pass --model-id")
    current = join(root, models[0], "CURRENT")
    if not exists(current):
        raise SqlError(f"no published index for {models[0]} (no {current}); run `vidx build-index` first")
    version = read_bytes(current).decode().strip()
    manifest = json.loads(read_bytes(join(root, models[0], version, "manifest.json")))
    return int(manifest["table_version"])


def _indexed_models(root: str) -> list[str]:
    import pyarrow.fs as pafs

    from vidx.storage import filesystem

    fs, path = filesystem(root)
    infos = fs.get_file_info(pafs.FileSelector(path, allow_not_found=True))
    return sorted(i.base_name for i in infos if i.type == pafs.FileType.Directory
                  and not i.base_name.startswith("."))


def resolve_pins(warehouse: str, specs: Sequence[str], model_id: str | None = None) -> Pins:
    """Parse `--version` values: `N`, `TABLE=N` or `index`."""
    from vidx.quality.frames import matching_videos_version

    pins = Pins()
    for spec in specs:
        if spec == "index":
            clips_version = index_table_version(warehouse, model_id)
        else:
            match = _PIN.match(spec.strip())
            if not match:
                raise SqlError(f"--version {spec!r}: expected N (clips version), TABLE=N or 'index'")
            table = match.group("table")
            if table is not None:
                if table not in TABLE_NAMES:
                    raise SqlError(f"--version {spec!r}: unknown table {table!r}; tables: {', '.join(TABLE_NAMES)}")
                pins.versions[table] = int(match.group("version"))
                continue
            clips_version = int(match.group("version"))
        pins.versions["clips"] = clips_version
        matched = matching_videos_version(warehouse, clips_version)
        if matched is not None:
            pins.versions.setdefault("videos", matched)
    return pins


def connect(warehouse: str, pins: Pins | None = None) -> object:
    """A DuckDB connection with `videos`, `clips`, `runs`, `validations` registered, and nothing else.

    External access is off (`enable_external_access=false`, which cannot be turned back on in the
    session): a query cannot read or write any file or URL (read_csv, read_text, COPY, ATTACH,
    INSTALL...), so `vidx sql` is no way around the warehouse's or the machine's permissions. The
    warehouse tables still work because pyarrow, not DuckDB, opens their files: each is a
    registered Arrow dataset.
    """
    import duckdb

    pins = pins or Pins()
    con = duckdb.connect(config={"enable_external_access": False})
    for name in TABLE_NAMES:
        uri = table_uri(warehouse, name)
        if delta.table_exists(uri):
            con.register(name, delta.to_dataset(uri, version=pins.versions.get(name)))
        elif name in pins.versions:
            raise SqlError(f"--version pins {name}, but {uri} is not a Delta table")
        else:
            con.register(name, pa.Table.from_batches([], schema=TABLES[name]))
    return con


def run_sql(warehouse: str, sql: str, pins: Pins | None = None) -> pa.Table:
    """Run one query; the result as an Arrow table."""
    import duckdb

    con = connect(warehouse, pins)
    LOG.debug("sql at %s: %s", (pins or Pins()).describe(), sql)
    try:
        # duckdb 2.0: a relation streams straight to Arrow (a DB-API result would copy the rows);
        # statements that return no rows (SET, CREATE VIEW...) give no relation.
        rel = con.sql(sql)  # type: ignore[attr-defined]
        result = rel.to_arrow_table() if rel is not None else pa.table({})
    except duckdb.Error as exc:
        raise SqlError(f"query failed: {exc}") from exc
    finally:
        con.close()  # type: ignore[attr-defined]
    return result
