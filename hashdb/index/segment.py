"""The two kinds of storage inside `MIHIndex`: an indexed segment and a scan buffer.

`Segment` is built once from a batch of (id, code) pairs and never changes except
for its `live` mask: rows sorted by id (so an id is found by binary search, with no
id->row map to store), codes as permuted uint64 words (starting on a cache line, so
that no PDQ code straddles two), and one counting-sorted table per 16-bit substring
(`offsets` (m, 65537) int32 into `rows` (m, n) int32, and beside each row a one-byte
`tags` (m, n) entry that lets a search drop most candidates without reading their
codes: kernels.tag_of). Per stored hash: 32 bytes of code, 8 of id, 1 of live flag
and 5 per table (80 for PDQ): 121 bytes, plus 4 MB of offsets for the whole index.

A segment's codes, ids and tables are read-only once built (`Segment.build` marks
them so): they may be memory maps of a snapshot's files shared by every process on
the machine (`shared`, hashdb/index/snapshot.py), and every segment then has the
same array types for the compiled kernels. `live` is always the process's own
writable copy, so a removal in one process never shows in another.

`Buffer` holds recent additions, unindexed and scanned linearly; it only grows
(capacity doubling), so a reader that captured (arrays, size) keeps a consistent view
while writers append past `size` or move to bigger arrays.
"""

from __future__ import annotations

import mmap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from hashdb.index import kernels
from hashdb.index.base import Ids
from hashdb.index.layout import Words

Runner = Callable[[Iterable[Callable[[], None]]], None]


def run_serially(tasks: Iterable[Callable[[], None]]) -> None:
    for task in tasks:
        task()


@dataclass
class Segment:
    codes: Words  # (n, words) uint64, rows sorted by id
    ids: Ids  # (n,) strictly increasing
    live: npt.NDArray[np.bool_]  # (n,), the only mutable part
    offsets: npt.NDArray[np.int32]  # (m, 65537)
    rows: npt.NDArray[np.int32]  # (m, n)
    tags: npt.NDArray[np.uint8]  # (m, n), beside rows: kernels.tag_of
    dead: int = 0
    shared: bool = False  # codes, ids and tables are maps of snapshot files

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def empty(words: int, chunks: int) -> Segment:
        return Segment(
            _frozen(np.empty((0, words), dtype=np.uint64)),
            _frozen(np.empty(0, dtype=np.int64)),
            np.empty(0, dtype=bool),
            _frozen(np.zeros((chunks, kernels.BUCKETS + 1), dtype=np.int32)),
            _frozen(np.empty((chunks, 0), dtype=np.int32)),
            _frozen(np.empty((chunks, 0), dtype=np.uint8)),
        )

    @staticmethod
    def build(ids: Ids, codes: Words, chunks: int, run: Runner = run_serially) -> Segment:
        """Index unique `ids` with their internal `codes`; `run` may run tables in parallel."""
        if len(ids) >= np.iinfo(np.int32).max:
            raise ValueError("a segment holds fewer than 2**31 codes")
        order = np.argsort(ids, kind="stable")
        ids = ids[order]
        if len(ids) > 1 and not (np.diff(ids) > 0).all():
            raise ValueError("segment ids must be unique")
        codes = _aligned(codes[order])
        offsets = np.empty((chunks, kernels.BUCKETS + 1), dtype=np.int32)
        rows = np.empty((chunks, len(ids)), dtype=np.int32)
        tags = np.empty((chunks, len(ids)), dtype=np.uint8)

        def table(j: int) -> Callable[[], None]:
            return lambda: kernels.build_table(codes, j, offsets[j], rows[j], tags[j])

        run(table(j) for j in range(chunks))
        live = np.ones(len(ids), dtype=bool)
        return Segment(
            _frozen(codes), _frozen(ids), live, _frozen(offsets), _frozen(rows), _frozen(tags)
        )

    def live_rows(self) -> tuple[Ids, Words]:
        """The ids and codes of the rows still live (copies)."""
        keep = self.live.copy()
        return self.ids[keep], self.codes[keep]

    def remove(self, ids: Ids) -> int:
        """Mark `ids` dead; returns how many were live here."""
        if len(self.ids) == 0 or len(ids) == 0:
            return 0
        pos = np.searchsorted(self.ids, ids)
        found = pos < len(self.ids)
        pos = pos[found]
        pos = pos[self.ids[pos] == ids[found]]
        pos = pos[self.live[pos]]
        self.live[pos] = False
        self.dead += len(pos)
        return len(pos)

    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.codes, self.ids, self.live, *self.tables()))

    def mapped_nbytes(self) -> int:
        """Bytes of this segment that are shared maps of snapshot files (0 if on the heap;
        tags derived for an old snapshot that had none are the process's own)."""
        if not self.shared:
            return 0
        return sum(a.nbytes for a in (self.codes, self.ids, *self.tables()) if _is_map(a))

    def tables(self) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32], npt.NDArray[np.uint8]]:
        return self.offsets, self.rows, self.tags


def tags_for(codes: Words, rows: npt.NDArray[np.int32]) -> npt.NDArray[np.uint8]:
    """The tags beside tables `rows` over `codes`, for tables saved without them (an
    older snapshot format): a private, read-only array."""
    tags = np.empty(rows.shape, dtype=np.uint8)
    kernels.tag_of(codes, rows, tags)
    return _frozen(tags)


def _is_map(array: np.ndarray) -> bool:
    base: object = array
    while isinstance(base, np.ndarray):
        base = base.base
    return isinstance(base, mmap.mmap)


A = TypeVar("A", bound=np.ndarray)

CACHE_LINE = 64


def _aligned(codes: Words) -> Words:
    """A copy of `codes` starting on a cache line, so that a 32-byte PDQ code never
    straddles two lines (a random read of one is then one miss, not sometimes two)."""
    size = codes.size
    buffer = np.empty(size + CACHE_LINE // 8, dtype=np.uint64)
    skip = (-buffer.ctypes.data % CACHE_LINE) // 8
    out = buffer[skip : skip + size].reshape(codes.shape)
    out[...] = codes
    return out


def _frozen(array: A) -> A:
    array.setflags(write=False)
    return array


class Buffer:
    """Append-only (id, code, live) rows, scanned linearly."""

    def __init__(self, words: int, capacity: int = 1024) -> None:
        self.codes: Words = np.empty((capacity, words), dtype=np.uint64)
        self.ids: Ids = np.empty(capacity, dtype=np.int64)
        self.live = np.zeros(capacity, dtype=bool)
        self.size = 0

    def append(self, ids: Ids, codes: Words) -> None:
        end = self.size + len(ids)
        if end > len(self.ids):
            capacity = max(end, 2 * len(self.ids))
            grown = Buffer(self.codes.shape[1], capacity)
            grown.codes[: self.size] = self.codes[: self.size]
            grown.ids[: self.size] = self.ids[: self.size]
            grown.live[: self.size] = self.live[: self.size]
            self.codes, self.ids, self.live = grown.codes, grown.ids, grown.live
        self.codes[self.size : end] = codes
        self.ids[self.size : end] = ids
        self.live[self.size : end] = True
        self.size = end

    def remove(self, ids: Ids) -> int:
        """Mark `ids` dead; returns how many were live here."""
        if self.size == 0 or len(ids) == 0:
            return 0
        rows = np.flatnonzero(np.isin(self.ids[: self.size], ids) & self.live[: self.size])
        self.live[rows] = False
        return len(rows)

    def live_rows(self) -> tuple[Ids, Words]:
        keep = self.live[: self.size]
        return self.ids[: self.size][keep], self.codes[: self.size][keep]

    def nbytes(self) -> int:
        return self.codes.nbytes + self.ids.nbytes + self.live.nbytes
