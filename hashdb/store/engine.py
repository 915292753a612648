"""Opening a database and bringing its schema up to date.

SQLite is the embedded default: one file, WAL journal so readers do not block the
writer, foreign keys on, and a busy timeout so that two processes writing at once
wait instead of failing. PostgreSQL is reached through psycopg 3.

A process opens one engine, and on PostgreSQL its pool is the process's whole
connection budget (`PoolLimits`): requests, the per-request heads read, imports and
the match-count writer all check connections out of it, so a process never holds
more than `size + overflow` pooled connections (the readiness probe alone opens a
short-lived one of its own, with a deadline). A caller that finds every connection
busy for `timeout` seconds gets SQLAlchemy's `TimeoutError`, which the API answers
503 with Retry-After. The budget arithmetic is in HASHDB_DB_POOL_SIZE's help.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import ArgumentError, OperationalError

from hashdb.errors import InvalidInput, StorageUnavailable

if TYPE_CHECKING:
    from hashdb.settings import Settings

MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class PoolLimits:
    """How many PostgreSQL connections one process may hold, and how long a caller
    waits for one (seconds)."""

    size: int = 5
    overflow: int = 0
    timeout: float = 10.0

    @property
    def most(self) -> int:
        """The most pooled connections the process can hold at once."""
        return self.size + self.overflow

    @classmethod
    def of(cls, settings: Settings) -> PoolLimits:
        """The limits HASHDB_DB_POOL_* ask for; the size defaults to threads + 2."""
        size = settings.db_pool_size if settings.db_pool_size is not None else settings.threads + 2
        return cls(size, settings.db_max_overflow, settings.db_pool_timeout)


def open_engine(url: str, pool: PoolLimits | None = None) -> Engine:
    """An Engine for `url` (on PostgreSQL pooled within `pool`, default
    `PoolLimits()`); a malformed URL is InvalidInput."""
    limits = pool or PoolLimits()
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            # No pre-ping: it would add a round trip to every request (the key lookup
            # is one statement). Connections are recycled instead, and a dead one
            # surfaces as StorageUnavailable (503) for that request only.
            engine = create_engine(
                url,
                pool_size=limits.size,
                max_overflow=limits.overflow,
                pool_timeout=limits.timeout,
                pool_recycle=300,
            )
    except (ArgumentError, ValueError) as exc:
        raise InvalidInput(f"bad database URL: {exc}", field="HASHDB_DATABASE_URL") from None
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def migrate(engine: Engine) -> None:
    """Apply every pending Alembic migration."""
    if engine.url.get_backend_name() == "sqlite" and engine.url.database:
        Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except OperationalError as exc:
        raise StorageUnavailable(f"cannot reach the database: {exc.orig}") from None


def is_migrated(engine: Engine) -> bool:
    try:
        return inspect(engine).has_table("alembic_version")
    except OperationalError as exc:
        raise StorageUnavailable(f"cannot reach the database: {exc.orig}") from None
