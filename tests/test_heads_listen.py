"""A serving worker on PostgreSQL reads the log heads only when told they moved.

`HeadReader.listen` (hashdb/store/heads.py) keeps the heads it read last until
PostgreSQL notifies the channel `hashdb_heads` (migration 0012's triggers) or this
process writes a log itself; while its listening connection is down it reads per
request, as without listening. These specifications count the heads statements a
store sends to the database.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import create_engine, event, text

from hashdb.store import NewHash, Role, Store
from hashdb.store.heads import Heads

on_postgresql = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


def counting_reads(store: Store) -> list[str]:
    """Every heads statement `store` sends from now on."""
    seen: list[str] = []

    def note(_conn: object, _cursor: object, statement: str, *_rest: object) -> None:
        if "FROM feed_epoch" in statement:
            seen.append(statement)

    event.listen(store.engine, "before_cursor_execute", note)
    return seen


def raw_reads(store: Store) -> Callable[[], int]:
    """How many heads reads `store` made from now on: on PostgreSQL the reader runs
    its statement on the driver connection, past SQLAlchemy's events, so its
    private read is wrapped with a counter."""
    reader = store._heads  # the reader under test
    calls = [0]
    original = reader._read

    def counted() -> Heads:
        calls[0] += 1
        return original()

    reader._read = counted  # type: ignore[method-assign]
    return lambda: calls[0]


def eventually(check: Callable[[], bool], within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def listening(db_url: str) -> Iterator[Store]:
    store = Store.open(db_url)
    store.listen_for_changes()
    try:
        listener = store._heads._listener
        assert listener is not None
        assert eventually(lambda: listener.generation > 0), "never listened"
        yield store
    finally:
        store.close()


@on_postgresql
def test_a_listening_worker_reads_the_heads_once_while_nothing_changes(listening: Store) -> None:
    reads = raw_reads(listening)
    first = listening.heads()
    for _ in range(50):
        assert listening.heads() == first
    assert reads() == 1


@on_postgresql
def test_a_change_committed_elsewhere_is_seen_once_notified(listening: Store, db_url: str) -> None:
    before = listening.heads()
    reads = raw_reads(listening)
    other = Store.open(db_url)
    try:
        member, _ = other.members.create("platform", Role.MEMBER)
        other.hashes.add(member.id, [NewHash("pdq", bytes(range(32)))])
    finally:
        other.close()
    assert eventually(lambda: listening.heads().changes > before.changes)
    settled = reads()
    listening.heads()
    assert reads() == settled  # read once more after the notification, then reused


@on_postgresql
def test_a_revocation_elsewhere_moves_the_auth_head(listening: Store, db_url: str) -> None:
    member, key = listening.members.create("platform", Role.MEMBER)
    before = listening.heads()
    other = Store.open(db_url)
    try:
        other.members.revoke_key(member.id, key.key.id)
    finally:
        other.close()
    assert eventually(lambda: listening.heads().auth > before.auth)


@on_postgresql
def test_the_workers_own_writes_are_seen_at_once(listening: Store) -> None:
    before = listening.heads()
    member, key = listening.members.create("platform", Role.MEMBER)
    listening.hashes.add(member.id, [NewHash("pdq", bytes(range(32)))])
    added = listening.heads()  # no wait: this process wrote it
    assert added.changes > before.changes
    listening.members.revoke_key(member.id, key.key.id)
    assert listening.heads().auth > added.auth


@on_postgresql
def test_a_log_cut_back_in_place_is_noticed(listening: Store, db_url: str) -> None:
    member, _ = listening.members.create("platform", Role.MEMBER)
    listening.hashes.add(member.id, [NewHash("pdq", bytes(range(32)))])
    grown = listening.heads()
    admin = create_engine(db_url)
    try:
        with admin.begin() as conn:  # what a repair or a restore in place does
            conn.execute(text("DELETE FROM changes"))
    finally:
        admin.dispose()
    assert eventually(lambda: listening.heads().changes < grown.changes)


@on_postgresql
def test_without_its_connection_it_reads_per_request_and_listens_again(
    listening: Store, db_url: str
) -> None:
    listener = listening._heads._listener
    assert listener is not None
    admin = create_engine(db_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:  # a server restart, as far as the listener knows
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND query LIKE 'LISTEN%'"
                )
            )
    finally:
        admin.dispose()
    assert eventually(lambda: listener.generation < 0, within=5.0), "the drop went unnoticed"
    reads = raw_reads(listening)
    listening.heads()
    listening.heads()
    assert reads() == 2  # down: every call reads
    assert eventually(lambda: listener.generation > 0, within=10.0), "never listened again"
    listening.heads()
    after = reads()
    listening.heads()
    assert reads() == after


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_has_no_listener_and_reads_every_time(store: Store) -> None:
    store.listen_for_changes()
    reads = counting_reads(store)
    store.heads()
    store.heads()
    assert len(reads) == 2
