"""Storage: the same specification, run against SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import inspect

from hashdb.errors import Conflict, InvalidInput, NotFound, Unauthenticated
from hashdb.store import ChangeOp, NewHash, Role, Status, Store
from hashdb.store.schema import metadata

PDQ_A = bytes(range(32))
PDQ_B = bytes(range(1, 33))


def test_migrations_create_exactly_the_tables_the_schema_declares(store: Store) -> None:
    inspector = inspect(store.engine)
    migrated = set(inspector.get_table_names()) - {"alembic_version"}
    assert migrated == set(metadata.tables)
    for table in metadata.sorted_tables:
        columns = {c["name"] for c in inspector.get_columns(table.name)}
        assert columns == {c.name for c in table.columns}, table.name


def test_a_member_is_created_with_a_key_that_authenticates(store: Store) -> None:
    member, key = store.members.create("Platform A", Role.MEMBER)
    assert key.secret.startswith("hdb_") and len(key.secret) > 40
    principal = store.members.authenticate(key.secret)
    assert principal.member == member
    assert principal.key_id == key.key.id


def test_only_the_digest_of_a_key_is_stored(store: Store) -> None:
    _, key = store.members.create("Platform A", Role.MEMBER)
    with store.engine.connect() as conn:
        dumped = str(conn.exec_driver_sql("SELECT * FROM api_keys").fetchall())
    assert key.secret not in dumped
    assert key.secret[4:] not in dumped


def test_member_names_are_unique(store: Store) -> None:
    store.members.create("Platform A", Role.MEMBER)
    with pytest.raises(Conflict):
        store.members.create("Platform A", Role.ADMIN)


def test_an_empty_member_name_is_refused(store: Store) -> None:
    with pytest.raises(InvalidInput):
        store.members.create("   ", Role.MEMBER)


@pytest.mark.parametrize("secret", ["", "nonsense", "hdb_" + "x" * 43])
def test_an_unknown_key_is_unauthenticated(store: Store, secret: str) -> None:
    with pytest.raises(Unauthenticated):
        store.members.authenticate(secret)


def test_a_revoked_key_stops_working_at_once(store: Store) -> None:
    member, key = store.members.create("Platform A", Role.MEMBER)
    store.members.revoke_key(member.id, key.key.id)
    with pytest.raises(Unauthenticated):
        store.members.authenticate(key.secret)


def test_rotation_keeps_the_old_key_valid_for_the_overlap_only(store: Store) -> None:
    member, old = store.members.create("Platform A", Role.MEMBER)
    new = store.members.issue_key(member.id, overlap=timedelta(hours=1))
    assert store.members.authenticate(old.secret).key_id == old.key.id
    assert store.members.authenticate(new.secret).key_id == new.key.id
    expired = store.members.issue_key(member.id, overlap=timedelta(seconds=-1))
    with pytest.raises(Unauthenticated):
        store.members.authenticate(new.secret)
    assert store.members.authenticate(expired.secret)


def test_a_second_rotation_with_a_shorter_overlap_shortens_the_first(store: Store) -> None:
    member, old = store.members.create("Platform A", Role.MEMBER)
    store.members.issue_key(member.id, overlap=timedelta(days=7))
    store.members.issue_key(member.id, overlap=timedelta(seconds=-1))
    with pytest.raises(Unauthenticated):
        store.members.authenticate(old.secret)


def test_disabling_a_member_revokes_every_key(store: Store) -> None:
    member, first = store.members.create("Platform A", Role.MEMBER)
    second = store.members.issue_key(member.id)
    store.members.disable(member.id)
    for secret in (first.secret, second.secret):
        with pytest.raises(Unauthenticated):
            store.members.authenticate(secret)


def test_revoking_a_key_of_another_member_is_not_found(store: Store) -> None:
    _, key = store.members.create("A", Role.MEMBER)
    b, _ = store.members.create("B", Role.MEMBER)
    with pytest.raises(NotFound):
        store.members.revoke_key(b.id, key.key.id)


def test_adding_hashes_returns_ids_in_order_and_logs_each_addition(store: Store) -> None:
    member, _ = store.members.create("A", Role.MEMBER)
    added = store.hashes.add(
        member.id,
        [NewHash("pdq", PDQ_A, ("attack_footage",), 90, "case 1"), NewHash("md5", b"\x01" * 16)],
    )
    assert [a.created for a in added] == [True, True]
    record = store.hashes.get(added[0].id)
    assert record.value == PDQ_A and record.quality == 90
    assert record.labels == ("attack_footage",) and record.reference == "case 1"
    assert record.status is Status.ACTIVE and record.contributor_id == member.id
    assert record.created_at.tzinfo is not None
    log = store.changes.since(0)
    assert [(c.hash_id, c.op) for c in log] == [(a.id, ChangeOp.ADD) for a in added]
    assert store.changes.head() == log[-1].seq


def test_adding_the_same_hash_twice_from_one_contributor_is_idempotent(store: Store) -> None:
    member, _ = store.members.create("A", Role.MEMBER)
    first = store.hashes.add(member.id, [NewHash("pdq", PDQ_A)])
    again = store.hashes.add(member.id, [NewHash("pdq", PDQ_A), NewHash("pdq", PDQ_A)])
    assert [a.id for a in again] == [first[0].id] * 2
    assert [a.created for a in again] == [False, False]
    assert len(store.changes.since(0)) == 1


def test_a_batch_repeating_a_new_hash_stores_it_once(store: Store) -> None:
    member, _ = store.members.create("A", Role.MEMBER)
    added = store.hashes.add(member.id, [NewHash("pdq", PDQ_A), NewHash("pdq", PDQ_A)])
    assert added[0].id == added[1].id
    assert [a.created for a in added] == [True, False]


def test_the_same_hash_from_two_contributors_is_kept_twice(store: Store) -> None:
    a, _ = store.members.create("A", Role.MEMBER)
    b, _ = store.members.create("B", Role.MEMBER)
    first = store.hashes.add(a.id, [NewHash("pdq", PDQ_A)])
    second = store.hashes.add(b.id, [NewHash("pdq", PDQ_A)])
    assert first[0].id != second[0].id
    assert len(store.hashes.find_exact("pdq", [PDQ_A])[PDQ_A]) == 2


def test_the_same_value_under_two_signal_types_is_two_hashes(store: Store) -> None:
    member, _ = store.members.create("A", Role.MEMBER)
    added = store.hashes.add(member.id, [NewHash("pdq", PDQ_A), NewHash("sha256", PDQ_A)])
    assert added[0].id != added[1].id


def test_retiring_a_hash_logs_a_removal_and_hides_it_from_lookups(store: Store) -> None:
    member, _ = store.members.create("A", Role.MEMBER)
    (added,) = store.hashes.add(member.id, [NewHash("md5", b"\x07" * 16)])
    (record,) = store.hashes.set_status([added.id], Status.RETIRED)
    assert record.status is Status.RETIRED
    assert store.changes.since(0)[-1].op is ChangeOp.REMOVE
    assert store.hashes.find_exact("md5", [b"\x07" * 16]) == {}


def test_changing_the_status_of_an_unknown_hash_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.hashes.set_status([12345], Status.RETIRED)


def test_codes_stream_out_in_chunks_for_index_building(store: Store) -> None:
    member, _ = store.members.create("A", Role.MEMBER)
    items = [NewHash("pdq", bytes([i]) * 32) for i in range(25)]
    added = store.hashes.add(member.id, items)
    store.hashes.set_status([added[0].id], Status.RETIRED)
    chunks = list(store.hashes.iter_codes("pdq", 32, chunk=10))
    assert [len(ids) for ids, _ in chunks] == [10, 10, 4]
    assert bytes(chunks[0][1][0]) == bytes([1]) * 32


def test_a_missing_hash_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        store.hashes.get(999)


def test_the_change_log_reads_in_pages_from_a_cursor(store: Store) -> None:
    member, _ = store.members.create("A", Role.MEMBER)
    store.hashes.add(member.id, [NewHash("md5", bytes([i]) * 16) for i in range(5)])
    first = store.changes.since(0, limit=2)
    rest = store.changes.since(first[-1].seq)
    assert len(first) == 2 and len(rest) == 3
    assert [c.seq for c in first + rest] == sorted({c.seq for c in first + rest})
