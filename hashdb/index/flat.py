"""Exact Hamming range search with FAISS `IndexBinaryFlat`.

A flat scan: every query is compared with every stored code using FAISS's popcount
kernels. FAISS's binary range search keeps distances strictly below the radius, so
the radius passed is threshold + 1. Removals mark ids dead in a numpy mask at once
and are compacted out of the FAISS index when a quarter of it is dead, so a delete
never waits for a rebuild. An id maps to one code: adding an id present replaces it.

FAISS searches on one thread: a server answers many requests on its own threads,
and OpenMP fanning one short scan out over every core costs more in thread
hand-offs than the scan itself (docs/measurements.md, "Index and kernels").

No signal type hashdb ships needs it (PDQ and pHash go to `MIHIndex`; digests are
matched exactly), so FAISS is an optional dependency (`pip install 'hashdb[faiss]'`,
in the dev and bench extras), imported when a `FlatIndex` is first made.
"""

from __future__ import annotations

import threading
from types import ModuleType

import numpy as np

from hashdb.index.base import Codes, Ids, SearchHits, check_codes, last_wins


def _faiss() -> ModuleType:
    try:
        import faiss
    except ImportError:
        raise ImportError(
            "FlatIndex needs FAISS, an optional dependency: pip install 'hashdb[faiss]'"
        ) from None
    faiss.omp_set_num_threads(1)
    return faiss


class FlatIndex:
    def __init__(self, bits: int) -> None:
        if bits % 8:
            raise ValueError("bits must be a multiple of 8")
        faiss = _faiss()
        self.bits = bits
        self._lock = threading.RLock()
        self._faiss = faiss.IndexBinaryFlat(bits)
        self._ids: Ids = np.empty(0, dtype=np.int64)  # FAISS row -> hash id
        self._live = np.empty(0, dtype=bool)
        self._dead = 0

    def __len__(self) -> int:
        return len(self._ids) - self._dead

    def add(self, ids: Ids, codes: Codes) -> None:
        ids, codes = last_wins(ids, check_codes(codes, self.bits))
        with self._lock:
            self.remove(ids)
            self._faiss.add(codes)
            self._ids = np.concatenate([self._ids, ids])
            self._live = np.concatenate([self._live, np.ones(len(ids), dtype=bool)])

    def remove(self, ids: Ids) -> None:
        with self._lock:
            hit = np.isin(self._ids, np.asarray(ids, dtype=np.int64)) & self._live
            self._dead += int(hit.sum())
            self._live[hit] = False
            if self._dead and self._dead * 4 >= len(self._ids):
                self._compact()

    def _compact(self) -> None:
        faiss = _faiss()
        stored = faiss.vector_to_array(self._faiss.xb)
        codes = stored.reshape(-1, self.bits // 8)[self._live]
        fresh = faiss.IndexBinaryFlat(self.bits)
        fresh.add(codes)
        self._faiss, self._ids = fresh, self._ids[self._live]
        self._live = np.ones(len(self._ids), dtype=bool)
        self._dead = 0

    def search(self, queries: Codes, threshold: int) -> list[SearchHits]:
        queries = check_codes(queries, self.bits)
        with self._lock:
            if len(queries) == 0:
                return []
            if self._faiss.ntotal == 0:
                empty = SearchHits(np.empty(0, np.int64), np.empty(0, np.int32))
                return [empty] * len(queries)
            lims, dist, rows = self._faiss.range_search(queries, threshold + 1)
            ids, live = self._ids, self._live
        out = []
        for q in range(len(queries)):
            r = rows[lims[q] : lims[q + 1]]
            keep = live[r]
            out.append(SearchHits.sorted(ids[r][keep], dist[lims[q] : lims[q + 1]][keep]))
        return out
