"""The connection budget: every process stays within its pool, and an exhausted
pool is a 503 with Retry-After, never a 500.

The load test runs 3 real `hashdb serve` servers of 4 gunicorn workers each
against a database whose role may open at most 100 connections (PostgreSQL's
default max_connections). The shared test server is used by other tests at the
same time, so the cap is put on a role of this test's own (CONNECTION LIMIT 100)
that owns a scratch database; both are dropped after. While threads send matches,
contributions and reads to all servers, a monitor samples pg_stat_activity for
that role: its peak must stay within servers x workers x (pool + overflow + 1),
the arithmetic documented in HASHDB_DB_POOL_SIZE, and no request may fail.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from api_server import Server, start_server
from conftest import PG_ADMIN_URL
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import TimeoutError as PoolTimeout

from hashdb.settings import Settings
from hashdb.store import PoolLimits, Role, Store

if TYPE_CHECKING:
    from api_fixtures import MakeApi

pytest_plugins = ["api_fixtures"]

SERVERS = 3
WORKERS = 4
THREADS = 4
ROLE_CAP = 100  # PostgreSQL's default max_connections
LOAD_SECONDS = 4.0
CLIENTS_PER_SERVER = 24  # more than a server's 16 threads: every thread kept busy
COUNTING = threading.Lock()


@dataclass(frozen=True)
class Capped:
    url: str  # the scratch database, reached as the capped role
    role: str


@pytest.fixture
def capped_database() -> Iterator[Capped]:
    """A scratch database owned by a fresh role limited to ROLE_CAP connections."""
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    name = f"hashdb_budget_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE ROLE "{name}" LOGIN CONNECTION LIMIT {ROLE_CAP}'))
            conn.execute(text(f'CREATE DATABASE "{name}" OWNER "{name}"'))
    except Exception as exc:
        admin.dispose()
        pytest.skip(f"PostgreSQL unavailable: {exc}")
    url = make_url(PG_ADMIN_URL).set(username=name, password=None, database=name)
    capped = Capped(url.render_as_string(hide_password=False), name)
    try:
        Store.open(capped.url, migrate_schema=True).close()
        yield capped
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(text(f'DROP ROLE IF EXISTS "{name}"'))
        admin.dispose()


class Peak:
    """Samples the role's open connections in pg_stat_activity until stopped."""

    def __init__(self, role: str) -> None:
        self._role = role
        self._stop = threading.Event()
        self.most = 0
        self.samples = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Peak:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_size=1)
        query = text("SELECT count(*) FROM pg_stat_activity WHERE usename = :role")
        try:
            with engine.connect() as conn:
                while not self._stop.is_set():
                    self.most = max(
                        self.most, conn.execute(query, {"role": self._role}).scalar_one()
                    )
                    self.samples += 1
                    time.sleep(0.02)
        finally:
            engine.dispose()


def _random_pdq(rng: random.Random) -> str:
    return f"{rng.getrandbits(256):064x}"


def _load(server: Server, key: str, seed: int, until: float, outcomes: Counter[str]) -> None:
    """Matches, contributions and reads against `server` until `until` (each client
    sends at least one of each)."""
    rng = random.Random(seed)
    sent = 0
    headers = {"Authorization": f"Bearer {key}"}
    added: list[int] = []
    with httpx.Client(base_url=server.url, headers=headers, timeout=30.0) as client:
        while sent < 3 or time.monotonic() < until:
            turn = sent % 3 if sent < 3 else rng.randrange(3)
            sent += 1
            try:
                if turn == 0:
                    queries = [{"signal_type": "pdq", "value": _random_pdq(rng)}]
                    response = client.post("/v1/match", json={"queries": queries})
                elif turn == 1:
                    hashes = [{"signal_type": "pdq", "value": _random_pdq(rng), "quality": 100}]
                    response = client.post("/v1/hashes", json={"hashes": hashes})
                    if response.status_code == 201:
                        added.append(response.json()["hashes"][0]["id"])
                elif added:
                    response = client.get(f"/v1/hashes/{rng.choice(added)}")
                else:
                    response = client.get("/v1/hashes")
            except httpx.HTTPError as exc:
                outcome = f"connection error: {type(exc).__name__}"
            else:
                outcome = f"{response.status_code // 100}xx"
            with COUNTING:
                outcomes[outcome] += 1


@pytest.mark.postgres
def test_three_servers_of_four_workers_stay_within_a_100_connection_role(
    capped_database: Capped, tmp_path: Path
) -> None:
    settings = Settings(threads=THREADS)
    per_process = PoolLimits.of(settings).most + 1  # + the readiness probe's own
    budget = SERVERS * WORKERS * per_process
    assert budget <= ROLE_CAP, "the defaults must fit three servers into 100 connections"

    store = Store.open(capped_database.url)
    try:
        keys = [store.members.create(f"load-{i}", Role.MEMBER)[1].secret for i in range(SERVERS)]
    finally:
        store.close()
    settings_env = {"rate_limit_per_minute": 0, "media_workers": 1}
    with ThreadPoolExecutor(SERVERS) as starting:
        servers = list(
            starting.map(
                lambda _: start_server(
                    capped_database.url,
                    tmp_path,
                    workers=WORKERS,
                    threads=THREADS,
                    timeout=90.0,
                    **settings_env,
                ),
                range(SERVERS),
            )
        )
    outcomes: Counter[str] = Counter()
    try:
        with Peak(capped_database.role) as peak:
            until = time.monotonic() + LOAD_SECONDS
            clients = [
                threading.Thread(target=_load, args=(server, keys[s], s * 100 + c, until, outcomes))
                for s, server in enumerate(servers)
                for c in range(CLIENTS_PER_SERVER)
            ]
            for client in clients:
                client.start()
            for client in clients:
                client.join(timeout=LOAD_SECONDS + 60)
    finally:
        for server in servers:
            server.stop()

    assert peak.samples > 10
    assert outcomes["2xx"] >= SERVERS * CLIENTS_PER_SERVER, outcomes
    assert set(outcomes) == {"2xx"}, outcomes
    assert 0 < peak.most <= budget, (peak.most, budget)


@pytest.mark.postgres
def test_an_exhausted_pool_is_a_503_with_retry_after(make_api: MakeApi, db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite has no connection pool budget")
    api = make_api(db_pool_size=1, db_max_overflow=0, db_pool_timeout=0.2)
    with api.store.engine.connect():  # the worker's only connection, held
        response = api.get("/v1/hashes")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    error = response.json["error"]  # type: ignore[index]
    assert (error["code"], error["details"]) == (
        "storage_unavailable",
        {"reason": "pool_exhausted"},
    )
    assert api.get("/v1/hashes").status_code == 200  # released: served again


def test_the_pool_defaults_to_a_connection_per_thread_and_two_more() -> None:
    assert PoolLimits.of(Settings(threads=4)) == PoolLimits(size=6, overflow=0, timeout=10.0)
    given = Settings(threads=4, db_pool_size=3, db_max_overflow=2, db_pool_timeout=1.5)
    assert PoolLimits.of(given) == PoolLimits(size=3, overflow=2, timeout=1.5)
    assert PoolLimits.of(given).most == 5


@pytest.mark.postgres
def test_the_heads_read_draws_from_the_pool_and_leaves_no_autocommit_behind(
    pg_url: str,
) -> None:
    store = Store.open(pg_url, pool=PoolLimits(size=1, overflow=0, timeout=0.2))
    try:
        with store.engine.connect(), pytest.raises(PoolTimeout):
            store.heads()  # the only connection is taken: the heads read waits for it
        store.heads()
        with store.engine.connect() as conn:  # the same, single connection
            assert conn.connection.driver_connection.autocommit is False  # type: ignore[union-attr]
    finally:
        store.close()
