"""Asking the database, cheaply and with a deadline, whether a worker can serve.

`/readyz` must turn 503 when the database is gone, and must answer quickly while
it is: a load balancer waits on it. So the probe never uses the engine's pool. A
pooled connection can outlive its database (a SQLite connection keeps a deleted
file open and answers from it; a PostgreSQL one whose backend was terminated fails
only when used), and when the pool is exhausted a checkout waits for its own
timeout. Instead each probe opens one fresh connection with a deadline (libpq's
`connect_timeout` and a `statement_timeout` on PostgreSQL; SQLite's busy timeout,
and `mode=rw` so a missing file is an error rather than a new empty database),
reads the schema's Alembic revisions (one row) and closes it. A probe therefore
costs one connection set-up: fine at a probe every few seconds, not for requests.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from hashdb.errors import StorageUnavailable

# Seconds a probe may take to connect, and again to run its query. libpq rounds
# `connect_timeout` up to whole seconds and ignores values under 2.
PROBE_TIMEOUT = 2.0

_REVISIONS = "SELECT version_num FROM alembic_version"


def read_revisions(engine: Engine, timeout: float = PROBE_TIMEOUT) -> set[str]:
    """The schema revisions, read on a fresh connection to `engine`'s database;
    StorageUnavailable (saying why) if it cannot be reached or read in time."""
    try:
        if engine.dialect.name == "postgresql":
            return _postgresql(engine, timeout)
        if engine.dialect.name == "sqlite":
            return _sqlite(engine, timeout)
        with engine.connect() as conn:  # another backend: its pool, without a deadline
            return {str(r[0]) for r in conn.exec_driver_sql(_REVISIONS)}
    except (psycopg.Error, sqlite3.Error, DBAPIError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StorageUnavailable(f"the database does not answer: {reason}") from None


def _postgresql(engine: Engine, timeout: float) -> set[str]:
    args, kwargs = engine.dialect.create_connect_args(engine.url)
    params: dict[str, Any] = dict(kwargs)
    params["connect_timeout"] = max(2, math.ceil(timeout))
    deadline = f"-c statement_timeout={max(1, round(timeout * 1000))}"
    params["options"] = f"{params['options']} {deadline}" if "options" in params else deadline
    with psycopg.connect(*args, **params, autocommit=True) as conn:
        try:
            return {str(r[0]) for r in conn.execute(_REVISIONS)}
        except psycopg.errors.UndefinedTable:
            return set()  # reachable, but no schema


def _sqlite(engine: Engine, timeout: float) -> set[str]:
    name = engine.url.database
    if not name or name == ":memory:":
        with engine.connect() as pooled:  # in memory: the pool's connection is the database
            return {str(r[0]) for r in pooled.exec_driver_sql(_REVISIONS)}
    uri = Path(name).resolve().as_uri() + "?mode=rw"
    conn = sqlite3.connect(uri, uri=True, timeout=timeout)
    try:
        return {str(r[0]) for r in conn.execute(_REVISIONS)}
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return set()  # readable, but no schema
        raise
    finally:
        conn.close()
