"""Delta tables. `delta.py` is the only module in vidx that imports deltalake; `files.py` is the
executor side (plain Parquet + Delta file stats), safe to import inside Spark tasks; `layout.py`
says which partition a clips row goes to (ask it, never build partition paths)."""

from vidx.tables.files import DataFile, write_data_file
from vidx.tables.layout import ClipsLayout, clips_layout, write_clip_files
from vidx.tables.paths import table_uri

__all__ = ["ClipsLayout", "DataFile", "clips_layout", "table_uri", "write_clip_files", "write_data_file"]
