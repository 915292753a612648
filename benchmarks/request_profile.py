"""Where a `POST /v1/match` spends its CPU, stage by stage.

    .venv/bin/python -m benchmarks.request_profile [--hashes 20000] [--requests 3000]
        [--runs 3] [--postgres] [--batch 1]

Builds the real app (`api.create_app`) over a scratch database (a SQLite file in a
temporary directory, or with `--postgres` a fresh PostgreSQL database on
HASHDB_BENCH_PG, dropped at the end) holding `--hashes` random PDQ hashes, and
drives `POST /v1/match` requests of `--batch` hashes (default one) straight into
its WSGI callable, in
this process: no network, no server, no client, so what is measured is the
request path alone. Half the queries are stored hashes with a few bits flipped
(one match each), half random (no match). The request-rate and index-work limits
stay on, set too high to refuse anything, so their bookkeeping is paid as in
production; the access log is written (to nowhere) at the production level.

Each stage is timed by wrapping the project's functions that do its work with the
CPU clock of this process (`time.process_time`: other processes on the machine do
not inflate it, and the index's own threads, which search a batch of 128 queries
or more in parallel while the request waits, are counted in the index stage; the
app's background threads, idle here but for the match counts written each second,
count where they fall); a stage's time excludes the stages it calls, so the stages add
up to the total and "flask/werkzeug + rest" is what no stage claims (routing,
request and response objects, the context, the `requires` wrapper's own lines).
The timers cost a fraction of a microsecond each: the table also gives the total
of an untimed run. Every figure is the median over `--runs` runs of CPU
microseconds per request. Not run in CI.
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import logging
import statistics
import tempfile
import time
import types
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from flask import Flask
from werkzeug.test import EnvironBuilder

import api.logs
import api.match_json
import api.matching
import api.request_id
from api.app import create_app
from api.context import context
from api.keycache import KeyCache
from api.loader import settle_heap
from hashdb.consortium.match_counts import Tally
from hashdb.consortium.matching import Matching
from hashdb.consortium.members import Members
from hashdb.matching.matcher import Matcher
from hashdb.matching.resolve import Resolver
from hashdb.settings import Settings
from hashdb.store import NewHash, Role, Store

# Stages in the order a request meets them.
STAGES = (
    "cookie session (console's)",
    "auth: heads read",
    "auth: key cache",
    "auth: rate limit",
    "request parsing/validation",
    "matching use case",
    "index search",
    "hydration (row cache)",
    "match counting",
    "results as JSON",
    "metrics",
    "request id",
    "access log",
    "response headers",
)
REST = "flask/werkzeug + rest"


class StageTimers:
    """CPU time per stage, each stage's own (the stages it calls excluded)."""

    def __init__(self) -> None:
        self.spent: dict[str, float] = defaultdict(float)
        self._stack: list[float] = []

    def wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        clock = time.process_time
        stack = self._stack
        spent = self.spent

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            stack.append(0.0)
            started = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = clock() - started
                spent[stage] += elapsed - stack.pop()
                if stack:
                    stack[-1] += elapsed

        return timed

    def reset(self) -> None:
        self.spent.clear()


@contextmanager
def instrumented(app: Flask, timers: StageTimers) -> Iterator[None]:
    """Wrap the functions of each stage (classes, modules and the app's hooks) while
    inside; put everything back on the way out."""
    undo: list[Callable[[], None]] = []

    def patch(owner: Any, name: str, stage: str) -> None:
        if isinstance(owner, type | types.ModuleType):
            original = owner.__dict__[name]
            undo.append(lambda: setattr(owner, name, original))
        else:  # an object: its wrapper shadows the class's method until deleted
            undo.append(lambda: delattr(owner, name))
        setattr(owner, name, timers.wrap(stage, getattr(owner, name)))

    index_type = type(context(app).db.matcher._indexes["pdq"])
    for owner, name, stage in (
        (Members, "heads", "auth: heads read"),
        (KeyCache, "principal", "auth: key cache"),
        (Members, "admit", "auth: rate limit"),
        (api.matching, "json_body", "request parsing/validation"),
        (api.matching, "batch_cost", "request parsing/validation"),
        (api.matching, "check_request_cost", "request parsing/validation"),
        (api.matching, "to_queries", "request parsing/validation"),
        (Matching, "answer", "matching use case"),
        (Matcher, "match", "matching use case"),
        (index_type, "search", "index search"),
        (Resolver, "results", "hydration (row cache)"),
        (Tally, "add", "match counting"),
        (api.matching, "_match_mixed", "results as JSON"),
        (api.match_json, "results", "results as JSON"),
        (api.match_json, "document", "results as JSON"),
        (api.matching, "_count", "metrics"),
        (api.request_id, "current", "request id"),
        (app.session_interface, "open_session", "cookie session (console's)"),
        (app.session_interface, "save_session", "cookie session (console's)"),
    ):
        patch(owner, name, stage)
    hooks = {
        "_measure": "metrics",  # api/app.py: request counter and latency histogram
        "_record": "metrics",
        "_start": "metrics",
        "_access": "access log",
        "_echo": "response headers",
        "_rate_limit_fields": "response headers",
    }
    for table in (app.before_request_funcs, app.after_request_funcs):
        funcs = table.get(None, [])
        saved = list(funcs)
        for i, fn in enumerate(funcs):
            module = getattr(fn, "__module__", "")
            found = "access log" if module == "api.logs" else hooks.get(fn.__name__)
            if found is not None:
                funcs[i] = timers.wrap(found, fn)
        undo.append(functools.partial(funcs.__setitem__, slice(None), saved))
    try:
        yield
    finally:
        for step in reversed(undo):
            step()


class Nowhere(io.StringIO):
    """A text stream that keeps nothing: where the access log is written."""

    def write(self, text: str) -> int:
        return len(text)


def random_codes(rng: np.random.Generator, n: int) -> npt.NDArray[np.uint8]:
    return rng.integers(0, 256, (n, 32), dtype=np.uint8)


def query_hexes(stored: npt.NDArray[np.uint8], m: int, seed: int = 1) -> list[str]:
    """`m` queries: even ones a stored hash with 1-8 bits flipped, odd ones random."""
    rng = np.random.default_rng(seed)
    out: list[str] = []
    for i in range(m):
        if i % 2:
            out.append(bytes(random_codes(rng, 1)[0]).hex())
            continue
        code = stored[rng.integers(0, len(stored))].copy()
        bits = np.unpackbits(code)
        flip = rng.choice(256, size=int(rng.integers(1, 9)), replace=False)
        bits[flip] ^= 1
        out.append(bytes(np.packbits(bits)).hex())
    return out


def load(url: str, n: int) -> tuple[str, npt.NDArray[np.uint8]]:
    """Store `n` random PDQ hashes in the fresh database at `url`: a member key and them."""
    codes = random_codes(np.random.default_rng(0), n)
    store = Store.open(url, migrate_schema=True)
    try:
        member, key = store.members.create("profile", Role.MEMBER)
        for start in range(0, n, 10_000):
            part = codes[start : start + 10_000]
            store.hashes.add(member.id, [NewHash("pdq", bytes(c)) for c in part])
    finally:
        store.close()
    return key.secret, codes


def environs(secret: str, hexes: list[str], batch: int = 1) -> list[tuple[dict[str, Any], bytes]]:
    """A WSGI environ (without its body stream) and the body of each request, each
    asking for `batch` of `hexes` in turn."""
    out = []
    for start in range(0, len(hexes), batch):
        queries = [{"signal_type": "pdq", "value": v} for v in hexes[start : start + batch]]
        body = json.dumps({"queries": queries}).encode()
        builder = EnvironBuilder(
            path="/v1/match",
            method="POST",
            data=body,
            content_type="application/json",
            headers=[("Authorization", f"Bearer {secret}")],
        )
        environ = builder.get_environ()
        builder.close()
        environ.pop("wsgi.input")
        out.append((environ, body))
    return out


def drive(app: Flask, requests: list[tuple[dict[str, Any], bytes]]) -> float:
    """Send each request to the app's WSGI callable; CPU seconds of this process."""
    statuses: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
        statuses.append(status)
        return lambda data: None

    started = time.process_time()
    for environ, body in requests:
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(body)
        chunks = app.wsgi_app(env, start_response)
        for _ in chunks:
            pass
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    spent = time.process_time() - started
    bad = [s for s in statuses if not s.startswith("200")]
    if bad:
        raise SystemExit(f"{len(bad)} requests not answered 200 (first: {bad[0]})")
    return spent


def profile(
    app: Flask, secret: str, stored: npt.NDArray[np.uint8], args: argparse.Namespace
) -> None:
    requests = environs(secret, query_hexes(stored, args.requests * args.batch), args.batch)
    drive(app, requests[: min(300, len(requests))])  # warm: caches, kernels, first key lookup
    n = len(requests)
    untimed: list[float] = []
    per_stage: dict[str, list[float]] = defaultdict(list)
    totals: list[float] = []
    timers = StageTimers()
    for _ in range(args.runs):
        untimed.append(drive(app, requests) / n * 1e6)
        timers.reset()
        with instrumented(app, timers):
            total = drive(app, requests) / n * 1e6
        totals.append(total)
        claimed = 0.0
        for stage in STAGES:
            us = timers.spent.get(stage, 0.0) / n * 1e6
            per_stage[stage].append(us)
            claimed += us
        per_stage[REST].append(total - claimed)

    width = max(len(s) for s in (*STAGES, REST)) + 2
    shape = "single-hash" if args.batch == 1 else f"{args.batch:,}-hash"
    print(
        f"\n{shape} POST /v1/match, {n:,} requests x {args.runs} runs, "
        f"{args.hashes:,} stored PDQ hashes, {args.backend}"
    )
    print(f"{'stage':<{width}}{'us/request':>12}{'share':>8}")
    total = statistics.median(totals)
    for stage in (*STAGES, REST):
        us = statistics.median(per_stage[stage])
        print(f"{stage:<{width}}{us:>12.1f}{us / total:>8.1%}")
    print(f"{'total (timed)':<{width}}{total:>12.1f}")
    print(f"{'total (untimed run)':<{width}}{statistics.median(untimed):>12.1f}")
    if args.batch > 1:
        per_hash = statistics.median(untimed) / args.batch
        print(f"{'per hash (untimed run)':<{width}}{per_hash:>12.2f}")
        print(f"{'hashes/s of one core':<{width}}{1e6 / per_hash:>12,.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hashes", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=3_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--postgres", action="store_true", help="a scratch PostgreSQL database")
    parser.add_argument("--batch", type=int, default=1, help="hashes per request")
    args = parser.parse_args()
    for name in ("hashes", "requests", "runs", "batch"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    args.backend = "PostgreSQL" if args.postgres else "SQLite"

    with tempfile.TemporaryDirectory() as scratch:
        name: str | None = None
        if args.postgres:
            from benchmarks.api import create_database

            name, url = create_database()
        else:
            url = f"sqlite:///{Path(scratch) / 'hashdb.sqlite3'}"
        try:
            secret, stored = load(url, args.hashes)
            settings = Settings(
                database_url=url,
                data_dir=Path(scratch),
                # On, but too high to refuse: their bookkeeping is measured, not a verdict.
                rate_limit_per_minute=10**9,
                rate_limit_burst=10**9,
                key_cost_per_second=1e9,
            )
            # The access log at the production level, written nowhere.
            api.logs.configure(settings)
            root = logging.getLogger()
            for handler in root.handlers:
                if isinstance(handler, logging.StreamHandler):
                    handler.setStream(Nowhere())
            app = create_app(settings)
            context(app).loader.when_warm(settle_heap)  # as a serving process does
            try:
                if not context(app).loader.wait(120):
                    raise SystemExit("the indexes did not load")
                profile(app, secret, stored, args)
            finally:
                context(app).close()
        finally:
            if name is not None:
                from benchmarks.api import drop_database

                drop_database(name)


if __name__ == "__main__":
    main()
