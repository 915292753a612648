"""One error shape for every 4xx and 5xx, on every endpoint, and never HTML.

{"error": {"code": str, "message": str, "details": object}}
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from werkzeug.test import TestResponse

from api.app import create_app
from api.auth import allowed_roles
from api.context import context
from hashdb.matching import Matcher
from hashdb.settings import Settings
from hashdb.store import Role

if TYPE_CHECKING:
    from api_fixtures import Api, MakeApi

pytest_plugins = ["api_fixtures"]


def assert_error(response: TestResponse, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.json
    assert isinstance(body, dict) and set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details"}
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], dict)
    if code is not None:
        assert error["code"] == code
    return error  # type: ignore[no-any-return]


def test_every_v1_route_answers_errors_in_the_one_shape(api: Api) -> None:
    """No key: 401. A role the route does not admit: 403. A malformed body: 400 or
    415. An unknown id: 404."""
    checked = 0
    for rule in api.app.url_map.iter_rules():
        if not rule.rule.startswith("/v1"):
            continue
        path = re.sub(r"<[^>]+>", "999999", rule.rule)
        admitted = allowed_roles(api.app.view_functions[rule.endpoint]) or frozenset()
        outsiders = [r for r in (Role.OPS, Role.MEMBER) if r not in admitted]
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            assert_error(api.client.open(path, method=method), 401, "unauthenticated")
            for role in outsiders:
                refused = api.client.open(path, method=method, headers=api.auth(role.value))
                assert_error(refused, 403, "forbidden")
            if method in ("POST", "PUT", "PATCH"):
                malformed = api.client.open(
                    path,
                    method=method,
                    headers=api.auth("admin"),
                    data=b"{",
                    content_type="application/json",
                )
                assert_error(malformed, 415 if "media" in path else 400)
            elif rule.arguments:
                unknown = api.client.open(path, method=method, headers=api.auth("admin"))
                assert_error(unknown, 404, "not_found")
            checked += 1
    documented = context(api.app).openapi["paths"]
    assert checked == sum(len(ops) for path, ops in documented.items() if path.startswith("/v1"))


def test_an_unknown_path_is_a_json_404(api: Api) -> None:
    assert_error(api.client.get("/v2/nothing"), 404, "not_found")


def test_an_id_that_is_not_a_positive_64_bit_integer_is_404(api: Api) -> None:
    for bad in ("0", "-1", "abc", str(2**63)):
        assert_error(api.get(f"/v1/hashes/{bad}"), 404, "not_found")


def test_a_wrong_method_is_a_json_405(api: Api) -> None:
    error = assert_error(api.client.get("/v1/match"), 405, "method_not_allowed")
    assert error["message"]


def test_malformed_json_is_400_naming_the_body(api: Api) -> None:
    response = api.client.post(
        "/v1/match", data=b'{"queries": [', headers=api.auth(), content_type="application/json"
    )
    error = assert_error(response, 400, "invalid_input")
    assert error["details"]["field"] == "body"
    assert "not valid JSON" in error["message"]


def test_json_that_is_not_an_object_is_400(api: Api) -> None:
    for body in (b"[]", b'"text"', b"3", b"null", b""):
        response = api.client.post(
            "/v1/match", data=body, headers=api.auth(), content_type="application/json"
        )
        error = assert_error(response, 400, "invalid_input")
        assert error["details"]["field"] == "body", body


def test_an_empty_batch_is_400(api: Api) -> None:
    error = assert_error(api.post("/v1/match", {"queries": []}), 400, "invalid_input")
    assert error["details"]["field"] == "queries"


def test_a_body_that_is_not_declared_json_is_415(api: Api) -> None:
    response = api.client.post(
        "/v1/match", data=b'{"queries": []}', headers=api.auth(), content_type="text/plain"
    )
    assert_error(response, 415, "unsupported_media")


def test_a_body_over_the_upload_limit_is_413(make_api: MakeApi, photo: bytes) -> None:
    api = make_api(max_upload_bytes=4096)
    assert len(photo) > 4096
    assert_error(api.upload("/v1/match/media", photo), 413, "payload_too_large")
    big = {"queries": [{"signal_type": "pdq", "value": "0" * 64}] * 100}
    assert_error(api.post("/v1/match", big), 413, "payload_too_large")


def test_bytes_that_are_not_an_image_are_415(api: Api) -> None:
    error = assert_error(api.upload("/v1/match/media", b"%PDF-1.4 not an image" * 20), 415)
    assert error["code"] == "unsupported_media"


def test_a_truncated_image_is_422(api: Api, photo: bytes) -> None:
    assert_error(api.upload("/v1/match/media", photo[: len(photo) // 3]), 422, "media_error")


def test_a_decompression_bomb_is_422(api: Api, bomb: bytes) -> None:
    assert len(bomb) < 10_000
    assert_error(api.upload("/v1/media", bomb), 422, "media_error")


def test_an_upload_without_a_file_or_with_an_empty_one_is_400(api: Api) -> None:
    empty = assert_error(api.upload("/v1/media", b""), 400, "invalid_input")
    assert empty["details"]["field"] == "file"
    response = api.client.post(
        "/v1/media",
        data={"labels": "x"},
        headers=api.auth(),
        content_type="multipart/form-data",
    )
    assert assert_error(response, 400)["details"]["field"] == "file"


def test_an_upload_sent_as_json_is_415(api: Api) -> None:
    assert_error(api.post("/v1/media", {"file": "abc"}), 415, "unsupported_media")


def test_a_bad_form_field_is_400_naming_it(api: Api, photo: bytes) -> None:
    error = assert_error(api.upload("/v1/match/media", photo, dihedral="perhaps"), 400)
    assert error["details"]["field"] == "dihedral"


def test_an_unexpected_failure_is_a_bare_500_and_logged(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    def explode() -> None:
        raise RuntimeError("secret internals")

    api.app.add_url_rule("/explode", "explode", explode)
    response = api.client.get("/explode")
    error = assert_error(response, 500, "internal_error")
    assert "secret" not in response.get_data(as_text=True)
    assert error["message"] == "internal server error"
    assert "secret internals" in caplog.text


def test_readyz_and_match_answer_503_until_the_indexes_are_loaded(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    original = Matcher.load

    def held_load(self: Matcher) -> None:
        release.wait(10)
        original(self)

    monkeypatch.setattr(Matcher, "load", held_load)
    app = create_app(Settings(database_url=db_url))
    try:
        client = app.test_client()
        secret = context(app).db.store.members.create("m", Role.MEMBER)[1].secret
        query = {"queries": [{"signal_type": "pdq", "value": "0" * 64}]}
        auth = {"Authorization": f"Bearer {secret}"}
        assert client.get("/healthz").status_code == 200
        not_ready = client.get("/readyz")
        assert not_ready.status_code == 503
        assert not_ready.json["ready"] is False  # type: ignore[index]
        error = assert_error(client.post("/v1/match", json=query, headers=auth), 503)
        assert "loading" in error["message"]
        release.set()
        assert context(app).loader.wait(10)
        assert client.get("/readyz").status_code == 200
        assert client.post("/v1/match", json=query, headers=auth).status_code == 200
    finally:
        release.set()
        context(app).close()


def test_an_unreachable_database_is_503_not_500(
    tmp_path: Path, migrated: Callable[[str], str]
) -> None:
    url = migrated(f"sqlite:///{tmp_path / 'gone.sqlite3'}")
    app = create_app(Settings(database_url=url))
    try:
        assert context(app).loader.wait(10)
        (tmp_path / "gone.sqlite3").unlink()
        (tmp_path / "gone.sqlite3").mkdir()  # now unopenable
        context(app).db.store.engine.dispose()
        response = app.test_client().get(
            "/v1/hashes/1", headers={"Authorization": "Bearer hdb_whatever"}
        )
        error = assert_error(response, 503, "storage_unavailable")
        assert response.headers["Retry-After"]
        assert "database" in error["message"]
    finally:
        context(app).close()
