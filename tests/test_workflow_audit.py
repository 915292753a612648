"""The audit log: every administrative action and keyed write, chained, verifiable."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner
from pydantic import SecretStr
from sqlalchemy import text

from hashdb.cli import main
from hashdb.consortium import audit
from hashdb.consortium.actor import Actor
from hashdb.consortium.core import Consortium
from hashdb.errors import Forbidden, InvalidInput
from hashdb.settings import Settings
from hashdb.signals import PDQ
from hashdb.store import NewHash, Role, Store

if TYPE_CHECKING:
    from api_fixtures import MakeApi

pytest_plugins = ["api_fixtures"]


def log(store: Store, key: str | None = None) -> audit.Audit:
    """The consortium's audit topic over `store`, with `key` as the audit key."""
    settings = Settings(audit_key=SecretStr(key) if key else None)
    return Consortium(settings, store).audit


def first_admin(store: Store) -> Actor:
    return Actor(Consortium(Settings(), store).members.operator())


def verify(
    store: Store, against: audit.Checkpoint | None = None, key: str | None = None
) -> audit.ChainCheck:
    return log(store, key).verify(first_admin(store), against=against)


def checkpoint(store: Store, key: str | None) -> audit.Checkpoint:
    return log(store, key).checkpoint(first_admin(store))


@pytest.fixture
def history(store: Store) -> tuple[Actor, Actor]:
    """Three audited actions: a keyed contribution, an approval, an incident."""
    admin = Actor(store.members.create("Consortium", Role.ADMIN)[0])
    member, key = store.members.create("Platform A", Role.MEMBER)
    principal = store.members.authenticate(key.secret)
    keyed = Actor.of(principal, request_id="req-1")
    db = Consortium(Settings(), store)
    (added,) = db.contributions.add(keyed, [NewHash(PDQ.name, bytes(32), ("manifesto",), 90)])
    db.vetting.approve(admin, [added.id], "checked")
    db.incidents.open(admin, "Attack in X")
    return admin, Actor(member)


def test_writes_are_logged_with_actor_key_target_and_request_id(
    store: Store, history: tuple[Actor, Actor]
) -> None:
    admin, member = history
    entries = log(store).read(admin)
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
    check = verify(store)
    assert check.ok and check.checked == 3
    assert audit.head(store.engine)[0] == 3


def test_an_edited_row_breaks_the_chain_at_that_row(
    store: Store, history: tuple[Actor, Actor]
) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET target = 'hash:999' WHERE seq = 2"))
    check = verify(store)
    assert (check.ok, check.broken_seq, check.checked) == (False, 2, 1)


def test_a_deleted_row_breaks_the_chain_where_it_was(
    store: Store, history: tuple[Actor, Actor]
) -> None:
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 2"))
    assert verify(store).broken_seq == 3


def test_a_recomputed_hash_does_not_hide_an_edit(
    store: Store, history: tuple[Actor, Actor]
) -> None:
    """Forging one row's hash still breaks the link from the next row."""
    admin, _ = history
    second = log(store).read(admin)[1]
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
    assert verify(store).broken_seq == 3


def test_only_admins_read_the_audit_log(store: Store, history: tuple[Actor, Actor]) -> None:
    _, member = history
    with pytest.raises(Forbidden):
        log(store).read(member)
    with pytest.raises(Forbidden):
        log(store).head(member)
    with pytest.raises(Forbidden):
        log(store, AUDIT_KEY).checkpoint(member)
    with pytest.raises(Forbidden):
        log(store).verify(member)


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


AUDIT_KEY = "k" * 40


def _rewrite_everything(store: Store, admin: Actor) -> None:
    """What an attacker with write access does: change entry 2, then recompute
    every hash and link after it, so the chain is consistent again."""
    prev = audit.GENESIS
    for entry in log(store).read(admin):
        action = "hash.reject" if entry.seq == 2 else entry.action
        digest = audit.entry_hash(
            prev,
            seq=entry.seq,
            at=entry.at,
            actor_id=entry.actor_id,
            key_id=entry.key_id,
            action=action,
            target=entry.target,
            request_id=entry.request_id,
            details=entry.details,
        )
        with store.engine.begin() as conn:
            conn.execute(
                text("UPDATE audit_log SET action = :a, prev_hash = :p, hash = :h WHERE seq = :s"),
                {"a": action, "p": prev, "h": digest, "s": entry.seq},
            )
        prev = digest


def test_a_checkpoint_line_round_trips_and_is_signed_only_with_a_key(
    store: Store, history: tuple[Actor, Actor]
) -> None:
    unsigned = checkpoint(store, None)
    assert (unsigned.seq, unsigned.hash) == audit.head(store.engine)
    assert str(unsigned).endswith(":unsigned") and unsigned.signature is None
    signed = checkpoint(store, AUDIT_KEY)
    assert signed.signature is not None and signed.signature_ok(AUDIT_KEY)
    assert not signed.signature_ok("x" * 40)
    assert audit.Checkpoint.parse(str(signed)) == signed
    assert audit.Checkpoint.parse(str(unsigned)) == unsigned
    for bad in ("", "3:abc", str(signed).upper(), str(signed) + ":extra"):
        with pytest.raises(InvalidInput):
            audit.Checkpoint.parse(bad)


def test_a_rewritten_log_passes_the_chain_check_but_not_the_checkpoint(
    store: Store, history: tuple[Actor, Actor]
) -> None:
    admin, _ = history
    published = checkpoint(store, AUDIT_KEY)
    assert verify(store, published, AUDIT_KEY).ok
    _rewrite_everything(store, admin)
    assert verify(store).ok  # internally consistent: the old check misses it
    check = verify(store, published, AUDIT_KEY)
    assert (check.ok, check.broken_seq) == (False, 3)
    assert check.reason is not None and "rewritten" in check.reason


def test_a_cut_tail_fails_against_the_checkpoint(
    store: Store, history: tuple[Actor, Actor]
) -> None:
    published = checkpoint(store, AUDIT_KEY)
    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 3"))
    assert verify(store).ok
    check = verify(store, published, AUDIT_KEY)
    assert (check.ok, check.broken_seq) == (False, 3)
    assert check.reason is not None and "cut off" in check.reason


def test_entries_after_the_checkpoint_still_verify(
    store: Store, history: tuple[Actor, Actor]
) -> None:
    admin, _ = history
    published = checkpoint(store, AUDIT_KEY)
    Consortium(Settings(), store).incidents.open(admin, "Attack in Y")
    check = verify(store, published, AUDIT_KEY)
    assert check.ok and check.checked == 4


def test_a_forged_checkpoint_is_refused(store: Store, history: tuple[Actor, Actor]) -> None:
    admin, _ = history
    genuine = checkpoint(store, AUDIT_KEY)
    _rewrite_everything(store, admin)
    # The attacker publishes a checkpoint of the rewritten log, without the key.
    forged = checkpoint(store, "attacker-key-" + "x" * 30)
    check = verify(store, forged, AUDIT_KEY)
    assert (check.ok, check.broken_seq) == (False, None)
    assert check.reason is not None and "forged" in check.reason
    bare = audit.Checkpoint(forged.seq, forged.hash)
    with pytest.raises(InvalidInput, match="unsigned"):
        verify(store, bare, AUDIT_KEY)
    with pytest.raises(InvalidInput, match="HASHDB_AUDIT_KEY is not set"):
        verify(store, genuine, None)
    # Without a key, an unsigned checkpoint is compared by hash alone.
    assert verify(store, audit.Checkpoint(genuine.seq, genuine.hash)).reason


def test_hashdb_audit_head_and_verify_head(
    store: Store, db_url: str, history: tuple[Actor, Actor]
) -> None:
    admin, _ = history
    runner = CliRunner()
    env = {"HASHDB_DATABASE_URL": db_url, "HASHDB_AUDIT_KEY": AUDIT_KEY}
    printed = runner.invoke(main, ["audit", "head"], env=env)
    assert printed.exit_code == 0, printed.output
    line = printed.output.strip()
    assert audit.Checkpoint.parse(line).signature_ok(AUDIT_KEY)

    good = runner.invoke(main, ["audit", "verify", "--head", line], env=env)
    assert good.exit_code == 0, good.output
    assert "intact: 3 entries" in good.output and "matches checkpoint 3" in good.output

    garbled = runner.invoke(main, ["audit", "verify", "--head", "not-a-checkpoint"], env=env)
    assert garbled.exit_code == 2
    assert "not an audit checkpoint" in garbled.output

    forged_line = str(checkpoint(store, "y" * 40))
    forged = runner.invoke(main, ["audit", "verify", "--head", forged_line], env=env)
    assert forged.exit_code == 1
    assert "audit checkpoint refused" in forged.output and "forged" in forged.output

    _rewrite_everything(store, admin)
    assert runner.invoke(main, ["audit", "verify"], env=env).exit_code == 0
    rewritten = runner.invoke(main, ["audit", "verify", "--head", line], env=env)
    assert rewritten.exit_code == 1
    assert "broken at entry 3" in rewritten.output and "rewritten" in rewritten.output

    with store.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 3"))
    cut = runner.invoke(main, ["audit", "verify", "--head", line], env=env)
    assert cut.exit_code == 1
    assert "cut off" in cut.output

    unkeyed = {"HASHDB_DATABASE_URL": db_url}
    no_key = runner.invoke(main, ["audit", "verify", "--head", line], env=unkeyed)
    assert no_key.exit_code == 2
    assert "HASHDB_AUDIT_KEY is not set" in no_key.output


def test_get_v1_audit_head_gives_admins_a_signed_checkpoint(make_api: MakeApi) -> None:
    api = make_api(audit_key=AUDIT_KEY)
    assert api.get("/v1/audit/head", "member").status_code == 403
    response = api.get("/v1/audit/head", "admin")
    assert response.status_code == 200, response.json
    body = response.json
    assert body is not None
    published = audit.Checkpoint.parse(body["checkpoint"])
    assert (published.seq, published.hash) == (body["seq"], body["hash"])
    assert published.seq == audit.head(api.store.engine)[0]
    assert body["signature"] == published.signature and published.signature_ok(AUDIT_KEY)
    assert verify(api.store, published, AUDIT_KEY).ok
    unsigned = make_api().get("/v1/audit/head", "admin").json
    assert unsigned is not None and unsigned["signature"] is None
