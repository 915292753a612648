"""End to end: the real `hashdb serve` (gunicorn, two workers) over HTTP.

One server per backend runs the whole story a member platform lives through:
contribute, match (single, batch, dihedral, media), retire, wrong keys and roles,
a revoked key, the rate limit, an oversized body, corrupt uploads, malformed
JSON, and the metrics that count it all. Requests land on either worker, so each
claim about "every worker" is checked with repeated requests.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from api_server import Server, start_server

from hashdb.store import Role, Store

pytestmark = pytest.mark.slow

SYNC = 0.5  # seconds: HASHDB_SYNC_INTERVAL of the server under test
UPLOAD_LIMIT = 1_000_000


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[Server]:
    started = start_server(
        db_url,
        tmp_path,
        sync_interval=SYNC,
        max_upload_bytes=UPLOAD_LIMIT,
        rate_limit_per_minute=600,
        rate_limit_burst=40,
    )
    yield started
    started.stop()


@pytest.fixture
def keys(db_url: str) -> Iterator[dict[str, str]]:
    store = Store.open(db_url, migrate_schema=False)
    out = {
        name: store.members.create(name, role)[1].secret
        for name, role in (
            ("admin-e2e", Role.ADMIN),
            ("member-e2e", Role.MEMBER),
            ("limited-e2e", Role.MEMBER),
            ("revoked-e2e", Role.MEMBER),
        )
    }
    yield out
    store.close()


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def eventually(check: Callable[[], bool], within: float) -> float:
    """Seconds until `check()` holds; fails if it does not within `within`."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < within, f"not true within {within}s"
        time.sleep(0.05)
    return time.monotonic() - start


def test_the_member_story_end_to_end(
    server: Server, keys: dict[str, str], db_url: str, testdata: Path
) -> None:
    url, member, admin = server.url, bearer(keys["member-e2e"]), bearer(keys["admin-e2e"])
    session = requests.Session()
    session.request = functools.partial(session.request, timeout=30)  # type: ignore[method-assign]

    def match(*queries: dict[str, Any], headers: dict[str, str] = member) -> list[Any]:
        r = session.post(f"{url}/v1/match", json={"queries": list(queries)}, headers=headers)
        assert r.status_code == 200, r.text
        return r.json()["results"]  # type: ignore[no-any-return]

    # Contribute a batch; every worker matches it within the sync interval.
    values = [random.Random(i).randbytes(32).hex() for i in range(3)]
    added = session.post(
        f"{url}/v1/hashes",
        json={
            "hashes": [
                {"signal_type": "pdq", "value": v, "labels": ["attack_footage"]} for v in values
            ]
        },
        headers=member,
    )
    assert added.status_code == 201, added.text
    ids = [h["id"] for h in added.json()["hashes"]]
    probe = {"signal_type": "pdq", "value": values[0]}
    eventually(lambda: all(match(probe)[0]["matches"] for _ in range(6)), within=SYNC + 2)

    # Single and batch.
    (single,) = match(probe)
    assert [m["id"] for m in single["matches"]] == [ids[0]]
    batch = match(*({"signal_type": "pdq", "value": v} for v in reversed(values)))
    assert [r["matches"][0]["id"] for r in batch] == list(reversed(ids))

    # Media: contribute images, match a near-duplicate and (dihedral) a rotated copy.
    bridge_mods, dih = testdata / "pdq" / "bridge-mods", testdata / "pdq" / "reference" / "dih"
    photo = (bridge_mods / "square-256x256.jpg").read_bytes()
    bridge, turned = (dih / "bridge-1-original.jpg").read_bytes(), (dih / "bridge-2-rotate-90.jpg")
    media_ids = []
    for image in (photo, bridge):
        r = session.post(f"{url}/v1/media", files={"file": image}, headers=member)
        assert r.status_code == 201, r.text
        media_ids.append(r.json()["added"][0]["id"])

    def media_match(image: bytes, **form: str) -> list[Any]:
        r = session.post(f"{url}/v1/match/media", files={"file": image}, data=form, headers=member)
        assert r.status_code == 200, r.text
        pdq = next(x for x in r.json()["results"] if x["signal_type"] == "pdq")
        return pdq["matches"]  # type: ignore[no-any-return]

    small = (bridge_mods / "square-128x128.jpg").read_bytes()
    # (All of these are edits of one bridge photo, so matches may include both.)
    eventually(lambda: media_ids[0] in {m["id"] for m in media_match(small)}, SYNC + 2)
    rotated = turned.read_bytes()
    assert media_ids[1] not in {m["id"] for m in media_match(rotated)}
    hits = {m["id"]: m for m in media_match(rotated, dihedral="true")}
    assert hits[media_ids[1]]["variant"] is not None

    # Retire: no worker matches it any more, from the very next request.
    assert session.delete(f"{url}/v1/hashes/{ids[0]}", headers=admin).status_code == 200
    assert all(match(probe)[0]["matches"] == [] for _ in range(8))

    # Wrong keys and roles.
    assert session.post(f"{url}/v1/match", json={"queries": [probe]}).status_code == 401
    assert session.get(f"{url}/v1/members", headers=member).status_code == 403

    # A revoked key stops working at once on every worker.
    revoked = bearer(keys["revoked-e2e"])
    assert session.get(f"{url}/v1/labels", headers=revoked).status_code == 200
    store = Store.open(db_url, migrate_schema=False)
    try:
        who = store.members.by_name("revoked-e2e")
        (key,) = store.members.keys(who.id)
        r = session.delete(f"{url}/v1/members/{who.id}/keys/{key.id}", headers=admin)
        assert r.status_code == 200
    finally:
        store.close()
    statuses = {requests.get(f"{url}/v1/labels", headers=revoked).status_code for _ in range(8)}
    assert statuses == {401}

    # Bad input over the wire: malformed JSON, corrupt and oversized uploads.
    r = session.post(
        f"{url}/v1/match", data=b"{nope", headers=member | {"Content-Type": "application/json"}
    )
    assert (r.status_code, r.json()["error"]["details"]["field"]) == (400, "body")
    r = session.post(f"{url}/v1/match/media", files={"file": bridge[:5000]}, headers=member)
    assert (r.status_code, r.json()["error"]["code"]) == (422, "media_error")
    r = session.post(f"{url}/v1/match/media", files={"file": b"GIF89a" + bytes(64)}, headers=member)
    assert r.status_code in (415, 422)
    assert set(r.json()["error"]) == {"code", "message", "details"}
    # A fresh connection: after a 413 gunicorn drains at most 64 KiB of the unread body
    # and then closes the connection, so a client must not reuse it.
    big = bytes(UPLOAD_LIMIT + 1)
    r = requests.post(f"{url}/v1/match/media", files={"file": big}, headers=member)
    assert (r.status_code, r.json()["error"]["code"]) == (413, "payload_too_large")

    # The rate limit: a burst of 40 per worker, then 429 with Retry-After.
    limited = bearer(keys["limited-e2e"])
    answers = [session.get(f"{url}/v1/hashes/{ids[1]}", headers=limited) for _ in range(120)]
    refused = [r for r in answers if r.status_code == 429]
    assert refused, [r.status_code for r in answers]
    assert int(refused[0].headers["Retry-After"]) >= 1

    # Metrics add up every worker's requests.
    text = session.get(f"{url}/metrics").text
    assert (
        'hashdb_http_requests_total{endpoint="matching.match",method="POST",status="200"}' in text
    )
    assert "hashdb_index_size" in text
    assert 'hashdb_matches_total{signal_type="pdq"}' in text
