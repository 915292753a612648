"""Every Hamming index answers exactly what the brute-force oracle answers.

Data: seeded random codes, and clustered near-duplicates placed at exact distances
from their centres (including the threshold and threshold + 1), where skewed
buckets and many hits per query stress the multi-index tables.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hashdb.index import (
    BruteForceIndex,
    FlatIndex,
    HammingIndex,
    MIHIndex,
    SearchHits,
    hamming,
    make_index,
)
from hashdb.index import mih as mih_module
from hashdb.index.layout import Plan, plan, probe_radii

Factory = Callable[[int], HammingIndex]

FACTORIES: dict[str, Factory] = {
    "mih": MIHIndex,
    "mih-1-thread": lambda bits: MIHIndex(bits, threads=1),
    "mih-probe": lambda bits: MIHIndex(bits, plan=Plan.PROBE),
    "mih-join": lambda bits: MIHIndex(bits, plan=Plan.JOIN),
    "mih-join-1-thread": lambda bits: MIHIndex(bits, threads=1, plan=Plan.JOIN),
    "mih-scan": lambda bits: MIHIndex(bits, plan=Plan.SCAN),
    "flat": FlatIndex,
    "make_index": make_index,
}


def flip(code: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    bits = np.unpackbits(code)
    bits[rng.choice(len(bits), size=count, replace=False)] ^= 1
    return np.packbits(bits)


def random_codes(n: int, bits: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, bits // 8), dtype=np.uint8)


def clustered(n_centres: int, per: int, bits: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(stored codes, centres): members at distances 0..bits/4 from their centre."""
    rng = np.random.default_rng(seed)
    centres = random_codes(n_centres, bits, seed + 1)
    members = [
        flip(c, int(rng.integers(0, bits // 4 + 1)), rng) for c in centres for _ in range(per)
    ]
    return np.array(members, dtype=np.uint8), centres


def same(a: list[SearchHits], b: list[SearchHits]) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(x.ids, y.ids) and np.array_equal(x.distances, y.distances)
        for x, y in zip(a, b, strict=True)
    )


def both(factory: Factory, bits: int) -> tuple[HammingIndex, BruteForceIndex]:
    return factory(bits), BruteForceIndex(bits)


@pytest.fixture(params=list(FACTORIES))
def factory(request: pytest.FixtureRequest) -> Factory:
    return FACTORIES[request.param]


@pytest.mark.parametrize("bits", [64, 256])
def test_random_data_equals_oracle(factory: Factory, bits: int) -> None:
    index, oracle = both(factory, bits)
    codes = random_codes(3000, bits, seed=1)
    ids = np.arange(3000, dtype=np.int64) * 7 - 50
    index.add(ids, codes)
    oracle.add(ids, codes)
    rng = np.random.default_rng(2)
    queries = np.array([flip(c, int(rng.integers(0, bits // 3)), rng) for c in codes[:150]])
    queries = np.concatenate([queries, random_codes(50, bits, seed=3)])
    for threshold in [0, 1, 5, 10, 31, 32, bits // 2, bits]:
        assert same(index.search(queries, threshold), oracle.search(queries, threshold))


@pytest.mark.parametrize("bits", [64, 256])
def test_clustered_data_equals_oracle(factory: Factory, bits: int) -> None:
    index, oracle = both(factory, bits)
    members, centres = clustered(40, 60, bits, seed=5)
    ids = np.random.default_rng(6).permutation(len(members)).astype(np.int64)
    index.add(ids, members)
    oracle.add(ids, members)
    for threshold in [0, 10, 31, bits // 4]:
        assert same(index.search(centres, threshold), oracle.search(centres, threshold))


@pytest.mark.parametrize("threshold", [0, 1, 10, 31, 47])
def test_threshold_is_inclusive(factory: Factory, threshold: int) -> None:
    rng = np.random.default_rng(threshold)
    query = random_codes(1, 256, seed=threshold)[0]
    inside, outside = flip(query, threshold, rng), flip(query, threshold + 1, rng)
    index = factory(256)
    index.add(np.array([1, 2]), np.array([inside, outside]))
    index.add(np.arange(10, 2010), random_codes(2000, 256, seed=99))
    hits = index.search(query[None], threshold)[0]
    assert 1 in hits.ids and 2 not in hits.ids
    assert hits.distances[list(hits.ids).index(1)] == threshold


def test_same_code_under_two_ids_is_found_twice(factory: Factory) -> None:
    code = random_codes(1, 256, seed=4)
    index = factory(256)
    index.add(np.array([5, 3]), np.concatenate([code, code]))
    hits = index.search(code, 0)[0]
    assert hits.ids.tolist() == [3, 5] and hits.distances.tolist() == [0, 0]


def test_removals_and_add_after_remove(factory: Factory) -> None:
    index, oracle = both(factory, 256)
    members, centres = clustered(20, 50, 256, seed=8)
    ids = np.arange(len(members), dtype=np.int64)
    for i in (index, oracle):
        i.add(ids, members)
        i.remove(ids[::3])
        i.remove(np.array([10**9, -(10**9)]))  # absent: no-op
    assert len(index) == len(oracle)
    assert same(index.search(centres, 31), oracle.search(centres, 31))
    for i in (index, oracle):
        i.add(ids[:30], members[:30])  # 0, 3, ... come back
    assert len(index) == len(oracle)
    assert same(index.search(centres, 31), oracle.search(centres, 31))


def test_add_of_a_present_id_replaces_its_code(factory: Factory) -> None:
    index = factory(256)
    a, b, c = random_codes(3, 256, seed=10)
    index.add(np.array([1, 2]), np.array([a, b]))
    index.add(np.array([1]), np.array([c]))
    assert len(index) == 2
    assert index.search(a[None], 0)[0].ids.tolist() == []
    assert index.search(c[None], 0)[0].ids.tolist() == [1]
    index.add(np.array([7, 7]), np.array([a, b]))  # within one call the last wins
    assert index.search(a[None], 0)[0].ids.tolist() == []
    assert index.search(b[None], 0)[0].ids.tolist() == [2, 7]


def test_updates_across_background_compactions() -> None:
    """Enough changes to fold the buffer into the tables several times over."""
    index, oracle = both(MIHIndex, 256)
    members, centres = clustered(50, 400, 256, seed=11)
    ids = np.arange(len(members), dtype=np.int64)
    rng = np.random.default_rng(12)
    for start in range(0, len(ids), 1000):
        batch = slice(start, start + 1000)
        for i in (index, oracle):
            i.add(ids[batch], members[batch])
        gone = rng.choice(ids[: start + 1000], size=200, replace=False)
        for i in (index, oracle):
            i.remove(gone)
    assert same(index.search(centres, 31), oracle.search(centres, 31))
    assert isinstance(index, MIHIndex)
    index.compact()
    assert len(index) == len(oracle)
    assert same(index.search(centres, 31), oracle.search(centres, 31))


def test_removals_during_a_compaction_are_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    index = MIHIndex(256, background=False)
    codes = random_codes(2000, 256, seed=13)
    index.add(np.arange(2000), codes)
    real_build = mih_module.Segment.build

    def slow_build(*args: object, **kwargs: object) -> object:
        index.remove(np.array([0, 1]))  # lands while the fresh segment is being built
        index.add(np.array([5000]), codes[2:3])
        return real_build(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(mih_module.Segment, "build", slow_build)
    index.compact()
    hits = index.search(codes[:3], 0)
    assert [h.ids.tolist() for h in hits] == [[], [], [2, 5000]]
    assert len(index) == 1999


def test_queries_run_while_a_refresher_adds_and_removes() -> None:
    stable = random_codes(3000, 256, seed=14)
    index = MIHIndex(256)
    index.add(np.arange(3000), stable)
    index.compact()
    churn = random_codes(20000, 256, seed=15)
    stop = threading.Event()
    failures: list[str] = []

    def refresher() -> None:
        for start in range(0, len(churn), 500):
            ids = np.arange(10**6 + start, 10**6 + start + 500)
            index.add(ids, churn[start : start + 500])
            index.remove(ids[::2])
            index.remove(np.arange(10**6, 10**6 + start, 7))
        stop.set()

    def querier() -> None:
        while not stop.is_set():
            hits = index.search(stable[:100], 0)
            if any(h.ids[0] != i for i, h in enumerate(hits)):
                failures.append("a stable hash went missing")

    threads = [threading.Thread(target=querier) for _ in range(3)]
    threads.append(threading.Thread(target=refresher))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures
    oracle = BruteForceIndex(256)
    oracle.add(np.arange(3000), stable)
    for start in range(0, len(churn), 500):
        ids = np.arange(10**6 + start, 10**6 + start + 500)
        oracle.add(ids, churn[start : start + 500])
        oracle.remove(ids[::2])
        oracle.remove(np.arange(10**6, 10**6 + start, 7))
    queries = np.concatenate([stable[:50], churn[::400]])
    assert len(index) == len(oracle)
    assert same(index.search(queries, 40), oracle.search(queries, 40))


def test_empty_index_and_empty_queries(factory: Factory) -> None:
    index = factory(256)
    assert index.search(np.empty((0, 32), np.uint8), 31) == []
    assert [len(h) for h in index.search(random_codes(2, 256, seed=0), 31)] == [0, 0]
    with pytest.raises(ValueError, match="shape"):
        index.search(np.zeros((1, 8), np.uint8), 31)
    with pytest.raises(ValueError, match="length"):
        index.add(np.arange(2), random_codes(1, 256, seed=0))


def test_join_in_several_passes_equals_oracle(monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch bigger than one pass of query tables, with buffered and dead rows."""
    monkeypatch.setattr(mih_module, "JOIN_ENTRIES", 272 * 7)  # 7 queries per pass
    index, oracle = MIHIndex(256, plan=Plan.JOIN), BruteForceIndex(256)
    members, centres = clustered(30, 40, 256, seed=21)
    ids = np.arange(len(members), dtype=np.int64)
    for i in (index, oracle):
        i.add(ids[:1000], members[:1000])
    index.compact()
    for i in (index, oracle):
        i.remove(ids[::4])
        i.add(ids[1000:], members[1000:])  # still buffered
        i.add(ids[:5], members[-5:])  # replaced codes
    queries = np.concatenate([centres, members[::37]])
    for threshold in (0, 30, 31, 32, 63):
        assert same(index.search(queries, threshold), oracle.search(queries, threshold))


def test_join_over_several_blocks_of_stored_rows_equals_oracle() -> None:
    """More stored rows than one block of the join streams at a time
    (`kernels.JOIN_BLOCK`), split between threads off the block boundaries, with
    matches in every block."""
    from hashdb.index.kernels import JOIN_BLOCK

    rng = np.random.default_rng(24)
    n = 2 * JOIN_BLOCK + 1001
    stored = random_codes(n, 256, seed=25)
    picked = rng.choice(n, size=60, replace=False)
    queries = np.array([flip(stored[i], int(rng.integers(0, 40)), rng) for i in picked])
    for threads in (1, 3):
        index, oracle = MIHIndex(256, threads=threads, plan=Plan.JOIN), BruteForceIndex(256)
        for i in (index, oracle):
            i.add(np.arange(n), stored)
        index.compact()
        found = index.search(queries, 31)
        assert same(found, oracle.search(queries, 31))
        assert sum(len(h) for h in found) >= 30


def test_join_filters_keep_matches_at_the_threshold() -> None:
    """Matches whose distance is spread as evenly as the filters allow: exactly
    radius + 1 bits on all but one 32-bit substring, the rest on the last."""
    rng = np.random.default_rng(22)
    query = random_codes(1, 256, seed=23)[0]
    layout = MIHIndex(256).layout
    stored = []
    for threshold in (31, 32):
        for keep in range(8):  # the 32-bit substring that stays within its radius
            bits = np.zeros(256, dtype=np.uint8)
            for k in range(8):
                flips = 3 if k == keep else 4  # 7 x 4 + 3 = 31: at the threshold
                spots = rng.choice(32, size=flips + (threshold - 31) * (k == keep), replace=False)
                bits[layout.permutation[32 * k + spots]] = 1  # internal bits 32k..32k+31
            stored.append(np.packbits(np.unpackbits(query) ^ bits))
    index, oracle = MIHIndex(256, plan=Plan.JOIN), BruteForceIndex(256)
    for i in (index, oracle):
        i.add(np.arange(len(stored)), np.array(stored))
    assert [len(h) for h in oracle.search(query[None], 31)] == [8]
    for threshold in (30, 31, 32):
        assert same(index.search(query[None], threshold), oracle.search(query[None], threshold))


@pytest.mark.parametrize("threads", [1, 2])
def test_probe_tags_keep_matches_only_one_table_finds(threads: int) -> None:
    """Matches at the threshold that only one table can find, and only at the limit of
    its tag filter: in one 32-bit substring, `own` bits off in the 16-bit half j and
    3 - own in the tag bits of its sibling (the low byte of j ^ 1); 2 bits off in
    every other half (each beyond its radius 1). The same rows one bit further are
    not matches. Every table and both distances to its key, at and around 31."""
    rng = np.random.default_rng(26)
    query = random_codes(1, 256, seed=27)[0]
    layout = MIHIndex(256).layout
    stored = []
    for table in range(16):
        sibling = table ^ 1
        for own in (0, 1):
            bits = np.zeros(256, dtype=np.uint8)
            for half in range(16):
                if half == table:
                    spots = 16 * half + rng.choice(16, size=own, replace=False)
                elif half == sibling:
                    spots = 16 * half + rng.choice(8, size=3 - own, replace=False)
                else:
                    spots = 16 * half + rng.choice(16, size=2, replace=False)
                bits[layout.permutation[spots]] = 1  # internal bit p is bit p % 64 of word p // 64
            stored.append(np.packbits(np.unpackbits(query) ^ bits))
    stored_codes = np.array(stored)
    index = MIHIndex(256, threads=threads, plan=Plan.PROBE)
    oracle = BruteForceIndex(256)
    for i in (index, oracle):
        i.add(np.arange(len(stored_codes)), stored_codes)
    index.compact()
    assert [len(h) for h in oracle.search(query[None], 31)] == [32]
    assert [len(h) for h in oracle.search(query[None], 30)] == [0]
    queries = np.repeat(query[None], 2 * 64, axis=0)  # enough for the batch to split
    for threshold in (30, 31, 32):
        assert same(index.search(query[None], threshold), oracle.search(query[None], threshold))
        assert same(index.search(queries, threshold), oracle.search(queries, threshold))


def test_plan_follows_batch_size() -> None:
    radii = probe_radii(16, 31)
    assert plan(1_000_000, 1, radii) is Plan.PROBE
    assert plan(1_000_000, 10_000, radii) is Plan.JOIN
    assert plan(1_000_000, 2000, probe_radii(16, 200)) is Plan.SCAN


# -- properties ---------------------------------------------------------------------

codes64 = st.binary(min_size=8, max_size=8).map(lambda b: np.frombuffer(b, np.uint8))


@given(codes64, codes64, codes64)
def test_hamming_is_a_metric(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> None:
    d = lambda x, y: int(hamming(x[None], y[None])[0, 0])  # noqa: E731
    assert d(a, a) == 0
    assert d(a, b) == d(b, a)
    assert d(a, c) <= d(a, b) + d(b, c)
    assert (d(a, b) == 0) == bool((a == b).all())


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.binary(min_size=8, max_size=8), min_size=0, max_size=60),
    st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=5),
    st.integers(0, 64),
    st.integers(0, 64),
)
def test_index_equals_oracle_and_is_monotone_in_threshold(
    stored: list[bytes], queries: list[bytes], t1: int, t2: int
) -> None:
    codes = np.frombuffer(b"".join(stored), np.uint8).reshape(-1, 8)
    q = np.frombuffer(b"".join(queries), np.uint8).reshape(-1, 8)
    index, oracle = MIHIndex(64), BruteForceIndex(64)
    joined = MIHIndex(64, plan=Plan.JOIN)
    for i in (index, oracle, joined):
        i.add(np.arange(len(codes)), codes)
    low, high = sorted((t1, t2))
    small, large = index.search(q, low), index.search(q, high)
    assert same(small, oracle.search(q, low))
    assert same(joined.search(q, low), small)
    assert all(set(s.ids) <= set(g.ids) for s, g in zip(small, large, strict=True))
