"""`hashdb migrate` is the only thing that changes the schema.

On both backends: a schema one revision behind this code is migrated by `hashdb
migrate`, which says from and to which revision; `--check` exits 0 current, 1
behind, 2 ahead or unversioned; nothing else migrates: opening the database, the
API factory and `hashdb serve` refuse a schema that is behind, naming `hashdb
migrate`, and leave it as it was.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner
from schema_revisions import at_revision, previous_revision
from sqlalchemy import create_engine, text

from api.app import create_app
from hashdb.cli import main
from hashdb.consortium import Consortium, schema
from hashdb.errors import Conflict, StorageUnavailable
from hashdb.settings import Settings
from hashdb.store import SchemaState, schema_status

ROOT = Path(__file__).resolve().parent.parent
FUTURE = "9999_from_a_newer_hashdb"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def behind_url(request: pytest.FixtureRequest, new_database: Callable[[str], str]) -> str:
    """A database whose schema is one revision behind this code's."""
    return at_revision(new_database(request.param), previous_revision())


def cli(url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env={"HASHDB_DATABASE_URL": url})
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    return result.exit_code, result.output


def revision_of(url: str) -> tuple[str, ...]:
    return schema_status(url).found


def test_hashdb_migrate_brings_a_schema_that_is_behind_to_head(behind_url: str) -> None:
    before = previous_revision()
    code, output = cli(behind_url, "migrate", "--check")
    assert code == 1 and "run `hashdb migrate`" in output and before in output
    code, output = cli(behind_url, "migrate", "--json")
    assert code == 0, output
    done = json.loads(output)
    head = list(schema_status(behind_url).head)
    assert done["from"] == [before] and done["to"] == head
    assert schema_status(behind_url).state is SchemaState.CURRENT
    current = f"the schema is current (revision {head[0]})\n"
    assert cli(behind_url, "migrate", "--check") == (0, current)
    code, output = cli(behind_url, "migrate")
    assert code == 0 and "already current" in output


def test_nothing_but_migrate_changes_a_schema_that_is_behind(behind_url: str) -> None:
    revision = revision_of(behind_url)
    with pytest.raises(StorageUnavailable, match=r"run `hashdb migrate`") as opened:
        Consortium.open(Settings(database_url=behind_url))
    assert opened.value.details["schema"] == "behind"
    with pytest.raises(StorageUnavailable, match=r"not migrated .*run `hashdb migrate`"):
        create_app(Settings(database_url=behind_url))
    code, output = cli(behind_url, "audit", "verify")
    assert code == 3 and "run `hashdb migrate`" in output
    with pytest.raises(Conflict, match=r"not serving .*behind.*run `hashdb migrate`") as serving:
        schema.require_current(Settings(database_url=behind_url))
    assert serving.value.exit_code == 2
    assert revision_of(behind_url) == revision


def test_check_says_two_for_a_schema_it_cannot_migrate(
    new_database: Callable[[str], str], migrated: Callable[[str], str]
) -> None:
    ahead = migrated(new_database("sqlite"))
    _execute(ahead, f"UPDATE alembic_version SET version_num = '{FUTURE}'")
    code, output = cli(ahead, "migrate", "--check")
    assert code == 2 and "ahead of this hashdb" in output and "upgrade hashdb" in output
    unversioned = migrated(new_database("sqlite"))
    _execute(unversioned, "DROP TABLE alembic_version")
    code, output = cli(unversioned, "migrate", "--check", "--json")
    assert code == 2 and json.loads(output)["state"] == "unversioned"
    empty = new_database("sqlite")
    code, output = cli(empty, "migrate", "--check")
    assert code == 1 and "run `hashdb init`" in output
    assert revision_of(empty) == ()
    with pytest.raises(Conflict, match=r"ahead of this hashdb .*upgrade hashdb"):
        schema.require_current(Settings(database_url=ahead))


def _execute(url: str, statement: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(statement))
    engine.dispose()


@pytest.mark.slow
def test_hashdb_serve_refuses_a_schema_that_is_behind_with_the_command_to_run(
    new_database: Callable[[str], str],
) -> None:
    url = at_revision(new_database("sqlite"), previous_revision())
    # Refused before binding: the port (one nobody may bind) is never reached.
    serve = "from hashdb.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", serve, "serve", "--bind", "127.0.0.1:1", "--workers", "1"],
        cwd=ROOT,
        env={"HASHDB_DATABASE_URL": url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "run `hashdb migrate`" in done.stderr and "Traceback" not in done.stderr
    assert revision_of(url) == (previous_revision(),)
