"""Hostile input at every edge (issue 15), on SQLite and PostgreSQL: control
characters in text, ids beyond 64 bits, times in year 0001, an admin locking the
consortium out, and a console session that outlives its logout.

Each answer is a 4xx naming what was wrong, never a 500; PostgreSQL is where NUL
used to get through to the database and fail there.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from hashdb.errors import Conflict, InvalidInput
from hashdb.signals import PDQ
from hashdb.store import NewHash, Role, Status, Store

if TYPE_CHECKING:
    from api_fixtures import Api
    from console_fixtures import Console

pytest_plugins = ["api_fixtures", "console_fixtures"]

TOO_BIG = str(2**63)  # one past the largest id the database can hold
HUGE = "99999999999999999999"
HOSTILE = ["with\x00nul", "bell\x07", "escape\x1b[31m", "vertical\x0btab"]


def api_hash(api: Api, status: Status = Status.PENDING) -> int:
    member = api.store.members.by_name("test-member")
    new = NewHash(PDQ.name, bytes(range(32)), (), 90)
    (added,) = api.store.hashes.add(member.id, [new], status)
    return added.id


def error_of(response: Any) -> dict[str, Any]:
    body: dict[str, Any] = response.json["error"]
    return body


# ---- control characters: the API ---------------------------------------------------


def test_a_member_name_with_a_control_character_is_400_naming_the_field(api: Api) -> None:
    for name in ("Platform\x00N", "Platform\x1fN", "Platform\nN"):
        response = api.post("/v1/members", {"name": name}, role="admin")
        assert response.status_code == 400, name
        assert error_of(response)["details"]["field"] == "name"
    assert [m.name for m in api.store.members.all() if m.name.startswith("Platform")] == []


def test_a_reason_with_a_control_character_is_400_naming_the_field(api: Api) -> None:
    hash_id = api_hash(api)
    for reason in HOSTILE:
        response = api.post("/v1/hashes/reject", {"ids": [hash_id], "reason": reason}, "admin")
        assert response.status_code == 400, reason
        assert error_of(response)["details"]["field"] == "reason"
        retired = api.client.delete(
            f"/v1/hashes/{hash_id}", query_string={"reason": reason}, headers=api.auth("admin")
        )
        assert retired.status_code == 400 and error_of(retired)["details"]["field"] == "reason"
    kept = "duplicate of #1\r\n\tsee the ticket"  # free text keeps tabs and line breaks
    response = api.post("/v1/hashes/reject", {"ids": [hash_id], "reason": kept}, "admin")
    assert response.status_code == 200, response.json
    history = api.get(f"/v1/hashes/{hash_id}/history", role="admin").json
    assert history is not None and history["transitions"][-1]["reason"] == kept


def hash_item(**fields: Any) -> dict[str, Any]:
    return {"hashes": [{"signal_type": "pdq", "value": "0" * 64, **fields}]}


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    ("/v1/hashes", hash_item(reference="a\x00"), "reference"),
    ("/v1/hashes", hash_item(labels=["a\tb"]), "labels[0]"),
    ("/v1/labels", {"name": "weapons", "description": "guns\x00"}, "description"),
    ("/v1/labels", {"name": "weap\x00ons", "description": "guns"}, "name"),
    ("/v1/incidents", {"name": "Attack\x00"}, "name"),
    ("/v1/incidents", {"name": "Attack", "description": "x\x01"}, "description"),
    ("/v1/match", {"queries": [{"signal_type": "pd\x00q", "value": "0" * 64}]}, "signal_type"),
    ("/v1/match", {"queries": [{"signal_type": "pdq", "value": "0" * 63 + "\x00"}]}, "value"),
    ("/v1/match", {"queries": [{"signal_type": "vpdq", "value": "0,100,\x00"}]}, "value"),
]


def test_every_request_model_refuses_control_characters(api: Api) -> None:
    for path, body, field in REFUSED:
        response = api.post(path, body, role="admin")
        assert response.status_code == 400, (path, response.json)
        assert error_of(response)["details"]["field"] == field, path
    hash_id = api_hash(api, Status.ACTIVE)
    response = api.post(f"/v1/hashes/{hash_id}/feedback", {"kind": "agree", "note": "ok\x00"})
    assert response.status_code == 400 and error_of(response)["details"]["field"] == "note"


def test_the_store_refuses_a_member_name_with_a_control_character(store: Store) -> None:
    for name in ("A\x00", "A\x7f", "A\tB"):
        with pytest.raises(InvalidInput) as caught:
            store.members.create(name, Role.MEMBER)
        assert caught.value.field == "name"
    assert store.members.all() == []


# ---- control characters: the console -----------------------------------------------


def test_a_console_member_name_with_a_nul_is_400_naming_the_field(console: Console) -> None:
    console.login("admin")
    response = console.post("/console/members", {"name": "Platform\x00N", "role": "member"})
    assert response.status_code == 400
    assert "name: control character U+0000" in response.text
    assert "Platform" not in [m.name[:8] for m in console.db.store.members.all()]


def test_a_console_name_with_a_line_break_is_refused_by_the_member_rules(
    console: Console,
) -> None:
    console.login("admin")
    response = console.post("/console/members", {"name": "Platform\nN", "role": "member"})
    assert response.status_code == 302
    assert "must not contain control characters" in console.client.get("/console/members").text


def test_a_console_reason_with_a_control_character_is_400_naming_the_field(
    console: Console,
) -> None:
    member = console.db.store.members.by_name("test-member")
    new = NewHash(PDQ.name, bytes(32), (), 90)
    (added,) = console.db.store.hashes.add(member.id, [new], Status.PENDING)
    console.login("admin")
    for reason in HOSTILE:
        for path, data in [
            ("/console/review", {"act": f"reject:{added.id}", "reason": reason}),
            (f"/console/hashes/{added.id}/retire", {"reason": reason}),
            (f"/console/disputes/{added.id}", {"resolution": "retire", "reason": reason}),
        ]:
            response = console.post(path, data)
            assert response.status_code == 400, (path, reason)
            assert "reason: control character" in response.text
    assert console.db.store.hashes.get(added.id).status is Status.PENDING


# ---- ids beyond 64 bits ------------------------------------------------------------


def test_console_ids_beyond_64_bits_are_404_in_paths_and_refused_in_forms(
    console: Console,
) -> None:
    console.login("admin")
    for path in (
        f"/console/hashes/{HUGE}",
        f"/console/hashes/{TOO_BIG}",
        f"/console/members/{HUGE}",
        f"/console/imports/{HUGE}",
        f"/console/imports/{HUGE}/status",
    ):
        assert console.client.get(path).status_code == 404, path
    for path in (f"/console/disputes/{HUGE}", f"/console/members/{HUGE}/keys/1/revoke"):
        assert console.post(path, {"resolution": "keep", "reason": "x"}).status_code == 404
    console.post("/console/review", {"act": "approve", "ids": [TOO_BIG]})
    assert "is not a hash id" in console.client.get("/console/review").text
    console.post("/console/review", {"act": f"approve:{HUGE}"})
    assert "is not a hash id" in console.client.get("/console/review").text
    assert console.client.get(f"/console/review?after={HUGE}").status_code == 200
    report = console.client.get(f"/console/reports?member={HUGE}")
    assert report.status_code == 400 and "is not a member id" in report.text
    assert console.client.get(f"/console/reports.csv?member={HUGE}").status_code == 400


# ---- client-supplied times ---------------------------------------------------------


def outcome(uploaded: str, matched: str | None = None) -> dict[str, str]:
    acted = datetime.now(UTC).isoformat()
    return {
        "action": "removed",
        "uploaded_at": uploaded,
        "matched_at": matched or acted,
        "actioned_at": acted,
    }


def test_an_outcome_before_2000_or_in_the_future_is_400_naming_the_field(api: Api) -> None:
    hash_id = api_hash(api, Status.ACTIVE)
    for body, field in [
        (outcome("0001-01-01T00:00:00Z"), "uploaded_at"),
        (outcome("1999-12-31T23:59:59Z"), "uploaded_at"),
        (outcome((datetime.now(UTC) + timedelta(days=1)).isoformat()), "uploaded_at"),
        (outcome("2024-01-01T00:00:00Z", "0001-01-01T00:00:00+00:00"), "matched_at"),
    ]:
        response = api.post(f"/v1/hashes/{hash_id}/outcomes", body)
        assert response.status_code == 400, response.json
        assert error_of(response)["details"]["field"] == field
    sane = api.post(f"/v1/hashes/{hash_id}/outcomes", outcome("2024-01-01T00:00:00Z"))
    assert sane.status_code == 201, sane.json


def test_incident_and_expiry_times_in_year_0001_are_400(api: Api) -> None:
    ancient = "0001-01-01T00:00:00Z"
    opened = api.post("/v1/incidents", {"name": "Attack", "started_at": ancient}, "admin")
    assert opened.status_code == 400 and error_of(opened)["details"]["field"] == "started_at"
    incident = api.post("/v1/incidents", {"name": "Attack"}, "admin").json
    assert incident is not None
    closed = api.post(f"/v1/incidents/{incident['id']}/close", {"ended_at": ancient}, "admin")
    assert closed.status_code == 400 and error_of(closed)["details"]["field"] == "ended_at"
    hash_id = api_hash(api, Status.ACTIVE)
    expiry = api.client.put(
        f"/v1/hashes/{hash_id}/expiry", json={"expires_at": ancient}, headers=api.auth("admin")
    )
    assert expiry.status_code == 400 and error_of(expiry)["details"]["field"] == "expires_at"


# ---- the last admin key ------------------------------------------------------------


def test_the_last_admin_key_cannot_be_revoked_nor_the_last_admin_disabled(store: Store) -> None:
    admin, first = store.members.create("Admin", Role.ADMIN)
    member, own = store.members.create("Platform", Role.MEMBER)
    store.members.revoke_key(member.id, own.key.id)  # a member's keys are no concern
    second = store.members.issue_key(admin.id)
    store.members.revoke_key(admin.id, first.key.id)  # one admin key is left: fine
    with pytest.raises(Conflict):
        store.members.revoke_key(admin.id, second.key.id)
    with pytest.raises(Conflict):
        store.members.disable(admin.id)
    assert store.members.authenticate(second.secret).member.id == admin.id
    assert store.members.get(admin.id).disabled_at is None


def test_an_admin_may_go_once_another_admin_holds_a_valid_key(store: Store) -> None:
    admin, key = store.members.create("Admin", Role.ADMIN)
    other, _ = store.members.create("Other admin", Role.ADMIN)
    store.members.revoke_key(admin.id, key.key.id)
    with pytest.raises(Conflict):
        store.members.disable(other.id)  # the only admin with a valid key now
    store.members.issue_key(admin.id)
    assert store.members.disable(other.id).disabled_at is not None


def test_expired_keys_and_disabled_admins_do_not_count(store: Store) -> None:
    admin, key = store.members.create("Admin", Role.ADMIN)
    expiring, _ = store.members.create("Expiring admin", Role.ADMIN)
    store.members.issue_key(expiring.id, overlap=timedelta(seconds=-1))  # old key expired
    (_, fresh) = store.members.keys(expiring.id)
    store.members.revoke_key(expiring.id, fresh.id)  # Admin still holds one
    with pytest.raises(Conflict):
        store.members.revoke_key(admin.id, key.key.id)


def test_revoking_the_last_admin_key_through_the_api_is_409(api: Api) -> None:
    admin = api.store.members.by_name("test-admin")
    (key,) = api.store.members.keys(admin.id)
    response = api.delete(f"/v1/members/{admin.id}/keys/{key.id}")
    assert response.status_code == 409
    assert "no enabled admin would have a valid key" in error_of(response)["message"]
    assert api.get("/v1/members", role="admin").status_code == 200


def test_the_console_refuses_to_revoke_the_last_admin_key(console: Console) -> None:
    console.login("admin")
    admin = console.db.store.members.by_name("test-admin")
    (key,) = console.db.store.members.keys(admin.id)
    response = console.post(f"/console/members/{admin.id}/keys/{key.id}/revoke")
    assert response.status_code == 302
    page = console.client.get(response.headers["Location"]).text
    assert "no enabled admin would have a valid key" in page
    assert console.db.store.members.keys(admin.id)[0].revoked_at is None


# ---- console sessions --------------------------------------------------------------


def session_cookie(response: Any) -> str:
    (cookie,) = [
        c for c in response.headers.getlist("Set-Cookie") if c.startswith("hashdb_console=")
    ]
    return str(cookie)


def test_a_cookie_copied_before_logout_is_worthless_after_it(console: Console) -> None:
    console.login("admin")
    copied = console.client.get_cookie("hashdb_console", path="/console")
    assert copied is not None
    assert console.client.get("/console/dashboard").status_code == 200
    assert console.post("/console/logout").status_code == 302
    thief = console.app.test_client()
    thief.set_cookie("hashdb_console", copied.value, path="/console")
    response = thief.get("/console/dashboard")
    assert response.status_code == 302 and "/console/login" in response.headers["Location"]


def test_the_session_cookie_is_secure_over_https_only(console: Console) -> None:
    token = console.token()
    plain = console.client.post(
        "/console/login", data={"key": console.keys["admin"], "csrf_token": token}
    )
    cookie = session_cookie(plain)
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    secure = console.app.test_client()
    page = secure.get("/console/login", base_url="https://console.example").text
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found
    response = secure.post(
        "/console/login",
        data={"key": console.keys["admin"], "csrf_token": found.group(1)},
        base_url="https://console.example",
    )
    cookie = session_cookie(response)
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
