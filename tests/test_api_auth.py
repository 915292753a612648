"""Keys and roles: every /v1 endpoint needs a valid key of an admitted role.

401 for a missing, malformed, unknown, revoked or expired key; 403 for a valid key
whose role may not call the endpoint; 429 with Retry-After past the rate limit.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from hashdb.consortium.ratelimit import RateLimiter
from hashdb.errors import RateLimited

if TYPE_CHECKING:
    from api_fixtures import Api, MakeApi

pytest_plugins = ["api_fixtures"]

# (method, path, roles admitted besides admin)
V1_ENDPOINTS = [
    ("POST", "/v1/match", {"member"}),
    ("POST", "/v1/match/media", {"member"}),
    ("POST", "/v1/hashes", {"member"}),
    ("POST", "/v1/media", {"member"}),
    ("GET", "/v1/hashes", {"member"}),
    ("GET", "/v1/hashes/1", {"member"}),
    ("DELETE", "/v1/hashes/1", set()),
    ("GET", "/v1/review", set()),
    ("POST", "/v1/hashes/approve", set()),
    ("POST", "/v1/hashes/reject", set()),
    ("POST", "/v1/hashes/retire", set()),
    ("POST", "/v1/hashes/1/resolve", set()),
    ("PUT", "/v1/hashes/1/expiry", {"member"}),
    ("PUT", "/v1/hashes/1/labels", {"member"}),
    ("GET", "/v1/hashes/1/history", set()),
    ("POST", "/v1/hashes/1/feedback", {"member"}),
    ("GET", "/v1/hashes/1/feedback", {"member"}),
    ("POST", "/v1/hashes/1/outcomes", {"member"}),
    ("GET", "/v1/labels", {"member", "ops"}),
    ("POST", "/v1/labels", set()),
    ("PATCH", "/v1/labels/attack_footage", set()),
    ("GET", "/v1/incidents", set()),
    ("POST", "/v1/incidents", set()),
    ("POST", "/v1/incidents/1/close", set()),
    ("GET", "/v1/export", {"member"}),
    ("GET", "/v1/reports/transparency", {"member"}),
    ("GET", "/v1/audit", set()),
    ("GET", "/v1/audit/verify", set()),
    ("GET", "/v1/audit/head", set()),
    ("POST", "/v1/imports", {"ops"}),
    ("GET", "/v1/imports", {"ops"}),
    ("GET", "/v1/imports/1", {"ops"}),
    ("GET", "/v1/members", set()),
    ("POST", "/v1/members", set()),
    ("GET", "/v1/members/1", set()),
    ("POST", "/v1/members/1/keys", set()),
    ("DELETE", "/v1/members/1/keys/1", set()),
]


def test_the_table_above_lists_every_v1_route(api: Api) -> None:
    routes = {
        (method, rule.rule)
        for rule in api.app.url_map.iter_rules()
        if rule.rule.startswith("/v1")
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }
    assert len(routes) == len(V1_ENDPOINTS)


BAD_HEADERS = [None, "Bearer", "Basic dXNlcjpwYXNz", "Bearer hdb_not-a-real-key", "Bearer x"]


def test_a_missing_or_bad_key_gets_401_everywhere(api: Api) -> None:
    # Refused before any view runs, so one app serves every endpoint.
    for method, path, _ in V1_ENDPOINTS:
        for header in BAD_HEADERS:
            headers = {"Authorization": header} if header else {}
            response = api.client.open(path, method=method, headers=headers, json={})
            assert response.status_code == 401, (method, path, header)
            assert response.json["error"]["code"] == "unauthenticated"  # type: ignore[index]
            assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_role_not_admitted_gets_403(api: Api) -> None:
    for method, path, roles in V1_ENDPOINTS:
        for role in {"member", "ops"} - roles:
            response = api.client.open(path, method=method, headers=api.auth(role), json={})
            assert response.status_code == 403, (method, path, role, response.json)
            assert response.json["error"]["code"] == "forbidden"  # type: ignore[index]


@pytest.mark.parametrize(("method", "path", "roles"), V1_ENDPOINTS)
def test_admin_and_admitted_roles_get_past_auth(
    api: Api, method: str, path: str, roles: set[str]
) -> None:
    for role in {"admin"} | roles:
        response = api.client.open(path, method=method, headers=api.auth(role), json={})
        assert response.status_code not in (401, 403), (role, response.json)


def test_a_revoked_key_fails_on_its_next_request(api: Api) -> None:
    member = api.store.members.by_name("test-member")
    assert api.get("/v1/hashes/999").status_code == 404
    (key,) = api.store.members.keys(member.id)
    response = api.delete(f"/v1/members/{member.id}/keys/{key.id}")
    assert response.status_code == 200
    assert response.json["key"]["revoked_at"] is not None  # type: ignore[index]
    refused = api.get("/v1/hashes/999")
    assert refused.status_code == 401
    assert "revoked" in refused.json["error"]["message"]  # type: ignore[index]


def status_with(api: Api, secret: str) -> int:
    return api.client.get(
        "/v1/hashes/999", headers={"Authorization": f"Bearer {secret}"}
    ).status_code


def test_rotation_with_an_overlap_keeps_the_old_key_valid_meanwhile(api: Api) -> None:
    member = api.store.members.by_name("test-member")
    rotated = api.post(f"/v1/members/{member.id}/keys", {"overlap_seconds": 3600}, "admin")
    assert rotated.status_code == 201
    new = rotated.json["key"]["secret"]  # type: ignore[index]
    assert status_with(api, api.keys["member"]) == 404  # 404: authenticated, no hash 999
    assert status_with(api, new) == 404
    old_key = next(k for k in api.store.members.keys(member.id) if k.expires_at is not None)
    assert old_key.prefix == api.keys["member"][4:12]


def test_rotation_without_overlap_ends_the_old_key_at_once(api: Api) -> None:
    member = api.store.members.by_name("test-member")
    rotated = api.post(f"/v1/members/{member.id}/keys", {"overlap_seconds": 0}, "admin")
    assert status_with(api, api.keys["member"]) == 401
    assert status_with(api, rotated.json["key"]["secret"]) == 404  # type: ignore[index]


def test_issuing_a_key_without_overlap_leaves_the_other_keys_valid(api: Api) -> None:
    member = api.store.members.by_name("test-member")
    issued = api.post(f"/v1/members/{member.id}/keys", {}, "admin")
    assert status_with(api, api.keys["member"]) == 404
    assert status_with(api, issued.json["key"]["secret"]) == 404  # type: ignore[index]


def test_keys_are_shown_once_and_listed_by_prefix_only(api: Api) -> None:
    member = api.store.members.by_name("test-member")
    detail = api.get(f"/v1/members/{member.id}", "admin").json
    assert detail is not None
    assert all("secret" not in k for k in detail["keys"])
    assert api.keys["member"][4:12] in {k["prefix"] for k in detail["keys"]}


def test_past_the_rate_limit_a_key_gets_429_with_retry_after(make_api: MakeApi) -> None:
    api = make_api(rate_limit_per_minute=60, rate_limit_burst=3)
    statuses = [api.get("/v1/hashes/999").status_code for _ in range(4)]
    assert statuses == [404, 404, 404, 429]
    limited = api.get("/v1/hashes/999")
    assert limited.json["error"]["code"] == "rate_limited"  # type: ignore[index]
    assert limited.headers["Retry-After"] == "1"
    assert limited.json["error"]["details"]["retry_after"] == 1  # type: ignore[index]
    # The limit is per key: another key of the same API is unaffected.
    assert api.get("/v1/hashes/999", "admin").status_code == 404


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_bucket_refills_at_the_configured_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(per_minute=6, burst=2, clock=clock)  # one token per 10 s
    limiter.take(1)
    limiter.take(1)
    with pytest.raises(RateLimited) as exc:
        limiter.take(1)
    assert exc.value.retry_after == 10
    clock.now += 5
    with pytest.raises(RateLimited) as exc:
        limiter.take(1)
    assert exc.value.retry_after == 5
    clock.now += 5
    limiter.take(1)
    clock.now += timedelta(hours=1).total_seconds()
    limiter.take(1)
    limiter.take(1)  # refilled to the burst, not beyond
    with pytest.raises(RateLimited):
        limiter.take(1)


def test_a_zero_rate_disables_the_limit() -> None:
    limiter = RateLimiter(per_minute=0, burst=1)
    for _ in range(100):
        limiter.take(1)
