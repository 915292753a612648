"""Logs and trusted proxies: JSON or text lines, an access line per request with its
request id, never a secret; X-Forwarded-For believed only from a trusted proxy."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from api_server import start_server

from api.logs import ACCESS, JsonFormatter, TextFormatter
from hashdb.errors import InvalidInput
from hashdb.settings import load_settings
from hashdb.store import Role, Store

if TYPE_CHECKING:
    from api_fixtures import Api, MakeApi

pytest_plugins = ["api_fixtures"]

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Captured:
    json_out: io.StringIO
    text_out: io.StringIO

    def json_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.json_out.getvalue().splitlines() if line]

    def access(self) -> list[dict[str, Any]]:
        return [line for line in self.json_lines() if line["logger"] == ACCESS]

    def everything(self) -> str:
        return self.json_out.getvalue() + self.text_out.getvalue()


@pytest.fixture
def captured() -> Iterator[Captured]:
    """Every record of the process, formatted both ways, at level info."""
    out = Captured(io.StringIO(), io.StringIO())
    handlers = []
    for stream, formatter in ((out.json_out, JsonFormatter()), (out.text_out, TextFormatter())):
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        handlers.append(handler)
    root, access = logging.getLogger(), logging.getLogger(ACCESS)
    levels = root.level, access.level
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(logging.INFO)
    access.setLevel(logging.INFO)
    yield out
    for handler in handlers:
        root.removeHandler(handler)
    root.setLevel(levels[0])
    access.setLevel(levels[1])


def test_every_request_gets_one_access_line_with_its_request_id_and_member(
    api: Api, captured: Captured
) -> None:
    response = api.client.get(
        "/v1/hashes?limit=5", headers={**api.auth(), "X-Request-Id": "trace-17"}
    )
    assert response.status_code == 200
    (line,) = [a for a in captured.access() if a["request_id"] == "trace-17"]
    member = next(m for m in api.store.members.all() if m.name == "test-member")
    assert line["level"] == "INFO"
    assert line["time"].endswith("Z")
    assert (line["method"], line["path"], line["status"]) == ("GET", "/v1/hashes", 200)
    assert line["member_id"] == member.id
    assert line["bytes"] == len(response.data)
    assert line["duration_ms"] >= 0
    assert line["remote_addr"] == "127.0.0.1"
    text_line = next(t for t in captured.text_out.getvalue().splitlines() if "trace-17" in t)
    assert "status=200" in text_line and f"member_id={member.id}" in text_line


def test_an_unauthenticated_request_is_logged_without_a_member(
    api: Api, captured: Captured
) -> None:
    assert api.client.get("/v1/hashes").status_code == 401
    (line,) = [a for a in captured.access() if a["path"] == "/v1/hashes"]
    assert (line["status"], line["member_id"]) == (401, None)


def test_no_key_token_or_authorization_value_is_ever_logged(api: Api, captured: Captured) -> None:
    secret = api.keys["member"]
    bogus = "hdb_" + "z" * 40
    api.client.get(f"/v1/hashes?key={secret}&token={bogus}", headers=api.auth())
    api.client.get("/v1/hashes", headers={"Authorization": f"Bearer {bogus}"})  # 401
    api.client.post("/v1/match", data="{not json", headers=api.auth())  # 400
    api.client.get(f"/nowhere/{bogus}?access_token={secret}")  # 404
    logging.getLogger("api.errors").error("while handling %s", "a request")
    everything = captured.everything()
    assert len(captured.access()) == 4
    assert secret not in everything and bogus not in everything
    assert "/nowhere/[redacted]" in everything  # a key-shaped path segment
    assert "Bearer" not in everything and "token=" not in everything


def test_a_logged_exception_is_one_json_line_with_its_request_id_and_traceback(
    make_api: MakeApi, captured: Captured
) -> None:
    api = make_api()
    with api.app.test_request_context("/", headers={"X-Request-Id": "boom-1"}):
        try:
            raise ValueError("kaput")
        except ValueError:
            logging.getLogger("hashdb.test").exception("it failed")
    (line,) = [j for j in captured.json_lines() if j["logger"] == "hashdb.test"]
    assert (line["level"], line["message"], line["request_id"]) == ("ERROR", "it failed", "boom-1")
    assert "Traceback" in line["exc_info"] and "ValueError: kaput" in line["exc_info"]
    assert "[request_id=boom-1]" in captured.text_out.getvalue()


def test_the_json_setting_makes_every_line_of_the_process_json() -> None:
    program = (
        "import logging; from api.logs import configure; from hashdb.settings import "
        "load_settings; configure(load_settings()); logging.getLogger('x').warning('hi')"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("HASHDB_")}
    env |= {"HASHDB_LOG_FORMAT": "json"}
    done = subprocess.run(
        [sys.executable, "-c", program], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    (line,) = [json.loads(text) for text in done.stderr.splitlines()]
    assert (line["logger"], line["level"], line["message"]) == ("x", "WARNING", "hi")
    assert "request_id" not in line  # written outside any request


def test_an_unknown_log_format_is_refused_at_start() -> None:
    with pytest.raises(InvalidInput, match="HASHDB_LOG_FORMAT"):
        load_settings(log_format="xml")


@pytest.mark.postgres
def test_gunicorn_and_the_app_write_json_under_hashdb_serve(pg_url: str, tmp_path: Path) -> None:
    db_url = pg_url  # one server run is enough
    store = Store.open(db_url)
    try:
        secret = store.members.create("logged", Role.MEMBER)[1].secret
    finally:
        store.close()
    server = start_server(
        db_url, tmp_path, workers=1, threads=2, log_format="json", log_level="info"
    )
    try:
        headers = {"Authorization": f"Bearer {secret}", "X-Request-Id": "served-1"}
        assert requests.get(f"{server.url}/v1/hashes", headers=headers, timeout=10).ok
    finally:
        server.stop()
    lines = [json.loads(t) for t in server.output().splitlines() if t.startswith("{")]
    loggers = {line["logger"] for line in lines}
    assert "gunicorn.error" in loggers, server.output()
    access = [line for line in lines if line.get("request_id") == "served-1"]
    assert [(a["logger"], a["path"], a["status"]) for a in access] == [(ACCESS, "/v1/hashes", 200)]
    assert secret not in server.output()


# ---- trusted proxies --------------------------------------------------------------


def _remote_seen(api: Api, captured: Captured, peer: str, forwarded: str) -> str:
    headers = {**api.auth(), "X-Forwarded-For": forwarded, "X-Request-Id": f"p-{peer}"}
    response = api.client.get("/v1/hashes", headers=headers, environ_base={"REMOTE_ADDR": peer})
    assert response.status_code == 200
    (line,) = [a for a in captured.access() if a["request_id"] == f"p-{peer}"]
    address: str = line["remote_addr"]
    return address


def test_a_trusted_proxy_hands_on_the_client_address(make_api: MakeApi, captured: Captured) -> None:
    api = make_api(trusted_proxies="10.0.0.0/8, 192.0.2.7")
    assert _remote_seen(api, captured, "10.1.2.3", "203.0.113.9") == "203.0.113.9"
    assert _remote_seen(api, captured, "192.0.2.7", "198.51.100.1, 203.0.113.10") == (
        "203.0.113.10"  # one hop: the entry the trusted proxy added
    )


def test_any_other_peer_keeps_its_own_address_whatever_it_sends(
    make_api: MakeApi, captured: Captured
) -> None:
    api = make_api(trusted_proxies="10.0.0.0/8")
    assert _remote_seen(api, captured, "192.0.2.50", "203.0.113.9") == "192.0.2.50"
    untrusting = make_api()  # the default: no proxy trusted
    assert _remote_seen(untrusting, captured, "10.1.2.4", "203.0.113.9") == "10.1.2.4"


def test_a_trusted_proxy_that_is_not_an_address_is_refused_at_start() -> None:
    with pytest.raises(InvalidInput, match="HASHDB_TRUSTED_PROXIES"):
        load_settings(trusted_proxies="10.0.0.0/8, proxy.internal")
