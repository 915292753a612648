"""A soak test of the deployed roles: mixed traffic for minutes, no errors allowed.

    .venv/bin/python -m benchmarks.soak [--minutes 10] [--clients 4] [--hashes 20000]

Runs the roles compose.yaml deploys, as local processes on a scratch PostgreSQL
database (HASHDB_BENCH_PG, default the local server as user postgres): `hashdb
migrate`, two API replicas (`hashdb serve`, HASHDB_WORKERS x HASHDB_THREADS each) and
a `hashdb worker`, plus a follower: a second scratch database kept in step by `hashdb
sync --from <replica>` run in a loop, as cron would. It stores `--hashes` random PDQ
hashes, then, for `--minutes`:

- `--clients` closed-loop clients send, round-robin over the two replicas: batches of
  PDQ lookups (half near copies of stored hashes, half unrelated), contributions of
  new hashes, reads of single hashes, and image uploads to /v1/match/media;
- one import of `--import-images` generated pictures is enqueued over HTTP a tenth of
  the way in and must be finished by the worker;
- the follower, which copied everything once before the load (timed and printed:
  a new follower's catch-up), syncs every `--sync-every` seconds, and once more
  after the load.

It prints requests and errors per route, p50/p99 latency per route, the import's
time, the follower's syncs, and the resident memory (RSS) of every process of every
role (main process, gunicorn workers, sandbox and pool children) at the start and
the end. An error is any answer other than the route's success status, a sync that
fails or runs past SYNC_TIMEOUT, or an import not done: the run exits 1 if there
was one. Rate limits are off (the soak measures the
service, not the limiter's verdicts). Both databases are dropped at the end.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import requests
from PIL import Image
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hashdb.store import NewHash, Role, Store

ROOT = Path(__file__).resolve().parent.parent
PG_ADMIN = os.environ.get(
    "HASHDB_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
HASHDB = [sys.executable, "-m", "hashdb.cli"]

# The share of each kind of request a client sends.
MIX = (("match", 0.70), ("contribute", 0.15), ("read", 0.10), ("media", 0.05))
MATCH_BATCH = 20
# Longest a steady-state `hashdb sync` run may take (the first, full one is timed apart).
SYNC_TIMEOUT = 120.0


# ---- databases and processes ---------------------------------------------------------


@contextmanager
def scratch_database(purpose: str) -> Iterator[str]:
    name = f"hashdb_soak_{purpose}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def environment(database_url: str, work: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HASHDB_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(
        HASHDB_DATABASE_URL=database_url,
        HASHDB_LOG_LEVEL="warning",
        HASHDB_RATE_LIMIT_PER_MINUTE="0",
        HASHDB_KEY_COST_PER_SECOND="0",
        HASHDB_SNAPSHOT_DIR=str(work / "snapshots"),
        HASHDB_IMPORT_ROOT=str(work / "imports"),
    )
    env.update({f"HASHDB_{k.upper()}": v for k, v in settings.items()})
    return env


def run_once(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [*HASHDB, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if done.returncode != 0:
        raise RuntimeError(f"hashdb {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done.stdout


@dataclass
class Running:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path


def start(name: str, args: list[str], env: dict[str, str], work: Path) -> Running:
    log = work / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [*HASHDB, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
    return Running(name, popen, log)


def wait_ready(url: str, role: Running, timeout: float = 180.0) -> None:
    deadline = time.monotonic() + timeout
    in_a_row = 0
    while in_a_row < 10:
        if role.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{role.name} did not become ready:\n{role.log.read_text()}")
        try:
            in_a_row = in_a_row + 1 if requests.get(f"{url}/readyz", timeout=5).ok else 0
        except (requests.ConnectionError, requests.Timeout):  # still starting
            in_a_row = 0
        time.sleep(0.1)


def stop(role: Running) -> int | None:
    if role.popen.poll() is None:
        role.popen.send_signal(signal.SIGTERM)
        try:
            role.popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            role.popen.kill()
            role.popen.wait(timeout=10)
    return role.popen.returncode


# ---- memory ----------------------------------------------------------------------------


def children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rpartition(")")[2].split()[1])
            tree[parent].append(int(entry.name))
    return tree


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def process_kind(pid: int, top: int) -> str:
    """What a process of a role is: its main process, or what it was started as."""
    if pid == top:
        return "main"
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return "?"
    for marker, kind in (
        ("forkserver", "forkserver"),
        ("resource_tracker", "resource-tracker"),
        ("spawn_main", "spawned"),
    ):
        if marker in command:
            return kind
    return "forked"


def memory(roles: list[Running]) -> dict[tuple[str, int], tuple[str, int]]:
    """(role, pid) -> (process name, RSS KiB) for every process of every role."""
    tree = children()
    found: dict[tuple[str, int], tuple[str, int]] = {}
    for role in roles:
        todo = [(role.popen.pid, "")]
        while todo:
            pid, parent = todo.pop()
            kind = process_kind(pid, role.popen.pid)
            if parent.startswith("forkserver"):  # its children inherit its command line
                kind = "forkserver child"
            todo.extend((child, kind) for child in tree.get(pid, []))
            rss = rss_kib(pid)
            if rss is not None:
                found[(role.name, pid)] = (kind, rss)
    return found


# ---- load ------------------------------------------------------------------------------


@dataclass
class Tally:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    samples: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, route: str, seconds: float, ok: bool, detail: str) -> None:
        with self.lock:
            self.latencies[route].append(seconds)
            if not ok:
                self.errors[route] += 1
                self.samples.setdefault(route, detail[:300])


def picture(seed: int, size: int = 256) -> bytes:
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    image = Image.fromarray(blocks).resize((size, size), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def near(value: bytes, rng: random.Random, flips: int = 8) -> str:
    bits = bytearray(value)
    for position in rng.sample(range(256), flips):
        bits[position // 8] ^= 1 << (position % 8)
    return bits.hex()


class Client(threading.Thread):
    def __init__(
        self,
        n: int,
        urls: list[str],
        key: str,
        stored: list[bytes],
        media: list[bytes],
        until: float,
        tally: Tally,
    ) -> None:
        super().__init__(name=f"soak-client-{n}", daemon=True)
        self.rng = random.Random(n)
        self.urls, self.stored, self.media = urls, stored, media
        self.until, self.tally = until, tally
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {key}"
        self.added: list[int] = []

    def run(self) -> None:
        kinds = [kind for kind, _ in MIX]
        weights = [weight for _, weight in MIX]
        turn = 0
        while time.monotonic() < self.until:
            url = self.urls[turn % len(self.urls)]
            turn += 1
            kind = self.rng.choices(kinds, weights)[0]
            if kind == "read" and not self.added:
                kind = "contribute"
            self.request(kind, url)

    def request(self, kind: str, url: str) -> None:
        t0 = time.perf_counter()
        try:
            response, route, expected = self.send(kind, url)
            ok, detail = response.status_code == expected, response.text
            if ok and kind == "contribute":
                self.added.append(response.json()["hashes"][0]["id"])
        except requests.RequestException as exc:
            route, ok, detail = kind, False, repr(exc)
        self.tally.record(route, time.perf_counter() - t0, ok, detail)

    def send(self, kind: str, url: str) -> tuple[requests.Response, str, int]:
        if kind == "match":
            values = [
                near(self.rng.choice(self.stored), self.rng)
                if self.rng.random() < 0.5
                else self.rng.randbytes(32).hex()
                for _ in range(MATCH_BATCH)
            ]
            queries = [{"signal_type": "pdq", "value": v} for v in values]
            body = {"queries": queries}
            return (
                self.session.post(f"{url}/v1/match", json=body, timeout=60),
                "POST /v1/match",
                200,
            )
        if kind == "contribute":
            body = {"hashes": [{"signal_type": "pdq", "value": self.rng.randbytes(32).hex()}]}
            answer = self.session.post(f"{url}/v1/hashes", json=body, timeout=60)
            return answer, "POST /v1/hashes", 201
        if kind == "read":
            hash_id = self.rng.choice(self.added)
            answer = self.session.get(f"{url}/v1/hashes/{hash_id}", timeout=60)
            return answer, "GET /v1/hashes/<id>", 200
        files = {"file": ("upload.png", self.rng.choice(self.media))}
        answer = self.session.post(f"{url}/v1/match/media", files=files, timeout=120)
        return answer, "POST /v1/match/media", 200


@dataclass
class ImportRun:
    seconds: float | None = None
    outcome: str = "not started"


def run_import(urls: list[str], ops: str, folder: str, after: float, out: ImportRun) -> None:
    time.sleep(after)
    auth = {"Authorization": f"Bearer {ops}"}
    started = time.monotonic()
    answer = requests.post(f"{urls[0]}/v1/imports", json={"path": folder}, headers=auth, timeout=60)
    if answer.status_code != 202:
        out.outcome = f"refused {answer.status_code}: {answer.text[:200]}"
        return
    job_id = answer.json()["id"]
    while time.monotonic() - started < 600:
        job = requests.get(f"{urls[1]}/v1/imports/{job_id}", headers=auth, timeout=60).json()
        if job["status"] == "done":
            out.seconds = time.monotonic() - started
            out.outcome = f"done: {job['done']} stored, {job['failed']} failed of {job['total']}"
            if job["failed"]:
                out.outcome = "failed files: " + out.outcome
            return
        time.sleep(1.0)
    out.outcome = f"not done after 600 s: {job}"


@dataclass
class Follower:
    runs: int = 0
    failures: list[str] = field(default_factory=list)
    last: str = ""


def sync_once(central: str, env: dict[str, str], timeout: float, out: Follower) -> None:
    """One `hashdb sync` run, as cron would start it; a failure or overrun is an error."""
    out.runs += 1
    try:
        done = subprocess.run(
            [*HASHDB, "sync", "--from", central],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        out.failures.append(f"still running after {timeout:.0f} s")
        return
    if done.returncode != 0:
        out.failures.append(done.stderr.strip()[-300:])
    elif done.stdout.strip():
        out.last = done.stdout.strip().splitlines()[-1]


def follow(central: str, env: dict[str, str], every: float, until: float, out: Follower) -> None:
    while time.monotonic() < until:
        t0 = time.monotonic()
        sync_once(central, env, SYNC_TIMEOUT, out)
        time.sleep(max(0.0, every - (time.monotonic() - t0)))


# ---- report ----------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def report(
    tally: Tally,
    seconds: float,
    imported: ImportRun,
    follower: Follower,
    before: dict[tuple[str, int], tuple[str, int]],
    after: dict[tuple[str, int], tuple[str, int]],
) -> int:
    print(f"\n{'route':<24}{'requests':>10}{'errors':>8}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}")
    total = errors = 0
    for route in sorted(tally.latencies):
        values = tally.latencies[route]
        total, errors = total + len(values), errors + tally.errors[route]
        print(
            f"{route:<24}{len(values):>10}{tally.errors[route]:>8}{len(values) / seconds:>8.1f}"
            f"{percentile(values, 50) * 1000:>9.1f}{percentile(values, 99) * 1000:>9.1f}"
        )
    print(f"{'all':<24}{total:>10}{errors:>8}{total / seconds:>8.1f}")
    for route, sample in tally.samples.items():
        print(f"  first error on {route}: {sample}")
    took = "-" if imported.seconds is None else f"{imported.seconds:.1f} s"
    print(f"\nimport: {imported.outcome} ({took})")
    print(
        f"follower: {follower.runs} syncs, {len(follower.failures)} failed; last: {follower.last}"
    )
    for failure in follower.failures[:3]:
        print(f"  sync failed: {failure}")
    print(f"\n{'role':<10}{'pid':>8}  {'process':<16}{'RSS start MiB':>14}{'RSS end MiB':>13}")
    for key in sorted(set(before) | set(after)):
        name = (after.get(key) or before[key])[0]
        start_mib = f"{before[key][1] / 1024:.0f}" if key in before else "-"
        end_mib = f"{after[key][1] / 1024:.0f}" if key in after else "-"
        print(f"{key[0]:<10}{key[1]:>8}  {name:<16}{start_mib:>14}{end_mib:>13}")
    for role in sorted({key[0] for key in before}):
        start_total = sum(rss for key, (_, rss) in before.items() if key[0] == role) / 1024
        end_total = sum(rss for key, (_, rss) in after.items() if key[0] == role) / 1024
        print(f"{role:<10}{'all':>8}  {'(RSS summed)':<16}{start_total:>14.0f}{end_total:>13.0f}")
    failed = errors + len(follower.failures) + (0 if imported.outcome.startswith("done") else 1)
    print(f"\n{'PASS' if failed == 0 else 'FAIL'}: {failed} errors")
    return 0 if failed == 0 else 1


# ---- main ------------------------------------------------------------------------------


def seed(database_url: str, n: int) -> tuple[dict[str, str], list[bytes]]:
    """Keys of each role and `n` stored PDQ values."""
    rng = np.random.default_rng(0)
    values = [bytes(row) for row in rng.integers(0, 256, (n, 32), dtype=np.uint8)]
    store = Store.open(database_url)
    try:
        keys = {}
        for role in (Role.OPS, Role.MEMBER):
            keys[role.value] = store.members.create(f"soak-{role.value}", role)[1].secret
        admin, key = store.members.create("soak-admin", Role.ADMIN)
        keys[Role.ADMIN.value] = key.secret
        for start in range(0, n, 5000):
            chunk = values[start : start + 5000]
            store.hashes.add(admin.id, [NewHash("pdq", v) for v in chunk])
    finally:
        store.close()
    return keys, values


def soak(args: argparse.Namespace, central: str, follower_url: str, work: Path) -> int:
    (work / "snapshots").mkdir()
    (work / "imports" / "collection").mkdir(parents=True)
    for n in range(args.import_images):
        (work / "imports" / "collection" / f"{n}.png").write_bytes(picture(100_000 + n))

    env = environment(central, work)
    print(run_once(["migrate"], env).strip())
    keys, stored = seed(central, args.hashes)
    (work / "follower").mkdir()
    follower_env = environment(follower_url, work / "follower")
    follower_env["HASHDB_API_KEY"] = keys["member"]  # read by `hashdb sync`, not a setting
    run_once(["init", "--quiet"], follower_env)
    follower = Follower()

    ports = [free_port(), free_port()]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    roles: list[Running] = []
    try:
        for n, port in enumerate(ports):
            replica_env = dict(env, HASHDB_DATA_DIR=str(work / f"api-{n}"))
            (work / f"api-{n}").mkdir()
            roles.append(
                start(f"api-{n}", ["serve", "--bind", f"127.0.0.1:{port}"], replica_env, work)
            )
        (work / "worker").mkdir()
        roles.append(
            start("worker", ["worker"], dict(env, HASHDB_DATA_DIR=str(work / "worker")), work)
        )
        for url, role in zip(urls, roles, strict=False):
            wait_ready(url, role)
        print(f"ready: {urls[0]}, {urls[1]} and a worker; {args.hashes} stored hashes")
        # A new follower first copies everything; the soak's syncs are the steady state.
        t0 = time.monotonic()
        sync_once(urls[0], follower_env, 3600.0, follower)
        print(f"follower's first sync: {time.monotonic() - t0:.1f} s; {follower.last}")

        before = memory(roles)
        seconds = args.minutes * 60.0
        until = time.monotonic() + seconds
        tally = Tally()
        media = [picture(n) for n in range(16)]
        workers: list[threading.Thread] = [
            Client(n, urls, keys["member"], stored, media, until, tally)
            for n in range(args.clients)
        ]
        imported = ImportRun()
        background: list[Callable[[], None]] = [
            lambda: run_import(urls, keys["ops"], "collection", seconds / 10, imported),
            lambda: follow(urls[0], follower_env, args.sync_every, until, follower),
        ]
        workers += [threading.Thread(target=task, daemon=True) for task in background]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
        after = memory(roles)
        # The follower catches up once more after the load, as its next cron run would.
        sync_once(urls[0], follower_env, SYNC_TIMEOUT, follower)
        return report(tally, seconds, imported, follower, before, after)
    finally:
        codes = {role.name: stop(role) for role in roles}
        if any(code != 0 for code in codes.values()):
            print(f"exit codes after SIGTERM: {codes}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--hashes", type=int, default=20_000, help="Stored before the run.")
    parser.add_argument("--import-images", type=int, default=200)
    parser.add_argument("--sync-every", type=float, default=5.0, help="Seconds between syncs.")
    args = parser.parse_args()
    if args.minutes <= 0 or args.clients < 1 or args.hashes < 1:
        parser.error("--minutes, --clients and --hashes must be positive")
    with (
        tempfile.TemporaryDirectory(prefix="hashdb-soak-") as tmp,
        scratch_database("central") as central,
        scratch_database("follower") as follower_url,
    ):
        sys.exit(soak(args, central, follower_url, Path(tmp)))


if __name__ == "__main__":
    main()
