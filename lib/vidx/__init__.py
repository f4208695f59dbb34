"""vidx: distributed batch indexing of video archives.

Stages live in sub-packages (archive, decode, encode, tables, index, serve, quality, spark);
`vidx.cli` runs them locally and `jobs/*.py` are the spark-submit entry points.
"""

__version__ = "0.1.0"
