"""Exact Hamming radius search by multi-index hashing, with live updates.

Why multi-index hashing: a flat scan reads every stored code for every query
(FAISS `IndexBinaryFlat.range_search`), while the pigeonhole principle (see
`layout.py`) lets a query read only the codes that share a nearly equal 16-bit
substring with it: for PDQ at threshold 31, 16 tables probed at radius 1 (272
probes), which meet a few thousand candidates per query at 1M hashes, somewhat more
than uniform random codes would (real collections have skewed buckets and
near-duplicate clusters). Every candidate is verified against its full code, so the
result is exact, not approximate. The figures behind this design, and the commands
that re-measure them: docs/measurements.md, "Index and kernels".

Two plans over the same tables (`layout.plan` picks the cheaper from a cost model;
SCAN, a plain comparison with every code, wins only at very high thresholds):

PROBE, for single queries and batches up to several thousand: probe the stored
tables (prefetching every bucket), gather the candidate rows whose one-byte tag
passes (the low 8 bits of the row's sibling substring, kept beside the row in the
table: a candidate one bit off on its own substring must be within 2 bits on those
8, see `layout.py`, so about 1 in 6 random candidates passes), then verify those in
a software pipeline that keeps dozens of random reads of their codes in flight.
What a query pays is a sequential pass over its buckets' rows and tags and one
random read per candidate that passes. Wider keys cut candidates but need more
probes into tables that no longer fit in cache (20-bit keys: about as many misses
as they save).

JOIN, for large batches (several thousand queries): turn the index around. File the
batch's queries in 16-bit tables of their own, each query under its 17 keys
(`kernels.query_tables`: 2000 queries are 2 MB of entries, filed by all threads, a
range of tables each), then stream the stored codes through them, 16,384 rows at a
time: a block is read from memory once and from L2 for each table, while a table's
entries (about 240 KB at 2000 queries; the 16 do not fit L2 together) are fetched
again for every block, so larger blocks fetch them less often. The candidate pairs
per query are the same pairs PROBE meets, but the stored code is in a register and
the query side is in cache, and each entry carries the query's sibling 16-bit
substring and its own distance to the key, so nearly all pairs fail the 32-bit
filter (`layout.filter_radii`) on one popcount, without touching either full code.
A query table is rank-indexed: an 8 KB occupancy bitmap per table (in L1) and a slot
per occupied bucket, so the first, branch-free pass over a block (which rows hit an
occupied bucket) reads L1 only, where the 256 KB offsets would cost an L2 access per
step; a second branch-free pass fetches the hits' entry ranges with independent
loads, a third walks them, prefetching the entries of a hit `kernels.PREFETCH_HITS`
ahead. Batches grow cheaper per query with size (the passes over the stored rows
serve more queries at once), so `layout.plan` switches from PROBE to JOIN at several
thousand queries. The join needs no memory beyond the batch's own tables: per stored
hash the index holds what PROBE needs (32 code, 8 id, 1 live flag, 64 table rows,
16 tags, plus 4 MB of offsets in all), inside the 128-byte budget.

Live updates: the indexed `Segment` never changes but for its `live` mask, so a
removal is one flag write and applies to every search that starts afterwards.
Additions go to an unindexed `Buffer` that every search scans (a plain scan, cheap
while the buffer is small); when it passes 1/256 of the indexed rows (at least 4,096,
at most 65,536), or more than 1/8 of the indexed rows are dead, a background thread
builds a fresh segment from the live rows while searches go on against the old one
plus the buffers; removals made meanwhile are replayed onto the fresh segment before
it is swapped in.
A search captures (segments, buffers, sizes) under a short lock and runs without it;
the kernels release the GIL; PROBE splits a batch of at least 2 x 64 queries across
`threads` threads, JOIN splits the stored rows.

A shared base (a segment memory-mapped from a snapshot, `Segment.shared`: one copy
per machine in the page cache, see hashdb/index/snapshot.py) is never folded into a
private copy. Its rows are only marked dead in this process's own `live` mask, and
compaction builds a second, private indexed segment (`extra`) from the additions
since the snapshot (and the extra segment's own live rows), searched alongside the
base; its size is what this process adds to the shared copy, and it stays small
because a process swaps to a newer snapshot as one appears (hashdb/matching/live.py).
The dead rows of a shared base are reclaimed only by the next snapshot.

Memory during a compaction is briefly twice the segment being rebuilt's: the whole
index for a private base, the extra segment for a shared one.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from hashdb.index import kernels
from hashdb.index.base import Codes, Ids, SearchHits, check_codes, last_wins
from hashdb.index.layout import (
    FLIPS,
    FLIPS_UPTO,
    Layout,
    Plan,
    Words,
    filter_radii,
    layout_for,
    plan,
    probe_radii,
)
from hashdb.index.segment import Buffer, Segment

T = TypeVar("T")

MIN_BUFFER = 4096  # rows scanned unindexed before a compaction starts ...
MAX_BUFFER = 65536  # ... or at most this many; in between, 1/256 of the indexed rows
DEAD_SHARE = 8  # compact when more than 1/8 of the indexed rows are dead
PARALLEL_MIN = 64  # queries per thread before a batch is split across threads
JOIN_ENTRIES = 1 << 22  # query keys per JOIN pass (16 MB); larger batches take several
JOIN_QUERIES = kernels.JOIN_QUERIES  # and at most this many (an entry holds a 14-bit index)


@dataclass(frozen=True)
class _View:
    """What one search reads: captured under the lock, then read without it."""

    base: Segment
    extra: Segment
    frozen: tuple[Words, Ids, npt.NDArray[np.bool_], int]
    delta: tuple[Words, Ids, npt.NDArray[np.bool_], int]


def _buffer_view(
    buffer: Buffer | None, words: int
) -> tuple[Words, Ids, npt.NDArray[np.bool_], int]:
    if buffer is None:
        return np.empty((0, words), np.uint64), np.empty(0, np.int64), np.empty(0, bool), 0
    return buffer.codes, buffer.ids, buffer.live, buffer.size


@dataclass(frozen=True)
class IndexState:
    """Everything an index holds: its base segment and its other live rows (those of
    the extra segment and the buffers), as a snapshot stores them."""

    segment: Segment
    extra_ids: Ids
    extra_codes: Words


class MIHIndex:
    """Exact radius search over `bits`-bit codes (a multiple of 64); thread-safe.

    Each id maps to at most one code: `add` of an id already present replaces its
    code (within one call, the last occurrence wins); `remove` of absent ids is a
    no-op. Removals take effect for every search that starts after `remove` returns.
    """

    def __init__(
        self,
        bits: int,
        *,
        threads: int | None = None,
        background: bool = True,
        plan: Plan | None = None,
    ) -> None:
        """`plan` forces one search plan (tests, benchmarks); by default each search
        takes the cheapest for its batch size and threshold (`layout.plan`)."""
        self.bits = bits
        self._plan = plan
        self.layout: Layout = layout_for(bits)
        self._threads = max(1, threads if threads is not None else (os.cpu_count() or 1))
        self._background = background
        self._lock = threading.Lock()
        self._base = self._empty()
        self._extra = self._empty()  # indexed additions beside a shared base, else empty
        self._frozen: Buffer | None = None  # the buffer being folded in by a compaction
        self._delta = Buffer(self.layout.words)
        self._pending: list[Ids] | None = None  # removals made during a compaction
        self._count = 0
        self._max_id = np.iinfo(np.int64).min
        self._compactor: threading.Thread | None = None
        self._executor: ThreadPoolExecutor | None = None

    def __len__(self) -> int:
        return self._count

    # -- updates ---------------------------------------------------------------

    def add(self, ids: Ids, codes: Codes) -> None:
        ids, codes = last_wins(ids, check_codes(codes, self.bits))
        if len(ids) == 0:
            return
        self._add_words(ids, self.layout.encode(codes))

    def _add_words(self, ids: Ids, words: Words) -> None:
        with self._lock:
            if int(ids.min()) <= self._max_id:  # may replace: new ids skip the lookup
                self._remove_locked(np.unique(ids))
            self._delta.append(ids, words)
            self._count += len(ids)
            self._max_id = max(self._max_id, int(ids.max()))
            start = self._should_compact_locked()
        if start:
            self._start_compactor()

    def remove(self, ids: Ids) -> None:
        ids = np.unique(np.asarray(ids, dtype=np.int64).ravel())
        with self._lock:
            self._remove_locked(ids)
            start = self._should_compact_locked()
        if start:
            self._start_compactor()

    def _remove_locked(self, ids: Ids) -> None:
        removed = self._base.remove(ids) + self._extra.remove(ids) + self._delta.remove(ids)
        if self._frozen is not None:
            removed += self._frozen.remove(ids)
        if self._pending is not None:
            self._pending.append(ids)
        self._count -= removed

    # -- compaction --------------------------------------------------------------

    def _buffer_limit(self) -> int:
        return min(MAX_BUFFER, max(MIN_BUFFER, (len(self._base) + len(self._extra)) // 256))

    def _rebuilt(self) -> Segment:
        """The segment a compaction rebuilds: never a shared one."""
        return self._extra if self._base.shared else self._base

    def _should_compact_locked(self) -> bool:
        if self._frozen is not None or not self._background:
            return False
        target = self._rebuilt()
        return self._delta.size >= self._buffer_limit() or (
            target.dead >= MIN_BUFFER and target.dead * DEAD_SHARE > len(target)
        )

    def _start_compactor(self) -> None:
        with self._lock:
            if self._compactor is not None and self._compactor.is_alive():
                return
            self._compactor = threading.Thread(
                target=self._compact_while_needed, name="hashdb-index-compactor", daemon=True
            )
            self._compactor.start()

    def _compact_while_needed(self) -> None:
        while True:
            with self._lock:
                if not self._should_compact_locked():
                    return
            self._compact_once()

    def compact(self) -> None:
        """Fold every buffered addition and removal into a freshly built segment (the
        extra segment beside a shared base, whose dead rows stay until the next
        snapshot).

        Runs in the caller's thread and returns when done; call it after a bulk load
        (otherwise background compaction catches up on its own).
        """
        compactor = self._compactor
        if compactor is not None:
            compactor.join()
        with self._lock:
            needed = self._delta.size > 0 or self._rebuilt().dead > 0
        if needed:
            self._compact_once()

    def _compact_once(self) -> None:
        with self._lock:
            if self._frozen is not None:
                return  # another compaction is running
            shared, frozen = self._base.shared, self._delta
            self._frozen, self._delta, self._pending = frozen, Buffer(self.layout.words), []
            folded = [self._extra] if shared else [self._base, self._extra]
            parts = [segment.live_rows() for segment in folded] + [frozen.live_rows()]
        try:
            ids = np.concatenate([ids for ids, _ in parts])
            codes = np.concatenate([codes for _, codes in parts])
            fresh = Segment.build(ids, codes, self.layout.chunks, self._run)
        except BaseException:
            with self._lock:  # put the buffer back: nothing is lost
                self._restore_locked(frozen)
            raise
        with self._lock:
            for removed in self._pending or []:
                fresh.remove(removed)
            if shared:
                self._extra = fresh
            else:
                self._base, self._extra = fresh, self._empty()
            self._frozen, self._pending = None, None

    def _empty(self) -> Segment:
        return Segment.empty(self.layout.words, self.layout.chunks)

    def _restore_locked(self, frozen: Buffer) -> None:
        newer = self._delta
        ids, codes = frozen.live_rows()
        restored = Buffer(self.layout.words, max(1024, frozen.size + newer.size))
        restored.append(ids, codes)
        new_ids, new_codes = newer.live_rows()
        restored.remove(new_ids)  # a newer version wins
        restored.append(new_ids, new_codes)
        self._delta, self._frozen, self._pending = restored, None, None

    # -- search ------------------------------------------------------------------

    def search(self, queries: Codes, threshold: int) -> list[SearchHits]:
        queries = check_codes(queries, self.bits)
        if len(queries) == 0:
            return []
        if threshold < 0:
            empty = SearchHits(np.empty(0, np.int64), np.empty(0, np.int32))
            return [empty] * len(queries)
        words = self.layout.encode(queries)
        with self._lock:
            view = _View(
                self._base,
                self._extra,
                _buffer_view(self._frozen, self.layout.words),
                _buffer_view(self._delta, self.layout.words),
            )
        radii = probe_radii(self.layout.chunks, threshold)
        how = self._plan or plan(len(view.base) + len(view.extra), len(words), radii)
        if how is Plan.JOIN:
            return self._join(view, words, threshold, radii)
        use_tables = how is Plan.PROBE
        parts = min(self._threads, len(words) // PARALLEL_MIN)
        if parts <= 1:
            return _hits(*self._kernel(view, words, threshold, radii, use_tables))
        bounds = np.linspace(0, len(words), parts + 1).astype(int)
        executor = self._pool()
        futures = [
            executor.submit(self._kernel, view, words[a:b], threshold, radii, use_tables)
            for a, b in itertools.pairwise(bounds)
        ]
        out: list[SearchHits] = []
        for future in futures:
            out.extend(_hits(*future.result()))
        return out

    def _join(
        self, view: _View, words: Words, threshold: int, radii: npt.NDArray[np.int64]
    ) -> list[SearchHits]:
        """Plan.JOIN: tables of the queries, then every stored row (indexed or buffered)
        streamed through them, the indexed rows split across threads."""
        per_query = int(FLIPS_UPTO[radii].sum())
        step = max(1, min(JOIN_QUERIES, JOIN_ENTRIES // per_query))
        filters = filter_radii(radii)
        base = view.base
        bounds = np.linspace(0, len(base), self._threads + 1).astype(int)
        parts = [
            (base.codes, base.ids, base.live, int(a), int(b)) for a, b in itertools.pairwise(bounds)
        ]
        if len(view.extra):
            extra = view.extra
            parts.append((extra.codes, extra.ids, extra.live, 0, len(extra)))
        for codes, ids, live, size in (view.frozen, view.delta):
            if size:
                parts.append((codes, ids, live, 0, size))
        cuts = np.linspace(0, len(radii), min(self._threads, len(radii)) + 1).astype(int)
        table_ranges = list(itertools.pairwise(cuts.tolist()))
        out: list[SearchHits] = []
        for start in range(0, len(words), step):
            batch = words[start : start + step]
            tables = kernels.query_tables(batch, radii, FLIPS, FLIPS_UPTO)
            self._map(
                kernels.file_tables,
                [(batch, radii, FLIPS, FLIPS_UPTO, a, b, *tables) for a, b in table_ranges],
            )
            filed = (*tables, radii, *filters)
            found = self._map(kernels.join, [(batch, threshold, *part, *filed) for part in parts])
            qidx, ids, dists = (np.concatenate(column) for column in zip(*found, strict=True))
            out.extend(_hits(*kernels.group_hits(len(batch), qidx, ids, dists)))
        return out

    @staticmethod
    def _kernel(
        view: _View, words: Words, threshold: int, radii: npt.NDArray[np.int64], use_tables: bool
    ) -> tuple[npt.NDArray[np.int64], Ids, npt.NDArray[np.int32]]:
        base, extra = view.base, view.extra
        result: tuple[npt.NDArray[np.int64], Ids, npt.NDArray[np.int32]] = kernels.search(
            words,
            threshold,
            use_tables,
            base.codes,
            base.ids,
            base.live,
            base.offsets,
            base.rows,
            base.tags,
            radii,
            FLIPS,
            FLIPS_UPTO,
            *view.frozen,
            *view.delta,
        )
        if len(extra) == 0:
            return result
        none = _buffer_view(None, words.shape[1])
        beside: tuple[npt.NDArray[np.int64], Ids, npt.NDArray[np.int32]] = kernels.search(
            words,
            threshold,
            use_tables,
            extra.codes,
            extra.ids,
            extra.live,
            extra.offsets,
            extra.rows,
            extra.tags,
            radii,
            FLIPS,
            FLIPS_UPTO,
            *none,
            *none,
        )
        return _merge(result, beside)

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._threads, "hashdb-index")
            return self._executor

    def _run(self, tasks: Iterable[Callable[[], None]]) -> None:
        for future in [self._pool().submit(task) for task in tasks]:
            future.result()

    def _map(self, kernel: Callable[..., T], calls: list[tuple[Any, ...]]) -> list[T]:
        """`kernel` applied to each argument tuple, on the pool's threads when there
        are several (the kernels release the GIL)."""
        if self._threads == 1 or len(calls) == 1:
            return [kernel(*call) for call in calls]
        futures = [self._pool().submit(kernel, *call) for call in calls]
        return [future.result() for future in futures]

    # -- state for snapshots ------------------------------------------------------

    def state(self) -> IndexState:
        """A consistent copy of what the index holds (shares the immutable arrays)."""
        with self._lock:
            base = self._base
            segment = Segment(base.codes, base.ids, base.live.copy(), *base.tables())
            segment.dead, segment.shared = base.dead, base.shared
            parts = [self._extra.live_rows(), self._delta.live_rows()]
            if self._frozen is not None:
                parts.insert(1, self._frozen.live_rows())
        return IndexState(
            segment,
            np.concatenate([ids for ids, _ in parts]),
            np.concatenate([codes for _, codes in parts]),
        )

    @classmethod
    def from_state(cls, bits: int, state: IndexState) -> MIHIndex:
        """An index holding `state` (see `state`); its arrays are used, not copied."""
        index = cls(bits)
        if state.segment.codes.shape[1:] != (index.layout.words,):
            raise ValueError("state does not fit this bit length")
        index._base = state.segment
        index._count = int(state.segment.live.sum())
        state.segment.dead = len(state.segment) - index._count
        if len(state.segment):
            index._max_id = int(state.segment.ids[-1])
        if len(state.extra_ids):
            index._add_words(state.extra_ids, state.extra_codes)
        return index

    # -- introspection -------------------------------------------------------------

    def nbytes(self) -> int:
        """Bytes held in arrays: codes, ids, flags, tables and buffers, including
        those of a shared base (see `mapped_nbytes`)."""
        with self._lock:
            frozen = self._frozen.nbytes() if self._frozen is not None else 0
            extra = self._extra.nbytes() if len(self._extra) else 0  # empty: zero pages only
            return self._base.nbytes() + extra + self._delta.nbytes() + frozen

    def mapped_nbytes(self) -> int:
        """The part of `nbytes` that is memory-mapped snapshot files, shared by every
        process on the machine that mapped the same snapshot."""
        with self._lock:
            return self._base.mapped_nbytes()


Found = tuple[npt.NDArray[np.int64], Ids, npt.NDArray[np.int32]]


def _merge(a: Found, b: Found) -> Found:
    """Two (lims, ids, distances) results for the same queries as one, each query's
    hits sorted by (distance, id) as the kernels sort them."""
    nq = len(a[0]) - 1
    queries = np.arange(nq, dtype=np.int64)
    qidx = np.concatenate([np.repeat(queries, np.diff(a[0])), np.repeat(queries, np.diff(b[0]))])
    ids, dists = np.concatenate([a[1], b[1]]), np.concatenate([a[2], b[2]])
    order = np.lexsort((ids, dists, qidx))
    lims = np.zeros(nq + 1, dtype=np.int64)
    np.cumsum(np.bincount(qidx, minlength=nq), out=lims[1:])
    return lims, ids[order], dists[order]


def _hits(lims: npt.NDArray[np.int64], ids: Ids, dists: npt.NDArray[np.int32]) -> list[SearchHits]:
    bounds = lims.tolist()
    none = SearchHits(ids[:0], dists[:0])  # shared by the queries that found nothing
    return [
        SearchHits(ids[a:b], dists[a:b]) if b > a else none for a, b in itertools.pairwise(bounds)
    ]
