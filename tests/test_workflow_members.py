"""Members and keys: one door (`Consortium.members`) for the API, the console and the CLI.

Only admins manage members and keys, checked in the layer; every change writes
exactly one audit entry, in the change's transaction, with the same action names
from every edge, and a request id no edge can make unbounded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner, Result
from sqlalchemy.engine import Connection

from hashdb.cli import main
from hashdb.consortium import Actor, Role
from hashdb.consortium.actor import request_id
from hashdb.consortium.audit import AuditEntry
from hashdb.consortium.core import Consortium
from hashdb.errors import Conflict, Forbidden, InvalidInput, NotFound
from hashdb.settings import Settings
from hashdb.store import Store

if TYPE_CHECKING:
    from api_fixtures import Api
    from console_fixtures import Console

pytest_plugins = ["api_fixtures", "console_fixtures"]

HEX_ID = re.compile(r"[0-9a-f]{32}")


def test_servers_racing_to_create_the_first_admin_leave_one_and_do_not_fail(
    db: Consortium, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another server's admin commits between this one's check and its insert: the
    insert conflicts on the name, and the loser finds the winner's admin."""
    assert db.members.ensure_first_admin() is not None  # the winner
    real = store.members.has_admin_in
    seen: list[bool] = []

    def has_admin_in(conn: Connection) -> bool:
        seen.append(real(conn))
        return seen[-1] if len(seen) > 1 else False  # the first check: before the winner

    monkeypatch.setattr(store.members, "has_admin_in", has_admin_in)
    assert db.members.ensure_first_admin() is None
    assert len(seen) == 2  # the insert conflicted, and the second look found the admin
    assert [m.role for m in store.members.all()] == [Role.ADMIN]


Invoke = Callable[..., Result]


@pytest.fixture
def db(store: Store) -> Consortium:
    return Consortium(Settings(), store)


def admin_of(db: Consortium) -> Actor:
    return Actor(db.members.operator())


def entries_after(db: Consortium, seq: int) -> list[AuditEntry]:
    return db.audit.read(admin_of(db), after=seq)


def head(db: Consortium) -> int:
    return db.audit.head(admin_of(db))[0]


# ---- the layer --------------------------------------------------------------------


def test_each_change_writes_one_audit_entry_in_its_transaction(db: Consortium) -> None:
    assert db.members.ensure_first_admin() is not None
    (first,) = entries_after(db, 0)
    assert (first.action, first.actor_id, first.details["role"]) == ("member.create", None, "admin")
    admin = Actor(db.members.operator(), request_id="req-7")

    member, key = db.members.create(admin, "Platform A", Role.MEMBER, trusted=True)
    new = db.members.issue_key(admin, member.id, overlap=timedelta(hours=1))
    db.members.revoke_key(admin, member.id, key.key.id)
    db.members.disable(admin, member.id)

    entries = entries_after(db, 1)
    assert [(e.action, e.target) for e in entries] == [
        ("member.create", f"member:{member.id}"),
        ("key.issue", f"member:{member.id}"),
        ("key.revoke", f"member:{member.id}"),
        ("member.disable", f"member:{member.id}"),
    ]
    assert all((e.actor_id, e.request_id) == (admin.id, "req-7") for e in entries)
    assert entries[0].details == {"role": "member", "trusted": True, "key_id": key.key.id}
    assert entries[1].details == {"key_id": new.key.id, "overlap_seconds": 3600}
    assert entries[2].details == {"key_id": key.key.id}
    assert db.audit.verify(admin).ok


def test_the_first_admin_is_created_once(db: Consortium, store: Store) -> None:
    assert db.members.ensure_first_admin() is not None
    assert db.members.ensure_first_admin() is None
    assert [m.role for m in store.members.all()] == [Role.ADMIN]
    assert head(db) == 1


def test_a_refused_change_writes_nothing(db: Consortium) -> None:
    db.members.ensure_first_admin()
    admin = admin_of(db)
    (only_key,) = db.members.keys(admin, admin.id)
    before = head(db)
    with pytest.raises(Conflict):
        db.members.create(admin, "admin", Role.MEMBER)  # the name is taken
    with pytest.raises(Conflict):  # the last admin key
        db.members.revoke_key(admin, admin.id, only_key.id)
    with pytest.raises(Conflict):
        db.members.disable(admin, admin.id)
    with pytest.raises(NotFound):
        db.members.issue_key(admin, 9999)
    with pytest.raises(InvalidInput):
        db.members.create(admin, "bad\x07name", Role.MEMBER)
    assert head(db) == before
    assert db.members.keys(admin, admin.id)[0].revoked_at is None


def test_only_admins_manage_members_and_keys(db: Consortium) -> None:
    db.members.ensure_first_admin()
    admin = admin_of(db)
    for role in (Role.MEMBER, Role.OPS):
        someone = Actor(db.members.create(admin, f"A {role.value}", role)[0])
        before = head(db)
        with pytest.raises(Forbidden):
            db.members.create(someone, "Sneaky", Role.ADMIN)
        with pytest.raises(Forbidden):
            db.members.issue_key(someone, someone.id)
        with pytest.raises(Forbidden):
            db.members.revoke_key(someone, admin.id, 1)
        with pytest.raises(Forbidden):
            db.members.disable(someone, admin.id)
        with pytest.raises(Forbidden):
            db.members.all(someone)
        with pytest.raises(Forbidden):
            db.members.keys(someone, someone.id)
        assert head(db) == before
    assert "Sneaky" not in {m.name for m in db.members.all(admin)}


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("abc-123_x.y", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("a" * 150, False),
        ("", False),
        (None, False),
        ("bad\x07id", False),
        ("with space", False),
        ("line\n", False),
        ("ünïcode", False),
    ],
)
def test_a_request_id_is_kept_only_if_valid(sent: str | None, kept: bool) -> None:
    found = request_id(sent)
    assert (found == sent) is kept
    if not kept:
        assert HEX_ID.fullmatch(found)


def test_an_actor_refuses_an_invalid_request_id(db: Consortium) -> None:
    db.members.ensure_first_admin()
    member = db.members.operator()
    with pytest.raises(InvalidInput):
        Actor(member, request_id="x" * 150)
    with pytest.raises(InvalidInput):
        Actor(member, request_id="bad\x00")
    assert Actor(member, request_id="cli-" + "0" * 32).request_id == "cli-" + "0" * 32


# ---- the API ------------------------------------------------------------------------


def test_the_api_writes_one_entry_per_change_with_its_request_id(api: Api) -> None:
    store = api.store
    db = Consortium(Settings(), store)
    admin = db.members.operator("test-admin")
    before = head(db)
    headers = {**api.auth("admin"), "X-Request-Id": "api-req-1"}
    created = api.client.post("/v1/members", json={"name": "Platform X"}, headers=headers)
    assert created.status_code == 201, created.json
    member_id = created.json["member"]["id"]  # type: ignore[index]
    issued = api.client.post(f"/v1/members/{member_id}/keys", json={}, headers=headers)
    assert issued.status_code == 201
    key_id = issued.json["key"]["id"]  # type: ignore[index]
    revoked = api.client.delete(f"/v1/members/{member_id}/keys/{key_id}", headers=headers)
    assert revoked.status_code == 200
    entries = entries_after(db, before)
    assert [e.action for e in entries] == ["member.create", "key.issue", "key.revoke"]
    assert all(e.actor_id == admin.id and e.request_id == "api-req-1" for e in entries)
    assert all(e.key_id is not None for e in entries)


def test_a_member_key_cannot_manage_members_through_the_api(api: Api) -> None:
    assert api.post("/v1/members", {"name": "Sneaky"}, "member").status_code == 403
    assert api.get("/v1/members", "ops").status_code == 403


# ---- the console ----------------------------------------------------------------------


def test_the_console_writes_one_entry_per_change(console: Console) -> None:
    db = console.db
    admin = db.members.operator("test-admin")
    assert console.login("admin").status_code == 302
    before = head(db)

    created = console.post("/console/members", {"name": "Platform C", "role": "member"})
    assert created.status_code == 201
    member = db.members.operator("Platform C")
    assert [e.action for e in entries_after(db, before)] == ["member.create"]

    issued = console.post(f"/console/members/{member.id}/keys", {"overlap": "1d"})
    assert issued.status_code == 201
    first_key = db.members.keys(Actor(admin), member.id)[0]
    revoked = console.post(f"/console/members/{member.id}/keys/{first_key.id}/revoke")
    assert revoked.status_code == 302
    disabled = console.post(f"/console/members/{member.id}/disable")
    assert disabled.status_code == 302
    assert db.members.operator("Platform C").disabled_at is not None

    entries = entries_after(db, before)
    assert [e.action for e in entries] == [
        "member.create",
        "key.issue",
        "key.revoke",
        "member.disable",
    ]
    assert entries[1].details["overlap_seconds"] == 86400
    assert all(e.actor_id == admin.id and e.key_id is not None for e in entries)
    assert all(e.request_id and HEX_ID.fullmatch(e.request_id) for e in entries)


@pytest.mark.parametrize("sent", ["r" * 150, "bad\x07id", "a b"])
def test_a_console_action_replaces_a_bad_request_id(console: Console, sent: str) -> None:
    db = console.db
    console.login("admin")
    before = head(db)
    response = console.post(
        "/console/members", {"name": "Platform Q", "role": "member"}, headers={"X-Request-Id": sent}
    )
    assert response.status_code == 201
    (entry,) = entries_after(db, before)
    assert entry.action == "member.create"
    assert entry.request_id != sent and entry.request_id is not None
    assert HEX_ID.fullmatch(entry.request_id)
    assert response.headers["X-Request-Id"] == entry.request_id


def test_a_console_action_keeps_a_valid_request_id(console: Console) -> None:
    console.login("admin")
    before = head(console.db)
    response = console.post(
        "/console/members",
        {"name": "Platform V", "role": "member"},
        headers={"X-Request-Id": "lb-42.a_b"},
    )
    assert response.status_code == 201
    (entry,) = entries_after(console.db, before)
    assert entry.request_id == "lb-42.a_b"


# ---- the command line -------------------------------------------------------------------


@pytest.fixture
def run(db_url: str, tmp_path: Path) -> Iterator[tuple[Consortium, Invoke]]:
    runner = CliRunner()
    env = {"HASHDB_DATABASE_URL": db_url, "HASHDB_DATA_DIR": str(tmp_path)}

    def invoke(*args: str) -> Result:
        return runner.invoke(main, list(args), env=env, catch_exceptions=False)

    assert invoke("init").exit_code == 0
    db = Consortium.open(Settings(database_url=db_url, sync_interval=0.0))
    yield db, invoke
    db.close()


def test_the_cli_writes_one_entry_per_change_as_its_admin(
    run: tuple[Consortium, Invoke],
) -> None:
    db, invoke = run
    admin = db.members.operator()
    before = head(db)
    assert invoke("members", "add", "Platform L", "--role", "member").exit_code == 0
    member = db.members.operator("Platform L")
    (created,) = entries_after(db, before)
    assert (created.action, created.target) == ("member.create", f"member:{member.id}")
    assert invoke("members", "revoke", "Platform L").exit_code == 0
    entries = entries_after(db, before)
    assert [e.action for e in entries] == ["member.create", "member.disable"]
    assert all(e.actor_id == admin.id and e.key_id is None for e in entries)
    ids = [e.request_id or "" for e in entries]
    assert all(re.fullmatch(r"cli-[0-9a-f]{32}", i) for i in ids)
    assert ids[0] != ids[1]  # one id per run


def test_the_cli_refuses_to_act_as_a_non_admin(run: tuple[Consortium, Invoke]) -> None:
    db, invoke = run
    assert invoke("members", "add", "Platform M").exit_code == 0
    before = head(db)
    refused = invoke("members", "add", "Sneaky", "--as", "Platform M")
    assert refused.exit_code == 2 and "only admins may create members" in refused.output
    assert invoke("members", "revoke", "admin", "--as", "Platform M").exit_code == 2
    assert head(db) == before
    listed = json.loads(invoke("members", "list", "--json").output)
    assert [r["name"] for r in listed] == ["admin", "Platform M"]
