"""Opening a database and bringing its schema up to date.

SQLite is the embedded default: one file, WAL journal so readers do not block the
writer, foreign keys on, and a busy timeout so that two processes writing at once
wait instead of failing. PostgreSQL is reached through psycopg 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.exc import ArgumentError, OperationalError

from hashdb.errors import InvalidInput, StorageUnavailable

MIGRATIONS = Path(__file__).parent / "migrations"


def open_engine(url: str) -> Engine:
    """An Engine for `url`; a malformed URL is InvalidInput."""
    try:
        if url.startswith("sqlite"):
            engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            # No pre-ping: it would add a round trip to every request (the key lookup
            # is one statement). Connections are recycled instead, and a dead one
            # surfaces as StorageUnavailable (503) for that request only.
            engine = create_engine(url, pool_size=10, max_overflow=20, pool_recycle=300)
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
