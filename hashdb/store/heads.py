"""Where the two logs a serving process follows end, read in one round trip.

An API worker holds the hash index and a cache of authenticated keys in memory.
Before it answers a request it reads the heads of the hash change log and of the
auth change log and the feed epoch (one statement: two index-only `max()` reads and
a one-row table), replays the hash changes it has not applied yet and forgets its
cached keys if the auth log moved. A changed epoch means the database is another
history (restored from a backup, a promoted standby): the worker rebuilds its
indexes and forgets every cached key, even where the heads happen to look ahead.
That is what makes a DELETE, a vetting decision or a revocation take effect on the
very next request in every worker and on every server, while a request costs this
one read instead of a key lookup and a read of the matched rows.

On PostgreSQL the read takes a connection from the engine's pool (the process's
one connection budget, `hashdb.store.engine.PoolLimits`) and runs the statement on
the driver connection in autocommit mode: through SQLAlchemy's `Connection` it
costs a BEGIN and a ROLLBACK round trip besides the statement, and SQLAlchemy's own
work, several times the CPU of the statement alone (see docs/measurements.md,
"Freshness: the heads read"); in autocommit the statement is the only round trip
and returning the connection rolls nothing back. A broken connection (the server
restarted) is dropped from the pool and the read tried once more; if that fails
too the request gets StorageUnavailable (503). On SQLite, in-process, the pool is
cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Engine

from hashdb.errors import StorageUnavailable

_HEADS = (
    "SELECT (SELECT coalesce(max(seq), 0) FROM changes), "
    "(SELECT coalesce(max(seq), 0) FROM auth_changes), "
    "(SELECT min(epoch) FROM feed_epoch)"
)


@dataclass(frozen=True)
class Heads:
    changes: int  # the newest sequence number of the hash change log (0: empty)
    auth: int  # the newest sequence number of the auth change log (0: empty)
    epoch: str = ""  # the feed epoch, the id of the database's history ("": none yet)


def read_heads(engine: Engine) -> Heads:
    """The heads, through the engine's pool."""
    with engine.connect() as conn:
        changes, auth, epoch = conn.exec_driver_sql(_HEADS).one()
    return Heads(int(changes), int(auth), epoch or "")


class HeadReader:
    """Reads the heads on every request: in autocommit on a pooled driver connection
    on PostgreSQL, through SQLAlchemy elsewhere."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._direct = engine.dialect.name == "postgresql"

    def read(self) -> Heads:
        if not self._direct:
            return read_heads(self._engine)
        for attempt in range(2):
            pooled = self._engine.raw_connection()  # waits at most the pool's timeout
            conn: Any = pooled.driver_connection
            try:
                conn.autocommit = True
                try:
                    row = conn.execute(_HEADS).fetchone()
                finally:  # never back to the pool in autocommit, whatever happened
                    if not conn.closed:
                        conn.autocommit = False
            except psycopg.OperationalError as exc:
                pooled.invalidate()  # closed and replaced, never handed out again
                if attempt:
                    raise StorageUnavailable(
                        "the database cannot be reached; try again shortly"
                    ) from exc
                continue
            finally:
                pooled.close()  # back to the pool
            return Heads(int(row[0]), int(row[1]), row[2] or "")
        raise AssertionError("unreachable")

    def close(self) -> None:
        """Nothing of its own to close: its connections are the pool's."""
