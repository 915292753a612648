"""A database in the wrong schema state is one clear error, never a traceback or a 500.

Each case runs on a fresh SQLite file and a throwaway PostgreSQL database: not
migrated (opening never migrates; a role that may not create tables cannot
migrate), ahead of the code (a revision this hashdb does not know), and hashdb's
tables without a revision. The CLI exits 3 (an outside failure) with the message,
and the commands that own the schema (`hashdb init`, `hashdb migrate`, `hashdb
serve`) exit 2 naming what to do; the API factory refuses to start with it.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from api.app import create_app
from hashdb.cli import main
from hashdb.errors import StorageUnavailable
from hashdb.settings import Settings
from hashdb.store import SchemaState, Store
from hashdb.store import schema_state as state_of

ROOT = Path(__file__).resolve().parent.parent
FUTURE = "9999_from_a_newer_hashdb"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database that exists and is empty: never migrated."""
    if request.param == "sqlite":
        path = tmp_path / "fresh.sqlite3"
        create_engine(f"sqlite:///{path}").dispose()
        yield f"sqlite:///{path}"
        return
    pg_url: str = request.getfixturevalue("pg_url")
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    name = f"hashdb_schema_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(pg_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _execute(url: str, statement: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(statement))
    engine.dispose()


def _cli(url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env={"HASHDB_DATABASE_URL": url})
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), f"traceback: {result.exception!r}"
    return result.exit_code, result.output


def _state(url: str) -> SchemaState:
    engine = create_engine(url)
    try:
        return state_of(engine)
    finally:
        engine.dispose()


def test_hashdb_init_migrates_an_empty_database_to_this_codes_schema(fresh_url: str) -> None:
    code, output = _cli(fresh_url, "init")
    assert code == 0, output
    assert _state(fresh_url) is SchemaState.CURRENT


def test_opening_an_unmigrated_database_names_hashdb_init_and_migrates_nothing(
    fresh_url: str,
) -> None:
    with pytest.raises(StorageUnavailable, match=r"not migrated .*run `hashdb init`") as caught:
        Store.open(fresh_url)
    assert caught.value.exit_code == 3 and caught.value.http_status == 503
    assert caught.value.details["schema"] == "empty"
    code, output = _cli(fresh_url, "audit", "verify")
    assert code == 3 and "run `hashdb init`" in output
    assert _state(fresh_url) is SchemaState.EMPTY


def test_a_schema_ahead_of_the_code_is_refused_everywhere(
    fresh_url: str, migrated: Callable[[str], str]
) -> None:
    migrated(fresh_url)
    _execute(fresh_url, f"UPDATE alembic_version SET version_num = '{FUTURE}'")
    for migrate_schema in (True, False):
        with pytest.raises(StorageUnavailable, match=f"revision {FUTURE}, newer than this"):
            Store.open(fresh_url, migrate_schema=migrate_schema)
    code, output = _cli(fresh_url, "audit", "verify")
    assert code == 3, output
    assert f"revision {FUTURE}, newer than this hashdb" in output and "upgrade hashdb" in output
    for command in (["init"], ["migrate"]):
        code, output = _cli(fresh_url, *command)
        assert code == 2, output
        assert f"ahead of this hashdb (revision {FUTURE}" in output and "upgrade hashdb" in output
    with pytest.raises(StorageUnavailable, match="newer than this hashdb"):
        create_app(Settings(database_url=fresh_url))


def test_hashdb_tables_without_a_revision_are_refused(
    fresh_url: str, migrated: Callable[[str], str]
) -> None:
    migrated(fresh_url)
    _execute(fresh_url, "DROP TABLE alembic_version")
    with pytest.raises(StorageUnavailable, match="hashdb tables but no schema revision"):
        Store.open(fresh_url, migrate_schema=True)
    code, output = _cli(fresh_url, "audit", "verify")
    assert code == 3 and "no schema revision" in output and "hashdb init" in output
    code, output = _cli(fresh_url, "migrate")
    assert code == 2 and "no schema revision" in output and "cannot be migrated safely" in output


@pytest.mark.postgres
def test_a_role_that_may_not_migrate_is_told_to_migrate_as_one_that_may(pg_url: str) -> None:
    """The usual production split: the service's role may not create tables."""
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    suffix = uuid.uuid4().hex[:12]
    database, role = f"hashdb_schema_{suffix}", f"hashdb_reader_{suffix}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(text(f'CREATE DATABASE "{database}"'))
    scoped = make_url(pg_url).set(database=database)
    try:
        admin_of_db = create_engine(scoped, isolation_level="AUTOCOMMIT")
        with admin_of_db.connect() as conn:
            conn.execute(text("REVOKE CREATE ON SCHEMA public FROM PUBLIC"))
        admin_of_db.dispose()
        url = scoped.set(username=role, password=None).render_as_string(hide_password=False)
        code, output = _cli(url, "audit", "verify")
        assert code == 3 and "is not migrated" in output and "run `hashdb init`" in output
        code, output = _cli(url, "migrate")
        assert code == 3, output
        assert "is not migrated" in output and "migrating it failed" in output
        assert "run `hashdb migrate` as a database role that may create tables" in output
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{role}"'))
        admin.dispose()


@pytest.mark.slow
def test_hashdb_serve_refuses_to_start_on_a_schema_ahead_of_it(
    tmp_path: Path, migrated: Callable[[str], str]
) -> None:
    url = migrated(f"sqlite:///{tmp_path / 'ahead.sqlite3'}")
    _execute(url, f"UPDATE alembic_version SET version_num = '{FUTURE}'")
    env = {"HASHDB_DATABASE_URL": url, "PATH": "/usr/bin:/bin"}
    serve = "from hashdb.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", serve, "serve", "--bind", "127.0.0.1:1", "--workers", "1"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "ahead of this hashdb" in done.stderr and "upgrade hashdb" in done.stderr
    assert "Traceback" not in done.stderr
