"""Storage: one facade over the SQL database (SQLite or PostgreSQL).

`Store.open(url)` connects and checks the schema's Alembic revision; it never
changes the schema unless told to (`migrate_schema=True`, which only `hashdb migrate`
and `hashdb init` ask for, through `upgrade`), so that starting a worker or a replica
can never run a migration behind the operator's back. Its
parts (`members`, `hashes`, `changes`) each own one table family, so code that only
reads hashes can take `HashStore` alone rather than the whole store.

The schema check runs before anything else touches the tables, so a database in
the wrong state is one clear `StorageUnavailable` (exit 3 in the CLI, 503 in the
API) instead of a traceback at the first query:

- no hashdb schema, or an older revision: migrated when `migrate_schema` is true;
  otherwise the message says to run `hashdb migrate` (`hashdb init` for a new
  database), and when migrating fails (a role that may not create tables), to run it
  as a role that may create tables;
- a revision this code does not know (the schema is ahead of the code, written by
  a newer hashdb): refused, never migrated or read;
- hashdb's tables without a revision (not made by `hashdb init`): refused, since
  migrating would collide with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import DBAPIError, OperationalError

from hashdb.errors import StorageUnavailable
from hashdb.store.changes import Change, ChangeLog
from hashdb.store.engine import MIGRATIONS, PoolLimits, migrate, open_engine
from hashdb.store.hashes import MATCHABLE, Added, ChangeOp, HashRecord, HashStore, NewHash, Status
from hashdb.store.heads import HeadReader, Heads
from hashdb.store.imports import (
    FileState,
    ImportCounts,
    ImportFile,
    ImportJob,
    ImportStore,
    JobStatus,
    PlannedFile,
)
from hashdb.store.members import ApiKey, Member, MemberStore, NewKey, Principal, Role
from hashdb.store.probe import PROBE_TIMEOUT, read_revisions
from hashdb.store.schema import metadata
from hashdb.store.videos import (
    MAX_KEYFRAMES,
    Keyframe,
    NewVideo,
    StoredKeyframe,
    VideoInfo,
    VideoStore,
)


class SchemaState(StrEnum):
    CURRENT = "current"  # at this code's head revision
    EMPTY = "empty"  # no hashdb tables and no revision: a new database
    BEHIND = "behind"  # an older revision this code can upgrade
    AHEAD = "ahead"  # a revision this code does not know
    UNVERSIONED = "unversioned"  # hashdb tables without a revision


@cache
def _scripts() -> tuple[frozenset[str], frozenset[str]]:
    """(every revision, the head revisions) of this code's migrations."""
    scripts = ScriptDirectory(str(MIGRATIONS))
    return frozenset(r.revision for r in scripts.walk_revisions()), frozenset(scripts.get_heads())


def known_revisions() -> frozenset[str]:
    """Every revision this code's migrations know."""
    return _scripts()[0]


def schema_revisions(engine: Engine) -> tuple[str, ...]:
    """The Alembic revisions recorded in the database (empty: none)."""
    try:
        with engine.connect() as conn:
            return tuple(MigrationContext.configure(conn).get_current_heads())
    except OperationalError as exc:
        raise StorageUnavailable(f"cannot reach the database: {exc.orig}") from None


def schema_state(engine: Engine) -> SchemaState:
    """Where the database's schema stands against this code's migrations."""
    return _state(engine, set(schema_revisions(engine)))


def _state(engine: Engine, current: set[str]) -> SchemaState:
    known, heads = _scripts()
    if current == heads:
        return SchemaState.CURRENT
    if current - known:
        return SchemaState.AHEAD
    if current:
        return SchemaState.BEHIND
    try:
        tables = set(inspect(engine).get_table_names())
    except OperationalError as exc:
        raise StorageUnavailable(f"cannot reach the database: {exc.orig}") from None
    return SchemaState.UNVERSIONED if tables & set(metadata.tables) else SchemaState.EMPTY


@dataclass(frozen=True)
class SchemaStatus:
    """Where a database's schema stands: its state, the revisions recorded in it and
    this code's head revisions."""

    state: SchemaState
    found: tuple[str, ...]
    head: tuple[str, ...]


def schema_status(url: str) -> SchemaStatus:
    """The schema status of the database at `url` (changing nothing: a SQLite file
    that does not exist is EMPTY, and is not created)."""
    engine = open_engine(url)
    try:
        file = engine.url.database if engine.url.get_backend_name() == "sqlite" else None
        if file and file != ":memory:" and not Path(file).exists():
            return SchemaStatus(SchemaState.EMPTY, (), tuple(sorted(_scripts()[1])))
        return _status(engine)
    finally:
        engine.dispose()


def _status(engine: Engine) -> SchemaStatus:
    found = schema_revisions(engine)
    return SchemaStatus(_state(engine, set(found)), found, tuple(sorted(_scripts()[1])))


def upgrade(url: str) -> tuple[SchemaStatus, SchemaStatus]:
    """Migrate the database at `url` to this code's head: (before, after). A schema
    that is ahead or unversioned is refused (StorageUnavailable), never touched."""
    engine = open_engine(url)
    try:
        _make_parent(engine)
        before = _status(engine)
        check_schema(engine, migrate_schema=True)
        return before, _status(engine)
    finally:
        engine.dispose()


def check_schema(engine: Engine, *, migrate_schema: bool) -> None:
    """Raise StorageUnavailable unless the schema is (or, migrating, becomes) current."""
    revisions = schema_revisions(engine)
    state = _state(engine, set(revisions))
    if state is SchemaState.CURRENT:
        return
    where = engine.url.render_as_string(hide_password=True)
    found = ", ".join(revisions) or "none"
    head = ", ".join(sorted(_scripts()[1]))
    if state is SchemaState.AHEAD:
        raise StorageUnavailable(
            f"the database {where} has schema revision {found}, newer than this hashdb "
            f"knows (its newest is {head}): upgrade hashdb, or point HASHDB_DATABASE_URL "
            "at the right database",
            schema=state.value,
        )
    if state is SchemaState.UNVERSIONED:
        raise StorageUnavailable(
            f"the database {where} has hashdb tables but no schema revision (no "
            "alembic_version row), so it was not set up by `hashdb init` and cannot be "
            "migrated safely: restore its alembic_version, or use an empty database and "
            "run `hashdb init`",
            schema=state.value,
        )
    not_migrated = (
        f"the database {where} is not migrated (schema revision {found}, this hashdb needs {head})"
    )
    if not migrate_schema:
        run = "`hashdb init`" if state is SchemaState.EMPTY else "`hashdb migrate`"
        raise StorageUnavailable(f"{not_migrated}: run {run}", schema=state.value)
    try:
        migrate(engine)
    except (DBAPIError, CommandError) as exc:
        reason = exc.orig if isinstance(exc, DBAPIError) else exc
        raise StorageUnavailable(
            f"{not_migrated} and migrating it failed: {reason}; run `hashdb migrate` as a "
            "database role that may create tables",
            schema=state.value,
        ) from None


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.members = MemberStore(engine)
        self.hashes = HashStore(engine)
        self.changes = ChangeLog(engine)
        self.videos = VideoStore(engine, self.hashes)
        self.imports = ImportStore(engine)
        self._heads = HeadReader(engine)

    @classmethod
    def open(
        cls, url: str, *, migrate_schema: bool = False, pool: PoolLimits | None = None
    ) -> Store:
        """Connect to `url` (pooled within `pool`) and check its schema (see the module
        docstring), migrating it to this code's head if `migrate_schema`."""
        engine = open_engine(url, pool)
        try:
            _make_parent(engine)
            check_schema(engine, migrate_schema=migrate_schema)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    def check_ready(self, timeout: float = PROBE_TIMEOUT) -> None:
        """Raise StorageUnavailable, saying why, unless the database answers on a
        fresh connection within about `timeout` seconds and its schema is this
        code's (for readiness probes: see `hashdb.store.probe`)."""
        revisions = read_revisions(self.engine, timeout)
        state = _state(self.engine, revisions) if revisions else SchemaState.EMPTY
        if state is not SchemaState.CURRENT:
            found = ", ".join(sorted(revisions)) or "none"
            raise StorageUnavailable(
                f"the database schema is {state.value} (revision {found}; this hashdb "
                f"needs {', '.join(sorted(_scripts()[1]))})",
                schema=state.value,
            )

    def heads(self) -> Heads:
        """Where the hash and auth change logs end (one round trip, or none while
        listening and nothing was notified)."""
        return self._heads.read()

    def listen_for_changes(self) -> None:
        """Reuse the heads until PostgreSQL notifies a change (`HeadReader.listen`)."""
        self._heads.listen()

    def close(self) -> None:
        self._heads.close()
        self.engine.dispose()


def _make_parent(engine: Engine) -> None:
    """SQLite creates its file but not the folder it goes in."""
    if engine.url.get_backend_name() == "sqlite" and engine.url.database:
        Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)


__all__ = [
    "MATCHABLE",
    "MAX_KEYFRAMES",
    "Added",
    "ApiKey",
    "Change",
    "ChangeLog",
    "ChangeOp",
    "FileState",
    "HashRecord",
    "HashStore",
    "Heads",
    "ImportCounts",
    "ImportFile",
    "ImportJob",
    "ImportStore",
    "JobStatus",
    "Keyframe",
    "Member",
    "MemberStore",
    "NewHash",
    "NewKey",
    "NewVideo",
    "PlannedFile",
    "PoolLimits",
    "Principal",
    "Role",
    "SchemaState",
    "SchemaStatus",
    "Status",
    "Store",
    "StoredKeyframe",
    "VideoInfo",
    "VideoStore",
]
