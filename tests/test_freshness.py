"""What a worker keeps in memory never outlives a change made anywhere else.

An API worker caches authenticated keys, the rows of matched hashes and its match
counts. Each request starts from the heads of the hash change log and the auth
change log: on SQLite read per request (one statement), on PostgreSQL read again
once the database notifies a change. A change committed by another process
(another worker, another server, the CLI: here a second `Store` on the same
database) takes effect on the very next request (SQLite) or within the
notification's delivery, milliseconds (PostgreSQL); the worker's own changes at
once on both. Match counts are written in the background, at least
every HASHDB_COUNT_FLUSH_SECONDS, and when the database is closed.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, select, text

from api.keycache import KeyCache
from hashdb.consortium.actor import Actor
from hashdb.consortium.core import Consortium
from hashdb.consortium.match_counts import Tally
from hashdb.errors import Unauthenticated
from hashdb.matching import Match, Query, QueryResult
from hashdb.settings import Settings
from hashdb.signals import PDQ
from hashdb.store import MemberStore, NewHash, Principal, Role, Status, Store
from hashdb.store.clock import now
from hashdb.store.heads import Heads
from hashdb.store.schema import match_counts

if TYPE_CHECKING:
    from api_fixtures import Api

pytest_plugins = ["api_fixtures"]

CODE = bytes(range(32))


def elsewhere(api: Api) -> Store:
    """Another process's view of the same database."""
    return Store.open(str(api.store.engine.url.render_as_string(hide_password=False)))


def status_of(api: Api, secret: str) -> int:
    headers = {"Authorization": f"Bearer {secret}"}
    return api.client.get("/v1/hashes/999", headers=headers).status_code


def refused_within(api: Api, secret: str, seconds: float) -> bool:
    """Whether requests with `secret` are refused (401) within `seconds`. On SQLite
    the first request already is (the heads are read per request); on PostgreSQL a
    worker learns of another process's change from a notification, delivered within
    milliseconds of the commit (hashdb/store/heads.py)."""
    deadline = time.monotonic() + seconds
    while status_of(api, secret) != 401:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


# ---- heads ------------------------------------------------------------------------


def test_the_heads_move_with_every_hash_change_and_every_revocation(store: Store) -> None:
    start = store.heads()
    member, key = store.members.create("platform", Role.MEMBER)
    assert store.heads() == start  # creating a member takes nothing away
    store.hashes.add(member.id, [NewHash("pdq", CODE)])
    added = store.heads()
    assert added.changes > start.changes and added.auth == start.auth
    store.members.revoke_key(member.id, key.key.id)
    revoked = store.heads()
    assert revoked.auth > added.auth and revoked.changes == added.changes


def test_revoking_an_unknown_key_moves_nothing_and_is_not_found(store: Store) -> None:
    member, _ = store.members.create("platform", Role.MEMBER)
    before = store.heads()
    with pytest.raises(Exception, match="no key"):
        store.members.revoke_key(member.id, 12345)
    assert store.heads() == before


@pytest.mark.postgres
def test_a_broken_connection_is_replaced_on_the_next_read(pg_url: str) -> None:
    store = Store.open(pg_url)
    try:
        store.heads()
        admin = create_engine(pg_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:  # what a server restart does to every session
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        admin.dispose()
        assert isinstance(store.heads(), Heads)
    finally:
        store.close()


# ---- keys -------------------------------------------------------------------------


def test_a_cached_key_revoked_by_another_process_fails_at_once(api: Api) -> None:
    assert status_of(api, api.keys["member"]) == 404  # authenticated (and now cached)
    other = elsewhere(api)
    try:
        member = other.members.by_name("test-member")
        for key in other.members.keys(member.id):
            other.members.revoke_key(member.id, key.id)
    finally:
        other.close()
    assert refused_within(api, api.keys["member"], seconds=2.0)


def test_a_cached_key_of_a_member_disabled_elsewhere_fails_at_once(api: Api) -> None:
    assert status_of(api, api.keys["member"]) == 404
    other = elsewhere(api)
    try:
        other.members.disable(other.members.by_name("test-member").id)
    finally:
        other.close()
    assert refused_within(api, api.keys["member"], seconds=2.0)


def test_a_cached_key_stops_at_the_expiry_a_rotation_gave_it(api: Api) -> None:
    assert status_of(api, api.keys["member"]) == 404
    member = api.store.members.by_name("test-member")
    api.store.members.issue_key(member.id, overlap=timedelta(seconds=1))
    assert status_of(api, api.keys["member"]) == 404  # inside the overlap
    time.sleep(1.2)
    assert status_of(api, api.keys["member"]) == 401


class SlowMembers(MemberStore):
    """A member store whose key lookup lets a revocation happen while it reads."""

    def __init__(self, store: Store, during: threading.Event, go_on: threading.Event) -> None:
        super().__init__(store.engine)
        self.during, self.go_on = during, go_on

    def authenticate(self, secret: str) -> Principal:
        found = super().authenticate(secret)
        self.during.set()
        self.go_on.wait(5)
        return found


def test_an_answer_read_before_a_revocation_is_not_cached_after_it(store: Store) -> None:
    member, key = store.members.create("platform", Role.MEMBER)
    during, go_on = threading.Event(), threading.Event()
    cache = KeyCache(SlowMembers(store, during, go_on))
    head = store.heads().auth
    reader = threading.Thread(target=cache.principal, args=(key.secret, head))
    reader.start()
    assert during.wait(5)
    store.members.revoke_key(member.id, key.key.id)  # lands while the reader holds the row
    with pytest.raises(Unauthenticated):
        cache.principal(key.secret, store.heads().auth)  # the next request: refused
    go_on.set()
    reader.join()
    with pytest.raises(Unauthenticated):  # and the stale answer was not cached
        cache.principal(key.secret, store.heads().auth)


# ---- hashes -----------------------------------------------------------------------


def pdq_query(value: bytes = CODE) -> dict[str, object]:
    return {"signal_type": "pdq", "value": value.hex()}


def test_a_hash_retired_elsewhere_stops_matching_on_the_next_request(api: Api) -> None:
    (hash_id,) = api.add(pdq_query(), role="admin")
    assert [m["id"] for m in api.match(pdq_query())[0]["matches"]] == [hash_id]  # row cached
    other = elsewhere(api)
    try:
        other.hashes.set_status([hash_id], Status.RETIRED, actor_id=None, reason="wrong")
    finally:
        other.close()
    assert api.match(pdq_query())[0]["matches"] == []


def test_a_hash_added_elsewhere_matches_on_the_next_request(make_api: object) -> None:
    api = make_api(sync_interval=3600.0)  # type: ignore[operator]
    other = elsewhere(api)
    try:
        admin = other.members.by_name("test-admin")
        (added,) = other.hashes.add(admin.id, [NewHash("pdq", CODE)])
    finally:
        other.close()
    assert [m["id"] for m in api.match(pdq_query())[0]["matches"]] == [added.id]


def test_an_expiry_set_elsewhere_is_what_the_next_match_shows(api: Api) -> None:
    (hash_id,) = api.add(pdq_query(), role="admin")
    assert api.match(pdq_query())[0]["matches"]  # its row is cached now
    other = Consortium(Settings(), elsewhere(api))
    try:
        admin = other.store.members.by_name("test-admin")
        other.vetting.set_expiry(Actor(admin), hash_id, now() - timedelta(seconds=1))
    finally:
        other.close()
    assert api.match(pdq_query())[0]["matches"] == []


def test_the_row_cache_is_filled_after_a_load_and_read_from(store: Store) -> None:
    member, _ = store.members.create("platform", Role.ADMIN)
    codes = [bytes([i]) * 32 for i in range(1, 6)]
    store.hashes.add(member.id, [NewHash("pdq", c) for c in codes])
    db = Consortium(Settings(), store)
    db.matcher.load()
    assert db.matcher.warm_records() == 5
    store.close()  # no database from here on: the matches come from memory
    (result,) = db.matcher.match([Query(PDQ, codes[0], threshold=0)])
    assert [m.record.value for m in result.matches] == [codes[0]]


# ---- match counts -----------------------------------------------------------------


def counted(store: Store) -> int:
    with store.engine.connect() as conn:
        return sum(r.count for r in conn.execute(select(match_counts.c.count)))


def test_match_counts_are_written_in_the_background_within_the_interval(store: Store) -> None:
    member, _ = store.members.create("platform", Role.ADMIN)
    (added,) = store.hashes.add(member.id, [NewHash("pdq", CODE)])
    record = store.hashes.get(added.id)
    tally = Tally(store.engine, interval=0.2)
    tally.add(member.id, [QueryResult(Query(PDQ, CODE), [Match(record, 0)])] * 3)
    assert counted(store) == 0  # nothing written on the match path
    deadline = time.monotonic() + 5
    while counted(store) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert counted(store) == 3
    tally.add(member.id, [QueryResult(Query(PDQ, CODE), [Match(record, 0)])])
    tally.close()  # closing writes what is pending
    assert counted(store) == 4


def test_match_counts_that_fail_to_write_are_kept_for_the_next_try(store: Store) -> None:
    member, _ = store.members.create("platform", Role.ADMIN)
    (added,) = store.hashes.add(member.id, [NewHash("pdq", CODE)])
    record = store.hashes.get(added.id)
    broken = Tally(create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"), interval=60)
    broken.add(member.id, [QueryResult(Query(PDQ, CODE), [Match(record, 0)])])
    with pytest.raises(Exception):  # noqa: B017 - whatever the driver raises
        broken.flush()
    assert broken.pending == 1
