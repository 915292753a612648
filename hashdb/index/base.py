"""The interface every Hamming index implements, and its result type.

An index holds (id, code) pairs for one bit length and answers, for each query
code, every stored id within `threshold` bits (inclusive) with its distance.
Exactness is the contract: implementations are tested against `BruteForceIndex`.

    index = make_index(bits=256)
    index.add(ids, codes)          # ids: int64 (n,), codes: uint8 (n, bits // 8)
    index.remove(ids)              # takes effect for the next search; absent ids: no-op
                                   # add of an id present replaces its code (last wins)
    hits = index.search(queries, threshold)   # one SearchHits per query row
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

Ids = npt.NDArray[np.int64]
Codes = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class SearchHits:
    """Matches of one query: parallel arrays, sorted by distance then id."""

    ids: Ids
    distances: npt.NDArray[np.int32]

    def __len__(self) -> int:
        return len(self.ids)

    @staticmethod
    def sorted(ids: Ids, distances: npt.NDArray[np.int32]) -> SearchHits:
        order = np.lexsort((ids, distances))
        return SearchHits(ids[order].astype(np.int64), distances[order].astype(np.int32))


class HammingIndex(Protocol):
    bits: int

    def __len__(self) -> int: ...

    def add(self, ids: Ids, codes: Codes) -> None: ...

    def remove(self, ids: Ids) -> None: ...

    def search(self, queries: Codes, threshold: int) -> list[SearchHits]: ...


def check_codes(codes: Codes, bits: int) -> Codes:
    """Codes as a C-contiguous uint8 (n, bits // 8) array, or ValueError."""
    array = np.ascontiguousarray(codes, dtype=np.uint8)
    if array.ndim != 2 or array.shape[1] != bits // 8:
        raise ValueError(f"codes must have shape (n, {bits // 8}), got {array.shape}")
    return array


def last_wins(ids: Ids, codes: Codes) -> tuple[Ids, Codes]:
    """`ids` as int64 without repeats, keeping the last code given for each."""
    ids = np.asarray(ids, dtype=np.int64).ravel()
    if len(ids) != len(codes):
        raise ValueError("ids and codes differ in length")
    unique, last = np.unique(ids[::-1], return_index=True)
    if len(unique) == len(ids):
        return ids, codes
    keep = np.sort(len(ids) - 1 - last)
    return ids[keep], codes[keep]
