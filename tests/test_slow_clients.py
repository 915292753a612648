"""Slow clients cannot hold `hashdb serve` (api/serving.py).

A slowloris opens connections and sends a request's head a byte at a time, never
the blank line; a slow upload sends a full head and then dribbles the body. Under
gunicorn's plain threaded worker each such connection holds a thread, so a dozen
of them stop the server answering anyone. Here the real server (two workers of
four threads) must keep answering `/healthz` fast and serving authenticated
requests while 12, then 64 such connections are open, and must close them itself
once HASHDB_HEADER_TIMEOUT / HASHDB_BODY_TIMEOUT have passed. Ordinary clients
(kept-alive connections, pipelined requests, `Expect: 100-continue`, a 1 MB
multipart upload) must still be served, and what cannot be buffered within the
limits is refused with the API's error shape.
"""

from __future__ import annotations

import http.client
import io
import json
import random
import socket
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import requests
from api_server import Server, member_key, start_server
from PIL import Image

pytestmark = pytest.mark.slow

HEADER_TIMEOUT = 2.0  # seconds: HASHDB_HEADER_TIMEOUT of the server under test
BODY_TIMEOUT = 1.0
BODY_MIN_RATE = 1_000_000  # bytes per second: a 1 MB body is due 2 s after its head
UPLOAD_LIMIT = 2_000_000  # HASHDB_MAX_UPLOAD_BYTES (the test below sends one byte more)
REQUEST_BUFFER = 1_500_000  # HASHDB_REQUEST_BUFFER_BYTES: room for one upload of 1 MB
HEALTHZ_MEDIAN = 0.1  # seconds: the bar for /healthz under attack
PROBE_TIMEOUT = 5.0  # any single request; plain gthread stalls far longer


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, migrated: Callable[[str], str]
) -> Iterator[tuple[Server, str]]:
    """A real server on SQLite (the serving model does not touch storage) and a key."""
    tmp = tmp_path_factory.mktemp("slow-clients")
    url = migrated(f"sqlite:///{tmp / 'hashdb.sqlite3'}")
    secret = member_key(url, "slow-clients")
    server = start_server(
        url,
        tmp,
        workers=2,
        threads=4,
        header_timeout=HEADER_TIMEOUT,
        body_timeout=BODY_TIMEOUT,
        body_min_rate=BODY_MIN_RATE,
        max_upload_bytes=UPLOAD_LIMIT,
        request_buffer_bytes=REQUEST_BUFFER,
        rate_limit_per_minute=0,
    )
    try:
        yield server, secret
    finally:
        server.stop()


def host_port(server: Server) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").rsplit(":", 1)
    assert host == "127.0.0.1"
    return host, int(port)


def connect(server: Server) -> socket.socket:
    sock = socket.create_connection(host_port(server), timeout=PROBE_TIMEOUT)
    sock.settimeout(PROBE_TIMEOUT)
    return sock


def slowloris(server: Server) -> socket.socket:
    """A connection that has sent a head without its end, as a slowloris does."""
    sock = connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    return sock


def slow_upload(server: Server) -> socket.socket:
    """A connection that has sent a full head for a 1 MB upload, then a few bytes."""
    sock = connect(server)
    sock.sendall(
        b"POST /v1/match/media HTTP/1.1\r\nHost: x\r\n"
        b"Content-Type: multipart/form-data; boundary=xyz\r\n"
        b"Content-Length: 1000000\r\n\r\n--xyz\r\n"
    )
    return sock


def dribble(socks: list[socket.socket], data: bytes) -> None:
    """One more byte on every slow connection, as slow clients keep theirs alive."""
    for sock in socks:
        sock.sendall(data)


def probe(server: Server, path: str = "/healthz", **kwargs: Any) -> tuple[float, int]:
    """Seconds and status of one request on a fresh connection."""
    method = "POST" if "json" in kwargs else "GET"
    start = time.monotonic()
    response = requests.request(method, server.url + path, timeout=PROBE_TIMEOUT, **kwargs)
    return time.monotonic() - start, response.status_code


def match_request(secret: str) -> dict[str, Any]:
    value = random.Random(7).randbytes(32).hex()
    return {
        "json": {"queries": [{"signal_type": "pdq", "value": value}]},
        "headers": {"Authorization": f"Bearer {secret}"},
    }


def assert_served_while(server: Server, secret: str, slow: list[socket.socket]) -> None:
    """/healthz answers fast and an authenticated match works, with `slow` open."""
    seconds = []
    for _ in range(10):
        dribble(slow, b"a")
        elapsed, status = probe(server)
        assert status == 200
        seconds.append(elapsed)
    assert statistics.median(seconds) < HEALTHZ_MEDIAN, seconds
    elapsed, status = probe(server, "/v1/match", **match_request(secret))
    assert status == 200
    assert elapsed < PROBE_TIMEOUT


def read_until_closed(sock: socket.socket, within: float) -> bytes:
    """Everything the server sends until it closes the connection, within `within` s."""
    deadline = time.monotonic() + within
    received = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return received
        except TimeoutError:
            break
        if not data:
            return received
        received += data
    raise AssertionError(f"connection still open after {within}s, got {received[:80]!r}")


def test_slow_clients_neither_hold_the_threads_nor_stay_open(served: tuple[Server, str]) -> None:
    server, secret = served
    slow: list[socket.socket] = []
    try:
        slow += [slowloris(server) for _ in range(12)]
        slow += [slow_upload(server) for _ in range(4)]
        assert_served_while(server, secret, slow)
        slow += [slowloris(server) for _ in range(64 - 12)]
        opened = time.monotonic()
        assert_served_while(server, secret, slow)

        # Deadlines: the head within HEADER_TIMEOUT of the connection, the body
        # within BODY_TIMEOUT + its length / BODY_MIN_RATE of the head; the loop
        # checks them about every quarter second.
        within = HEADER_TIMEOUT + BODY_TIMEOUT + 1_000_000 / BODY_MIN_RATE + 2.0
        answers = [read_until_closed(sock, within) for sock in slow]
        assert time.monotonic() - opened < within
        assert all(answer.startswith(b"HTTP/1.1 408 ") for answer in answers), answers[0]
        body = json.loads(answers[0].partition(b"\r\n\r\n")[2])
        assert body["error"]["code"] == "request_timeout"
    finally:
        for sock in slow:
            sock.close()
    assert probe(server)[1] == 200


def test_an_idle_connection_is_closed_without_an_answer(served: tuple[Server, str]) -> None:
    server, _ = served
    with connect(server) as sock:
        assert read_until_closed(sock, HEADER_TIMEOUT + 2.0) == b""


def test_kept_alive_connections_serve_request_after_request(served: tuple[Server, str]) -> None:
    server, _ = served
    connection = http.client.HTTPConnection(*host_port(server), timeout=PROBE_TIMEOUT)
    try:
        sockets = set()
        for _ in range(5):
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            assert response.status == 200
            response.read()
            assert response.getheader("Connection", "").lower() != "close"
            sockets.add(id(connection.sock))
        assert len(sockets) == 1, "the connection was not kept alive"
    finally:
        connection.close()


def test_pipelined_requests_are_all_answered(served: tuple[Server, str]) -> None:
    server, _ = served
    with connect(server) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answers = read_until_closed(sock, PROBE_TIMEOUT)
    assert answers.count(b"HTTP/1.1 200 ") == 3


def noise_png(side: int) -> bytes:
    """A PNG of random pixels: incompressible, so about 3 * side**2 bytes."""
    pixels = np.random.default_rng(3).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def test_a_one_megabyte_upload_is_matched(served: tuple[Server, str]) -> None:
    server, secret = served
    image = noise_png(600)
    assert 1_000_000 < len(image) < UPLOAD_LIMIT - 10_000
    response = requests.post(
        f"{server.url}/v1/match/media",
        files={"file": ("noise.png", image)},
        headers={"Authorization": f"Bearer {secret}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert "results" in response.json()


def test_expect_100_continue_is_answered_before_the_body(served: tuple[Server, str]) -> None:
    server, secret = served
    body = json.dumps(match_request(secret)["json"]).encode()
    with connect(server) as sock:
        sock.sendall(
            b"POST /v1/match HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
            b"Content-Type: application/json\r\nConnection: close\r\n"
            + f"Authorization: Bearer {secret}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
        )
        assert sock.recv(64).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(body)
        answer = read_until_closed(sock, PROBE_TIMEOUT)
    assert b"HTTP/1.1 200 " in answer


# A head that never ends and outgrows gunicorn's limits (100 fields of 8190 bytes).
ENDLESS_HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(
    f"X-Filler-{i}: {'a' * 8000}\r\n".encode() for i in range(110)
)


@pytest.mark.parametrize(
    ("head", "status", "code"),
    [
        (
            b"POST /v1/match HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            411,
            "length_required",
        ),
        (
            b"POST /v1/match HTTP/1.1\r\nHost: x\r\nContent-Length: 2000001\r\n\r\n",
            413,
            "payload_too_large",
        ),
        (ENDLESS_HEAD, 431, "request_header_fields_too_large"),
    ],
    ids=["chunked", "too-large", "head-too-long"],
)
def test_what_cannot_be_buffered_is_refused(
    served: tuple[Server, str], head: bytes, status: int, code: str
) -> None:
    server, _ = served
    with connect(server) as sock:
        sock.sendall(head)
        answer = read_until_closed(sock, PROBE_TIMEOUT)
    assert answer.startswith(f"HTTP/1.1 {status} ".encode()), answer[:80]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["error"]["code"] == code


def test_a_worker_buffers_a_bounded_number_of_bytes(served: tuple[Server, str]) -> None:
    server, _ = served
    held: list[socket.socket] = []
    try:
        # Three uploads of 1 MB, 800 kB of each sent: whichever worker takes two
        # of them would hold more than its REQUEST_BUFFER bytes, so one at least
        # is refused; the others time out, as their bodies never end.
        for _ in range(3):
            sock = connect(server)
            held.append(sock)
            sock.sendall(b"POST /v1/match/media HTTP/1.1\r\nHost: x\r\n")
            sock.sendall(b"Content-Length: 1000000\r\n\r\n" + b"a" * 800_000)
        assert probe(server)[1] == 200
        within = BODY_TIMEOUT + 1_000_000 / BODY_MIN_RATE + 2.0
        answers = [read_until_closed(sock, within) for sock in held]
        statuses = sorted(answer[9:12] for answer in answers)
        assert statuses[0] == b"408" and statuses[-1] == b"503", statuses
        assert all(b"Retry-After: " in a for a in answers if a.startswith(b"HTTP/1.1 503"))
    finally:
        for sock in held:
            sock.close()
