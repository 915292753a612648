"""HTTP conventions a member's client can rely on: rate-limit fields and ETags.

Every answer to a keyed request that was counted against the key's request bucket
says where the bucket stands, in the three fields of the IETF draft "RateLimit
header fields for HTTP" (`RateLimit-Limit`, `-Remaining`, `-Reset`); every 429
says `Retry-After`. A hash read carries a strong ETag of what it shows, and
`If-None-Match` with that tag is answered 304 with no body.
"""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING, Any

import pytest

from hashdb.consortium import OutOfRequests, Quota
from hashdb.consortium.ratelimit import RateLimiter
from hashdb.settings import Settings

if TYPE_CHECKING:
    from api_fixtures import Api, MakeApi
    from werkzeug.test import TestResponse

pytest_plugins = ["api_fixtures"]

FIELDS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


def pdq(seed: int) -> dict[str, Any]:
    return {"signal_type": "pdq", "value": random.Random(seed).randbytes(32).hex()}


def fields(response: TestResponse) -> tuple[int, int, int]:
    limit, remaining, reset = (int(response.headers[name]) for name in FIELDS)
    return limit, remaining, reset


# ---- the request bucket, read as it is taken ----------------------------------------


def test_taking_a_token_reads_the_bucket_it_leaves() -> None:
    t = [0.0]
    limiter = RateLimiter(per_minute=6, burst=3, clock=lambda: t[0])  # a token per 10 s
    assert limiter.take(1) == Quota(limit=3, remaining=2, reset=10)
    assert limiter.take(1) == Quota(limit=3, remaining=1, reset=20)
    t[0] = 5.0  # half a token back: not a whole request yet, and 5 s less to wait
    assert limiter.take(1) == Quota(limit=3, remaining=0, reset=25)
    with pytest.raises(OutOfRequests) as refused:
        limiter.take(1)
    assert refused.value.retry_after == 5  # half a token there, the other half in 5 s
    assert refused.value.quota == Quota(limit=3, remaining=0, reset=25)
    assert refused.value.code == "rate_limited" and refused.value.http_status == 429
    t[0] = 100.0
    assert limiter.take(1) == Quota(limit=3, remaining=2, reset=10)  # full, then one taken
    assert limiter.take(2) == Quota(limit=3, remaining=2, reset=10)  # every key its own


def test_no_limit_means_no_bucket_to_describe() -> None:
    assert RateLimiter(per_minute=0, burst=5).take(1) is None


# ---- RateLimit fields over HTTP -----------------------------------------------------


def test_keyed_answers_carry_the_rate_limit_fields_counting_down(make_api: MakeApi) -> None:
    api = make_api(rate_limit_per_minute=1, rate_limit_burst=3)  # a request a minute back
    first, second, third = (api.get("/v1/hashes/999") for _ in range(3))
    assert [r.status_code for r in (first, second, third)] == [404, 404, 404]
    assert fields(first) == (3, 2, 60)
    assert fields(second) == (3, 1, 120)
    assert fields(third) == (3, 0, 180)
    limited = api.get("/v1/hashes/999")
    assert limited.status_code == 429
    assert limited.json["error"]["code"] == "rate_limited"  # type: ignore[index]
    assert limited.headers["Retry-After"] == "60"
    assert fields(limited) == (3, 0, 180)
    # Each key has its own bucket.
    assert fields(api.get("/v1/hashes", "admin")) == (3, 2, 60)


def test_successful_answers_describe_the_default_bucket(api: Api) -> None:
    (hash_id,) = api.add(pdq(1))
    response = api.get(f"/v1/hashes/{hash_id}")
    assert response.status_code == 200
    limit, remaining, reset = fields(response)
    assert limit == Settings.model_fields["rate_limit_burst"].default == 1000
    assert 0 <= remaining < limit and reset >= 0


def test_unkeyed_refused_and_unmetered_answers_have_no_rate_limit_fields(
    make_api: MakeApi,
) -> None:
    api = make_api(rate_limit_per_minute=1, rate_limit_burst=3)
    assert not set(FIELDS) & set(api.client.get("/v1/hashes/1").headers.keys())  # 401
    assert not set(FIELDS) & set(api.client.get("/healthz").headers.keys())  # public
    forbidden = api.get("/v1/review")  # 403 comes before the rate limit: nothing counted
    assert forbidden.status_code == 403
    assert not set(FIELDS) & set(forbidden.headers.keys())
    assert fields(api.get("/v1/hashes/999")) == (3, 2, 60)


def test_with_the_limit_off_no_rate_limit_fields_are_sent(make_api: MakeApi) -> None:
    api = make_api(rate_limit_per_minute=0)
    for _ in range(3):
        response = api.get("/v1/hashes")
        assert response.status_code == 200
        assert not set(FIELDS) & set(response.headers.keys())


def test_an_index_work_refusal_says_retry_after_and_where_the_request_bucket_stands(
    make_api: MakeApi,
) -> None:
    api = make_api(
        rate_limit_per_minute=1,
        rate_limit_burst=5,
        key_cost_per_second=1.0,
        key_cost_burst=2,
        max_request_cost=2,
    )
    queries = {"queries": [pdq(2), pdq(3)]}  # 2 units: the whole index-work bucket
    assert api.post("/v1/match", queries).status_code == 200
    limited = api.post("/v1/match", queries)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert fields(limited) == (5, 3, 120)  # the request itself was counted


# ---- ETags on hash reads ------------------------------------------------------------


def read(api: Api, hash_id: int, tag: str | None = None, role: str = "member") -> TestResponse:
    headers = api.auth(role) | ({"If-None-Match": tag} if tag is not None else {})
    return api.client.get(f"/v1/hashes/{hash_id}", headers=headers)


def etag(response: TestResponse) -> str:
    assert response.status_code == 200, response.get_data(as_text=True)
    tag = response.headers["ETag"]
    assert tag.startswith('"') and tag.endswith('"'), tag  # strong: no W/
    return tag


def test_a_hash_read_has_a_strong_etag_of_its_body_stable_across_reads(api: Api) -> None:
    (hash_id,) = api.add(pdq(4))
    first, second = read(api, hash_id), read(api, hash_id)
    assert etag(first) == etag(second)
    assert etag(first) == f'"{hashlib.sha256(first.get_data()).hexdigest()}"'
    # The contributor and an admin see the same answer, so the same tag.
    assert etag(read(api, hash_id, role="admin")) == etag(first)


def test_if_none_match_with_the_current_tag_is_304_without_a_body(api: Api) -> None:
    (hash_id,) = api.add(pdq(5))
    tag = etag(read(api, hash_id))
    for sent in (tag, f"W/{tag}", f'"other", {tag}', "*"):
        unchanged = read(api, hash_id, sent)
        assert unchanged.status_code == 304, sent
        assert unchanged.get_data() == b""
        assert unchanged.headers["ETag"] == tag
        assert "RateLimit-Remaining" in unchanged.headers
    stale = read(api, hash_id, '"0000"')
    assert stale.status_code == 200 and etag(stale) == tag
    assert stale.json["id"] == hash_id  # type: ignore[index]
    # A conditional read of a hash the caller may not see is still a 404.
    assert read(api, 10**9, "*").status_code == 404


def test_the_etag_changes_when_what_the_answer_shows_changes(api: Api) -> None:
    body = {"name": "etag_test_label", "description": "Labels the ETag tests' hashes."}
    assert api.post("/v1/labels", body, "admin").status_code == 201
    (hash_id,) = api.add({**pdq(6), "labels": ["etag_test_label"]})
    pending = etag(read(api, hash_id))

    assert api.post("/v1/hashes/approve", {"ids": [hash_id]}, "admin").status_code == 200
    after_approval = read(api, hash_id, pending)
    assert after_approval.status_code == 200
    assert after_approval.json["status"] == "active"  # type: ignore[index]
    active = etag(after_approval)
    assert active != pending

    later = "2099-01-01T00:00:00Z"
    expiry = api.client.put(
        f"/v1/hashes/{hash_id}/expiry", json={"expires_at": later}, headers=api.auth("member")
    )
    assert expiry.status_code == 200, expiry.json
    expiring = etag(read(api, hash_id, active))
    assert expiring != active

    # Deprecating the label in the taxonomy leaves the hash's answer (and tag) as it
    # was: the hash keeps its label.
    deprecated = api.client.patch(
        "/v1/labels/etag_test_label", json={"deprecated": True}, headers=api.auth("admin")
    )
    assert deprecated.status_code == 200
    assert read(api, hash_id, expiring).status_code == 304

    retired = api.post("/v1/hashes/retire", {"ids": [hash_id], "reason": "test"}, "admin")
    assert retired.status_code == 200
    after_retirement = read(api, hash_id, expiring)
    assert after_retirement.json["status"] == "retired"  # type: ignore[index]
    assert etag(after_retirement) not in {pending, active, expiring}


def test_another_members_view_has_its_own_tag(api: Api) -> None:
    (hash_id,) = api.add(pdq(7), role="admin")  # an admin's contribution is live at once
    own, other = read(api, hash_id, role="admin"), read(api, hash_id)
    assert own.json["contributor_id"] is not None  # type: ignore[index]
    assert other.json["contributor_id"] is None  # type: ignore[index]
    assert etag(own) != etag(other)
    assert read(api, hash_id, etag(own)).status_code == 200  # not the member's view
    assert read(api, hash_id, etag(other)).status_code == 304
