"""Administration: members, keys and retiring hashes (admin only)."""

from __future__ import annotations

import logging
import random
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from api_fixtures import Api

pytest_plugins = ["api_fixtures"]


def test_an_admin_creates_a_member_whose_key_works_at_once(api: Api) -> None:
    response = api.post("/v1/members", {"name": "Platform X", "role": "member"}, "admin")
    assert response.status_code == 201
    body = response.json
    assert body is not None
    assert body["member"]["name"] == "Platform X"
    assert body["member"]["role"] == "member"
    secret = body["key"]["secret"]
    assert secret.startswith("hdb_")
    assert body["key"]["prefix"] == secret[4:12]
    check = api.client.get("/v1/hashes/1", headers={"Authorization": f"Bearer {secret}"})
    assert check.status_code == 404  # authenticated; there is no hash 1
    names = [m["name"] for m in api.get("/v1/members", "admin").json["members"]]  # type: ignore[index]
    assert "Platform X" in names


def test_a_duplicate_member_name_is_409(api: Api) -> None:
    api.post("/v1/members", {"name": "Twice"}, "admin")
    response = api.post("/v1/members", {"name": "Twice"}, "admin")
    assert response.status_code == 409
    assert response.json["error"]["code"] == "conflict"  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "x", "role": "root"}, "role"),
        ({}, "name"),
    ],
)
def test_a_bad_member_is_400_naming_the_field(api: Api, body: dict[str, str], field: str) -> None:
    response = api.post("/v1/members", body, "admin")
    assert response.status_code == 400
    assert response.json["error"]["details"]["field"] == field  # type: ignore[index]


def test_keys_of_an_unknown_member_are_404(api: Api) -> None:
    assert api.get("/v1/members/9999", "admin").status_code == 404
    assert api.post("/v1/members/9999/keys", {}, "admin").status_code == 404
    assert api.delete("/v1/members/9999/keys/1").status_code == 404
    member = api.store.members.by_name("test-member")
    assert api.delete(f"/v1/members/{member.id}/keys/9999").status_code == 404


def test_retiring_a_hash_is_logged_and_shows_its_new_status(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    value = random.Random(1).randbytes(32).hex()
    (hash_id,) = api.add({"signal_type": "pdq", "value": value})
    with caplog.at_level(logging.INFO, logger="api.vetting"):
        response = api.delete(f"/v1/hashes/{hash_id}")
    assert response.status_code == 200
    assert response.json["status"] == "retired"  # type: ignore[index]
    assert f"hash {hash_id} (pdq) retired by member" in caplog.text
    assert api.get(f"/v1/hashes/{hash_id}").json["status"] == "retired"  # type: ignore[index]
    assert api.store.changes.since(0)[-1].hash_id == hash_id


def test_retiring_an_unknown_hash_is_404(api: Api) -> None:
    assert api.delete("/v1/hashes/777").status_code == 404
