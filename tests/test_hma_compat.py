"""HMA 2.0's lookup and hashing paths, replayed with HMA's own request shapes.

The requests are those of HMA's tests and web client (ThreatExchange commit
baefb4ed67b6, hasher-matcher-actioner/src/OpenMediaMatch: `tests/test_match_api.py`,
`tests/test_api.py`, `tests/test_api_banks.py`, `static/js/match_dbg.js`), the
answers are held field by field to HMA's shapes (`schemas/matching.py`,
`blueprints/matching.py`, `blueprints/hashing.py`), over a real database on each
backend. The only difference an HMA client sees is the `Authorization` header.
"""

from __future__ import annotations

import hashlib
import io
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok
from werkzeug.test import TestResponse

from api.app import create_app
from api.context import context
from hashdb.matching import Matcher
from hashdb.settings import Settings
from hashdb.store import Role

if TYPE_CHECKING:
    from api_fixtures import Api, MakeApi

pytest_plugins = ["api_fixtures"]

# threatexchange's PdqSignal.get_examples()[:3] (pdq/data/bridge-mods) and
# VideoMD5Signal.get_examples()[0]: what HMA's tests look up.
PDQ_EXAMPLES = (
    "f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22",
    "f8f8f0cee0f4a84f06370a2a038f63f0b36e26d596621e1d33e6b39c4e9c9b22",
    "f8f8f0cee0f4a84f0637022a038f67f0b36e26d596621e1d33e6b39c4e9c9b22",
)
VIDEO_MD5_EXAMPLE = "cab08b36195edb1a1231d2d09fa450e0"

# Every path of the blueprint, with the method HMA serves it under.
ROUTES = (
    ("GET", "/m/raw_lookup"),
    ("GET", "/m/lookup"),
    ("POST", "/m/lookup"),
    ("POST", "/m/compare"),
    ("POST", "/h/hash"),
    ("GET", "/h/hash"),
    ("GET", "/status"),
    ("GET", "/status/live"),
)
PUBLIC = {"/status", "/status/live"}
FUZZ_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


@pytest.fixture
def hma(make_api: MakeApi) -> Api:
    return make_api(hma_compat=True)


def distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def lookup(api: Api, path: str, role: str = "member", **query: Any) -> TestResponse:
    return api.client.get(path, query_string=query, headers=api.auth(role))


def upload(api: Api, path: str, field: str, data: bytes, **query: str) -> TestResponse:
    """A multipart upload as HMA's client sends it: the field named by content type."""
    return api.client.post(
        path,
        data={field: (io.BytesIO(data), "upload.jpg", "image/jpeg")},
        query_string=query,
        headers=api.auth(),
        content_type="multipart/form-data",
    )


def hma_error(response: TestResponse, status: int) -> str:
    """HMA's error body (`{"message": ...}`) beside hashdb's one shape; the message."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.json
    assert isinstance(body, dict) and set(body) == {"message", "error"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["message"] == body["error"]["message"] and body["message"]
    message: str = body["message"]
    return message


# ---- GET /m/raw_lookup ----------------------------------------------------------


def test_raw_lookup_answers_the_ids_and_with_distance_the_distances(hma: Api) -> None:
    # test_match_api.py::test_raw_lookups: one example per signal type, then
    # include_distance=True; HMA's PDQ distance is an int as text, video_md5's "-".
    (pdq_id,) = hma.add({"signal_type": "pdq", "value": PDQ_EXAMPLES[0]})
    (md5_id,) = hma.add({"signal_type": "md5", "value": VIDEO_MD5_EXAMPLE})
    for signal_type, signal, hash_id, dist in (
        ("pdq", PDQ_EXAMPLES[1], pdq_id, str(distance(PDQ_EXAMPLES[0], PDQ_EXAMPLES[1]))),
        ("video_md5", VIDEO_MD5_EXAMPLE, md5_id, "-"),
    ):
        query = {"signal": signal, "signal_type": signal_type}
        response = lookup(hma, "/m/raw_lookup", **query)
        assert response.status_code == 200
        assert response.json == {"matches": [hash_id]}

        with_distance = lookup(hma, "/m/raw_lookup", include_distance=True, **query)
        assert with_distance.status_code == 200
        assert with_distance.json == {"matches": [{"bank_content_id": hash_id, "distance": dist}]}


def test_raw_lookup_keeps_the_named_banks(hma: Api) -> None:
    # test_match_api.py::test_raw_lookup_with_bank_filter (banks are labels here).
    ids = hma.add(
        {"signal_type": "pdq", "value": PDQ_EXAMPLES[0], "labels": ["attack_footage"]},
        {"signal_type": "pdq", "value": PDQ_EXAMPLES[1], "labels": ["glorification"]},
        {"signal_type": "pdq", "value": PDQ_EXAMPLES[2], "labels": ["manifesto"]},
    )
    query = {"signal": PDQ_EXAMPLES[0], "signal_type": "pdq"}
    assert sorted(lookup(hma, "/m/raw_lookup", **query).json["matches"]) == sorted(ids)  # type: ignore[index]
    for banks, expected in (
        ("attack_footage", ids[:1]),
        ("attack_footage,glorification", ids[:2]),
        ("NON_EXISTENT_BANK", []),
    ):
        response = lookup(hma, "/m/raw_lookup", banks=banks, **query)
        assert response.status_code == 200
        assert sorted(response.json["matches"]) == sorted(expected), banks  # type: ignore[index]

    # test_raw_lookup_with_distance_and_bank_filter
    response = lookup(
        hma, "/m/raw_lookup", include_distance=True, banks="attack_footage,glorification", **query
    )
    matches = response.json["matches"]  # type: ignore[index]
    assert len(matches) == 2
    for match in matches:
        assert set(match) == {"bank_content_id", "distance"}
        assert isinstance(match["bank_content_id"], int) and isinstance(match["distance"], str)


def test_a_retired_hash_stops_matching_at_once(hma: Api) -> None:
    (hash_id,) = hma.add({"signal_type": "pdq", "value": PDQ_EXAMPLES[0]})
    query = {"signal": PDQ_EXAMPLES[0], "signal_type": "pdq"}
    assert lookup(hma, "/m/raw_lookup", **query).json == {"matches": [hash_id]}
    assert hma.delete(f"/v1/hashes/{hash_id}").status_code in (200, 204)
    assert lookup(hma, "/m/raw_lookup", **query).json == {"matches": []}


# ---- GET /m/lookup --------------------------------------------------------------


def test_lookup_answers_matches_by_bank(hma: Api) -> None:
    # test_match_api.py::test_lookups and ::test_lookup_with_bank_filter.
    a, b, c = hma.add(
        {"signal_type": "pdq", "value": PDQ_EXAMPLES[0], "labels": ["attack_footage"]},
        {"signal_type": "pdq", "value": PDQ_EXAMPLES[1], "labels": ["glorification"]},
        {"signal_type": "pdq", "value": PDQ_EXAMPLES[2], "labels": ["manifesto"]},
    )
    query = {"signal": PDQ_EXAMPLES[0], "signal_type": "pdq"}
    response = lookup(hma, "/m/lookup", **query)
    assert response.status_code == 200
    d = {v: str(distance(PDQ_EXAMPLES[0], v)) for v in PDQ_EXAMPLES}
    assert response.json == {
        "attack_footage": [{"bank_content_id": a, "distance": d[PDQ_EXAMPLES[0]]}],
        "glorification": [{"bank_content_id": b, "distance": d[PDQ_EXAMPLES[1]]}],
        "manifesto": [{"bank_content_id": c, "distance": d[PDQ_EXAMPLES[2]]}],
    }
    for banks, expected in (
        ("attack_footage", {"attack_footage"}),
        ("attack_footage,manifesto", {"attack_footage", "manifesto"}),
        ("NON_EXISTENT_BANK", set()),
    ):
        filtered = lookup(hma, "/m/lookup", banks=banks, **query)
        assert filtered.status_code == 200
        assert set(filtered.json) == expected, banks  # type: ignore[arg-type]


def test_a_hash_is_in_a_bank_per_label_and_an_unlabelled_one_in_unlabelled(hma: Api) -> None:
    labelled, unlabelled = hma.add(
        {"signal_type": "pdq", "value": PDQ_EXAMPLES[0], "labels": ["manifesto", "glorification"]},
        {"signal_type": "md5", "value": VIDEO_MD5_EXAMPLE},
    )
    both = lookup(hma, "/m/lookup", signal=PDQ_EXAMPLES[0], signal_type="pdq").json
    assert both == {
        "manifesto": [{"bank_content_id": labelled, "distance": "0"}],
        "glorification": [{"bank_content_id": labelled, "distance": "0"}],
    }
    plain = lookup(hma, "/m/lookup", signal=VIDEO_MD5_EXAMPLE, signal_type="video_md5").json
    assert plain == {"UNLABELLED": [{"bank_content_id": unlabelled, "distance": "-"}]}


def test_lookup_of_a_hash_nothing_matches_is_empty(hma: Api) -> None:
    # test_e2e_workflow.py: GET /m/lookup?signal_type=pdq&signal=5555...
    response = lookup(hma, "/m/lookup", signal="5" * 64, signal_type="pdq")
    assert response.status_code == 200
    assert response.json == {}


def test_lookup_accepts_and_ignores_hmas_coinflip(hma: Api) -> None:
    (hash_id,) = hma.add({"signal_type": "pdq", "value": PDQ_EXAMPLES[0]})
    response = lookup(
        hma, "/m/lookup", signal=PDQ_EXAMPLES[0], signal_type="pdq", seed="7", bypass_coinflip=True
    )
    assert response.json == {"UNLABELLED": [{"bank_content_id": hash_id, "distance": "0"}]}


# ---- POST /h/hash and POST /m/lookup ---------------------------------------------


def test_hash_of_a_photo_is_its_pdq_and_of_a_video_the_md5_of_its_bytes(
    hma: Api, photo: bytes
) -> None:
    # match_dbg.js posts the file as multipart; test_api.py::test_lookup_success posts
    # a JPEG under `video` ("not really a video, but MD5 is simple").
    hashed = upload(hma, "/h/hash", "photo", photo)
    assert hashed.status_code == 200
    media = hma.upload("/v1/match/media", photo).json
    assert hashed.json == {"pdq": media["hashes"]["pdq"]}  # type: ignore[index]

    as_video = upload(hma, "/h/hash", "video", photo)
    assert as_video.status_code == 200
    assert as_video.json == {"video_md5": hashlib.md5(photo, usedforsecurity=False).hexdigest()}

    assert upload(hma, "/h/hash", "photo", photo, types="pdq").json == hashed.json


def test_hash_of_a_featureless_photo_has_no_pdq(hma: Api, flat_image: bytes) -> None:
    """HMA answers "" for a PDQ below quality 50; hashdb leaves it out (no sentinel)."""
    response = upload(hma, "/h/hash", "photo", flat_image)
    assert response.status_code == 200
    assert response.json == {}


def test_lookup_of_an_upload_answers_by_signal_type_then_bank(hma: Api, photo: bytes) -> None:
    # test_api.py::test_lookup_success: POST /m/lookup with the file under `photo`,
    # then under `video`.
    pdq_hex = upload(hma, "/h/hash", "photo", photo).json["pdq"]  # type: ignore[index]
    md5_hex = hashlib.md5(photo, usedforsecurity=False).hexdigest()
    pdq_id, md5_id = hma.add(
        {"signal_type": "pdq", "value": pdq_hex, "labels": ["attack_footage"]},
        {"signal_type": "md5", "value": md5_hex, "labels": ["manifesto"]},
    )
    response = upload(hma, "/m/lookup", "photo", photo)
    assert response.status_code == 200
    assert response.json == {
        "pdq": {"attack_footage": [{"bank_content_id": pdq_id, "distance": "0"}]}
    }
    as_video = upload(hma, "/m/lookup", "video", photo)
    assert as_video.status_code == 200
    assert as_video.json == {
        "video_md5": {"manifesto": [{"bank_content_id": md5_id, "distance": "-"}]}
    }
    assert upload(hma, "/m/lookup", "photo", photo, banks="manifesto").json == {"pdq": {}}


def test_bad_uploads_are_4xx_with_hmas_messages(hma: Api, photo: bytes) -> None:
    nothing = hma.client.post("/h/hash", headers=hma.auth(), content_type="multipart/form-data")
    assert hma_error(nothing, 400) == "Missing multipart/form-data file upload"
    two = hma.client.post(
        "/h/hash",
        data={"photo": (io.BytesIO(photo), "a.jpg"), "video": (io.BytesIO(photo), "b.mp4")},
        headers=hma.auth(),
        content_type="multipart/form-data",
    )
    assert hma_error(two, 400) == "Only one file allowed per request"
    assert hma_error(upload(hma, "/h/hash", "file", photo), 400) == ("no such content_type: 'file'")
    assert "doesn't exist" in hma_error(upload(hma, "/h/hash", "photo", photo, types="x"), 400)
    assert hma_error(upload(hma, "/h/hash", "photo", photo, types=" "), 400) == (
        "empty signal type selection"
    )
    assert "empty" in hma_error(upload(hma, "/h/hash", "photo", b""), 400)
    hma_error(upload(hma, "/h/hash", "photo", b"not an image at all"), 415)
    hma_error(upload(hma, "/m/lookup", "photo", photo[: len(photo) // 3]), 422)


def test_urls_are_refused_naming_the_field(hma: Api) -> None:
    # test_hashing.py: GET /h/hash?url=...; test_api.py: GET /m/lookup?url=...
    for path in ("/h/hash", "/m/lookup"):
        response = lookup(hma, path, url="https://example.com/image.jpg")
        assert "does not fetch URLs" in hma_error(response, 400)
        assert response.json["error"]["details"]["field"] == "url"  # type: ignore[index]


# ---- POST /m/compare ------------------------------------------------------------


def test_compare_answers_match_and_distance_per_signal_type(hma: Api) -> None:
    # match_dbg.js: {"pdq": [a, b]} -> {"pdq": [isMatch, {"distance": d}]}.
    body = {"pdq": [PDQ_EXAMPLES[0], PDQ_EXAMPLES[2]], "video_md5": [VIDEO_MD5_EXAMPLE] * 2}
    response = hma.post("/m/compare", body)
    assert response.status_code == 200
    assert response.json == {
        "pdq": [True, {"distance": distance(PDQ_EXAMPLES[0], PDQ_EXAMPLES[2])}],
        "video_md5": [True, {}],
    }
    far = hma.post("/m/compare", {"pdq": [PDQ_EXAMPLES[0], "0" * 64]}).json
    assert far == {"pdq": [False, {"distance": distance(PDQ_EXAMPLES[0], "0" * 64)}]}
    assert hma.post("/m/compare", {}).json == {}


def test_bad_comparisons_are_400(hma: Api) -> None:
    assert hma_error(hma.post("/m/compare", {"md5": ["0" * 32] * 2}), 400) == (
        "No such SignalType 'md5'"
    )
    assert "exactly 2" in hma_error(hma.post("/m/compare", {"pdq": [PDQ_EXAMPLES[0]]}), 400)
    assert "Invalid pdq hash" in hma_error(hma.post("/m/compare", {"pdq": ["xyz", "abc"]}), 400)
    hma_error(hma.post("/m/compare", ["pdq"]), 400)
    hma_error(hma.post("/m/compare", {"pdq": "not a list"}), 400)


# ---- errors, keys, the switch ---------------------------------------------------


def test_bad_lookups_are_400_with_hmas_messages(hma: Api) -> None:
    for path in ("/m/raw_lookup", "/m/lookup"):
        unknown = lookup(hma, path, signal="0" * 32, signal_type="md5")
        assert hma_error(unknown, 400) == "No such SignalType 'md5'"
        bad = lookup(hma, path, signal="xyz", signal_type="pdq")
        assert hma_error(bad, 400).startswith("invalid signal: ")
        hma_error(lookup(hma, path, signal_type="pdq"), 400)
        hma_error(lookup(hma, path, signal="0" * 64, signal_type="pdq", nonsense="1"), 400)
    missing = lookup(hma, "/m/lookup", signal_type="pdq")
    assert hma_error(missing, 400) == "Either url or both signal and signal_type are required"
    hma_error(
        lookup(hma, "/m/raw_lookup", signal="0" * 64, signal_type="pdq", include_distance="x"), 400
    )


def test_every_path_but_status_needs_a_member_key(hma: Api) -> None:
    for method, path in ROUTES:
        response = hma.client.open(path, method=method)
        if path in PUBLIC:
            assert response.status_code == 200, path
            assert response.mimetype == "text/plain"
            assert response.get_data() == b"I-AM-ALIVE"
            continue
        hma_error(response, 401)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        hma_error(hma.client.open(path, method=method, headers=hma.auth("ops")), 403)


def test_turned_off_every_path_is_404(api: Api) -> None:
    assert Settings().hma_compat is False
    for method, path in ROUTES:
        response = api.client.open(path, method=method, headers=api.auth())
        assert response.status_code == 404, path
        assert response.json["error"]["code"] == "not_found"  # type: ignore[index]
    assert not any(
        p.startswith(("/m/", "/h/", "/status")) for p in context(api.app).openapi["paths"]
    )


def test_the_paths_are_documented_when_on(hma: Api) -> None:
    paths = context(hma.app).openapi["paths"]
    for method, path in ROUTES:
        assert method.lower() in paths[path], path
    assert paths["/m/lookup"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in paths["/status"]["get"]


def test_status_and_lookups_answer_503_until_the_indexes_are_loaded(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # test_api.py::test_status_response: 503 INDEX-NOT-LOADED, then 200 I-AM-ALIVE.
    release = threading.Event()
    original = Matcher.load

    def held_load(self: Matcher) -> None:
        release.wait(10)
        original(self)

    monkeypatch.setattr(Matcher, "load", held_load)
    app = create_app(Settings(database_url=db_url, hma_compat=True))
    try:
        client = app.test_client()
        secret = context(app).db.store.members.create("m", Role.MEMBER)[1].secret
        auth = {"Authorization": f"Bearer {secret}"}
        query = {"signal": PDQ_EXAMPLES[0], "signal_type": "pdq"}
        assert hma_error(client.get("/status"), 503) == "INDEX-NOT-LOADED"
        assert client.get("/status/live").status_code == 200
        not_ready = client.get("/m/raw_lookup", query_string=query, headers=auth)
        assert hma_error(not_ready, 503) == "index not yet ready"
        release.set()
        assert context(app).loader.wait(10)
        assert client.get("/status").get_data() == b"I-AM-ALIVE"
        ready = client.get("/m/raw_lookup", query_string=query, headers=auth)
        assert ready.json == {"matches": []}
    finally:
        release.set()
        context(app).close()


@pytest.mark.slow
def test_no_hma_operation_answers_5xx_or_breaks_its_documented_schema(
    tmp_path: Path, migrated: Callable[[str], str]
) -> None:
    """schemathesis over the HMA operations only (tests/test_api_schemathesis.py runs
    the rest with the default settings, where these paths do not exist)."""
    url = migrated(f"sqlite:///{tmp_path / 'h.sqlite3'}")
    app = create_app(Settings(database_url=url, hma_compat=True))
    try:
        assert context(app).loader.wait(30)
        admin = context(app).db.store.members.create("fuzz-admin", Role.ADMIN)[1].secret
        headers = {"Authorization": f"Bearer {admin}"}
        schema = schemathesis.openapi.from_wsgi("/openapi.json", app)
        operations = [
            result.ok()
            for result in schema.get_all_operations()
            if isinstance(result, Ok) and result.ok().path.startswith(("/m/", "/h/", "/status"))
        ]
        assert len(operations) == len(ROUTES)
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(
                max_examples=30,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                database=None,
            )
            def conforms(case: Any) -> None:
                case.call_and_validate(headers=headers, checks=FUZZ_CHECKS)

            conforms()
    finally:
        context(app).close()
