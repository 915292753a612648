"""hashdb beside Meta's HMA 2.0 (OpenMediaMatch): same hashes, same load tool, same run.

    .venv/bin/python -m benchmarks.api_vs_hma --hma-dir DIR [--hashes 20000]
        [--seconds 10] [--rounds 3] [--connections 1 8 64] [--reuse-port] [--floor]

DIR is where HMA was installed as ../shared/peers/README.md says: `DIR/venv` (its
virtual environment, `pip install -e ...[prod]`) and `DIR/hasher-matcher-actioner`
(the extracted source). Nothing of HMA is in this repository: this script drives
it from outside, as a separate program in its own environment.

What it does, in order:

1. Makes N PDQ hashes (the synthetic corpus of benchmarks/corpus.py, clusters of
   near-duplicates) and N random ones that match nothing.
2. HMA: a scratch PostgreSQL database, HMA's own migrations (`flask db upgrade`),
   the bank BENCH and the N hashes added through HMA's curation API
   (`POST /c/banks`, `POST /c/bank/BENCH/signal`) called in one process through
   Flask's test client (the same view code as over HTTP, without the ~100/s HTTP
   round trips), then HMA's own index build (`build_all_indices`, what its
   `flask build_indices` command and its indexer task run). No SQL is written
   into HMA's tables by this script. Then HMA's best lookup configuration is
   started: gunicorn, the matcher-only config, 2 workers, OMP_NUM_THREADS=1;
   ready once a stored hash is found.
3. HMA alone under load: `GET /m/raw_lookup` and `GET /m/lookup` with stored
   hashes; then HMA is stopped.
4. hashdb: a scratch database, the same N hashes through the store, `hashdb
   serve` with its defaults (workers and threads from settings, 2 x 4) with the
   per-key limits turned off (HASHDB_RATE_LIMIT_PER_MINUTE=0 for requests,
   HASHDB_KEY_COST_PER_SECOND=0 for index work, which at its default would cap
   batches) so no limiter caps the run. Under load: `POST /v1/match` with one stored hash, one
   random non-matching hash, and batches of 1,000 stored hashes.
   With --reuse-port the single-hash run is repeated with gunicorn's `reuse_port`
   set (injected into gunicorn's config by the launcher, serve's default
   untouched), to see whether it spreads keep-alive connections over workers.
   With --floor, the serving floor as well: `hashdb serve`'s worker class, limits
   and layout around an app that reads the body and answers a fixed result
   (FLOOR), loaded as hashdb is. What it reaches is the most any request path on
   this server could, so its ratio to HMA says whether a target can be met on this
   server at all, and how much of a request's time the server leaves the app.
5. Both databases are dropped, the servers stopped, whatever happened.

Load comes from wrk (a compiled, event-driven generator: the client costs far
less CPU than the server it loads, which matters on a small box where they
share the cores), keep-alive, each target at each connection count for
--seconds, --rounds times; requests built by benchmarks/wrk/lookup.lua. The
table gives the median over rounds of req/s (and hashes/s for batches), p50 and
p99 latency (wrk's, per round, median over rounds) and the ratio hashdb/HMA
against HMA's raw_lookup (its fastest lookup) and lookup. A run with any non-2xx
response or socket error is reported as such, not silently counted.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from benchmarks.api import ROOT, create_database, drop_database, free_port
from benchmarks.corpus import make_corpus
from hashdb.store import NewHash, Role, Store

LUA = ROOT / "benchmarks" / "wrk" / "lookup.lua"
HMA_BANK = "BENCH"

# hashdb's `serve`, optionally with gunicorn's reuse_port forced on: gunicorn's
# Config is created before serve's options are set, so setting it there leaves
# every other option as serve chooses.
SERVE = """
import os, sys
if os.environ.get("BENCH_REUSE_PORT") == "1":
    import gunicorn.config
    _init = gunicorn.config.Config.__init__
    def _with_reuse_port(self, *args, **kwargs):
        _init(self, *args, **kwargs)
        self.set("reuse_port", True)
    gunicorn.config.Config.__init__ = _with_reuse_port
from hashdb.cli.serve import serve
serve()
"""

# The serving floor: `hashdb serve`'s own gunicorn worker class, limits, workers and
# threads, around an app that does nothing but read the body and answer a fixed
# result. No app served this way can answer faster, so its ratio to HMA bounds what
# any request path on this server can reach on the same machine in the same run.
FLOOR = """
import sys
from gunicorn.app.base import BaseApplication
from api.serving import Limits, worker_class
from hashdb.settings import Settings

BODY = b'{"results":[{"index":0,"signal_type":"pdq","value":"","low_quality":false,'
BODY += b'"matches":[],"videos":null}]}'
HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(BODY)))]

def app(environ, start_response):
    environ["wsgi.input"].read()
    start_response("200 OK", HEADERS)
    return [BODY]

class Floor(BaseApplication):
    def load_config(self):
        settings = Settings()
        self.cfg.set("bind", sys.argv[1])
        self.cfg.set("workers", settings.workers)
        self.cfg.set("threads", settings.threads)
        self.cfg.set("worker_class", worker_class(Limits.of(settings)))
        self.cfg.set("loglevel", "warning")
    def load(self):
        return app

Floor().run()
"""

# Runs in HMA's virtual environment: bank and hashes through the curation API
# (Flask's test client: the same views as over HTTP), then HMA's index build.
HMA_LOADER = """
import sys
from OpenMediaMatch.app import create_app
from OpenMediaMatch.persistence import get_storage
from OpenMediaMatch.background_tasks.build_index import build_all_indices

bank = sys.argv[1]
hexes = [line.strip() for line in sys.stdin if line.strip()]
app = create_app()
client = app.test_client()
r = client.post("/c/banks", json={"name": bank})
assert r.status_code == 201, (r.status_code, r.get_data(as_text=True))
for i, h in enumerate(hexes):
    r = client.post(f"/c/bank/{bank}/signal", json={"pdq": h})
    assert r.status_code in (200, 201), (r.status_code, r.get_data(as_text=True))
with app.app_context():
    storage = get_storage()
    build_all_indices(storage, storage, storage)
print(f"added {len(hexes)} signals and built the index")
"""


@dataclass(frozen=True)
class Run:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    failures: int


@dataclass(frozen=True)
class Row:
    server: str
    target: str
    connections: int
    batch: int
    runs: list[Run]

    @property
    def rps(self) -> float:
        return statistics.median(r.requests_per_s for r in self.runs)

    @property
    def p50(self) -> float:
        return statistics.median(r.p50_ms for r in self.runs)

    @property
    def p99(self) -> float:
        return statistics.median(r.p99_ms for r in self.runs)

    @property
    def failures(self) -> int:
        return sum(r.failures for r in self.runs)


# --- load -------------------------------------------------------------------


def wrk(url: str, connections: int, seconds: float, args: list[str]) -> Run:
    threads = min(connections, os.cpu_count() or 1)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "30s",
        "-s",
        str(LUA),
        url,
        "--",
        *args,
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            got = json.loads(line.removeprefix("RESULT "))
            return Run(
                requests_per_s=got["requests"] / got["seconds"],
                p50_ms=got["p50_ms"],
                p99_ms=got["p99_ms"],
                failures=got["non_2xx"] + got["socket_errors"],
            )
    raise RuntimeError(f"wrk gave no result (exit {done.returncode}): {done.stderr.strip()}")


def measure(
    server: str,
    target: str,
    url: str,
    lua_args: list[str],
    batch: int,
    args: argparse.Namespace,
) -> list[Row]:
    rows = []
    wrk(url, max(args.connections), min(3.0, args.seconds), lua_args)  # warm-up, not counted
    for connections in args.connections:
        runs = [wrk(url, connections, args.seconds, lua_args) for _ in range(args.rounds)]
        row = Row(server, target, connections, batch, runs)
        print(
            f"  {server:<6} {target:<38} c={connections:<3} {row.rps:>9,.0f} req/s  "
            f"p50 {row.p50:7.2f} ms  p99 {row.p99:7.2f} ms"
            + (f"  FAILURES {row.failures}" if row.failures else ""),
            flush=True,
        )
        rows.append(row)
    return rows


def wait_http(
    port: int,
    path: str,
    ok: Callable[[int, bytes], bool],
    server: subprocess.Popen[bytes],
    limit: float,
) -> None:
    """Poll GET path until `ok(status, body)` holds three times in a row."""
    deadline = time.monotonic() + limit
    good = 0
    while good < 3:
        if server.poll() is not None:
            raise RuntimeError(f"server exited ({server.returncode}) before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"server not ready within {limit:.0f}s ({path})")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            conn.close()
            good = good + 1 if ok(response.status, body) else 0
        except OSError:
            good = 0
        time.sleep(0.2)


def stop(server: subprocess.Popen[bytes] | None) -> None:
    if server is None or server.poll() is not None:
        return
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


# --- HMA --------------------------------------------------------------------


@dataclass(frozen=True)
class Hma:
    venv: Path
    src: Path
    configs: Path

    @classmethod
    def at(cls, directory: Path) -> Hma:
        project = directory / "hasher-matcher-actioner"
        hma = cls(directory / "venv", project / "src", project / "reference_omm_configs")
        for needed in (hma.venv / "bin" / "gunicorn", hma.src / "OpenMediaMatch"):
            if not needed.exists():
                raise ValueError(
                    f"--hma-dir {directory}: {needed} is missing "
                    "(install HMA as ../shared/peers/README.md says)"
                )
        return hma

    def env(self, database_uri: str, config: str) -> dict[str, str]:
        return dict(
            os.environ,
            OMM_CONFIG=str(self.configs / config),
            OMM_DATABASE_URI=database_uri,
            OMP_NUM_THREADS="1",
        )


def hma_prepare(hma: Hma, database_uri: str, hexes: list[str]) -> None:
    """HMA's migrations, then the bank, the hashes and the index (HMA_LOADER)."""
    env = hma.env(database_uri, "development_omm_config.py")
    env["MIGRATION_COMMAND"] = "1"
    flask = str(hma.venv / "bin" / "flask")
    migrate = [flask, "--app", "OpenMediaMatch.app", "db", "upgrade"]
    migrate += ["--directory", "OpenMediaMatch/migrations"]
    load = [str(hma.venv / "bin" / "python"), "-c", HMA_LOADER, HMA_BANK]
    for step, command, given in (
        ("migrations", migrate, b""),
        ("loading hashes", load, "\n".join(hexes).encode()),
    ):
        done = subprocess.run(
            command, cwd=hma.src, env=env, input=given, capture_output=True, check=False
        )
        if done.returncode != 0:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-15:]
            raise SystemExit(f"HMA {step} failed (exit {done.returncode}):\n" + "\n".join(tail))


def hma_start(hma: Hma, database_uri: str, port: int, probe: str) -> subprocess.Popen[bytes]:
    env = hma.env(database_uri, "scaled_deployment_matcher_omm_config.py")
    server = subprocess.Popen(
        [
            str(hma.venv / "bin" / "gunicorn"),
            "-w",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
            "--log-level",
            "warning",
            "OpenMediaMatch.app:create_app()",
        ],
        cwd=hma.src,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def found(status: int, body: bytes) -> bool:
        return status == 200 and bool(json.loads(body).get("matches"))

    wait_http(port, f"/m/raw_lookup?signal_type=pdq&signal={probe}", found, server, 300)
    return server


# --- hashdb -----------------------------------------------------------------


def hashdb_load(url: str, hexes: list[str]) -> str:
    store = Store.open(url, migrate_schema=True)  # a fresh database
    try:
        member, key = store.members.create("bench", Role.MEMBER)
        step = 10_000
        for start in range(0, len(hexes), step):
            part = hexes[start : start + step]
            store.hashes.add(member.id, [NewHash("pdq", bytes.fromhex(h)) for h in part])
    finally:
        store.close()
    return key.secret


def floor_start(port: int) -> subprocess.Popen[bytes]:
    """The serving floor (FLOOR) on `port`, ready once it answers."""
    command = [sys.executable, "-c", FLOOR, f"127.0.0.1:{port}"]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    wait_http(port, "/", lambda status, _: status == 200, server, 60)
    return server


def hashdb_start(url: str, port: int, reuse_port: bool) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        HASHDB_DATABASE_URL=url,
        HASHDB_LOG_LEVEL="warning",
        HASHDB_RATE_LIMIT_PER_MINUTE="0",
        HASHDB_KEY_COST_PER_SECOND="0",
        BENCH_REUSE_PORT="1" if reuse_port else "0",
    )
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [sys.executable, "-c", SERVE, "--quiet", "--bind", f"127.0.0.1:{port}"]
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    wait_http(port, "/readyz", lambda status, _: status == 200, server, 120)
    return server


# --- report -----------------------------------------------------------------


def table(rows: list[Row]) -> None:
    hma = {(r.target, r.connections): r for r in rows if r.server == "HMA"}
    print()
    print(
        f"{'server':<7} {'target':<38} {'conns':>5} {'req/s':>9} {'hashes/s':>10} "
        f"{'p50 ms':>8} {'p99 ms':>8} {'x raw_lookup':>12} {'x lookup':>9} "
        f"{'p99 / raw p99':>13}"
    )
    for r in rows:
        raw = hma.get(("GET /m/raw_lookup", r.connections))
        lookup = hma.get(("GET /m/lookup", r.connections))
        hashes = r.rps * r.batch

        def ratio(base: Row | None, mine: float = hashes) -> str:
            return f"{mine / base.rps:.2f}" if base and base.rps else "-"

        p99_ratio = f"{r.p99 / raw.p99:.2f}" if raw and raw.p99 else "-"
        print(
            f"{r.server:<7} {r.target:<38} {r.connections:>5} {r.rps:>9,.0f} {hashes:>10,.0f} "
            f"{r.p50:>8.2f} {r.p99:>8.2f} {ratio(raw):>12} {ratio(lookup):>9} {p99_ratio:>13}"
            + (f"  ({r.failures} failed responses)" if r.failures else "")
        )
    print(
        "ratios: hashdb hashes/s over HMA req/s (one hash per HMA request) at the same "
        "connection count; p99 / raw p99 below 1 is better than HMA."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hma-dir", type=Path, required=True, help="where HMA is installed")
    parser.add_argument("--hashes", type=int, default=20_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, nargs="+", default=[1, 8, 64])
    parser.add_argument("--batch", type=int, default=1000, help="hashes per batch request")
    parser.add_argument(
        "--reuse-port", action="store_true", help="also run hashdb with gunicorn reuse_port"
    )
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also run an app that does nothing on hashdb serve's worker (the serving floor)",
    )
    args = parser.parse_args()
    if args.hashes < 1 or args.seconds <= 0 or args.rounds < 1 or min(args.connections) < 1:
        parser.error("--hashes, --seconds, --rounds and --connections must be positive")
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install wrk)")
    try:
        hma = Hma.at(args.hma_dir.resolve())
    except ValueError as exc:
        parser.error(str(exc))

    corpus = make_corpus(args.hashes)
    stored = [bytes(code).hex() for code in corpus.codes]
    rng = random.Random(7)
    unmatched = [rng.randbytes(32).hex() for _ in range(max(args.hashes, 4096))]
    work = Path(tempfile.mkdtemp(prefix="hashdb-vs-hma-"))
    stored_file, unmatched_file = work / "stored.txt", work / "unmatched.txt"
    stored_file.write_text("\n".join(random.Random(3).sample(stored, len(stored))) + "\n")
    unmatched_file.write_text("\n".join(unmatched) + "\n")

    print(
        f"{args.hashes:,} PDQ hashes; wrk keep-alive, {args.seconds:g}s x {args.rounds} rounds "
        f"per point, connections {args.connections}; {os.cpu_count()} CPUs shared by "
        "server, database and wrk"
    )
    print(
        "hashdb: `hashdb serve` defaults (2 workers x 4 threads), per-key limits OFF "
        "(HASHDB_RATE_LIMIT_PER_MINUTE=0, HASHDB_KEY_COST_PER_SECOND=0) so they do not "
        "cap the run"
    )
    print("HMA: matcher-only config, gunicorn -w 2, OMP_NUM_THREADS=1")
    rows: list[Row] = []
    databases: list[str] = []
    server: subprocess.Popen[bytes] | None = None
    try:
        name, url = create_database()
        databases.append(name)
        hma_uri = (
            make_url(url)
            .set(drivername="postgresql+psycopg2")
            .render_as_string(hide_password=False)
        )
        t = time.perf_counter()
        hma_prepare(hma, hma_uri, stored)
        print(f"HMA: {args.hashes:,} hashes added and indexed in {time.perf_counter() - t:.0f}s")
        port = free_port()
        server = hma_start(hma, hma_uri, port, stored[0])
        base = f"http://127.0.0.1:{port}"
        for target, path in (
            ("GET /m/raw_lookup", "/m/raw_lookup"),
            ("GET /m/lookup", "/m/lookup"),
        ):
            rows += measure("HMA", target, base + path, ["get", str(stored_file)], 1, args)
        stop(server)
        server = None
        drop_database(databases.pop())

        name, url = create_database()
        databases.append(name)
        secret = hashdb_load(url, stored)
        variants = [False, True] if args.reuse_port else [False]
        for reuse_port in variants:
            port = free_port()
            server = hashdb_start(url, port, reuse_port)
            base = f"http://127.0.0.1:{port}/v1/match"
            suffix = " reuse_port" if reuse_port else ""
            targets = [("POST /v1/match 1 stored", stored_file, 1)]
            if not reuse_port:
                targets += [
                    ("POST /v1/match 1 unmatched", unmatched_file, 1),
                    (f"POST /v1/match {args.batch} stored", stored_file, args.batch),
                ]
            for target, hashes_file, batch in targets:
                lua_args = ["match", str(hashes_file), secret, str(batch)]
                rows += measure("hashdb", target + suffix, base, lua_args, batch, args)
            stop(server)
            server = None
        if args.floor:
            port = free_port()
            server = floor_start(port)
            base = f"http://127.0.0.1:{port}/v1/match"
            for target, batch in (
                ("empty app, 1 hash", 1),
                (f"empty app, {args.batch}", args.batch),
            ):
                lua_args = ["match", str(stored_file), "-", str(batch)]
                rows += measure("floor", target, base, lua_args, batch, args)
            stop(server)
            server = None
    finally:
        stop(server)
        for name in databases:
            drop_database(name)
        shutil.rmtree(work, ignore_errors=True)
    table(rows)


if __name__ == "__main__":
    main()
