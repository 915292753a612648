"""The gunicorn worker `hashdb serve` runs: no thread waits on a client.

gunicorn's threaded worker (gthread) hands a connection to a thread as soon as its
first byte arrives, and the thread then reads the rest of the request with
blocking reads that have no deadline: a few clients sending their headers one
byte at a time hold every thread, and the server stops answering (a slowloris).
`BufferingWorker` keeps gthread (its thread pool, its poller, its kept-alive
connections parked in the poller) and moves all reading of a request into the
worker's event loop, which never blocks:

- A connection, new or kept alive, is read non-blockingly into a buffer until the
  request is complete: its head up to the blank line, and then, if the head
  declares a `Content-Length`, that many bytes of body. Only a complete request is
  handed to a thread, through gunicorn's own parser (the buffer goes into its
  unreader), so a thread never waits for a client's bytes: its reads from the
  socket do not block, and finding nothing there counts as the client having gone.
- Deadlines: the head must be complete within `header_timeout` seconds of its
  first chance to arrive; the body within `body_timeout` seconds plus its length
  divided by `body_min_rate` (bytes per second) after the head. Past its
  deadline a connection that sent part of a request is answered 408 and closed,
  one that sent nothing is closed, as gthread closes idle kept-alive ones.
  Deadlines are checked on gthread's loop turns, which come at least once a second.
- Sizes: a head longer than gunicorn's own limits allow (`limit_request_line`,
  `limit_request_fields`, `limit_request_field_size`) is answered 431, a body
  declared larger than `max_body_bytes` 413, and a chunked body (any
  `Transfer-Encoding`) 411 Length Required: only bodies of declared length are
  accepted, so every body is bounded before it is read. A worker holds at most
  `buffer_bytes` of requests still arriving, all connections together; a request
  that would go beyond is answered 503 with `Retry-After`. The number of
  connections is gunicorn's `worker_connections`, as in gthread.
- Refusals carry the API's one error shape (`api.errors`) and `Connection: close`;
  the connection then lingers in the loop, its input discarded, for
  `LINGER_SECONDS` at most, so the client can read the answer before the socket
  closes (closing with unread input would reset it). Connections gthread closes
  after a response linger the same way, in the loop: gthread's own graceful close
  waits for the client in the loop's thread.

A request with `Expect: 100-continue` gets its `100 Continue` from the loop when
its body is due; gunicorn sends a second one when the thread takes the request,
which HTTP allows (a client must accept any number of 1xx responses). Not covered:
TLS, HTTP/2 and the uwsgi protocol, which `hashdb serve` does not use, are left to
gthread unchanged; and a client that reads its response slowly still holds the
thread that writes it.

This relies on gthread's internals (`enqueue_req`, `accept`, `murder_keepalived`,
`TConn`, the parser's unreader); pyproject.toml pins the gunicorn versions it was
written against.
"""

from __future__ import annotations

import contextlib
import errno
import json
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from http import HTTPStatus
from typing import Any, cast

from gunicorn import http, util  # type: ignore[import-untyped]
from gunicorn.http.message import (  # type: ignore[import-untyped]
    DEFAULT_MAX_HEADERFIELD_SIZE,
    MAX_HEADERS,
    MAX_REQUEST_LINE,
)
from gunicorn.http.unreader import SocketUnreader  # type: ignore[import-untyped]
from gunicorn.http2 import negotiation  # type: ignore[import-untyped]
from gunicorn.workers.gthread import TConn, ThreadWorker  # type: ignore[import-untyped]

from hashdb.settings import Settings

#: Seconds a refused or finished connection waits for the client to close its side.
LINGER_SECONDS = 2.0
#: Largest single read from a client in the loop.
RECV_BYTES = 256 * 1024
#: Seconds between two sweeps for overdue arrivals (gthread's loop turns more often).
SWEEP_SECONDS = 0.25
#: Seconds a client is told to wait after a 503 for lack of buffer space.
RETRY_AFTER_SECONDS = 5


@dataclass(frozen=True)
class Limits:
    """How long and how much a worker waits for a request to arrive."""

    header_timeout: float  # seconds for the head, from its first chance to arrive
    body_timeout: float  # seconds for the body, beyond its length / body_min_rate
    body_min_rate: int  # bytes per second a body is allowed at the least
    max_body_bytes: int  # largest declared Content-Length (413 beyond)
    buffer_bytes: int  # most bytes of arriving requests one worker holds (503 beyond)

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        """The limits HASHDB_HEADER_TIMEOUT, HASHDB_BODY_* and friends configure."""
        return cls(
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            body_min_rate=settings.body_min_rate,
            max_body_bytes=settings.max_upload_bytes,
            buffer_bytes=settings.request_buffer_bytes,
        )


def worker_class(limits: Limits) -> type[BufferingWorker]:
    """The worker class for gunicorn's `worker_class` setting, bound to `limits`."""
    return cast(
        type[BufferingWorker], type("BufferingWorker", (BufferingWorker,), {"limits": limits})
    )


@dataclass(frozen=True)
class _Framing:
    """What the loop needs from a request head: how long its body is, and how sent."""

    length: int
    transfer_encoding: bool
    expect_continue: bool


def _framing(head: bytes) -> _Framing:
    """Read the framing headers of a complete head.

    A malformed or repeated Content-Length counts as no body: gunicorn's parser
    refuses such a head (400) before it reads any body, so nothing is waited for.
    """
    lengths: list[bytes] = []
    transfer_encoding = expect_continue = False
    request_line, _, fields = head.removeprefix(b"\r\n").partition(b"\r\n")
    for line in fields.split(b"\r\n"):
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            lengths.append(value.strip())
        elif name == b"transfer-encoding":
            transfer_encoding = True
        elif name == b"expect":
            expect_continue = value.strip().lower() == b"100-continue"
    length = int(lengths[0]) if len(lengths) == 1 and lengths[0].isdigit() else 0
    expect_continue = expect_continue and request_line.endswith(b"HTTP/1.1")
    return _Framing(length, transfer_encoding, expect_continue)


def _head_limit(cfg: Any) -> int:
    """Longest head gunicorn's parser accepts under `cfg`, as it computes it."""
    line = cfg.limit_request_line
    line = 1024 * 1024 if line == 0 else MAX_REQUEST_LINE if line < 0 else line
    fields = cfg.limit_request_fields
    fields = MAX_HEADERS if fields <= 0 or fields > MAX_HEADERS else fields
    size = cfg.limit_request_field_size
    size = DEFAULT_MAX_HEADERFIELD_SIZE if size <= 0 else size
    return int(line) + 2 + int(fields) * (int(size) + 2) + 4


class _NoWaitUnreader(SocketUnreader):  # type: ignore[misc]
    """gunicorn's socket unreader whose reads never block a thread.

    The loop hands a thread the whole request in the buffer; a read that finds
    the socket empty returns b"", which gunicorn's parser takes as the client
    having gone, so a request that was not whole closes instead of waiting.
    """

    def chunk(self, size_hint: int | None = None) -> bytes:
        size: int = self.mxchunk
        if size_hint and size_hint > size:
            size = min(size_hint, self.max_body_chunk)
        try:
            data: bytes = self.sock.recv(size, socket.MSG_DONTWAIT)
        except (BlockingIOError, InterruptedError):
            return b""
        return data


class _Conn(TConn):  # type: ignore[misc]
    """gthread's connection, whose graceful close lingers in the loop, not a thread."""

    def __init__(self, *args: Any, linger: Callable[[_Conn], None]) -> None:
        super().__init__(*args)
        self._linger = linger

    def close(self, graceful: bool = False) -> None:
        if graceful:
            self._linger(self)
        else:
            util.close(self.sock)


@dataclass(eq=False)
class _Arrival:
    """A connection whose request is still arriving, or whose close is lingering."""

    conn: Any  # gthread's TConn
    deadline: float
    buf: bytearray = field(default_factory=bytearray)
    head_end: int = -1  # just past the head's blank line; -1 until it came
    scanned: int = 0  # bytes of `buf` searched for the blank line so far
    body_length: int = 0
    lingering: bool = False  # answered or finished: input is discarded until EOF


class BufferingWorker(ThreadWorker):  # type: ignore[misc]
    """gthread, but requests are read whole in the event loop before a thread runs them."""

    limits: Limits

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._arrivals: dict[Any, _Arrival] = {}
        self._buffered = 0  # bytes held in `_arrivals`, at most limits.buffer_bytes
        self._head_limit = _head_limit(self.cfg)
        self._next_sweep = 0.0

    # gthread's entry points ------------------------------------------------------

    def accept(self, listener: Any) -> None:
        """gthread's accept, making connections that close without blocking the loop."""
        try:
            client_sock, client_addr = listener.accept()
            self.nr_conns += 1
            conn = _Conn(
                self.cfg, client_sock, client_addr, listener.getsockname(), linger=self._linger
            )
            self.enqueue_req(conn)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise

    def enqueue_req(self, conn: Any) -> None:
        """Read `conn`'s next request in the loop; a thread gets it once it is whole.

        gthread calls this for a new connection, for a kept-alive one that became
        readable, and for one whose next request was read ahead with the last.
        """
        if not self._bufferable(conn):
            super().enqueue_req(conn)
            return
        held = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        conn.sock.setblocking(False)
        arrival = _Arrival(conn, time.monotonic() + self.limits.header_timeout, bytearray(held))
        self._buffered += len(held)
        if self._watch(arrival):
            self._advance(arrival)

    def murder_keepalived(self, force: bool = False) -> None:
        """gthread's sweep of idle kept-alive connections, and of overdue arrivals."""
        super().murder_keepalived(force)
        now = time.monotonic()
        if now < self._next_sweep and not force:
            return
        self._next_sweep = now + SWEEP_SECONDS
        for arrival in list(self._arrivals.values()):
            if force or (now >= arrival.deadline and (arrival.lingering or not arrival.buf)):
                self._drop(arrival)  # an idle connection closes silently, as gthread's do
            elif now >= arrival.deadline:
                self._refuse(
                    arrival, HTTPStatus.REQUEST_TIMEOUT, "the request did not arrive in time"
                )

    # the loop's side -------------------------------------------------------------

    def _bufferable(self, conn: Any) -> bool:
        """Whether the loop can read this connection's requests itself (plain HTTP/1)."""
        if conn.is_http2 or self.cfg.is_ssl or getattr(self.cfg, "protocol", "http") != "http":
            return False
        fresh = conn.parser is None
        return not (fresh and negotiation.prior_knowledge_allowed(self.cfg, conn.client))

    def _on_readable(self, arrival: _Arrival, _sock: Any) -> None:
        if self._arrivals.get(arrival.conn) is not arrival:
            return  # an event from before the connection left the loop
        try:
            data = arrival.conn.sock.recv(RECV_BYTES)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._drop(arrival)
            return
        if not data:
            self._drop(arrival)  # the client closed (or finished closing) its side
        elif arrival.lingering:
            pass  # discarded: the answer was sent
        elif self._buffered + len(data) > self.limits.buffer_bytes:
            self._refuse(
                arrival,
                HTTPStatus.SERVICE_UNAVAILABLE,
                "the server holds too many arriving requests; retry shortly",
            )
        else:
            arrival.buf += data
            self._buffered += len(data)
            self._advance(arrival)

    def _advance(self, arrival: _Arrival) -> None:
        """Hand the request to a thread if it is whole, refuse it if it cannot be."""
        buf, limits = arrival.buf, self.limits
        if arrival.head_end < 0:
            # Searching from where the last search ended (less the 3 bytes a
            # blank line may straddle) keeps a head dribbled byte by byte linear.
            start = max(arrival.scanned - 3, 2 if buf.startswith(b"\r\n") else 0)
            end = buf.find(b"\r\n\r\n", start)
            if end < 0:
                arrival.scanned = len(buf)
                if len(buf) > self._head_limit:
                    self._refuse(
                        arrival,
                        HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                        "the request head is longer than the server accepts",
                    )
                return
            framing = _framing(bytes(buf[:end]))
            if framing.transfer_encoding:
                self._refuse(
                    arrival,
                    HTTPStatus.LENGTH_REQUIRED,
                    "a request body needs a Content-Length; chunked ones are refused",
                )
                return
            if framing.length > limits.max_body_bytes:
                self._refuse(
                    arrival,
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                    "request body exceeds the configured upload limit",
                )
                return
            arrival.head_end, arrival.body_length = end + 4, framing.length
            due = limits.body_timeout + framing.length / limits.body_min_rate
            arrival.deadline = time.monotonic() + due
            if framing.expect_continue and len(buf) < arrival.head_end + framing.length:
                self._send(arrival.conn.sock, b"HTTP/1.1 100 Continue\r\n\r\n")
        if len(buf) >= arrival.head_end + arrival.body_length:
            self._hand_over(arrival)

    def _hand_over(self, arrival: _Arrival) -> None:
        """Give the whole request to gunicorn's parser, and the connection to a thread."""
        conn = self._forget(arrival)
        if conn.parser is None:
            conn.parser = http.get_parser(self.cfg, conn.sock, conn.client)
            conn.parser.unreader = _NoWaitUnreader(conn.sock)
        conn.parser.unreader.unread(arrival.buf)
        conn.data_ready = True  # gthread's handle() must not wait for the socket
        super().enqueue_req(conn)

    def _refuse(self, arrival: _Arrival, status: HTTPStatus, why: str) -> None:
        """Answer `status` in the API's error shape, then linger and close."""
        # The API's codes: werkzeug's exception names (api.errors), 413's its own.
        code = status.phrase.lower().replace(" ", "_").replace("-", "_")
        code = "payload_too_large" if status == 413 else code
        body = json.dumps({"error": {"code": code, "message": why, "details": {}}}).encode()
        retry = f"Retry-After: {RETRY_AFTER_SECONDS}\r\n" if status == 503 else ""
        head = (
            f"HTTP/1.1 {status.value} {status.phrase}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n{retry}Connection: close\r\n\r\n"
        )
        self._send(arrival.conn.sock, head.encode() + body)
        self._start_lingering(arrival)

    def _linger(self, conn: Any) -> None:
        """Close `conn` gracefully after gthread served it, without waiting in the loop."""
        self.nr_conns += 1  # gthread has already counted it out
        conn.sock.setblocking(False)
        arrival = _Arrival(conn, 0.0)
        if self._watch(arrival):
            self._start_lingering(arrival)

    def _watch(self, arrival: _Arrival) -> bool:
        """Put `arrival` in the loop's care; False if its socket is already unusable."""
        self._arrivals[arrival.conn] = arrival
        try:
            callback = partial(self._on_readable, arrival)
            self.poller.register(arrival.conn.sock, selectors.EVENT_READ, callback)
        except (OSError, ValueError, KeyError):
            self._drop(arrival)
            return False
        return True

    def _start_lingering(self, arrival: _Arrival) -> None:
        self._buffered -= len(arrival.buf)
        arrival.buf = bytearray()
        arrival.lingering = True
        arrival.deadline = time.monotonic() + LINGER_SECONDS
        try:
            arrival.conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._drop(arrival)

    def _drop(self, arrival: _Arrival) -> None:
        if arrival.conn in self._arrivals:
            self.nr_conns -= 1
            util.close(self._forget(arrival).sock)

    def _forget(self, arrival: _Arrival) -> Any:
        """Take `arrival` out of the loop's care; returns its connection."""
        conn = arrival.conn
        if self._arrivals.pop(conn, None) is not None:
            self._buffered -= len(arrival.buf)
            with contextlib.suppress(OSError, ValueError, KeyError):  # closed already
                self.poller.unregister(conn.sock)
        return conn

    @staticmethod
    def _send(sock: Any, data: bytes) -> None:
        """Send a short answer without waiting: what does not fit is dropped."""
        with contextlib.suppress(OSError):
            sock.send(data)
