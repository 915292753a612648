"""The brute-force oracle: a plain numpy Hamming scan, obviously correct.

Slow (it compares every query with every stored code) and exact; every other index
is tested against it. Popcount goes through a 256-entry lookup table so it runs on
any numpy.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from hashdb.index.base import Codes, Ids, SearchHits, check_codes, last_wins

_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.int32)


def hamming(a: Codes, b: Codes) -> npt.NDArray[np.int32]:
    """Pairwise Hamming distances between rows of `a` (m, k) and `b` (n, k): (m, n)."""
    xor = np.bitwise_xor(a[:, None, :], b[None, :, :])
    return _POPCOUNT[xor].sum(axis=2, dtype=np.int32)  # type: ignore[no-any-return]


class BruteForceIndex:
    def __init__(self, bits: int) -> None:
        self.bits = bits
        self._ids: Ids = np.empty(0, dtype=np.int64)
        self._codes: Codes = np.empty((0, bits // 8), dtype=np.uint8)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: Ids, codes: Codes) -> None:
        ids, codes = last_wins(ids, check_codes(codes, self.bits))
        self.remove(ids)
        self._ids = np.concatenate([self._ids, ids])
        self._codes = np.concatenate([self._codes, codes])

    def remove(self, ids: Ids) -> None:
        keep = ~np.isin(self._ids, np.asarray(ids, dtype=np.int64))
        self._ids, self._codes = self._ids[keep], self._codes[keep]

    def search(self, queries: Codes, threshold: int) -> list[SearchHits]:
        queries = check_codes(queries, self.bits)
        out = []
        for start in range(0, len(queries), 256):
            dist = hamming(queries[start : start + 256], self._codes)
            for row in dist:
                hit = row <= threshold
                out.append(SearchHits.sorted(self._ids[hit], row[hit]))
        return out
