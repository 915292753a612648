"""The row cache: the `hashes` rows that matches show, kept in memory.

Up to RECORD_CACHE rows, filled in the background after a load (`warm`: a
collection that fits is answered without reading the database at all) and on a
miss (one statement per batch). Every change to a row that a match shows (status,
labels, expiry) is in the change log, and replaying it evicts the row (`evict`),
so the cache never serves a stale row once the indexes have caught up. A row read
while an eviction happened is not cached: it may predate the change replayed.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable

from hashdb.signals import SIGNAL_TYPES, Matching
from hashdb.store import HashRecord, HashStore, Status

RECORD_CACHE = 250_000  # rows kept for hydration (about 500 bytes each)


class RowCache:
    """Rows by hash id, evicted by replay; thread-safe."""

    def __init__(self, hashes: HashStore, statuses: frozenset[Status]) -> None:
        self._hashes = hashes
        self._statuses = statuses
        self._lock = threading.Lock()
        self._records: dict[int, HashRecord] = {}
        self._evictions = 0  # bumped whenever rows leave the cache (see `get`)
        self._evicted: set[int] | None = None  # ids evicted while `warm` reads

    def clear(self) -> None:
        with self._lock:
            self._records.clear()
            self._evictions += 1

    def evict(self, hash_ids: Iterable[int]) -> None:
        """Forget the rows of `hash_ids` (a replay is about to apply their changes)."""
        with self._lock:
            self._evictions += 1
            for hash_id in hash_ids:
                self._records.pop(hash_id, None)
                if self._evicted is not None:
                    self._evicted.add(hash_id)

    def warm(self) -> int:
        """Fill the cache with matchable rows of the indexed signal types (up to
        RECORD_CACHE); returns how many rows it holds then. Rows that a replay
        touches while they are read are left out (they will be read on a miss)."""
        with self._lock:
            self._evicted = set()
        try:
            ids: list[int] = []
            for signal in SIGNAL_TYPES.values():
                if signal.matching is not Matching.HAMMING:
                    continue
                codes = self._hashes.iter_codes(signal.name, signal.nbytes, self._statuses)
                for part, _ in codes:
                    ids.extend(part.tolist()[: RECORD_CACHE - len(ids)])
                    if len(ids) >= RECORD_CACHE:
                        break
            fresh = self._hashes.get_many(ids)
        finally:
            with self._lock:
                evicted, self._evicted = self._evicted or set(), None
        with self._lock:
            room = RECORD_CACHE - len(self._records)
            for hash_id, record in itertools.islice(fresh.items(), max(room, 0)):
                if hash_id not in evicted:
                    self._records.setdefault(hash_id, record)
            return len(self._records)

    def get(self, wanted: set[int]) -> dict[int, HashRecord]:
        """The rows of `wanted`, from the cache or (the missing ones) the database."""
        with self._lock:
            found = {i: r for i in wanted if (r := self._records.get(i)) is not None}
            evictions = self._evictions
        missing = wanted - found.keys()
        if missing:
            fresh = self._hashes.get_many(missing)
            found.update(fresh)
            with self._lock:
                room = RECORD_CACHE - len(self._records)
                if evictions == self._evictions and room >= len(fresh):
                    self._records.update(fresh)
        return found
