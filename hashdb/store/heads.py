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

Listening (PostgreSQL, serving workers: `HeadReader.listen`). The read above was
the largest single cost of a small request. Migration 0012 has PostgreSQL notify
the channel `hashdb_heads` at the commit of anything that moves a head; a worker
that listens keeps one extra connection (outside the pool) in a background thread
and reuses the heads it read last until a notification arrives. The contract:

- Heads are reused only while the listening connection is up and no notification
  has arrived since the read that produced them *began*: a generation counter,
  bumped by every notification and every (re)connection, is taken before the read
  and kept with its result, so a change committed during a read forces the next
  request to read again.
- While the connection is down (not yet up, the server restarted, a network
  failure) every request reads the heads, as without listening, and the thread
  reconnects with a growing pause (at most `RECONNECT_MAX` seconds). Whatever
  was notified while it was down is covered by those reads and by the generation
  bump on reconnection.
- A change committed by another process reaches this worker when PostgreSQL
  delivers the notification: on the same host well under a millisecond after
  the writer's commit returns, and before any request that the writer's client
  sends after its answer, in practice; strictly, a request racing that delivery
  may be answered from the heads before the change. That window is the price of
  not reading per request. Writes made through this process's engine mark the
  heads stale themselves as they commit (an engine event watching for writes to
  the three tables), so a worker sees its own writes.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, event

from hashdb.errors import StorageUnavailable

log = logging.getLogger(__name__)

CHANNEL = "hashdb_heads"  # migration 0012's triggers notify it
RECONNECT_MAX = 5.0  # seconds between attempts to listen again, at most
# How long the listener waits for a notification before looking whether it should
# stop: what closing a listening store costs at most (a poll, so a few a second are
# free; at 1 s a test suite that opens hundreds of apps spent minutes closing them).
WAKE = 0.1
_DOWN = -1  # the generation while not listening: never equal to a kept one

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
    """Reads the heads: in autocommit on a pooled driver connection on PostgreSQL,
    through SQLAlchemy elsewhere; once `listen` was called, on PostgreSQL, only
    after a notification (see the module docstring)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._direct = engine.dialect.name == "postgresql"
        self._listener: _Listener | None = None
        self._kept: tuple[int, Heads] | None = None  # (generation, heads read at it)

    def listen(self) -> None:
        """Start following notifications (PostgreSQL; nothing elsewhere). Opens one
        connection outside the pool, in a daemon thread, so call it in the process
        that serves (after any fork), not in a master that forks."""
        if self._direct and self._listener is None:
            event.listen(self._engine, "after_cursor_execute", _note_log_writes)
            event.listen(self._engine, "commit", self._committing)
            event.listen(self._engine, "rollback", _forget_log_writes)
            self._listener = _Listener(self._engine)

    def _committing(self, conn: Connection) -> None:
        if conn.info.pop(_WROTE_LOG, False):
            self.moved()

    def moved(self) -> None:
        """This process changed a log: the next read goes to the database."""
        self._kept = None

    def read(self) -> Heads:
        listener = self._listener
        if listener is None:
            return self._read()
        generation = listener.generation  # before the read: see the module docstring
        kept = self._kept
        if kept is not None and generation != _DOWN and kept[0] == generation:
            return kept[1]
        heads = self._read()
        self._kept = (generation, heads) if generation != _DOWN else None
        return heads

    def _read(self) -> Heads:
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
        """Stop listening; the read connections are the pool's."""
        if self._listener is not None:
            event.remove(self._engine, "after_cursor_execute", _note_log_writes)
            event.remove(self._engine, "commit", self._committing)
            event.remove(self._engine, "rollback", _forget_log_writes)
            self._listener.stop()
            self._listener = None
        self._kept = None


_WROTE_LOG = "hashdb_wrote_log"  # Connection.info: this transaction moved a head
_LOG_WRITE = re.compile(
    r"\A\s*(?:INSERT|UPDATE|DELETE|TRUNCATE|WITH)\b.*\b(?:changes|auth_changes|feed_epoch)\b",
    re.IGNORECASE | re.DOTALL,
)


def _note_log_writes(conn: Connection, _c: Any, statement: str, *_args: Any) -> None:
    if _LOG_WRITE.match(statement):
        conn.info[_WROTE_LOG] = True


def _forget_log_writes(conn: Connection) -> None:
    conn.info.pop(_WROTE_LOG, None)


class _Listener:
    """One connection LISTENing on `CHANNEL` in a daemon thread; `generation` counts
    notifications and reconnections, and is `_DOWN` while not listening."""

    def __init__(self, engine: Engine) -> None:
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self.generation = _DOWN
        self._count = 0
        self._stopping = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._thread = threading.Thread(target=self._run, name="hashdb-heads", daemon=True)
        self._thread.start()

    def _bump(self) -> None:
        self._count += 1
        self.generation = self._count

    def _run(self) -> None:
        pause = 0.1
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
                    self._conn = conn
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._bump()  # anything notified while down is behind this
                    pause = 0.1
                    while not self._stopping.is_set():
                        for _ in conn.notifies(timeout=WAKE):
                            self._bump()
            except psycopg.Error as exc:
                if self._stopping.is_set():
                    break
                log.warning("not listening for log heads (%s); reading them per request", exc)
            finally:
                self.generation = _DOWN
                self._conn = None
            self._stopping.wait(pause)
            pause = min(pause * 2, RECONNECT_MAX)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5.0)
