"""Shared fixtures: real databases (SQLite files and PostgreSQL), test data paths.

`store` is parametrised over both backends, so every test that takes it runs twice.
PostgreSQL tests use a fresh database per test session on the server at
HASHDB_TEST_PG (default postgresql+psycopg://postgres@127.0.0.1:5432/test); each
test starts from empty tables. If the server is down the PostgreSQL tests are
skipped, and `.ci/run` fails the build when that happens.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

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
    migrated = Store.open(url)
    migrated.close()
    yield url
    with admin.connect() as conn:
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
        url = f"sqlite:///{tmp_path / 'hashdb.sqlite3'}"
        Store.open(url).close()
        return url
    url = request.getfixturevalue("pg_url")
    _truncate_pg(url)
    return str(url)


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store.open(db_url, migrate_schema=False)
    yield s
    s.close()
