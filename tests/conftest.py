"""Shared fixtures: real databases (SQLite files and PostgreSQL), test data paths.

`store` is parametrised over both backends, so every test that takes it runs twice.
PostgreSQL tests use a fresh database per test session on the server at
HASHDB_TEST_PG (default postgresql+psycopg://postgres@127.0.0.1:5432/test); each
test starts from empty tables. If the server is down the PostgreSQL tests are
skipped, and `.ci/run` fails the build when that happens.

Nothing migrates a database behind a test's back (`Store.open` and
`Consortium.open` refuse an unmigrated schema, as they do in production): a test
that needs a migrated database takes `db_url` or `store`, or passes its URL
through the `migrated` fixture (the `hashdb migrate` use case). SQLite databases
are page copies of one template migrated once per session (`sqlite_copy`);
PostgreSQL's session database is migrated once and emptied per test.
"""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import pytest
from PIL import Image, ImageFilter
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hashdb.consortium.schema import migrate as migrate_schema
from hashdb.settings import Settings
from hashdb.store import Store
from hashdb.store.schema import metadata

ROOT = Path(__file__).resolve().parent.parent
TESTDATA = ROOT.parent / "shared" / "testdata"
PG_ADMIN_URL = os.environ.get("HASHDB_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def testdata() -> Path:
    if not TESTDATA.is_dir():
        pytest.fail(f"test data not found at {TESTDATA}")
    return TESTDATA


@pytest.fixture(scope="session")
def bridge_picture(testdata: Path) -> Image.Image:
    """The bridge photo of the test data, at most 600 pixels a side (read, never
    changed: crop or copy it)."""
    image = Image.open(testdata / "pdq" / "bridge-mods" / "aaa-orig.jpg").convert("RGB")
    image.thumbnail((600, 600))
    return image


@pytest.fixture(scope="session")
def low_detail_picture(bridge_picture: Image.Image) -> Image.Image:
    """The bridge photo blurred: PDQ quality 100 but about 30 keypoints, too few for
    its keypoint set to find its crops, so a contribution of it stores crop windows
    (ingest/records.py, WINDOWS_BELOW_KEYPOINTS)."""
    return bridge_picture.filter(ImageFilter.GaussianBlur(8))


def migrate(url: str) -> str:
    """Bring the database at `url` to this code's schema, as `hashdb migrate` does;
    returns `url`."""
    migrate_schema(Settings(database_url=url))
    return url


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite file migrated once per session, copied for each test that needs one."""
    path = tmp_path_factory.mktemp("template") / "hashdb.sqlite3"
    migrate(f"sqlite:///{path}")
    return path


def sqlite_copy(template: Path, target: Path) -> str:
    """A migrated SQLite database at `target` (a page copy of the template): its URL."""
    with closing(sqlite3.connect(template)) as src, closing(sqlite3.connect(target)) as dst:
        src.backup(dst)
    return f"sqlite:///{target}"


@pytest.fixture(scope="session")
def migrated(sqlite_template: Path) -> Callable[[str], str]:
    """A function that brings the database at a URL to this code's schema and returns
    the URL: a SQLite file that does not exist yet becomes a copy of the template
    (fast), anything else is migrated as `hashdb migrate` would."""

    def bring(url: str) -> str:
        database = make_url(url).database
        if url.startswith("sqlite") and database and not Path(database).exists():
            return sqlite_copy(sqlite_template, Path(database))
        return migrate(url)

    return bring


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a PostgreSQL database created for this test session, dropped after."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"hashdb_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    url = make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    migrate(url)
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def new_database(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """A function making a new, empty database (never migrated) of a backend
    (`sqlite` or `postgresql`) and returning its URL; PostgreSQL ones are dropped
    after the test."""
    made: list[str] = []
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")

    def make(backend: str) -> str:
        name = f"hashdb_scratch_{uuid.uuid4().hex[:12]}"
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / (name + '.sqlite3')}"
        try:
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        except Exception as exc:
            pytest.skip(f"PostgreSQL unavailable: {exc}")
        made.append(name)
        return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)

    yield make
    if made:
        with admin.connect() as conn:
            for name in made:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _truncate_pg(url: str) -> None:
    engine = create_engine(url)
    names = ", ".join(t.name for t in reversed(metadata.sorted_tables))
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL of an empty, migrated database on each backend."""
    if request.param == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        return sqlite_copy(template, tmp_path / "hashdb.sqlite3")
    url = request.getfixturevalue("pg_url")
    _truncate_pg(url)
    return str(url)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.open(db_url, migrate_schema=False)
    yield s
    s.close()
