"""hashdb: the hash database itself.

Signal types, storage (SQLite or PostgreSQL), the in-memory index, matching, the
change log, settings, errors and the command line. Nothing in this package knows
about Flask or OpenCV; `ingest` turns files into hashes and `api` is the HTTP skin.
"""

__version__ = "0.1.0"
