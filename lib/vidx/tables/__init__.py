"""Delta tables. `delta.py` is the only module in vidx that imports deltalake; `files.py` is the
executor side (plain Parquet + Delta file stats), safe to import inside Spark tasks."""

from vidx.tables.files import DataFile, write_data_file
from vidx.tables.paths import table_uri

__all__ = ["DataFile", "table_uri", "write_data_file"]
