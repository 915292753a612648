"""Readiness means it: `/readyz` is 200 only when a request would be answered well.

A real `hashdb serve` on a throwaway PostgreSQL database: once `/readyz` is 200 the
first match is answered without compiling a numba kernel or loading one from the
disk cache (numba logs both with NUMBA_DEBUG_CACHE), and when the database
stops accepting connections (its backends terminated) `/readyz` turns 503 quickly,
with a body that says why, while `/healthz` stays 200; it recovers when the
database does. On SQLite, through the app factory: a deleted database file is a 503.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests
from api_server import Server, start_server
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hashdb.signals import PDQ
from hashdb.store import NewHash, Role, Store

if TYPE_CHECKING:
    from api_fixtures import MakeApi

pytest_plugins = ["api_fixtures"]

# The first match after `/readyz` said 200: a kernel compiled then costs tens of
# seconds (on a cold cache), one loaded from numba's disk cache a fraction of one; a
# warmed worker answers in milliseconds. The log check above it is the exact one.
FIRST_MATCH_SECONDS = 1.0
# Stored hashes and queries in a batch: at these sizes the index joins (`layout.plan`).
STORED = 1000
BATCH = 1000
# How long `/readyz` may take to notice a database that refuses connections.
PROBE_SECONDS = 5.0


@pytest.fixture(scope="module")
def throwaway_pg(pg_url: str, migrated: Callable[[str], str]) -> Iterator[str]:
    """A migrated PostgreSQL database of this module's own, which it may break,
    holding enough PDQ hashes that a large batch takes the index's join plan."""
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    name = f"hashdb_ready_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = migrated(make_url(pg_url).set(database=name).render_as_string(hide_password=False))
    store = Store.open(url)
    try:
        member, _ = store.members.create("ready-contributor", Role.MEMBER)
        rng = random.Random(7)
        stored = [NewHash(PDQ.name, rng.randbytes(32)) for _ in range(STORED)]
        store.hashes.add(member.id, stored)
    finally:
        store.close()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def server(throwaway_pg: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the module: no test before the first-match one matches."""
    logs = tmp_path_factory.mktemp("readiness")
    with pytest.MonkeyPatch.context() as env:
        # numba logs every kernel it compiles or loads from its disk cache.
        env.setenv("NUMBA_DEBUG_CACHE", "1")
        env.setenv("PYTHONUNBUFFERED", "1")
        started = start_server(throwaway_pg, logs, workers=1, threads=2, sync_interval=0.5)
    yield started
    started.stop()


def _member_key(url: str) -> str:
    store = Store.open(url, migrate_schema=False)
    try:
        return store.members.create(f"ready-{uuid.uuid4().hex[:8]}", Role.MEMBER)[1].secret
    finally:
        store.close()


def _allow_connections(pg_url: str, database: str, allowed: bool) -> None:
    admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS {str(allowed).lower()}'))
        if not allowed:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = :name AND pid <> pg_backend_pid()"
                ),
                {"name": database},
            )
    admin.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_the_first_matches_after_ready_compile_nothing(server: Server, throwaway_pg: str) -> None:
    """A single query, then a batch large enough for the join plan: neither may
    compile a kernel or load one from the disk cache once /readyz said ready."""
    key = {"Authorization": f"Bearer {_member_key(throwaway_pg)}"}
    rng = random.Random(11)
    single = [{"signal_type": "pdq", "value": "ab" * 32}]
    batch = [{"signal_type": "pdq", "value": rng.randbytes(32).hex()} for _ in range(BATCH)]
    assert "[cache]" in server.output(), "numba's cache log is missing: the check is void"
    ready_at = len(server.output())
    took = []
    for queries in (single, batch):
        started = time.perf_counter()
        response = requests.post(
            f"{server.url}/v1/match", json={"queries": queries}, headers=key, timeout=120
        )
        took.append(time.perf_counter() - started)
        assert response.status_code == 200, response.text
        assert len(response.json()["results"]) == len(queries)
    after_ready = [line for line in server.output()[ready_at:].splitlines() if "[cache]" in line]
    assert after_ready == [], "kernels compiled or loaded after /readyz said ready"
    assert took[0] < FIRST_MATCH_SECONDS, f"first match took {took[0]:.2f}s after ready"


@pytest.mark.slow
@pytest.mark.postgres
def test_readyz_is_503_saying_why_while_the_database_refuses_connections(
    server: Server, throwaway_pg: str, pg_url: str
) -> None:
    database = make_url(throwaway_pg).database
    assert database is not None
    assert requests.get(f"{server.url}/readyz", timeout=10).status_code == 200
    _allow_connections(pg_url, database, allowed=False)
    try:
        started = time.perf_counter()
        down = requests.get(f"{server.url}/readyz", timeout=30)
        took = time.perf_counter() - started
        assert down.status_code == 503, down.text
        assert took < PROBE_SECONDS
        error = down.json()["error"]
        assert error["code"] == "storage_unavailable"
        assert "not currently accepting connections" in error["message"]
        assert requests.get(f"{server.url}/healthz", timeout=10).status_code == 200
    finally:
        _allow_connections(pg_url, database, allowed=True)
    deadline = time.monotonic() + 10
    while requests.get(f"{server.url}/readyz", timeout=10).status_code != 200:
        assert time.monotonic() < deadline, "/readyz did not recover"
        time.sleep(0.1)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the file case is SQLite's
def test_readyz_is_503_when_the_sqlite_file_is_gone(make_api: MakeApi, db_url: str) -> None:
    api = make_api()
    assert api.client.get("/readyz").status_code == 200
    path = make_url(db_url).database
    assert path is not None
    Path(path).unlink()
    down = api.client.get("/readyz")
    assert down.status_code == 503, down.get_data(as_text=True)
    assert down.json is not None
    assert down.json["error"]["code"] == "storage_unavailable"
    assert "unable to open database file" in down.json["error"]["message"]
    assert not Path(path).exists(), "the probe must not create an empty database"
    assert api.client.get("/healthz").status_code == 200


def test_readyz_is_503_when_the_schema_is_gone(make_api: MakeApi) -> None:
    api = make_api()
    # Hidden, not dropped: on PostgreSQL the database is shared by the session's tests.
    with api.store.engine.begin() as conn:
        conn.execute(text("ALTER TABLE alembic_version RENAME TO alembic_version_hidden"))
    try:
        down = api.client.get("/readyz")
    finally:
        with api.store.engine.begin() as conn:
            conn.execute(text("ALTER TABLE alembic_version_hidden RENAME TO alembic_version"))
    assert down.status_code == 503, down.get_data(as_text=True)
    assert down.json is not None
    assert "schema is empty" in down.json["error"]["message"]
    assert api.client.get("/readyz").status_code == 200
