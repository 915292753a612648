"""Copying a whole database out and back in, consistently, per backend.

`dump` writes one file holding the database as of one instant, and reads the facts
a backup's manifest records about it (`Facts`: schema revision, feed epoch,
change-log head, audit head, rows per table) *in that same instant*, so the
manifest describes exactly what the file holds, while the service keeps running:

- SQLite: the online backup API (`sqlite3.Connection.backup`, all pages in one
  step under a read lock, so writers wait for the copy rather than tearing it). The
  copy is switched out of WAL mode, so it is one self-contained file, and the facts
  are read from the copy itself.
- PostgreSQL: a REPEATABLE READ, READ ONLY transaction exports its snapshot
  (`pg_export_snapshot()`), reads the facts, and stays open while
  `pg_dump --format=custom --snapshot=...` dumps that same snapshot.

`load` puts a dump into an empty database (`is_empty`): the backup API into the
target file on SQLite, `pg_restore --no-owner --single-transaction --exit-on-error`
on PostgreSQL. The PostgreSQL client tools are found on PATH (`OutsideFailure`
naming the one missing otherwise) and reached through libpq's environment
(PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD): the password never appears on a
command line or in a message.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Connection, create_engine, func, inspect, select, table, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from hashdb.errors import InvalidInput, OutsideFailure, StorageUnavailable
from hashdb.store.engine import open_engine
from hashdb.store.schema import metadata

SQLITE, POSTGRESQL = "sqlite", "postgresql"

# The dump's file name in a backup, per backend.
DUMP_NAMES = {SQLITE: "database.sqlite3", POSTGRESQL: "database.pgdump"}

GENESIS = "0" * 64


@dataclass(frozen=True)
class Facts:
    """What a database holds, read in one snapshot."""

    schema_revision: tuple[str, ...]
    feed_epoch: str | None
    change_head: int
    audit_head: tuple[int, str]
    counts: dict[str, int] = field(default_factory=dict)


def backend_of(url: str) -> str:
    """`sqlite` or `postgresql`; InvalidInput for anything else."""
    try:
        name = make_url(url).get_backend_name()
    except Exception as exc:  # sqlalchemy raises ArgumentError and ValueError alike
        raise InvalidInput(f"bad database URL: {exc}", field="HASHDB_DATABASE_URL") from None
    if name not in (SQLITE, POSTGRESQL):
        raise InvalidInput(
            f"backups support SQLite and PostgreSQL, not {name}", field="HASHDB_DATABASE_URL"
        )
    return name


def read_facts(conn: Connection) -> Facts:
    """The facts of the database `conn` is connected to, in its current transaction.
    Tables are counted whatever the schema revision, so a database that is behind
    this code can be backed up before it is migrated."""
    names = sorted(inspect(conn).get_table_names())
    counts = {
        name: int(conn.execute(select(func.count()).select_from(table(name))).scalar_one())
        for name in names
    }
    revision: tuple[str, ...] = ()
    if "alembic_version" in names:
        found = conn.execute(text("SELECT version_num FROM alembic_version")).scalars()
        revision = tuple(sorted(str(r) for r in found))
    epoch = None
    if "feed_epoch" in names:
        value = conn.execute(text("SELECT epoch FROM feed_epoch")).scalars().first()
        epoch = None if value is None else str(value)
    change_head = 0
    if "changes" in names:
        change_head = int(
            conn.execute(text("SELECT coalesce(max(seq), 0) FROM changes")).scalar_one()
        )
    audit_head = (0, GENESIS)
    if "audit_log" in names:
        last = conn.execute(
            text("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        ).one_or_none()
        if last is not None:
            audit_head = (int(last[0]), str(last[1]))
    return Facts(revision, epoch, change_head, audit_head, counts)


def facts(url: str) -> Facts:
    """The facts of the database at `url` now."""
    engine = open_engine(url)
    try:
        with engine.begin() as conn:
            return read_facts(conn)
    except DBAPIError as exc:
        raise StorageUnavailable(f"cannot read the database: {exc.orig}") from None
    finally:
        engine.dispose()


def is_empty(url: str) -> bool:
    """Whether the database at `url` holds no hashdb table and no schema revision (a
    SQLite file that does not exist yet is empty)."""
    if backend_of(url) == SQLITE and not _sqlite_path(url).exists():
        return True
    engine = open_engine(url)
    try:
        names = set(inspect(engine).get_table_names())
    except DBAPIError as exc:
        raise StorageUnavailable(f"cannot reach the database: {exc.orig}") from None
    finally:
        engine.dispose()
    return not names & (set(metadata.tables) | {"alembic_version"})


def dump(url: str, folder: Path) -> tuple[Path, Facts]:
    """Write the database at `url` into `folder` as one consistent file; the file and
    the facts read in the same snapshot."""
    backend = backend_of(url)
    target = folder / DUMP_NAMES[backend]
    if backend == SQLITE:
        return target, _dump_sqlite(_sqlite_path(url), target)
    return target, _dump_postgresql(url, target)


def load(url: str, dump_file: Path) -> None:
    """Put the dump into the (empty: the caller checked) database at `url`."""
    if backend_of(url) == SQLITE:
        _load_sqlite(dump_file, _sqlite_path(url))
    else:
        _load_postgresql(url, dump_file)


# -- SQLite ------------------------------------------------------------------------------


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise InvalidInput(
            "a backup needs a SQLite database file, not an in-memory one",
            field="HASHDB_DATABASE_URL",
        )
    return Path(database)


def _copy_pages(source: sqlite3.Connection, target: sqlite3.Connection) -> None:
    source.backup(target)  # pages=-1: every page in one step, one consistent read
    target.execute("PRAGMA journal_mode=DELETE")  # one self-contained file


def _dump_sqlite(source: Path, target: Path) -> Facts:
    if not source.is_file():
        raise StorageUnavailable(f"no SQLite database at {source}")
    try:
        with (
            closing(sqlite3.connect(source, timeout=30)) as src,
            closing(sqlite3.connect(target)) as dst,
        ):
            _copy_pages(src, dst)
    except sqlite3.Error as exc:
        raise StorageUnavailable(f"cannot back up {source}: {exc}") from None
    # Read from the copy as it is (no WAL pragma: it stays one self-contained file).
    engine = create_engine(f"sqlite:///{target}")
    try:
        with engine.connect() as conn:
            return read_facts(conn)
    finally:
        engine.dispose()


def _load_sqlite(dump_file: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with (
            closing(sqlite3.connect(f"file:{dump_file}?mode=ro", uri=True)) as src,
            closing(sqlite3.connect(target, timeout=30)) as dst,
        ):
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=WAL")  # as hashdb runs it
    except sqlite3.Error as exc:
        raise StorageUnavailable(f"cannot restore into {target}: {exc}") from None


# -- PostgreSQL --------------------------------------------------------------------------


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise OutsideFailure(
            f"{name} not found on PATH: install PostgreSQL's client tools (the server's "
            "major version or newer) and put them on PATH"
        )
    return found


def _libpq_env(url: URL) -> dict[str, str]:
    """The environment that points libpq at `url`; the password only here."""
    env = dict(os.environ)
    settings = {
        "PGHOST": url.host or url.query.get("host"),
        "PGPORT": str(url.port) if url.port else None,
        "PGUSER": url.username,
        "PGDATABASE": url.database,
        "PGPASSWORD": url.password,
        "PGSSLMODE": url.query.get("sslmode"),
    }
    for key, value in settings.items():
        if isinstance(value, str) and value:
            env[key] = value
    return env


def _run(command: list[str], env: dict[str, str], doing: str) -> None:
    done = subprocess.run(  # noqa: S603 (tools found on PATH, no shell, no secret)
        command, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        tool = Path(command[0]).name
        raise StorageUnavailable(f"{doing} failed ({tool}): {done.stderr.strip()}")


def _dump_postgresql(url: str, target: Path) -> Facts:
    pg_dump = _tool("pg_dump")
    parsed = make_url(url)
    engine = open_engine(url)
    try:
        with (
            engine.connect().execution_options(isolation_level="REPEATABLE READ") as conn,
            conn.begin(),
        ):
            conn.execute(text("SET TRANSACTION READ ONLY"))
            snapshot = str(conn.execute(text("SELECT pg_export_snapshot()")).scalar_one())
            found = read_facts(conn)
            # The transaction stays open while pg_dump reads its exported snapshot.
            _run(
                [
                    pg_dump,
                    "--format=custom",
                    "--no-password",
                    f"--snapshot={snapshot}",
                    f"--file={target}",
                ],
                _libpq_env(parsed),
                "dumping the database",
            )
    except DBAPIError as exc:
        raise StorageUnavailable(f"cannot read the database: {exc.orig}") from None
    finally:
        engine.dispose()
    return found


def _load_postgresql(url: str, dump_file: Path) -> None:
    pg_restore = _tool("pg_restore")
    parsed = make_url(url)
    _run(
        [
            pg_restore,
            "--no-owner",
            "--single-transaction",
            "--exit-on-error",
            "--no-password",
            f"--dbname={parsed.database}",
            str(dump_file),
        ],
        _libpq_env(parsed),
        "restoring the database",
    )
