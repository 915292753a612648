"""The request cost budget (hashdb/budget.py): where its weights come from, and that it holds.

    .venv/bin/python -m benchmarks.budget [--hashes 100000] [--weights-only | --check-only]

Weights: builds the production index (`make_index`) over `--hashes` PDQ hashes of the
synthetic corpus (benchmarks/corpus.py) and `--hashes` uniform random pHash codes,
and measures the CPU time (process time, all threads) per query at each threshold
class, for single queries and batches of 100, 1,000 and 10,000 (the most one request
may carry). A class's weight is, for every batch size, the per-query time at its
threshold divided by the per-query time at the signal type's default threshold in
a batch of the same size; the largest ratio over batch sizes, rounded up. The index
picks a different plan by batch size and threshold (hashdb/index/layout.py), so the
ratio differs by size; the largest keeps the bound of every request shape while the
cost stays linear in the number of queries (a batch of n costs n single queries).
Where a batch would take minutes (the plan is a per-query scan, whose per-query
time does not depend on the batch), the batch is timed on 200 of its queries.

Check (the budget's target): builds the real app over a SQLite database holding
`--hashes` PDQ hashes (stored through the store's batch add), then sends through the
Flask test client (a) 10,000 PDQ queries with `dihedral` at threshold 63 and (b) the
largest requests the default budget admits at each threshold class, and prints for
each whether it was refused and how long it took (CPU and wall).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from flask.testing import FlaskClient

from api.app import create_app
from api.context import context
from benchmarks.corpus import make_corpus, make_queries
from hashdb.budget import WEIGHTS, request_cost, threshold_weight
from hashdb.index import HammingIndex, make_index
from hashdb.index.layout import Plan, plan, probe_radii
from hashdb.matching import Query
from hashdb.settings import Settings
from hashdb.signals import PDQ, PHASH, SignalType
from hashdb.store import NewHash, Role, Store

BATCHES = (1, 100, 1000, 10_000)
SINGLE_QUERIES = 200  # single queries timed per threshold
SCAN_SAMPLE = 200  # queries timed of a batch whose plan is a per-query scan
Codes = npt.NDArray[np.uint8]


def cpu_per_query(search: Callable[[Codes], object], queries: Codes, batch: int) -> float:
    """CPU seconds per query: one warm-up call, then the median of three timed passes."""
    search(queries[:batch])
    runs = []
    for r in range(3):
        done = 0
        t = time.process_time()
        if batch == 1:
            for k in range(SINGLE_QUERIES):
                search(queries[(r * SINGLE_QUERIES + k) % len(queries)][None])
            done = SINGLE_QUERIES
        else:
            part = queries[(r * batch) % len(queries) :][:batch]
            if len(part) < batch:
                part = queries[:batch]
            search(part)
            done = batch
        runs.append((time.process_time() - t) / done)
    return sorted(runs)[1]


def measure(
    signal: SignalType, index: HammingIndex, queries: Codes, thresholds: list[int]
) -> dict[int, dict[int, float]]:
    """Per-query CPU seconds by threshold and batch size."""
    out: dict[int, dict[int, float]] = {}
    rows = len(index)
    for t in thresholds:
        out[t] = {}
        for batch in BATCHES:
            chunks = signal.bits // 16
            timed = batch
            if batch > SCAN_SAMPLE and plan(rows, batch, probe_radii(chunks, t)) is Plan.SCAN:
                timed = SCAN_SAMPLE  # a scan costs the same per query in any batch

            def search(q: Codes, t: int = t) -> object:
                return index.search(q, t)

            out[t][batch] = cpu_per_query(search, queries, timed)
            print(
                f"  {signal.name} t={t:<3} batch {batch:>6}: {out[t][batch] * 1e6:9.1f} us/query",
                flush=True,
            )
    return out


def weights_from(times: dict[int, dict[int, float]], default: int) -> dict[int, int]:
    """Per class, the largest ratio over batch sizes, rounded up; never below a lower
    class's weight (a higher threshold never does less work; the timings are noisy)."""
    base = times[default]
    out: dict[int, int] = {}
    floor = 1
    for t in sorted(times):
        floor = max(floor, math.ceil(max(times[t][b] / base[b] for b in BATCHES)))
        out[t] = floor
    return out


def measure_weights(n: int) -> None:
    print(f"index weights at {n:,} stored hashes ({os.cpu_count()} CPUs, CPU time per query)")
    corpus = make_corpus(n)
    pdq = make_index(PDQ.bits)
    pdq.add(corpus.ids, corpus.codes)
    pdq.compact()  # type: ignore[attr-defined]
    queries, _ = make_queries(corpus, 10_000)
    pdq_classes = [t for t, _ in WEIGHTS[PDQ.name]]
    pdq_times = measure(PDQ, pdq, queries, pdq_classes)

    rng = np.random.default_rng(5)
    stored = rng.integers(0, 256, size=(n, PHASH.nbytes), dtype=np.uint8)
    phash = make_index(PHASH.bits)
    phash.add(np.arange(n, dtype=np.int64), stored)
    phash.compact()  # type: ignore[attr-defined]
    near = stored[rng.integers(0, n, 5000)] ^ np.where(
        rng.random((5000, PHASH.nbytes)) < 0.03, np.uint8(1) << rng.integers(0, 8, (5000, 8)), 0
    ).astype(np.uint8)
    phash_queries = np.concatenate([near, rng.integers(0, 256, (5000, 8), dtype=np.uint8)])
    phash_classes = [t for t, _ in WEIGHTS[PHASH.name]]
    phash_times = measure(PHASH, phash, phash_queries, phash_classes)

    for signal, times in ((PDQ, pdq_times), (PHASH, phash_times)):
        derived = weights_from(times, signal.default_threshold)
        print(f"{signal.name} ratios to threshold {signal.default_threshold}, by batch size:")
        for t, by in times.items():
            ratios = "  ".join(
                f"{b}: {by[b] / times[signal.default_threshold][b]:7.1f}" for b in BATCHES
            )
            used = threshold_weight(signal, t)
            print(f"  t<={t:<3} {ratios}   -> weight {derived[t]} (hashdb.budget: {used})")


def build_app(n: int, directory: Path) -> tuple[FlaskClient, str]:
    """The real app over a SQLite file holding `n` corpus hashes; (test client, key)."""

    url = f"sqlite:///{directory / 'budget.sqlite3'}"
    corpus = make_corpus(n)
    store = Store.open(url, migrate_schema=True)  # a fresh database
    try:
        member, key = store.members.create("bench", Role.MEMBER)
        for start in range(0, n, 10_000):
            part = corpus.codes[start : start + 10_000]
            store.hashes.add(member.id, [NewHash("pdq", bytes(code)) for code in part])
    finally:
        store.close()
    # The key's unit budget is off: this measures single requests, not the bucket.
    settings = Settings(database_url=url, rate_limit_per_minute=0, key_cost_per_second=0)
    app = create_app(settings)
    if not context(app).loader.wait(600):
        raise RuntimeError("the indexes did not load")
    return app.test_client(), key.secret


def timed_request(
    client: FlaskClient, secret: str, body: dict[str, object]
) -> tuple[int, float, float]:
    t, w = time.process_time(), time.perf_counter()
    r = client.post("/v1/match", json=body, headers={"Authorization": f"Bearer {secret}"})
    return r.status_code, time.process_time() - t, time.perf_counter() - w


def check(n: int) -> None:
    settings = Settings()
    corpus_queries, _ = make_queries(make_corpus(min(n, 20_000)), 10_000)
    hexes = [bytes(q).hex() for q in corpus_queries]
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        client, secret = build_app(n, Path(tmp))
        print(f"app over {n:,} stored PDQ hashes ready in {time.perf_counter() - t:.0f}s")
        print(f"max_request_cost {settings.max_request_cost:,} query units")

        def body(count: int, threshold: int, dihedral: bool) -> dict[str, object]:
            return {
                "queries": [
                    {"signal_type": "pdq", "value": hexes[i % len(hexes)], "threshold": threshold}
                    | ({"dihedral": True} if dihedral else {})
                    for i in range(count)
                ]
            }

        print(f"{'request':<44} {'cost':>10} {'status':>6} {'cpu s':>7} {'wall s':>7}")
        cases = [(10_000, 63, True), (10_000, PDQ.default_threshold, False)]
        for t, _ in WEIGHTS[PDQ.name]:
            if t > settings.max_threshold_pdq:
                continue
            for forms in (1, 8):
                variants = (("d", bytes(32)),) * (forms - 1)
                per = request_cost([Query(PDQ, bytes(32), t, None, variants)])
                most = min(settings.max_batch, settings.max_request_cost // per)
                cases.append((most, t, forms == 8))
                # The slowest shape per unit: the largest admitted batch the index
                # still answers by scanning every stored code, query by query.
                radii = probe_radii(PDQ.bits // 16, t)
                scanned = [k for k in range(1, most + 1) if plan(n, k * forms, radii) is Plan.SCAN]
                if scanned and scanned[-1] != most:
                    cases.append((scanned[-1], t, forms == 8))
        for count, threshold, dihedral in dict.fromkeys(cases):
            if count == 0:
                continue
            forms = 8 if dihedral else 1
            variants = (("d", bytes(32)),) * (forms - 1)
            cost = request_cost([Query(PDQ, bytes(32), threshold, None, variants)] * count)
            status, cpu, wall = timed_request(client, secret, body(count, threshold, dihedral))
            name = f"{count:,} pdq at {threshold}{' dihedral' if dihedral else ''}"
            verdict = "refused" if status >= 400 else "answered"
            print(f"{name:<44} {cost:>10,} {status:>6} {cpu:>7.2f} {wall:>7.2f}  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--hashes", type=int, default=100_000)
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--weights-only", action="store_true")
    group.add_argument("--check-only", action="store_true")
    args = parser.parse_args()
    if not args.check_only:
        measure_weights(args.hashes)
    if not args.weights_only:
        check(args.hashes)


if __name__ == "__main__":
    main()
