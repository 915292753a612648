"""Idempotency keys: a retried POST with the same `Idempotency-Key` changes nothing.

Over HTTP, for each POST that creates something: the first request runs, its
retries get the same status and body (marked `Idempotent-Replayed: true`), and the
rows, audit entries, match counts and transparency figures are the same after one
request and after three. The same key on another request is 422, a bad header 400,
a failed request does not burn its key, and keys are per API key. Below the HTTP
layer, the consortium's rules: a claim still running is 409, an abandoned one is
taken over, an expired key is purged and free again.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from media_factory import write_image
from sqlalchemy import func, select, update
from werkzeug.test import TestResponse

from api.context import context
from api.idempotency import HEADER, REPLAYED
from hashdb.consortium import Actor, Consortium, Role
from hashdb.consortium.idempotency import ABANDONED_AFTER, Claim, Fingerprint, Reply
from hashdb.errors import Conflict, IdempotencyKeyReused, InvalidInput
from hashdb.settings import Settings
from hashdb.store import Store
from hashdb.store.schema import idempotency_keys, match_counts, metadata

if TYPE_CHECKING:
    from api_fixtures import Api, MakeApi

pytest_plugins = ["api_fixtures"]


def pdq(seed: int) -> dict[str, Any]:
    return {"signal_type": "pdq", "value": random.Random(seed).randbytes(32).hex()}


def keyed(api: Api, path: str, body: Any, key: str | None, role: str = "member") -> TestResponse:
    headers = api.auth(role) | ({} if key is None else {HEADER: key})
    return api.client.post(path, json=body, headers=headers)


def error(response: TestResponse, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    found: dict[str, Any] = response.json["error"]  # type: ignore[index]
    return found


def period() -> str:
    now = datetime.now(UTC)
    start, end = (now - timedelta(hours=1)).isoformat(), (now + timedelta(hours=1)).isoformat()
    return f"from={start.replace('+', '%2B')}&to={end.replace('+', '%2B')}"


def state(api: Api) -> dict[str, Any]:
    """Everything a request could move: rows of every table (the keys' own aside), the
    audit log's length, the match counts and the transparency report's figures."""
    context(api.app).db.tally.flush()
    with api.store.engine.connect() as conn:
        rows = {
            t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
            for t in metadata.sorted_tables
            if t is not idempotency_keys
        }
        matched = conn.execute(select(func.sum(match_counts.c.count))).scalar_one()
    report = {}
    for role in ("member", "admin"):
        found = api.get(f"/v1/reports/transparency?{period()}", role).json
        assert isinstance(found, dict)
        report[role] = {k: v for k, v in found.items() if k not in ("generated_at", "period")}
    return {"rows": rows, "matched": matched, "report": report}


@pytest.fixture
def active(api: Api) -> int:
    """An active hash that the member has matched once (so match counts are not empty)."""
    (hash_id,) = api.add(pdq(1), role="admin")
    [result] = api.match(pdq(1))
    assert [m["id"] for m in result["matches"]] == [hash_id]
    return hash_id


def _outcome() -> dict[str, str]:
    now = datetime.now(UTC)
    return {
        "action": "removed",
        "uploaded_at": (now - timedelta(minutes=30)).isoformat(),
        "matched_at": (now - timedelta(minutes=20)).isoformat(),
        "actioned_at": now.isoformat(),
    }


def sender(api: Api, what: str, hash_id: int, photo: bytes) -> Callable[[str], TestResponse]:
    """Sends one and the same request of kind `what` each time it is called with a key."""
    outcome = _outcome()

    def send(key: str) -> TestResponse:
        if what == "media":
            data = {"file": (io.BytesIO(photo), "upload.jpg"), "labels": ["manifesto"]}
            headers = api.auth() | {HEADER: key}
            # The test client draws a new multipart boundary for every request.
            return api.client.post(
                "/v1/media", data=data, headers=headers, content_type="multipart/form-data"
            )
        path, body = {
            "hashes": ("/v1/hashes", {"hashes": [pdq(2), {**pdq(3), "labels": ["manifesto"]}]}),
            "feedback": (
                f"/v1/hashes/{hash_id}/feedback",
                {"kind": "disagree", "reason": "wrong_label"},
            ),
            "outcomes": (f"/v1/hashes/{hash_id}/outcomes", outcome),
        }[what]
        return keyed(api, path, body, key)

    return send


@pytest.mark.parametrize("what", ["hashes", "media", "feedback", "outcomes"])
def test_a_retried_post_returns_its_first_answer_and_changes_nothing(
    api: Api, active: int, photo: bytes, what: str
) -> None:
    send = sender(api, what, active, photo)
    before = state(api)
    first = send("retry-1")
    assert first.status_code == 201, first.json
    assert REPLAYED not in first.headers
    once = state(api)
    assert once != before  # the first request did something
    for _ in range(2):
        again = send("retry-1")
        assert (again.status_code, again.json) == (201, first.json)
        assert again.headers[REPLAYED] == "true"
        assert again.mimetype == "application/json"
    assert state(api) == once


def test_outcomes_retried_count_once_in_the_transparency_report(api: Api, active: int) -> None:
    body = _outcome()
    for _ in range(3):
        sent = keyed(api, f"/v1/hashes/{active}/outcomes", body, "take-down-17")
        assert sent.status_code == 201
    report = api.get(f"/v1/reports/transparency?{period()}").json
    assert report is not None and report["outcomes"]["by_action"] == {"removed": 1}


def test_without_the_header_a_post_runs_every_time(api: Api, active: int) -> None:
    for _ in range(2):
        assert keyed(api, f"/v1/hashes/{active}/outcomes", _outcome(), None).status_code == 201
    report = api.get(f"/v1/reports/transparency?{period()}").json
    assert report is not None and report["outcomes"]["by_action"] == {"removed": 2}


def test_the_same_key_on_another_request_is_refused_and_changes_nothing(
    api: Api, active: int
) -> None:
    path = f"/v1/hashes/{active}/feedback"
    assert keyed(api, path, {"kind": "agree"}, "k").status_code == 201
    before = state(api)
    other_body = error(keyed(api, path, {"kind": "false_positive", "content": pdq(9)}, "k"), 422)
    assert other_body["code"] == "idempotency_key_reused"
    assert f"POST {path}" in other_body["message"]
    other_path = keyed(api, f"/v1/hashes/{active}/outcomes", _outcome(), "k")
    assert error(other_path, 422)["code"] == "idempotency_key_reused"
    assert state(api) == before


@pytest.mark.parametrize("bad", ["", "x" * 201, "caf\u00e9", "tab\there", "bell\x07"])
def test_a_bad_idempotency_key_is_400_naming_the_header(api: Api, bad: str) -> None:
    before = state(api)
    refused = error(keyed(api, "/v1/hashes", {"hashes": [pdq(4)]}, bad), 400)
    assert refused["details"]["field"] == HEADER
    assert state(api) == before


def test_the_longest_key_and_any_printable_ascii_are_accepted(api: Api) -> None:
    for key in ("x" * 200, "order 17/#{~}!", "a"):
        first = keyed(api, "/v1/hashes", {"hashes": [pdq(5)]}, key)
        assert first.status_code == 201, first.json


def test_a_failed_request_does_not_burn_its_key(api: Api, active: int) -> None:
    path = f"/v1/hashes/{active}/feedback"
    assert error(keyed(api, path, {"kind": "nonsense"}, "fix-and-retry"), 400)
    assert error(keyed(api, "/v1/hashes/999/feedback", {"kind": "agree"}, "fix-and-retry"), 404)
    fixed = keyed(api, path, {"kind": "agree"}, "fix-and-retry")
    assert fixed.status_code == 201 and REPLAYED not in fixed.headers
    assert keyed(api, path, {"kind": "agree"}, "fix-and-retry").headers[REPLAYED] == "true"


def test_two_keys_may_use_the_same_idempotency_key_independently(api: Api, active: int) -> None:
    path = f"/v1/hashes/{active}/feedback"
    mine = keyed(api, path, {"kind": "agree"}, "shared-string")
    theirs = keyed(api, path, {"kind": "agree"}, "shared-string", role="admin")
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert REPLAYED not in theirs.headers
    assert mine.json["feedback"]["id"] != theirs.json["feedback"]["id"]  # type: ignore[index]
    # Each retry gets its own first answer.
    assert keyed(api, path, {"kind": "agree"}, "shared-string").json == mine.json
    again = keyed(api, path, {"kind": "agree"}, "shared-string", role="admin")
    assert again.json == theirs.json
    listed = api.get(f"/v1/hashes/{active}/feedback", "admin").json
    assert listed is not None and len(listed["feedback"]) == 2


def test_a_retry_while_the_first_request_runs_is_409_and_runs_nothing(api: Api) -> None:
    db = context(api.app).db
    body = json.dumps({"hashes": [pdq(6)]}).encode()
    member = db.members.authenticate(api.keys["member"])
    running = db.idempotency.claim(
        Actor.of(member), "slow", Fingerprint("POST", "/v1/hashes", hashlib.sha256(body).digest())
    )
    assert isinstance(running, Claim)
    before = state(api)
    headers = api.auth() | {HEADER: "slow", "Content-Type": "application/json"}
    busy = error(api.client.post("/v1/hashes", data=body, headers=headers), 409)
    assert busy["code"] == "conflict" and "still running" in busy["message"]
    assert state(api) == before


def test_the_header_is_documented_on_every_post_that_creates_something(api: Api) -> None:
    document = api.get("/openapi.json").json
    assert document is not None
    taking = {
        (path, method)
        for path, methods in document["paths"].items()
        for method, op in methods.items()
        if any(p["name"] == HEADER for p in op.get("parameters", ()))
    }
    assert taking == {
        ("/v1/hashes", "post"),
        ("/v1/media", "post"),
        ("/v1/hashes/{hash_id}/feedback", "post"),
        ("/v1/hashes/{hash_id}/outcomes", "post"),
        ("/v1/imports", "post"),
    }
    op = document["paths"]["/v1/hashes"]["post"]
    [param] = [p for p in op["parameters"] if p["name"] == HEADER]
    assert (param["in"], param["required"]) == ("header", False)
    assert {"409", "422"} <= set(op["responses"])


@pytest.mark.slow
def test_a_retried_import_starts_one_job(make_api: MakeApi, tmp_path: Path) -> None:
    write_image(tmp_path / "root" / "batch" / "one.png", seed=1)
    api = make_api(import_root=tmp_path / "root", import_workers=1)
    body = {"path": "batch", "labels": ["manifesto"]}
    first = keyed(api, "/v1/imports", body, "import-1", role="ops")
    assert first.status_code == 202, first.json
    again = keyed(api, "/v1/imports", body, "import-1", role="ops")
    assert (again.status_code, again.json, again.headers[REPLAYED]) == (202, first.json, "true")
    jobs = api.get("/v1/imports", "ops").json
    assert jobs is not None and [j["id"] for j in jobs["imports"]] == [first.json["id"]]  # type: ignore[index]
    audit = api.get("/v1/audit", "admin").json
    assert audit is not None
    starts = [e for e in audit["entries"] if e["action"] == "import.start"]
    assert len(starts) == 1


# ---- the consortium's rules, below HTTP ---------------------------------------------


@pytest.fixture
def db(store: Store) -> Consortium:
    return Consortium(Settings(sync_interval=0.0, idempotency_hours=1), store)


@pytest.fixture
def caller(db: Consortium) -> Actor:
    _, key = db.store.members.create("Platform A", Role.MEMBER)
    return Actor.of(db.store.members.authenticate(key.secret), "req-1")


ASK = Fingerprint("POST", "/v1/hashes", hashlib.sha256(b"{}").digest())
OK = Reply(201, '{"ok": true}', (("Content-Type", "application/json"),))


def _age(db: Consortium, **columns: datetime) -> None:
    with db.store.engine.begin() as conn:
        conn.execute(update(idempotency_keys).values(**columns))


def test_a_claim_is_exclusive_until_finished_then_answers_from_the_store(
    db: Consortium, caller: Actor
) -> None:
    claim = db.idempotency.claim(caller, "k", ASK)
    assert isinstance(claim, Claim)
    with pytest.raises(Conflict, match="still running"):
        db.idempotency.claim(caller, "k", ASK)
    other = Fingerprint("POST", "/v1/media", ASK.body_sha256)
    with pytest.raises(IdempotencyKeyReused, match="POST /v1/hashes"):
        db.idempotency.claim(caller, "k", other)
    db.idempotency.finish(claim, OK)
    assert db.idempotency.claim(caller, "k", ASK) == OK
    with pytest.raises(IdempotencyKeyReused):
        db.idempotency.claim(caller, "k", other)


@pytest.mark.parametrize("status", [400, 404, 409, 500, 503])
def test_an_answer_that_is_not_a_success_releases_the_key(
    db: Consortium, caller: Actor, status: int
) -> None:
    claim = db.idempotency.claim(caller, "k", ASK)
    assert isinstance(claim, Claim)
    db.idempotency.finish(claim, Reply(status, '{"error": {}}'))
    other = Fingerprint("POST", "/v1/hashes", hashlib.sha256(b"[]").digest())
    assert isinstance(db.idempotency.claim(caller, "k", other), Claim)


def test_an_abandoned_claim_is_taken_over_and_its_owner_can_no_longer_finish_it(
    db: Consortium, caller: Actor
) -> None:
    lost = db.idempotency.claim(caller, "k", ASK)
    assert isinstance(lost, Claim)
    _age(db, created_at=datetime.now(UTC) - ABANDONED_AFTER - timedelta(seconds=1))
    taken = db.idempotency.claim(caller, "k", ASK)
    assert isinstance(taken, Claim) and taken.token != lost.token
    db.idempotency.finish(lost, Reply(201, '"late"'))  # too late: not kept
    db.idempotency.release(lost)  # nor does it release the new claim
    with pytest.raises(Conflict):
        db.idempotency.claim(caller, "k", ASK)
    db.idempotency.finish(taken, OK)
    assert db.idempotency.claim(caller, "k", ASK) == OK


def test_expired_keys_are_purged_by_the_next_claim_and_free_again(
    db: Consortium, caller: Actor
) -> None:
    for key in ("old", "older"):
        claim = db.idempotency.claim(caller, key, ASK)
        assert isinstance(claim, Claim)
        db.idempotency.finish(claim, OK)
    _age(db, expires_at=datetime.now(UTC) - timedelta(seconds=1))
    other = Fingerprint("POST", "/v1/media", ASK.body_sha256)
    assert isinstance(db.idempotency.claim(caller, "old", other), Claim)
    with db.store.engine.connect() as conn:
        left = conn.execute(select(idempotency_keys.c.idempotency_key)).scalars().all()
    assert left == ["old"]


def test_a_key_lasts_the_retention_setting(db: Consortium, caller: Actor) -> None:
    claim = db.idempotency.claim(caller, "k", ASK)
    assert isinstance(claim, Claim)
    with db.store.engine.connect() as conn:
        row = conn.execute(select(idempotency_keys)).mappings().one()
    assert row["expires_at"] - row["created_at"] == timedelta(hours=1)


def test_an_actor_without_a_key_or_a_bad_key_is_refused(db: Consortium, caller: Actor) -> None:
    with pytest.raises(InvalidInput):
        db.idempotency.claim(Actor(caller.member), "k", ASK)
    for bad in ("", "x" * 201, "\u00e9", "\n"):
        with pytest.raises(InvalidInput):
            db.idempotency.claim(caller, bad, ASK)


def test_of_two_requests_racing_for_a_key_exactly_one_runs(db: Consortium, caller: Actor) -> None:
    start = threading.Barrier(2)

    def race() -> str:
        start.wait()
        try:
            return type(db.idempotency.claim(caller, "race", ASK)).__name__
        except Conflict:
            return "Conflict"

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(lambda _: race(), range(2)))
    assert outcomes == ["Claim", "Conflict"]
