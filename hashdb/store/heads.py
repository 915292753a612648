"""Where the two logs a serving process follows end, read in one round trip.

An API worker holds the hash index and a cache of authenticated keys in memory.
Before it answers a request it reads the heads of the hash change log and of the
auth change log (one statement, two index-only `max()` reads), replays the hash
changes it has not applied yet and forgets its cached keys if the auth log moved.
That is what makes a DELETE, a vetting decision or a revocation take effect on the
very next request in every worker and on every server, while a request costs this
one read instead of a key lookup and a read of the matched rows.

On PostgreSQL the read runs on a connection of its own per thread, in autocommit
mode, as a prepared statement: through the pool it costs a BEGIN and a ROLLBACK
round trip besides the statement, and SQLAlchemy's own work, several times the CPU
of the statement alone (see docs/measurements.md, "Freshness: the heads read"). A
broken connection (the server restarted) is replaced once; if that fails too the
request gets StorageUnavailable (503). On SQLite, in-process, the pool is cheap.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Engine

from hashdb.errors import StorageUnavailable

_HEADS = (
    "SELECT (SELECT coalesce(max(seq), 0) FROM changes), "
    "(SELECT coalesce(max(seq), 0) FROM auth_changes)"
)


@dataclass(frozen=True)
class Heads:
    changes: int  # the newest sequence number of the hash change log (0: empty)
    auth: int  # the newest sequence number of the auth change log (0: empty)


def read_heads(engine: Engine) -> Heads:
    """The heads, through the engine's pool."""
    with engine.connect() as conn:
        changes, auth = conn.exec_driver_sql(_HEADS).one()
    return Heads(int(changes), int(auth))


class HeadReader:
    """Reads the heads on every request: one prepared statement per thread's own
    connection on PostgreSQL, the pool elsewhere."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._direct = engine.dialect.name == "postgresql"
        self._local = threading.local()
        self._opened: list[Any] = []
        self._lock = threading.Lock()

    def read(self) -> Heads:
        if not self._direct:
            return read_heads(self._engine)
        for attempt in range(2):
            conn = self._connection()
            try:
                row = conn.execute(_HEADS, prepare=True).fetchone()
            except psycopg.OperationalError as exc:
                self._forget(conn)
                if attempt:
                    raise StorageUnavailable(
                        "the database cannot be reached; try again shortly"
                    ) from exc
                continue
            return Heads(int(row[0]), int(row[1]))
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            args, kwargs = self._engine.dialect.create_connect_args(self._engine.url)
            try:
                conn = self._engine.dialect.dbapi.connect(*args, **kwargs)  # type: ignore[union-attr]
            except psycopg.OperationalError as exc:
                raise StorageUnavailable(
                    "the database cannot be reached; try again shortly"
                ) from exc
            conn.autocommit = True
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def _forget(self, conn: Any) -> None:
        self._local.conn = None
        with self._lock:
            if conn in self._opened:
                self._opened.remove(conn)
        conn.close()
