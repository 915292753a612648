"""Follower speed: feed changes applied per second by `hashdb sync`, first and incremental.

    .venv/bin/python -m benchmarks.sync [--hashes 20000] [--runs 3] [--postgres]

Builds a central database of `--hashes` hashes: a quarter PDQ images, each with a
stored variant of every kind in hashdb/variants.py's STORED_KINDS (as uploads make
them), the rest plain PDQ and MD5 hashes, and a few videos with their frames. Then,
`--runs` times, fresh followers copy it through `Sync.pull` twice, once reading the
feed in-process (a `FeedSource` over `central.feed.page`) and once over HTTP (the
member client against a small export endpoint served from the library, as
tests/feed_server.py does), and after 1,000 changes on central (retirements,
relabels, disputes) each follower pulls again. Prints changes/s (feed entries
applied per second of `pull`) for each sync and the medians over the runs.

SQLite by default (files in a temporary folder); `--postgres` puts central and every
follower in scratch databases of the PostgreSQL server at HASHDB_BENCH_PG (default
the local server as user postgres), dropped at the end. Not run in CI.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy import create_engine, make_url, text

from hashdb.client import Client
from hashdb.consortium import Actor, Consortium
from hashdb.consortium.export import FeedPage
from hashdb.consortium.sync import DEFAULT_PAGE, FeedSource
from hashdb.settings import Settings
from hashdb.signals.vpdq import Frame
from hashdb.store import NewHash, NewVideo, Role, Status, Store
from hashdb.store.hashes import NewVariant
from hashdb.variants import STORED_KINDS

PG_ADMIN = os.environ.get(
    "HASHDB_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
CHANGES = 1000
VIDEOS = 10
LABELS = (("attack_footage",), ("manifesto",), ("attack_footage", "manifesto"))


class Databases:
    """Where central and the followers live: files in a folder, or scratch
    PostgreSQL databases (dropped by `close`)."""

    def __init__(self, folder: Path, postgres: bool) -> None:
        self._folder, self._postgres = folder, postgres
        self._made: list[str] = []

    def new(self, purpose: str) -> str:
        if not self._postgres:
            return f"sqlite:///{self._folder / f'{purpose}.sqlite3'}"
        name = f"hashdb_bench_sync_{uuid.uuid4().hex[:10]}"
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
        self._made.append(name)
        return make_url(PG_ADMIN).set(database=name).render_as_string(hide_password=False)

    def close(self) -> None:
        if not self._made:
            return
        admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for name in self._made:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _image(rng: random.Random, labels: tuple[str, ...]) -> NewHash:
    variants = tuple(NewVariant(kind, rng.randbytes(32), 80) for kind in STORED_KINDS)
    return NewHash("pdq", rng.randbytes(32), labels, 90, variants=variants)


def build_central(url: str, n: int) -> tuple[Consortium, Actor, Actor, str]:
    """Central with `n` hashes: (consortium, admin, feed reader, the reader's key)."""
    store = Store.open(url, migrate_schema=True)
    db = Consortium(Settings(), store)
    admin = Actor(store.members.create("Consortium", Role.ADMIN)[0])
    reader, key = store.members.create("Follower", Role.MEMBER)
    rng = random.Random(7)
    images = n // 4
    plain = n - images - VIDEOS
    items = [_image(rng, LABELS[i % 3]) for i in range(images)]
    items += [
        NewHash("pdq", rng.randbytes(32), LABELS[i % 3], 90)
        if i % 2
        else NewHash("md5", rng.randbytes(16), LABELS[i % 3])
        for i in range(plain)
    ]
    for start in range(0, len(items), 2000):
        store.hashes.add(admin.member.id, items[start : start + 2000])
    for _ in range(VIDEOS):
        frames = tuple(Frame(i, float(i), rng.randbytes(32), 90) for i in range(30))
        store.videos.add(admin.member.id, NewVideo(frames, 30.0, 1.0, 64, 64, labels=LABELS[0]))
    return db, admin, Actor(reader), key.secret


def change_central(db: Consortium, admin: Actor, rng: random.Random) -> None:
    """1,000 changes: a third retirements, a third relabels, a third disputes."""
    live = {
        r.id: r.labels
        for r in db.store.hashes.get_many(_ids(db)).values()
        if r.status is Status.ACTIVE and r.signal_type != "vpdq"
    }
    picked = rng.sample(sorted(live), CHANGES)
    third = CHANGES // 3
    db.vetting.retire(admin, picked[:third], "benchmark")
    for hash_id in picked[third : 2 * third]:
        db.vetting.relabel(admin, hash_id, LABELS[(LABELS.index(live[hash_id]) + 1) % 3])
    db.store.hashes.set_status(picked[2 * third :], Status.DISPUTED, reason="benchmark")


def _ids(db: Consortium) -> list[int]:
    with db.store.engine.connect() as conn:
        return list(conn.execute(text("SELECT id FROM hashes")).scalars())


class LibraryFeed:
    """Central's feed read in-process."""

    def __init__(self, central: Consortium, reader: Actor) -> None:
        self._central, self._reader = central, reader

    def export(self, since: int = 0, limit: int = DEFAULT_PAGE) -> FeedPage:
        return self._central.feed.page(self._reader, since, limit)


@contextmanager
def feed_server(central: Consortium, reader: Actor) -> Iterator[str]:
    """Central's `GET /v1/export?format=json` on 127.0.0.1 (the key is not checked:
    this measures the follower); yields its URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            args = dict(parse_qsl(urlsplit(self.path).query))
            since = int(args.get("cursor", args.get("since", "0")))
            page = central.feed.page(reader, since, int(args["limit"]))
            body = json.dumps(page.to_json()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@dataclass(frozen=True)
class Timed:
    entries: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.entries / self.seconds


class Follower:
    def __init__(self, url: str) -> None:
        self.db = Consortium(Settings(), Store.open(url, migrate_schema=True))
        self.admin = Actor(self.db.store.members.create("Local admin", Role.ADMIN)[0])

    def pull(self, source: FeedSource, url: str) -> Timed:
        started = time.perf_counter()
        done = self.db.sync.pull(self.admin, source, url)
        return Timed(done.entries, time.perf_counter() - started)


def _close(source: FeedSource) -> None:
    if isinstance(source, Client):
        source.close()


def run(args: argparse.Namespace, where: Databases) -> None:
    started = time.perf_counter()
    central, admin, reader, key = build_central(where.new("central"), args.hashes)
    print(f"central: {args.hashes} hashes in {time.perf_counter() - started:.1f} s")
    results: dict[str, list[Timed]] = {}
    rng = random.Random(11)
    with feed_server(central, reader) as http_url:
        sources: dict[str, Callable[[], tuple[FeedSource, str]]] = {
            "library": lambda: (LibraryFeed(central, reader), "central"),
            "http": lambda: (Client(http_url, key), http_url),
        }
        for n in range(args.runs):
            followers = {name: Follower(where.new(f"{name}-{n}")) for name in sources}
            for name, make in sources.items():
                source, url = make()
                first = followers[name].pull(source, url)
                _close(source)
                results.setdefault(f"{name} first", []).append(first)
                print(
                    f"run {n + 1} {name:8} first sync: {first.entries:6} entries, "
                    f"{first.per_second:8.0f} changes/s"
                )
            change_central(central, admin, rng)
            for name, make in sources.items():
                source, url = make()
                again = followers[name].pull(source, url)
                _close(source)
                results.setdefault(f"{name} incremental", []).append(again)
                print(
                    f"run {n + 1} {name:8} incremental: {again.entries:6} entries, "
                    f"{again.per_second:8.0f} changes/s"
                )
            for f in followers.values():
                f.db.close()
    central.close()
    print(f"\nmedians over {args.runs} runs ({'PostgreSQL' if args.postgres else 'SQLite'}):")
    for name, timed in results.items():
        print(f"  {name:20} {statistics.median(t.per_second for t in timed):8.0f} changes/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hashes", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", action="store_true", help="scratch PostgreSQL databases")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        where = Databases(Path(folder), args.postgres)
        try:
            run(args, where)
        finally:
            where.close()


if __name__ == "__main__":
    main()
