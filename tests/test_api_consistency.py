"""Two servers on one PostgreSQL database agree within the sync interval.

A hash added through server A is matched by server B within
`HASHDB_SYNC_INTERVAL` (plus request time), because B replays the change log at
most that long after A committed; a hash retired through B stops matching on A
from the very next request, because every match re-reads the status of the rows
it returns.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from api_server import Server, start_server

from hashdb.store import Role, Store

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

SYNC = 1.0  # seconds


@pytest.fixture
def two_servers(pg_url: str, tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    a = start_server(pg_url, tmp_path, workers=2, sync_interval=SYNC)
    try:
        b = start_server(pg_url, tmp_path, workers=2, sync_interval=SYNC)
    except Exception:
        a.stop()
        raise
    yield a, b
    a.stop()
    b.stop()


def matched(server: Server, value: str, key: str) -> bool:
    r = requests.post(
        f"{server.url}/v1/match",
        json={"queries": [{"signal_type": "pdq", "value": value}]},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    return bool(r.json()["results"][0]["matches"])


def test_an_addition_through_one_server_reaches_the_other_within_the_interval(
    two_servers: tuple[Server, Server], pg_url: str
) -> None:
    a, b = two_servers
    store = Store.open(pg_url, migrate_schema=False)
    admin = store.members.create(f"consistency-{uuid.uuid4().hex}", Role.ADMIN)[1].secret
    store.close()
    auth = {"Authorization": f"Bearer {admin}"}

    for _ in range(3):
        value = random.randbytes(32).hex()
        assert not matched(b, value, admin)
        added = requests.post(
            f"{a.url}/v1/hashes",
            json={"hashes": [{"signal_type": "pdq", "value": value}]},
            headers=auth,
            timeout=30,
        )
        assert added.status_code == 201
        start = time.monotonic()
        while not matched(b, value, admin):
            time.sleep(0.05)
        delay = time.monotonic() - start
        # The interval, plus time for a request or two on a busy 2-core machine.
        assert delay <= SYNC + 1.5, f"seen after {delay:.2f}s"

        hash_id = added.json()["hashes"][0]["id"]
        assert requests.delete(f"{b.url}/v1/hashes/{hash_id}", headers=auth).status_code == 200
        assert not any(matched(a, value, admin) for _ in range(6))
