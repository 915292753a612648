"""The member client (hashdb.client) and `hashdb remote`: a member's side of the API.

The retry rules and the shape of what is sent (keypoint sets: a contribution's
set, a lookup's set and its mirror image's) are pinned with an httpx MockTransport
(no waiting: the client's `sleep` is recorded); everything else runs against one
real `hashdb serve` on SQLite, started once for the module with a batch limit of 3,
so that batching to the server's limit is exercised with a handful of hashes.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from api_server import Server, start_server
from click.testing import CliRunner
from PIL import Image, ImageOps

from hashdb.cli import main
from hashdb.client import (
    KEY_ENV,
    KEY_FILE_ENV,
    Client,
    Contribution,
    Match,
    MatchQuery,
    RemoteError,
    api_key,
)
from hashdb.errors import Unauthenticated
from hashdb.keypoints.codec import KeypointSet
from hashdb.signals.keypoints import digest
from hashdb.store import Role, Store
from ingest.keypoints import keypoints, query_sets

MAX_BATCH = 3  # the server's HASHDB_MAX_BATCH in this module
LABEL = "attack_footage"


def pdq_hex(seed: int) -> str:
    return f"{random.Random(seed).getrandbits(256):064x}"


def crop(picture: Image.Image, share: float = 0.8) -> Image.Image:
    """The middle of `picture`, `share` of each side."""
    w, h = picture.size
    dx, dy = round(w * (1 - share) / 2), round(h * (1 - share) / 2)
    return picture.crop((dx, dy, w - dx, h - dy))


# ---- retries, keys and errors, against a mock transport ----------------------------


class Recorder:
    """A MockTransport handler answering from a script, keeping every request."""

    def __init__(self, *answers: httpx.Response | Exception) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def mock_client(handler: Recorder, waits: list[float], **kwargs: Any) -> Client:
    return Client(
        "http://hashdb.test",
        key="hdb_test",
        transport=httpx.MockTransport(handler),
        sleep=waits.append,
        **kwargs,
    )


ADDED = {"hashes": [{"index": 0, "signal_type": "pdq", "id": 7, "created": True}]}


def test_a_429_is_retried_after_its_retry_after_with_the_same_idempotency_key() -> None:
    limited = {"error": {"code": "rate_limited", "message": "slow down", "details": {}}}
    handler = Recorder(
        httpx.Response(429, json=limited, headers={"Retry-After": "7"}),
        httpx.Response(201, json=ADDED),
    )
    waits: list[float] = []
    added = mock_client(handler, waits).contribute([("pdq", pdq_hex(1))])
    assert [a.id for a in added] == [7] and added[0].created
    assert waits == [7.0]
    keys = [r.headers["Idempotency-Key"] for r in handler.requests]
    assert len(keys) == 2 and keys[0] == keys[1]
    assert handler.requests[0].headers["Authorization"] == "Bearer hdb_test"


def test_unanswered_and_503_requests_back_off_exponentially_up_to_a_cap() -> None:
    handler = Recorder(
        httpx.ConnectError("refused"),
        httpx.Response(503, json={"error": {"code": "unavailable", "message": "x"}}),
        httpx.ReadError("dropped"),
        httpx.Response(201, json=ADDED),
    )
    waits: list[float] = []
    mock_client(handler, waits, backoff=0.5, max_wait=1.5).contribute([("pdq", pdq_hex(1))])
    assert waits == [0.5, 1.0, 1.5]
    assert len({r.headers["Idempotency-Key"] for r in handler.requests}) == 1


def test_retries_stop_after_the_last_attempt_with_the_servers_error() -> None:
    body = {"error": {"code": "rate_limited", "message": "slow down", "details": {"a": 1}}}
    handler = Recorder(*[httpx.Response(429, json=body, headers={"Retry-After": "1"})] * 3)
    waits: list[float] = []
    with pytest.raises(RemoteError) as caught:
        mock_client(handler, waits, attempts=3).match([("pdq", pdq_hex(1))])
    assert len(handler.requests) == 3 and waits == [1.0, 1.0]
    error = caught.value
    assert (error.status, error.code, error.message) == (429, "rate_limited", "slow down")
    assert error.details == {"a": 1} and error.exit_code == 2


def test_no_answer_at_all_is_an_outside_failure() -> None:
    handler = Recorder(*[httpx.ConnectError("refused")] * 2)
    with pytest.raises(RemoteError) as caught:
        mock_client(handler, [], attempts=2).export()
    assert caught.value.status is None and caught.value.exit_code == 3


def test_a_refusal_is_not_retried_and_matching_sends_no_idempotency_key() -> None:
    bad = {"error": {"code": "invalid_input", "message": "bad value", "details": {"index": 0}}}
    handler = Recorder(httpx.Response(400, json=bad))
    with pytest.raises(RemoteError, match="bad value"):
        mock_client(handler, []).match([("pdq", "00")])
    assert len(handler.requests) == 1
    assert "Idempotency-Key" not in handler.requests[0].headers


def sent(request: httpx.Request) -> Any:
    return json.loads(request.content)


def test_a_keypoints_lookup_sends_the_query_set_and_its_mirror_images_and_no_threshold(
    bridge_picture: Image.Image,
) -> None:
    query_set, mirrored = query_sets(bridge_picture)
    handler = Recorder(httpx.Response(200, json={"results": []}))
    queries: list[MatchQuery | tuple[str, str]] = [
        MatchQuery.keypoints(query_set, mirrored),
        ("pdq", pdq_hex(1)),
    ]
    mock_client(handler, []).match(queries, threshold=20)
    keypoints_query, pdq_query = sent(handler.requests[0])["queries"]
    assert keypoints_query == {
        "signal_type": "keypoints",
        "value": query_set.to_text(),
        "mirror": mirrored.to_text(),
    }
    assert len(query_set) > len(keypoints(bridge_picture))  # a query keeps more (256)
    assert pdq_query["threshold"] == 20  # the call's threshold: only where it means anything


def test_a_keypoints_set_given_alone_is_looked_up_without_a_mirror(
    bridge_picture: Image.Image,
) -> None:
    handler = Recorder(httpx.Response(200, json={"results": []}))
    mock_client(handler, []).match([MatchQuery.keypoints(keypoints(bridge_picture))])
    (query,) = sent(handler.requests[0])["queries"]
    assert set(query) == {"signal_type", "value"}


def test_a_keypoints_contribution_sends_the_stored_set_as_base64(
    bridge_picture: Image.Image,
) -> None:
    kps = keypoints(bridge_picture)
    handler = Recorder(httpx.Response(201, json=ADDED))
    mock_client(handler, []).contribute(
        [Contribution.keypoints(kps, [LABEL], "case 1")], labels=["manifesto"]
    )
    (item,) = sent(handler.requests[0])["hashes"]
    assert item == {
        "signal_type": "keypoints",
        "value": kps.to_text(),
        "labels": ["manifesto", LABEL],
        "reference": "case 1",
    }  # no quality: the server counts the keypoints


def test_a_keypoints_match_is_read_with_its_inliers_and_share() -> None:
    match = {
        "id": 3,
        "distance": 0,
        "via": {"probe": "mirror", "stored": None},
        "variant": "mirror",
        "inliers": 41,
        "share": 0.64,
        "labels": [LABEL],
        "status": "active",
        "added_at": "2026-01-02T03:04:05+00:00",
    }
    pdq_match = {**match, "id": 4, "distance": 2, "via": None, "inliers": None, "share": None}
    answer = {
        "index": 0,
        "signal_type": "keypoints",
        "value": "ab" * 32,
        "low_quality": False,
        "matches": [match, pdq_match],
        "videos": None,
    }
    handler = Recorder(httpx.Response(200, json={"results": [answer]}))
    (result,) = mock_client(handler, []).match([("keypoints", "AAAA")])
    found, plain = result.matches
    assert (found.inliers, found.share) == (41, 0.64) and found.via is not None
    assert found.via.probe == "mirror"
    assert (plain.inliers, plain.share) == (None, None)


def test_the_key_comes_from_the_argument_the_env_var_or_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    with pytest.raises(Unauthenticated, match=KEY_ENV):
        api_key()
    key_file = tmp_path / "key"
    key_file.write_text("hdb_from_file\n")
    monkeypatch.setenv(KEY_FILE_ENV, str(key_file))
    assert api_key() == "hdb_from_file"
    monkeypatch.setenv(KEY_ENV, "hdb_from_env")
    assert api_key() == "hdb_from_env"
    assert api_key("hdb_given") == "hdb_given"
    monkeypatch.delenv(KEY_ENV)
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "missing"))
    with pytest.raises(Unauthenticated, match="cannot read the key file"):
        api_key()


# ---- against a real server ----------------------------------------------------------


@pytest.fixture(scope="module")
def central(
    tmp_path_factory: pytest.TempPathFactory, migrated: Callable[[str], str]
) -> Iterator[tuple[Server, dict[str, str]]]:
    folder = tmp_path_factory.mktemp("central")
    url = migrated(f"sqlite:///{folder / 'central.sqlite3'}")
    store = Store.open(url)
    try:
        keys = {
            "trusted": store.members.create("Trusted platform", Role.MEMBER, trusted=True)[1],
            "member": store.members.create("Small platform", Role.MEMBER)[1],
        }
    finally:
        store.close()
    server = start_server(
        url,
        folder,
        workers=1,
        sync_interval=0.2,
        max_batch=MAX_BATCH,
        rate_limit_per_minute=6000,
        rate_limit_burst=500,
    )
    yield server, {name: key.secret for name, key in keys.items()}
    server.stop()


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the server never caught up"
        time.sleep(0.1)


@pytest.mark.slow
def test_match_contribute_feedback_export_round_trip(
    central: tuple[Server, dict[str, str]],
) -> None:
    server, keys = central
    values = [pdq_hex(100 + i) for i in range(7)]  # more than one batch (3)
    with Client(server.url, keys["trusted"]) as trusted, Client(server.url, keys["member"]) as b:
        added = trusted.contribute([("pdq", v) for v in values], labels=[LABEL])
        assert [a.index for a in added] == list(range(7)) and all(a.created for a in added)
        assert trusted.max_batch == MAX_BATCH  # learnt from the server's refusal

        def all_match() -> bool:
            return all(r.matches for r in b.match([("pdq", v) for v in values]))

        eventually(all_match)
        results = b.match([MatchQuery("pdq", values[4], threshold=0), ("pdq", values[5])])
        assert [r.index for r in results] == [0, 1]
        (found,) = results[0].matches
        assert found.id == added[4].id and found.distance == 0
        assert found.labels == (LABEL,) and found.status == "active" and found.via is None

        given = b.feedback(added[0].id, "agree")
        assert given.hash_id == added[0].id and given.kind == "agree" and not given.disputed

        first = b.export(0, limit=2)
        assert first.more and first.epoch
        pages = list(b.follow(first.cursor, limit=2))
        assert not pages[-1].more and all(p.epoch == first.epoch for p in pages)
        entries = {e.id: e for p in [first, *pages] for e in p.entries}
        assert {a.id for a in added} <= set(entries)
        assert entries[added[6].id].value == values[6]
        assert entries[added[6].id].labels == (LABEL,)


class DropFirstAnswer(httpx.BaseTransport):
    """Sends every request to the server, but loses the answer to the first POST, as a
    connection that dies after the server did the work."""

    def __init__(self) -> None:
        self._real = httpx.HTTPTransport()
        self.dropped = 0
        self.keys: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._real.handle_request(request)
        if request.method == "POST":
            self.keys.append(request.headers.get("Idempotency-Key"))
            if not self.dropped:
                response.read()
                response.close()
                self.dropped += 1
                raise httpx.ReadError("connection reset", request=request)
        return response

    def close(self) -> None:
        self._real.close()


@pytest.mark.slow
def test_a_retried_contribution_or_feedback_is_stored_once(
    central: tuple[Server, dict[str, str]],
) -> None:
    server, keys = central
    drop = DropFirstAnswer()
    waits: list[float] = []
    value = pdq_hex(200)
    with Client(server.url, keys["member"], transport=drop, sleep=waits.append) as client:
        (added,) = client.contribute([("pdq", value)])
        # The retry was answered with the first answer: created, not "already added".
        assert added.created and drop.dropped == 1 and len(waits) == 1
        assert drop.keys[0] is not None and drop.keys == [drop.keys[0]] * 2

        drop.dropped, drop.keys = 0, []
        client.feedback(added.id, "agree")
        assert drop.keys[0] is not None and drop.keys == [drop.keys[0]] * 2

    auth = {"Authorization": f"Bearer {keys['member']}"}
    listed = httpx.get(f"{server.url}/v1/hashes/{added.id}/feedback", headers=auth).json()
    assert len(listed["feedback"]) == 1
    own = httpx.get(f"{server.url}/v1/hashes", headers=auth).json()
    assert [h["value"] for h in own["hashes"]].count(value) == 1


@pytest.mark.slow
def test_hashdb_remote_match_json_reads_the_key_from_the_environment(
    central: tuple[Server, dict[str, str]],
) -> None:
    server, keys = central
    value = pdq_hex(300)
    with Client(server.url, keys["trusted"]) as trusted:
        (added,) = trusted.contribute([("pdq", value)], labels=[LABEL])
        eventually(lambda: bool(trusted.match([("pdq", value)])[0].matches))
    env = {KEY_ENV: keys["member"], KEY_FILE_ENV: None}
    result = CliRunner().invoke(
        main, ["remote", "match", "--url", server.url, "--json", f"pdq:{value}"], env=env
    )
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert row["input"] == f"pdq:{value}"
    assert [m["id"] for m in row["matches"]] == [added.id]
    assert row["matches"][0]["labels"] == [LABEL]


@pytest.mark.slow
def test_a_contributed_keypoint_set_is_found_by_a_mirrored_crop_through_its_mirror_set(
    central: tuple[Server, dict[str, str]], bridge_picture: Image.Image
) -> None:
    server, keys = central
    stored = keypoints(bridge_picture)
    with Client(server.url, keys["trusted"]) as trusted, Client(server.url, keys["member"]) as b:
        (added,) = trusted.contribute([Contribution.keypoints(stored, [LABEL])])
        assert added.signal_type == "keypoints" and added.created
        copy = MatchQuery.keypoints(*query_sets(ImageOps.mirror(crop(bridge_picture))))
        eventually(lambda: bool(b.match([copy])[0].matches))
        (result,) = b.match([copy])
        assert result.value == digest(KeypointSet.from_text(copy.value).to_bytes()).hex()
        (found,) = result.matches
        assert found.id == added.id and found.labels == (LABEL,)
        assert found.via is not None and found.via.probe == "mirror"
        assert found.inliers is not None and found.inliers >= 12
        assert found.share is not None and 0.5 < found.share < 0.8  # 80% of each side
        (unmirrored,) = b.match([MatchQuery("keypoints", copy.value)])
        assert unmirrored.matches == ()  # ORB keypoints do not find a mirrored copy


@pytest.mark.slow
def test_hashdb_remote_contributes_and_matches_the_set_hashdb_hash_printed(
    central: tuple[Server, dict[str, str]], bridge_picture: Image.Image, tmp_path: Path
) -> None:
    server, keys = central
    runner = CliRunner()
    env = {KEY_ENV: keys["member"], KEY_FILE_ENV: None}
    printed: dict[str, str] = {}
    for name, picture in (("original", bridge_picture), ("crop", crop(bridge_picture, 0.9))):
        path = tmp_path / f"{name}.png"
        picture.save(path)
        (row,) = json.loads(runner.invoke(main, ["hash", str(path), "--json"]).stdout)
        printed[name] = f"keypoints:{row['keypoints']}"
    given = runner.invoke(
        main, ["remote", "contribute", "--url", server.url, printed["original"], "--json"], env=env
    )
    assert given.exit_code == 0, given.output
    ((added,),) = [row["added"] for row in json.loads(given.stdout)]
    assert added["signal_type"] == "keypoints"
    with Client(server.url, keys["member"]) as client:
        crop_set = printed["crop"].removeprefix("keypoints:")
        eventually(lambda: bool(client.match([("keypoints", crop_set)])[0].matches))
    # --threshold is for the hashes that take one: a keypoints query is sent without it.
    args = ["remote", "match", "--url", server.url, "--threshold", "20", printed["crop"]]
    matched = runner.invoke(main, args, env=env)
    assert matched.exit_code == 0, matched.output
    assert f"#{added['id']} " in matched.stdout and " keypoints agree, " in matched.stdout


@pytest.mark.slow
def test_a_picture_contributed_as_hashes_only_keeps_its_crop_windows_and_its_crops_match(
    central: tuple[Server, dict[str, str]],
    low_detail_picture: Image.Image,
    tmp_path: Path,
    testdata: Path,
) -> None:
    """`--hash-only` hashes the file here and sends what an upload would store (its
    hashes, and for a low-detail picture its crop windows), never the file: a 90%
    crop is then found as it is for an uploaded picture."""
    server, keys = central
    runner = CliRunner()
    env = {KEY_ENV: keys["trusted"], KEY_FILE_ENV: None}
    original, cropped = tmp_path / "flat.png", tmp_path / "flat-crop.jpg"
    low_detail_picture.save(original)
    crop(low_detail_picture, 0.9).save(cropped, quality=90)
    args = ["remote", "contribute", "--url", server.url, "--hash-only", str(original), "--json"]
    given = runner.invoke(main, [*args, "--label", LABEL], env=env)
    assert given.exit_code == 0, given.output
    ((row,),) = [json.loads(given.stdout)]
    kinds = [a["signal_type"] for a in row["added"]]
    assert kinds == ["pdq", "phash", "keypoints", "md5", "sha256"]
    pdq_id = row["added"][0]["id"]
    with Client(server.url, keys["member"]) as client:

        def found_by_crop() -> list[Match]:
            results = client.match_media(cropped).results
            return [m for r in results for m in r.matches if m.id == pdq_id]

        eventually(lambda: bool(found_by_crop()))
        found = found_by_crop()
        assert found[0].via is not None and (found[0].via.stored or "").startswith("crop")
    sample = testdata / "video" / "chair-orig-22-sd-bar.mp4"
    video = runner.invoke(main, [*args[:-2], str(sample), "--json"], env=env)
    assert video.exit_code == 1
    assert "drop --hash-only" in json.loads(video.stdout)[0]["error"]


def test_hashdb_remote_without_a_key_is_a_user_error() -> None:
    env = {KEY_ENV: None, KEY_FILE_ENV: None}
    result = CliRunner().invoke(
        main, ["remote", "match", "--url", "http://127.0.0.1:9", f"pdq:{pdq_hex(1)}"], env=env
    )
    assert result.exit_code == 2
    assert KEY_ENV in result.stderr and "Traceback" not in result.output


def test_hashdb_remote_takes_no_key_option() -> None:
    result = CliRunner().invoke(
        main, ["remote", "export", "--url", "http://127.0.0.1:9", "--key", "hdb_x"]
    )
    assert result.exit_code == 2 and "No such option" in result.stderr


def test_hashdb_sync_takes_its_key_from_the_environment_never_the_command_line(
    tmp_path: Path,
) -> None:
    env = {"HASHDB_DATABASE_URL": f"sqlite:///{tmp_path / 'local.sqlite3'}", KEY_ENV: None}
    runner = CliRunner()
    assert runner.invoke(main, ["init"], env=env).exit_code == 0
    no_key = runner.invoke(main, ["sync", "--from", "http://127.0.0.1:9"], env=env)
    assert no_key.exit_code == 2 and KEY_ENV in no_key.stderr
    flagged = runner.invoke(main, ["sync", "--from", "http://127.0.0.1:9", "--key", "k"], env=env)
    assert flagged.exit_code == 2 and "No such option" in flagged.stderr
