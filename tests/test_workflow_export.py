"""The export feed (additions, updates, tombstones, cursor) and syncing from it."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from feed_server import FeedServer
from threatexchange.exchanges.impl.file_api import (
    FileCollaborationConfig,
    LocalFileSignalExchangeAPI,
)
from threatexchange.signal_type.pdq.signal import PdqSignal

from hashdb.cli import main
from hashdb.client import Client, RemoteError
from hashdb.consortium import export
from hashdb.consortium.actor import Actor
from hashdb.consortium.core import Consortium
from hashdb.consortium.export import FeedEntry, FeedFormat, FeedOp
from hashdb.errors import Forbidden, InvalidInput
from hashdb.matching import Query
from hashdb.settings import Settings
from hashdb.signals import MD5, PDQ
from hashdb.store import NewHash, Role, Status, Store


def pdq(seed: int) -> bytes:
    return random.Random(seed).randbytes(32)


def item(seed: int) -> NewHash:
    return NewHash(PDQ.name, pdq(seed), ("attack_footage",), 90)


@pytest.fixture
def admin(store: Store) -> Actor:
    return Actor(store.members.create("Consortium", Role.ADMIN)[0])


@pytest.fixture
def member(store: Store) -> Actor:
    return Actor(store.members.create("Platform A", Role.MEMBER)[0])


@pytest.fixture
def db(store: Store) -> Consortium:
    return Consortium(Settings(), store)


def everything(db: Consortium, reader: Actor) -> list[FeedEntry]:
    return db.feed.page(reader, 0, export.MAX_LIMIT).entries


def test_an_active_hash_is_an_addition_with_its_fields(
    db: Consortium, store: Store, admin: Actor
) -> None:
    (added,) = db.contributions.add(admin, [item(1)])
    (entry,) = everything(db, admin)
    assert (entry.op, entry.id, entry.signal_type, entry.status) == (
        FeedOp.ADD,
        added.id,
        "pdq",
        Status.ACTIVE,
    )
    assert entry.value == pdq(1).hex() and entry.quality == 90
    assert entry.labels == ("attack_footage",)


def test_tombstones_carry_the_value_of_hashes_once_exported_never_of_unvetted_ones(
    db: Consortium, store: Store, admin: Actor, member: Actor
) -> None:
    (pending,) = db.contributions.add(member, [item(1)])
    (retired,) = db.contributions.add(admin, [item(2)])
    (rejected,) = db.contributions.add(member, [item(3)])
    db.vetting.retire(admin, [retired.id], "wrong")
    db.vetting.reject(admin, [rejected.id], "not terrorist content")
    entries = {e.id: e for e in everything(db, admin)}
    assert entries[pending.id].op is FeedOp.DELETE and entries[pending.id].value is None
    assert entries[rejected.id].op is FeedOp.DELETE and entries[rejected.id].value is None
    tombstone = entries[retired.id]
    assert (tombstone.op, tombstone.status, tombstone.signal_type, tombstone.value) == (
        FeedOp.DELETE,
        Status.RETIRED,
        "pdq",
        pdq(2).hex(),
    )


def test_a_page_ends_at_the_cursor_and_the_next_page_resumes_after_it(
    db: Consortium, store: Store, admin: Actor
) -> None:
    db.contributions.add(admin, [item(n) for n in range(5)])
    first = db.feed.page(admin, 0, 3)
    assert (len(first.entries), first.more) == (3, True)
    assert first.cursor == first.entries[-1].seq
    second = db.feed.page(admin, first.cursor, 3)
    assert (len(second.entries), second.more) == (2, False)
    assert db.feed.page(admin, second.cursor, 3).entries == []
    assert {e.id for e in first.entries + second.entries} == set(range(1, 6))


@pytest.mark.parametrize(("since", "limit", "field"), [(-1, 10, "since"), (0, 0, "limit")])
def test_bad_paging_is_refused_naming_the_field(
    db: Consortium, admin: Actor, since: int, limit: int, field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        db.feed.page(admin, since, limit)
    assert caught.value.field == field


def test_replaying_the_feed_from_zero_gives_exactly_the_exported_list(
    db: Consortium, store: Store, admin: Actor, member: Actor
) -> None:
    rng = random.Random(7)
    ids = [a.id for a in db.contributions.add(member, [item(n) for n in range(30)])]
    ids += [a.id for a in db.contributions.add(admin, [item(n) for n in range(30, 40)])]
    held: dict[int, FeedEntry] = {}
    cursor = 0
    for step in range(40):
        hash_id = rng.choice(ids)
        status = store.hashes.get(hash_id).status
        if status is Status.PENDING:
            move = rng.choice([db.vetting.approve, db.vetting.reject])
            move(admin, [hash_id], "vetted")
        elif status in (Status.ACTIVE, Status.DISPUTED) and rng.random() < 0.5:
            db.vetting.retire(admin, [hash_id], "retired")
        if step % 7 == 0:  # a follower pulling now and then, in small pages
            while page := db.feed.page(admin, cursor, 4).entries:
                export.replay(page, held)
                cursor = page[-1].seq
    while page := db.feed.page(admin, cursor, 4).entries:
        export.replay(page, held)
        cursor = page[-1].seq
    records = store.hashes.get_many(ids)
    live = {i for i, r in records.items() if r.status in (Status.ACTIVE, Status.DISPUTED)}
    assert set(held) == live
    assert {e.id for e in db.feed.snapshot(admin)} == live


def test_jsonl_round_trips_and_csv_has_a_header(db: Consortium, store: Store, admin: Actor) -> None:
    db.contributions.add(admin, [item(1), NewHash(MD5.name, bytes(16), ("manifesto",))])
    entries = everything(db, admin)
    text = "".join(export.render(entries, FeedFormat.JSONL))
    assert export.parse_jsonl(text) == entries
    rows = "".join(export.render(entries, FeedFormat.CSV)).splitlines()
    assert rows[0] == ",".join(export.CSV_COLUMNS)
    assert len(rows) == 3 and "attack_footage" in rows[1]


def test_the_threatexchange_file_loads_in_python_threatexchange(
    db: Consortium, store: Store, admin: Actor, tmp_path: Path
) -> None:
    db.contributions.add(admin, [item(1), item(2), NewHash(MD5.name, bytes(16), ("manifesto",))])
    path = tmp_path / "hashdb.te"
    path.write_text("".join(export.render(db.feed.snapshot(admin), FeedFormat.THREATEXCHANGE)))
    api = LocalFileSignalExchangeAPI(
        FileCollaborationConfig(name="hashdb", api="local_file", enabled=True, filename=str(path))
    )
    (delta,) = api.fetch_iter([PdqSignal], None)
    assert set(delta.updates) == {("pdq", pdq(1).hex()), ("pdq", pdq(2).hex())}


# ---- sync -------------------------------------------------------------------------


@pytest.fixture
def local(tmp_path: Path) -> Iterator[Consortium]:
    copy = Store.open(f"sqlite:///{tmp_path / 'local.sqlite3'}", migrate_schema=True)
    copy.members.create("Local admin", Role.ADMIN)
    yield Consortium(Settings(), copy)
    copy.close()


def operator(local: Consortium) -> Actor:
    """The local copy's admin, who runs the sync."""
    return Actor(local.members.operator())


def matches(db: Consortium, seed: int) -> int:
    db.matcher.refresh()
    return len(db.matching.match(None, [Query(PDQ, pdq(seed))])[0].matches)


def test_a_local_copy_follows_the_central_feed_over_http(
    db: Consortium, store: Store, admin: Actor, member: Actor, local: Consortium
) -> None:
    _, key = store.members.create("Small platform", Role.MEMBER)
    _, doomed = db.contributions.add(admin, [item(1), item(2)])
    (pending,) = db.contributions.add(member, [item(3)])
    with FeedServer(store) as central:
        feed = Client(central.url, key.secret)
        first = local.sync.pull(operator(local), feed, central.url, limit=2)
        assert (first.pages, first.entries, first.live) == (2, 3, 2)
        assert (matches(local, 1), matches(local, 2), matches(local, 3)) == (1, 1, 0)

        db.vetting.retire(admin, [doomed.id], "not terrorist content")
        db.vetting.approve(admin, [pending.id])
        second = local.sync.pull(operator(local), feed, central.url)
        assert (second.entries, second.retired) == (2, 1)
        assert (matches(local, 1), matches(local, 2), matches(local, 3)) == (1, 0, 1)
        assert local.sync.cursor(operator(local), central.url) == store.changes.head()
        assert local.sync.pull(operator(local), feed, central.url).entries == 0


def test_an_interrupted_sync_resumes_after_the_last_page_applied(
    db: Consortium, store: Store, admin: Actor, local: Consortium
) -> None:
    _, key = store.members.create("Small platform", Role.MEMBER)
    db.contributions.add(admin, [item(n) for n in range(5)])
    with FeedServer(store) as central:
        feed = Client(central.url, key.secret)
        assert (
            local.sync.pull(operator(local), feed, central.url, limit=2, max_pages=1).entries == 2
        )
        rest = local.sync.pull(operator(local), feed, central.url, limit=2)
    assert rest.entries == 3
    assert sum(matches(local, n) for n in range(5)) == 5


def test_a_refused_key_or_an_unreachable_server_is_a_typed_error(
    store: Store, local: Consortium
) -> None:
    with FeedServer(store) as central:
        with pytest.raises(RemoteError) as refused:
            local.sync.pull(operator(local), Client(central.url, "hdb_nope"), central.url)
        assert (refused.value.status, refused.value.exit_code) == (401, 2)
        url = central.url
    with pytest.raises(RemoteError) as unreachable:
        local.sync.pull(operator(local), Client(url, "hdb_x", attempts=1, timeout=2), url)
    assert (unreachable.value.status, unreachable.value.exit_code) == (None, 3)
    with pytest.raises(InvalidInput):
        Client("file:///etc/passwd", "hdb_x")


def test_hashdb_sync_pulls_into_the_configured_database(
    db: Consortium, store: Store, admin: Actor, tmp_path: Path
) -> None:
    _, key = store.members.create("Small platform", Role.MEMBER)
    db.contributions.add(admin, [item(1), item(2)])
    env = {"HASHDB_DATABASE_URL": f"sqlite:///{tmp_path / 'local.sqlite3'}"}
    runner = CliRunner()
    assert runner.invoke(main, ["init"], env=env).exit_code == 0  # syncing is an admin's
    with FeedServer(store) as central:
        args = ["sync", "--from", central.url]
        first = runner.invoke(main, args, env={**env, "HASHDB_API_KEY": key.secret})
        again = runner.invoke(main, args, env={**env, "HASHDB_API_KEY": key.secret})
        refused = runner.invoke(main, args, env={**env, "HASHDB_API_KEY": "x"})
    assert first.exit_code == 0, first.output
    assert "synced 2 changes" in first.output and "2 live" in first.output
    assert "synced 0 changes" in again.output
    assert refused.exit_code == 2


def test_hashdb_labels_lists_the_taxonomy(db_url: str, store: Store) -> None:
    result = CliRunner().invoke(
        main, ["labels", "list", "--json"], env={"HASHDB_DATABASE_URL": db_url}
    )
    assert result.exit_code == 0, result.output
    assert "attack_footage" in {row["name"] for row in json.loads(result.output)}


def test_a_page_shows_an_expired_hash_deleted_and_the_worker_retiring_it_logs_a_tombstone(
    db: Consortium, store: Store, admin: Actor
) -> None:
    (added,) = db.contributions.add(admin, [item(1)])
    cursor = db.feed.page(admin, 0, 100).cursor
    soon = datetime.now(UTC) + timedelta(milliseconds=50)
    db.vetting.set_expiry(admin, added.id, soon)
    time.sleep(0.1)
    page = db.feed.page(admin, cursor, 100)
    (tombstone,) = page.entries
    # Reading retires nothing: the hash is shown deleted while still `active`.
    assert (tombstone.id, tombstone.op, tombstone.status) == (
        added.id,
        FeedOp.DELETE,
        Status.ACTIVE,
    )
    assert db.upkeep.expire() == [added.id]  # `hashdb worker`'s chore
    (retired,) = db.feed.page(admin, page.cursor, 100).entries
    assert (retired.id, retired.op, retired.status) == (added.id, FeedOp.DELETE, Status.RETIRED)


def test_syncing_is_an_admins_and_each_page_applied_is_audited(
    db: Consortium, store: Store, admin: Actor, local: Consortium
) -> None:
    _, key = store.members.create("Small platform", Role.MEMBER)
    db.contributions.add(admin, [item(n) for n in range(3)])
    platform = Actor(local.store.members.create("Platform B", Role.MEMBER)[0])
    with FeedServer(store) as central:
        feed = Client(central.url, key.secret)
        with pytest.raises(Forbidden):
            local.sync.pull(platform, feed, central.url)
        assert local.sync.pull(operator(local), feed, central.url, limit=2).pages == 2
    applied = [e for e in local.audit.read(operator(local)) if e.action == "sync.apply"]
    assert [e.details["entries"] for e in applied] == [2, 1]
    assert {e.actor_id for e in applied} == {operator(local).id}
