"""The audit log: every administrative action and keyed write, chained, verifiable."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sqlalchemy import text

from hashdb.cli import main
from hashdb.errors import Forbidden
from hashdb.service import HashDB
from hashdb.settings import Settings
from hashdb.signals import PDQ
from hashdb.store import NewHash, Role, Store
from hashdb.workflow import audit, incidents, vetting
from hashdb.workflow.actor import Actor


@pytest.fixture
def history(store: Store) -> tuple[Actor, Actor]:
    """Three audited actions: a keyed contribution, an approval, an incident."""
    admin = Actor(store.members.create("Consortium", Role.ADMIN)[0])
    member, key = store.members.create("Platform A", Role.MEMBER)
    principal = store.members.authenticate(key.secret)
    keyed = Actor.of(principal, request_id="req-1")
    db = HashDB(Settings(), store)
    (added,) = db.contribute(keyed, [NewHash(PDQ.name, bytes(32), ("manifesto",), 90)])
    vetting.approve(store.engine, admin, [added.id], "checked")
    incidents.open_incident(store.engine, admin, "Attack in X")
    return admin, Actor(member)


def test_writes_are_logged_with_actor_key_target_and_request_id(
    store: Store, history: tuple[Actor, Actor]
) -> None:
    admin, member = history
    entries = audit.read(store.engine, admin)
    assert [(e.seq, e.action) for e in entries] == [
        (1, "hashes.contribute"),
        (2, "hash.approve"),
        (3, "incident.open"),
    ]
    first = entries[0]
    assert (first.actor_id, first.request_id, first.key_id) == (member.id, "req-1", first.key_id)
    assert first.key_id is not None
    assert entries[1].target.startswith("hash:") and entries[1].details["reason"] == "checked"
    assert [e.prev_hash for e in entries[1:]] == [e.hash for e in entries[:-1]]
    assert entries[0].prev_hash == audit.GENESIS


def test_the_untouched_chain_verifies(store: Store, history: tuple[Actor, Actor]) -> None:
    check = audit.verify(store.engine)
    assert check.ok and check.checked == 3
    assert audit.head(store.engine)[0] == 3


def test_an_edited_row_breaks_the_chain_at_that_row(
    store: Store, history: tuple[Actor, Actor]
) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET target = 'hash:999' WHERE seq = 2"))
    check = audit.verify(store.engine)
    assert (check.ok, check.broken_seq, check.checked) == (False, 2, 1)


def test_a_deleted_row_breaks_the_chain_where_it_was(
    store: Store, history: tuple[Actor, Actor]
) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    assert audit.verify(store.engine).broken_seq == 3


def test_a_recomputed_hash_does_not_hide_an_edit(
    store: Store, history: tuple[Actor, Actor]
) -> None:
    """Forging one row's hash still breaks the link from the next row."""
    admin, _ = history
    second = audit.read(store.engine, admin)[1]
    forged = audit.entry_hash(
        second.prev_hash,
        seq=2,
        at=second.at,
        actor_id=second.actor_id,
        key_id=second.key_id,
        action="hash.reject",
        target=second.target,
        request_id=second.request_id,
        details=second.details,
    )
    with store.engine.begin() as conn:
        conn.execute(
            text("UPDATE audit_log SET action = 'hash.reject', hash = :h WHERE seq = 2"),
            {"h": forged},
        )
    assert audit.verify(store.engine).broken_seq == 3


def test_only_admins_read_the_audit_log(store: Store, history: tuple[Actor, Actor]) -> None:
    _, member = history
    with pytest.raises(Forbidden):
        audit.read(store.engine, member)


def test_hashdb_audit_verify_detects_an_edited_row(
    store: Store, db_url: str, history: tuple[Actor, Actor]
) -> None:
    runner = CliRunner()
    env = {"HASHDB_DATABASE_URL": db_url}
    ok = runner.invoke(main, ["audit", "verify"], env=env)
    assert ok.exit_code == 0, ok.output
    assert "intact: 3 entries" in ok.output
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET details = '{}' WHERE seq = 1"))
    broken = runner.invoke(main, ["audit", "verify"], env=env)
    assert broken.exit_code == 1
    assert "broken at entry 1" in broken.output
