"""The HTTP API under load: lookups per second and latency, single hashes and batches.

    .venv/bin/python -m benchmarks.api [--hashes 100000] [--seconds 10] [--clients 4]

Sets up a fresh PostgreSQL database (on HASHDB_BENCH_PG, default the local server
at 127.0.0.1:5432 as user postgres), stores 100,000 PDQ hashes from the synthetic
corpus (benchmarks/corpus.py: clusters of near-duplicates, not uniform bits), and
starts the real service with `hashdb serve` (gunicorn, settings as in production:
workers and threads from HASHDB_WORKERS / HASHDB_THREADS, default 2 x 4). Load comes
from separate client processes on 127.0.0.1, each holding one keep-alive
connection and sending the next request as soon as the last is answered (closed
loop), so latency includes the whole HTTP round trip. Half the queried hashes are
edits of stored images (most of them match), half unrelated images.

For each batch size (1, 100, 1000 hashes per request) it prints requests/s,
lookups/s (hashes/s) and p50/p99 latency. The clients share the machine with the
server, as the test says: the numbers are for the whole box, not the server alone.
The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from benchmarks.corpus import make_corpus, make_queries
from hashdb.store import NewHash, Role, Store

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get(
    "HASHDB_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
SERVE = "from hashdb.cli.serve import serve; serve()"
BATCHES = (1, 100, 1000)


@dataclass(frozen=True)
class Result:
    batch: int
    requests: int
    seconds: float
    latencies: list[float]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def create_database() -> tuple[str, str]:
    name = f"hashdb_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    return name, url


def drop_database(name: str) -> None:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def load(url: str, n: int) -> tuple[str, list[str]]:
    """Store `n` corpus hashes; a member key and the hex of 20,000 query hashes."""
    corpus = make_corpus(n)
    queries, _ = make_queries(corpus, 20_000)
    store = Store.open(url, migrate_schema=True)  # a fresh database
    try:
        member, key = store.members.create("bench", Role.MEMBER)
        step = 10_000
        for start in range(0, n, step):
            part = corpus.codes[start : start + step]
            store.hashes.add(member.id, [NewHash("pdq", bytes(code)) for code in part])
    finally:
        store.close()
    return key.secret, [bytes(q).hex() for q in queries]


def start_server(url: str, port: int) -> subprocess.Popen[bytes]:
    # The rate limits are off: this measures the service, not the limiters' verdicts.
    env = dict(
        os.environ,
        HASHDB_DATABASE_URL=url,
        HASHDB_LOG_LEVEL="warning",
        HASHDB_RATE_LIMIT_PER_MINUTE="0",
        HASHDB_KEY_COST_PER_SECOND="0",
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-c", SERVE, "--bind", f"127.0.0.1:{port}"]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    ready = 0
    while ready < 10:
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/readyz")
            ready = ready + 1 if conn.getresponse().status == 200 else 0
            conn.close()
        except OSError:
            ready = 0
        time.sleep(0.1)
    return server


def client(
    port: int, secret: str, bodies: list[bytes], seconds: float, warmup: float, out: mp.Queue
) -> None:
    """One closed-loop client; puts its latencies, or the error that stopped it."""
    try:
        out.put(_client_loop(port, secret, bodies, seconds, warmup))
    except Exception as exc:  # reported by the parent
        out.put(f"client failed: {exc!r}")


def _client_loop(
    port: int, secret: str, bodies: list[bytes], seconds: float, warmup: float
) -> list[float]:
    """Requests are encoded once, up front, and responses read with just enough
    parsing to find their end: the load generator shares the 2 cores with the
    server, so what it spends per request is taken from the server (http.client
    cost about 3x as much CPU per request as this loop)."""
    requests = [
        (
            f"POST /v1/match HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
            f"Authorization: Bearer {secret}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
        for body in bodies
    ]
    latencies: list[float] = []
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        start = time.perf_counter()
        measure_from, stop = start + warmup, start + warmup + seconds
        i = 0
        while True:
            t0 = time.perf_counter()
            if t0 >= stop:
                break
            sock.sendall(requests[i % len(requests)])
            _read_response(reader)
            t1 = time.perf_counter()
            if t0 >= measure_from:
                latencies.append(t1 - t0)
            i += 1
    return latencies


def _read_response(reader: BinaryIO) -> bytes:
    """One HTTP/1.1 response with a Content-Length (what the service sends); its body."""
    status = reader.readline()
    if not status.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"unexpected response: {status!r}")
    length = 0
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return reader.read(length)


def run(port: int, secret: str, hexes: list[str], batch: int, args: argparse.Namespace) -> Result:
    bodies = []
    for start in range(0, max(len(hexes), batch * 4), batch):
        chunk = [hexes[(start + k) % len(hexes)] for k in range(batch)]
        queries = [{"signal_type": "pdq", "value": h} for h in chunk]
        bodies.append(json.dumps({"queries": queries}).encode())
    context = mp.get_context("spawn")
    out: mp.Queue = context.Queue()
    procs = [
        context.Process(
            target=client,
            args=(
                port,
                secret,
                bodies[c :: args.clients] or bodies,
                args.seconds,
                args.warmup,
                out,
            ),
        )
        for c in range(args.clients)
    ]
    for p in procs:
        p.start()
    latencies: list[float] = []
    for _ in procs:
        got = out.get(timeout=args.seconds + args.warmup + 120)
        if isinstance(got, str):
            raise RuntimeError(got)
        latencies.extend(got)
    for p in procs:
        p.join()
    return Result(batch, len(latencies), args.seconds, latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hashes", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--batches", type=int, nargs="*", default=list(BATCHES))
    args = parser.parse_args()

    name, url = create_database()
    server = None
    try:
        t = time.perf_counter()
        secret, hexes = load(url, args.hashes)
        print(f"stored {args.hashes:,} PDQ hashes in {time.perf_counter() - t:.1f}s")
        port = free_port()
        t = time.perf_counter()
        server = start_server(url, port)
        print(
            f"server ready in {time.perf_counter() - t:.1f}s on 127.0.0.1:{port} "
            f"({os.cpu_count()} CPUs, {args.clients} client processes)"
        )
        print(f"{'batch':>6} {'requests/s':>11} {'lookups/s':>11} {'p50 ms':>8} {'p99 ms':>8}")
        for batch in args.batches:
            r = run(port, secret, hexes, batch, args)
            print(
                f"{batch:>6} {r.per_second:>11,.0f} {r.per_second * batch:>11,.0f} "
                f"{r.percentile(50) * 1000:>8.2f} {r.percentile(99) * 1000:>8.2f}",
                flush=True,
            )
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
        drop_database(name)


if __name__ == "__main__":
    main()
