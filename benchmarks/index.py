"""Benchmark hashdb's index against python-threatexchange and FAISS on the same queries.

    .venv/bin/python -m benchmarks.index --size 1000000 [--size 10000000]

For each size: a synthetic PDQ corpus (`benchmarks/corpus.py`), `--queries` queries
(default 10,000: the most one API request may carry, `Settings.max_batch`), half
near-duplicates of stored hashes and half unrelated, and for every index: build time,
memory per hash (array bytes where the index can tell, else growth of the process's
resident memory), batched queries per second (median of `--repeat` runs), single-query
p50/p99 and recall against the brute-force oracle (a numpy popcount scan of every
stored hash). Peers that cannot run at a size (PDQIndex2 needs over 1 KB per hash)
are skipped with the reason printed. Needs the `bench` extra (threatexchange).

Batch size matters to us and not to a flat scan: FAISS's flat range search costs the
same per query in any batch, while our batch plan (JOIN, `hashdb/index/mih.py`)
streams the stored codes through the batch's queries once per batch, so its cost
per query falls as batches grow. The line "ours by batch size" shows the curve;
`--queries 2000` gives the comparison at a smaller batch.
"""

from __future__ import annotations

import argparse
import gc
import resource
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
import numpy.typing as npt

from benchmarks.corpus import make_corpus, make_queries
from hashdb.index import MIHIndex, load_snapshot, save_snapshot

Hits = list[set[int]]


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:  # noqa: PTH123 - a proc file
        return int(f.read().split()[1]) * resource.getpagesize()


def oracle(codes: npt.NDArray[np.uint8], queries: npt.NDArray[np.uint8], t: int) -> Hits:
    """A numpy popcount scan of every stored hash, a cache-sized block at a time."""
    stored = codes.view(np.uint64)
    out: Hits = [set() for _ in range(len(queries))]
    for start in range(0, len(stored), 1 << 15):
        block = np.ascontiguousarray(stored[start : start + (1 << 15)].T)  # (words, rows)
        for i, q in enumerate(queries.view(np.uint64)):
            dist = np.bitwise_count(block[0] ^ q[0])
            for w in range(1, len(q)):
                dist += np.bitwise_count(block[w] ^ q[w])
            out[i].update((np.flatnonzero(dist <= t) + start).tolist())
    return out


@dataclass
class Result:
    name: str
    build_s: float
    bytes_per_hash: float
    batched_qps: float
    p50_ms: float
    p99_ms: float
    recall: float


class Peer:
    """An index under test: build, batch search, single search, all returning ids."""

    name = ""

    def build(self, codes: npt.NDArray[np.uint8]) -> None: ...
    def batch(self, queries: npt.NDArray[np.uint8], t: int) -> Hits: ...
    def single(self, query: npt.NDArray[np.uint8], t: int) -> set[int]: ...
    def nbytes(self) -> int | None:
        return None

    batch_limit: int | None = None  # queries per batched run, for slow peers
    single_limit: int = 1000


class Ours(Peer):
    name = "hashdb MIHIndex"

    def build(self, codes: npt.NDArray[np.uint8]) -> None:
        self.index = MIHIndex(256)
        self.index.add(np.arange(len(codes), dtype=np.int64), codes)
        self.index.compact()

    def batch(self, queries: npt.NDArray[np.uint8], t: int) -> Hits:
        return [set(h.ids.tolist()) for h in self.index.search(queries, t)]

    def single(self, query: npt.NDArray[np.uint8], t: int) -> set[int]:
        return set(self.index.search(query[None], t)[0].ids.tolist())

    def nbytes(self) -> int | None:
        return self.index.nbytes()


class FaissFlat(Peer):
    name = "FAISS IndexBinaryFlat"
    single_limit = 200

    def build(self, codes: npt.NDArray[np.uint8]) -> None:
        self.index = faiss.IndexBinaryFlat(256)
        self.index.add(codes)

    def batch(self, queries: npt.NDArray[np.uint8], t: int) -> Hits:
        lims, _, rows = self.index.range_search(queries, t + 1)
        return [set(rows[lims[i] : lims[i + 1]].tolist()) for i in range(len(queries))]

    def single(self, query: npt.NDArray[np.uint8], t: int) -> set[int]:
        return self.batch(query[None], t)[0]

    def nbytes(self) -> int | None:
        return int(self.index.ntotal) * 32


class TxPDQIndex(Peer):
    name = "threatexchange PDQIndex"
    single_limit = 300

    def build(self, codes: npt.NDArray[np.uint8]) -> None:
        from threatexchange.signal_type.pdq.pdq_index import PDQIndex

        self.index = PDQIndex([(c.tobytes().hex(), i) for i, c in enumerate(codes)])

    def batch(self, queries: npt.NDArray[np.uint8], t: int) -> Hits:
        hexes = [q.tobytes().hex() for q in queries]
        found = self.index.index.search_with_distance_in_result(hexes, t)
        return [{int(i) for i, _, _ in found[h]} for h in hexes]

    def single(self, query: npt.NDArray[np.uint8], t: int) -> set[int]:
        assert t == self.index.get_match_threshold()
        return {m.metadata for m in self.index.query(query.tobytes().hex())}


class TxPDQIndex2(Peer):
    name = "threatexchange PDQIndex2"
    batch_limit = 200
    single_limit = 50

    def build(self, codes: npt.NDArray[np.uint8]) -> None:
        from threatexchange.signal_type.pdq.pdq_index2 import PDQIndex2

        self.index = PDQIndex2(entries=[(c.tobytes().hex(), i) for i, c in enumerate(codes)])

    def batch(self, queries: npt.NDArray[np.uint8], t: int) -> Hits:
        # Its internal batch search returns one flat list for all queries (the
        # per-query boundaries are lost), so a batch is a loop of single queries.
        return [self.single(q, t) for q in queries]

    def single(self, query: npt.NDArray[np.uint8], t: int) -> set[int]:
        assert t == self.index.threshold
        return {m.metadata for m in self.index.query(query.tobytes().hex())}


def measure(
    peer: Peer,
    codes: npt.NDArray[np.uint8],
    queries: npt.NDArray[np.uint8],
    truth: Hits,
    t: int,
    repeat: int,
) -> Result:
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    peer.build(codes)
    build = time.perf_counter() - start
    grown = rss_bytes() - before
    nbytes = peer.nbytes() or grown
    batch_q = queries[: peer.batch_limit] if peer.batch_limit else queries
    # Warm up on the timed batch itself (compilation, caches, thread pools): a plan
    # chosen by batch size (ours) is warmed only by a batch of that size.
    peer.batch(batch_q, t)
    rates, found = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        found = peer.batch(batch_q, t)
        rates.append(len(batch_q) / (time.perf_counter() - start))
    latencies, single_found = [], []
    for q in queries[: peer.single_limit]:
        start = time.perf_counter()
        single_found.append(peer.single(q, t))
        latencies.append(time.perf_counter() - start)
    expected = sum(len(s) for s in truth[: len(batch_q)]) + sum(
        len(s) for s in truth[: peer.single_limit]
    )
    correct = sum(len(f & s) for f, s in zip(found, truth, strict=False)) + sum(
        len(f & s) for f, s in zip(single_found, truth, strict=False)
    )
    exact = all(f == s for f, s in zip(found, truth, strict=False)) and all(
        f == s for f, s in zip(single_found, truth, strict=False)
    )
    recall = correct / expected if expected else 1.0
    if exact is False and recall == 1.0:
        recall = float("nan")  # extra (wrong) results: flag it
    return Result(
        peer.name,
        build,
        nbytes / len(codes),
        float(np.median(rates)),
        float(np.percentile(latencies, 50) * 1e3),
        float(np.percentile(latencies, 99) * 1e3),
        recall,
    )


def snapshot_report(peer: Ours, queries: npt.NDArray[np.uint8], truth: Hits, t: int) -> str:
    """Save and load `peer`'s index (`hashdb.index.snapshot`), and check the loaded one."""
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        start = time.perf_counter()
        save_snapshot(peer.index, Path(tmp) / "pdq", cursor=1)
        saved = time.perf_counter() - start
        start = time.perf_counter()
        loaded = load_snapshot(Path(tmp) / "pdq", 256)
        ready = time.perf_counter() - start
    if loaded is None:
        return "snapshot did not load"
    found = [set(h.ids.tolist()) for h in loaded[0].search(queries, t)]
    return (
        f"snapshot save {saved:.1f} s, load (checksums + invariants, ready to search) "
        f"{ready:.1f} s, loaded index exact: {found == truth}"
    )


def batch_sizes(peer: Ours, queries: npt.NDArray[np.uint8], t: int) -> str:
    """Our batched throughput by batch size (the search plan changes with it)."""
    parts = []
    for size in sorted(
        {s for s in (1, 10, 100, 500, 1000, 2000, 5000, len(queries)) if s <= len(queries)}
    ):
        batch = queries[:size]
        runs = max(3, 10_000 // size)
        start = time.perf_counter()
        for _ in range(runs):
            peer.index.search(batch, t)
        parts.append(f"{size}: {runs * size / (time.perf_counter() - start):.0f}")
    return "ours by batch size (q/s): " + ", ".join(parts)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--size", type=int, action="append", help="stored hashes (repeatable)")
    parser.add_argument("--queries", type=int, default=10_000)
    parser.add_argument("--threshold", type=int, default=31)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--rendered",
        type=int,
        help="render only this many hashes and derive the rest (benchmarks/corpus.py)",
    )
    args = parser.parse_args(argv)
    peers: list[Callable[[], Peer]] = [Ours, FaissFlat, TxPDQIndex, TxPDQIndex2]
    for size in args.size or [1_000_000]:
        start = time.perf_counter()
        corpus = make_corpus(size, args.seed, args.rendered)
        queries, near = make_queries(corpus, args.queries)
        truth = oracle(corpus.codes, queries, args.threshold)
        print(
            f"\n== {size:,} hashes, {len(queries)} queries ({near.sum()} near-duplicates), "
            f"threshold {args.threshold}; corpus + oracle {time.perf_counter() - start:.0f} s; "
            f"{sum(map(len, truth))} true matches; corpus "
            + (
                "all rendered"
                if args.rendered is None or args.rendered >= size
                else f"{args.rendered:,} rendered, the rest derived"
            )
        )
        results: list[Result] = []
        for make in peers:
            peer = make()
            if isinstance(peer, TxPDQIndex2) and size > 2_000_000:
                print(f"  skipped {peer.name}: over 1 KB per hash, does not fit at {size:,}")
                continue
            if isinstance(peer, TxPDQIndex) and size > 5_000_000:
                print(f"  skipped {peer.name}: builds through Python strings, too slow at {size:,}")
                continue
            result = measure(peer, corpus.codes, queries, truth, args.threshold, args.repeat)
            results.append(result)
            print(
                f"  {result.name:26s} build {result.build_s:7.1f} s"
                f"  {result.bytes_per_hash:7.1f} B/hash"
                f"  batched {result.batched_qps:9.0f} q/s  single p50 {result.p50_ms:7.3f} ms"
                f"  p99 {result.p99_ms:7.3f} ms  recall {result.recall:.4f}",
                flush=True,
            )
            if isinstance(peer, Ours):
                print("  " + batch_sizes(peer, queries, args.threshold), flush=True)
                print("  " + snapshot_report(peer, queries, truth, args.threshold), flush=True)
            del peer
            gc.collect()
        ours = results[0]
        for other in results[1:]:
            print(
                f"  ours vs {other.name:26s} batched x{ours.batched_qps / other.batched_qps:7.1f}"
                f"  single p99 x{other.p99_ms / ours.p99_ms:7.1f}"
                f"  memory x{ours.bytes_per_hash / other.bytes_per_hash:5.2f}"
            )


if __name__ == "__main__":
    main()
